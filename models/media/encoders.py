"""Pick an encoder per codec: a hardware one (NVENC, QSV, VAAPI) when it really works here,
the software one otherwise, with the same rate control and GOP so the ladder stays the same.

`ffmpeg -encoders` lists NVENC even on machines without a GPU, so an encoder counts as present
only after it has encoded one test frame. The result is cached per process.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from models.media import tools
from models.media.ladder import Codec, RungPlan

log = logging.getLogger("streamlake.encoders")

Accel = Literal["software", "nvenc", "qsv", "vaapi"]
RENDER_NODE = Path("/dev/dri/renderD128")
SOFTWARE: dict[Codec, str] = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1", "vp9": "libvpx-vp9"}
HARDWARE: dict[Accel, dict[Codec, str]] = {
    "nvenc": {"h264": "h264_nvenc", "hevc": "hevc_nvenc", "av1": "av1_nvenc"},
    "qsv": {"h264": "h264_qsv", "hevc": "hevc_qsv", "av1": "av1_qsv", "vp9": "vp9_qsv"},
    "vaapi": {"h264": "h264_vaapi", "hevc": "hevc_vaapi", "av1": "av1_vaapi", "vp9": "vp9_vaapi"},
}


@dataclass(frozen=True)
class Encoder:
    codec: Codec
    name: str
    accel: Accel

    @property
    def uses_gpu(self) -> bool:
        return self.accel == "nvenc"

    @property
    def needs_upload(self) -> bool:
        """VAAPI encoders take frames in GPU memory; the others read system memory."""
        return self.accel == "vaapi"

    def global_args(self) -> list[str]:
        return ["-vaapi_device", str(RENDER_NODE)] if self.accel == "vaapi" else []

    def args(self, plan: RungPlan, gop: int) -> dict[str, str | int]:
        """Encoder options: capped-VBR at the rung's bitrate, a fixed GOP, no scene-cut keyframes."""
        rate = {
            "b:v": f"{plan.bitrate_kbps}k",
            "maxrate": f"{plan.maxrate_kbps}k",
            "bufsize": f"{plan.bufsize_kbps}k",
            "g": gop,
        }
        tag = {"tag:v": "hvc1"} if self.codec == "hevc" else {}  # Apple players need hvc1 in fMP4
        if self.accel == "nvenc":
            return {**rate, **tag, "preset": "p5", "tune": "hq", "rc": "vbr", "forced-idr": 1}
        if self.accel != "software":
            return {**rate, **tag}
        gop_params = f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0"
        software: dict[Codec, dict[str, str | int]] = {
            "h264": {"preset": "veryfast", "sc_threshold": 0, "keyint_min": gop, "pix_fmt": "yuv420p"},
            "hevc": {"preset": "fast", "x265-params": f"{gop_params}:log-level=error", "forced-idr": 1},
            "av1": {"preset": 10, "pix_fmt": "yuv420p"},
            "vp9": {"deadline": "good", "cpu-used": 5, "row-mt": 1, "keyint_min": gop, "pix_fmt": "yuv420p"},
        }
        return {**rate, **tag, **software[self.codec]}


def _works(encoder: str, accel: Accel) -> bool:
    """Encode one small frame with the encoder; a missing driver or device fails here."""
    chain = ["-vf", "format=nv12,hwupload"] if accel == "vaapi" else []
    device = ["-vaapi_device", str(RENDER_NODE)] if accel == "vaapi" else []
    args = [
        tools.require("ffmpeg"), "-v", "error", "-nostdin", *device,
        "-f", "lavfi", "-i", "color=c=gray:s=256x144:d=0.1",
        *chain, "-frames:v", "1", "-c:v", encoder, "-f", "null", "-",
    ]  # fmt: skip
    try:
        tools.run(args, timeout_s=30)
    except tools.FFmpegFailed as err:
        log.info("%s listed but unusable here: %s", encoder, err)
        return False
    return True


def _device_present(accel: Accel) -> bool:
    if accel == "nvenc":
        return Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists()
    return RENDER_NODE.exists()


@functools.cache
def _listed() -> frozenset[str]:
    out = tools.run([tools.require("ffmpeg"), "-hide_banner", "-encoders"], timeout_s=30).decode()
    return frozenset(line.split()[1] for line in out.splitlines() if len(line.split()) > 1)


@functools.cache
def select(codec: Codec, hwaccel: str = "auto") -> Encoder:
    """The first working hardware encoder for the codec (NVENC, QSV, VAAPI), else software.

    hwaccel: "auto", "none", or one of nvenc/qsv/vaapi to allow only that family.
    """
    families: list[Accel] = [] if hwaccel == "none" else ["nvenc", "qsv", "vaapi"]
    if hwaccel not in ("auto", "none"):
        families = [a for a in families if a == hwaccel]
    for accel in families:
        name = HARDWARE[accel].get(codec)
        if name and name in _listed() and _device_present(accel) and _works(name, accel):
            return Encoder(codec, name, accel)
    if families and hwaccel != "auto":
        log.warning("no working %s encoder for %s; using software", hwaccel, codec)
    return Encoder(codec, SOFTWARE[codec], "software")
