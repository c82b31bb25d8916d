"""Two ingest defects the fault suite found, kept in the default run: a non-UTF-8 upload name
reached the lake as lone surrogates (the write failed, the item stuck), and a forged mvhd
duration was believed (a one-second clip listed as 49 days)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from models.media.library import ORIGIN_FILE, admit, display_path
from models.media.probe import MediaRejected, probe


def test_a_non_utf8_upload_name_is_admitted_with_a_storable_uri(tmp_path: Path) -> None:
    inbox, library = tmp_path / "inbox", tmp_path / "library"
    inbox.mkdir()
    upload = Path(os.fsdecode(bytes(inbox) + b"/clip_\xff\xe9.mp4"))
    upload.write_bytes(b"not really media")
    [item] = admit(inbox, library)
    assert item.source_uri == display_path(upload) and item.source_uri.endswith("clip_\\xff\\xe9.mp4")
    item.source_uri.encode("utf-8")
    origin = json.loads((library / item.media_id / ORIGIN_FILE).read_text())
    assert origin["source_uri"] == item.source_uri and origin["name"] == "clip_\\xff\\xe9.mp4"


def test_a_duration_claim_beyond_the_streams_is_rejected(tmp_path: Path) -> None:
    clip = tmp_path / "forever.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=1",
         "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart", str(clip)],
        check=True, timeout=60,
    )  # fmt: skip
    assert probe(clip).duration_s == pytest.approx(1.0, abs=0.05)
    data = bytearray(clip.read_bytes())
    struct.pack_into(">I", data, data.index(b"mvhd") + 20, 0xFFFFFFFF)  # mvhd v0 duration field
    clip.write_bytes(bytes(data))
    with pytest.raises(MediaRejected, match="duration claim"):
        probe(clip)
