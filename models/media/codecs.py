"""RFC 6381 codec strings for the master playlist's CODECS attribute, read from the encoded
init segment's decoder configuration box rather than guessed from settings — a player refuses a
variant whose CODECS promises a profile or level the stream does not have.
"""

from __future__ import annotations

from pathlib import Path

AAC_LC = "mp4a.40.2"


def _box_payload(data: bytes, box: bytes, size: int) -> bytes:
    at = data.find(box)
    if at < 0:
        raise ValueError(f"no {box.decode()} box in the init segment")
    return data[at + 4 : at + 4 + size]


def _avc(data: bytes) -> str:
    cfg = _box_payload(data, b"avcC", 4)
    return f"avc1.{cfg[1]:02X}{cfg[2]:02X}{cfg[3]:02X}"


def _reverse_bits32(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


def _hevc(data: bytes) -> str:
    cfg = _box_payload(data, b"hvcC", 13)
    space = "" if cfg[1] >> 6 == 0 else "ABC"[(cfg[1] >> 6) - 1]
    tier = "H" if cfg[1] & 0x20 else "L"
    compat = _reverse_bits32(int.from_bytes(cfg[2:6], "big"))
    constraints = list(cfg[6:12])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    tail = "".join(f".{b:X}" for b in constraints)
    return f"hvc1.{space}{cfg[1] & 0x1F}.{compat:X}.{tier}{cfg[12]}{tail}"


def _av1(data: bytes) -> str:
    cfg = _box_payload(data, b"av1C", 3)
    profile, level = cfg[1] >> 5, cfg[1] & 0x1F
    tier = "H" if cfg[2] & 0x80 else "M"
    depth = 12 if cfg[2] & 0x20 else 10 if cfg[2] & 0x40 else 8
    return f"av01.{profile}.{level:02d}{tier}.{depth:02d}"


def _vp9(data: bytes) -> str:
    cfg = _box_payload(data, b"vpcC", 7)  # full box: version and flags come first
    return f"vp09.{cfg[4]:02d}.{cfg[5]:02d}.{cfg[6] >> 4:02d}"


READERS = {"h264": _avc, "hevc": _hevc, "av1": _av1, "vp9": _vp9}


def video_codec_string(codec: str, init_segment: Path) -> str:
    """The CODECS entry for a video rendition, from its init segment."""
    return READERS[codec](init_segment.read_bytes())
