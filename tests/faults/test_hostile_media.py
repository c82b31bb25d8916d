"""Hostile uploads through the real ingest asset: every file ends ingested or quarantined with a
reason, the good sample's partition succeeds, and nothing outside the media root is opened.

The corpus is generated here (FFmpeg and byte patches), never committed. A FIFO stands outside the
media root as the sentinel that playlists, concat lists and symlinks point at: a thread blocks
opening its write end, which returns only if some process opens it for reading, so "never opened"
is observed directly rather than inferred from atime (noatime mounts hide reads).
"""

from __future__ import annotations

import os
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from assets.common import StreamlakeResource
from assets.ingest import ingest
from models.lake.tables import read_table
from models.media.library import BOOKKEEPING, REASON_FILE, admit, display_path
from models.settings import Settings, get_settings

pytestmark = pytest.mark.faults

CATEGORY = "hostile media"


@dataclass(frozen=True)
class Case:
    """One upload: its inbox name (bytes: names need not be UTF-8) and what ingest must make of it.

    reason: a substring the quarantine reason must hold; None means the file must be ingested.
    """

    name: bytes
    build: Callable[[Path, Path], None]  # (target file, sentinel outside the root)
    reason: str | None


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, timeout=60)


def _video(target: Path, *extra: str, size: str = "64x48", seconds: float = 1.0, fmt: str = "mp4") -> None:
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=10:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra, "-f", fmt, str(target),
    )  # fmt: skip


def _good(target: Path, _: Path) -> None:
    _video(target, "-movflags", "+faststart")


def _truncated(fraction: float) -> Callable[[Path, Path], None]:
    def build(target: Path, sentinel: Path) -> None:
        _good(target, sentinel)
        data = target.read_bytes()
        target.write_bytes(data[: max(12, int(len(data) * fraction))])

    return build


def _bytes(data: bytes) -> Callable[[Path, Path], None]:
    return lambda target, _: target.write_bytes(data)


def _text(render: Callable[[Path], str]) -> Callable[[Path, Path], None]:
    return lambda target, sentinel: target.write_text(render(sentinel))


def _audio_only(target: Path, _: Path) -> None:
    _ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", "-f", "mp4", str(target))


def _subtitles_only(target: Path, _: Path) -> None:
    srt = target.with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    _ffmpeg("-i", str(srt), "-c:s", "ass", "-f", "matroska", str(target))
    srt.unlink()


def _patch(target: Path, tag: bytes, offset: int, fmt: str, *values: int) -> None:
    """Overwrite struct-packed values `offset` bytes after the first `tag` in the file."""
    data = bytearray(target.read_bytes())
    at = data.index(tag) + offset
    struct.pack_into(fmt, data, at, *values)
    target.write_bytes(bytes(data))


def _absurd_resolution(target: Path, _: Path) -> None:
    """Raw video in AVI, whose size comes from the header alone: BITMAPINFOHEADER says 100000²."""
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=16x16:rate=5:duration=1", "-c:v", "rawvideo",
            "-pix_fmt", "gray", "-f", "avi", str(target))  # fmt: skip
    _patch(target, b"strf", 12, "<ii", 100_000, 100_000)  # after tag, size, biSize: width, height


def _huge_duration(target: Path, sentinel: Path) -> None:
    """mvhd and mdhd (version 0) claim 2^32-1 ticks: days of video in a one-second file."""
    _good(target, sentinel)
    for box in (b"mvhd", b"mdhd"):
        _patch(target, box, 20, ">I", 0xFFFFFFFF)  # tag, version+flags, created, modified, timescale


def _bit_flips(target: Path, sentinel: Path) -> None:
    _video(target, "-movflags", "+faststart", seconds=3.0)
    data = bytearray(target.read_bytes())
    start = data.index(b"mdat") + len(data) // 3
    for i in range(start, start + 4096, 7):
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))


def _variable_frame_rate(target: Path, _: Path) -> None:
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=2",
            "-vf", "setpts='N/10/TB+if(gt(N,5),N*N/400/TB,0)'", "-fps_mode", "vfr",
            "-c:v", "libx264", "-preset", "ultrafast", "-f", "matroska", str(target))  # fmt: skip


def _rotated(target: Path, _: Path) -> None:
    _video(target, "-metadata:s:v:0", "rotate=90")


def _huge_width(target: Path, _: Path) -> None:
    _video(target, size="9000x16", seconds=0.2)


CASES: dict[str, Case] = {
    "good": Case(b"good.mp4", _good, None),
    "zero bytes": Case(b"empty.mp4", _bytes(b""), "empty file"),
    "truncated 1%": Case(b"cut_01.mp4", _truncated(0.01), "no video stream"),
    "truncated 50%": Case(b"cut_50.mp4", _truncated(0.5), "does not decode"),
    "truncated 95%": Case(b"cut_95.mp4", _truncated(0.95), "does not decode"),
    "wrong extension (mp4 as .avi)": Case(b"really_mp4.avi", lambda t, s: _video(t, seconds=1.5), None),
    "not media (PNG named .mp4)": Case(
        b"picture.mp4", _bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), "not a recognised"
    ),
    "no video stream (subtitles only)": Case(b"subs.mkv", _subtitles_only, "no video stream"),
    "audio only": Case(b"song.mp4", _audio_only, "no video stream"),
    "absurd resolution in header": Case(b"giant.avi", _absurd_resolution, "implausible resolution"),
    "9000 px wide": Case(b"wide.mp4", _huge_width, "implausible resolution"),
    "huge duration claim": Case(b"forever.mp4", _huge_duration, "duration claim"),
    "bit flips mid-stream": Case(b"flipped.mp4", _bit_flips, "does not decode"),
    "variable frame rate": Case(b"vfr.mkv", _variable_frame_rate, None),
    "rotated (display matrix)": Case(b"rotated.mp4", _rotated, None),
    "hls playlist pointing outside": Case(
        b"escape.m3u8",
        _text(lambda s: f"#EXTM3U\n#EXTINF:1,\nfile://{s}\n#EXTINF:1,\n{s}\n#EXT-X-ENDLIST\n"),
        "not a recognised",
    ),
    "ffconcat pointing outside": Case(
        b"escape.ffconcat",
        _text(lambda s: f"ffconcat version 1.0\nfile '{s}'\nfile 'concat:{s}|{s}'\n"),
        "not a recognised",
    ),
    "concat: protocol file name": Case(b"concat:a.mp4|b.mp4", lambda t, s: _video(t, seconds=1.2), None),
    "symlink out of the media root": Case(b"link.mp4", lambda t, s: t.symlink_to(s), "symbolic link"),
    "non-UTF-8 file name": Case(b"clip_\xff\xfe_\xe9.mp4", lambda t, s: _video(t, seconds=1.3), None),
}


class OpenWatch:
    """A FIFO that notices being opened: the watcher's blocking open of the write end returns only
    once a reader opens the other end (a stat, a readlink or a resolve opens nothing)."""

    def __init__(self, fifo: Path) -> None:
        os.mkfifo(fifo)
        self.fifo = fifo
        self._opened = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        fd = os.open(self.fifo, os.O_WRONLY)
        if not self._closing.is_set():
            self._opened.set()
        os.close(fd)  # a reader gets end-of-file, never our bytes, and never blocks

    def close(self) -> bool:
        """Stop watching; whether anyone opened the FIFO meanwhile."""
        self._closing.set()
        fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)  # releases the waiting writer
        self._thread.join(timeout=5)
        os.close(fd)
        return self._opened.is_set()


@dataclass(frozen=True)
class Ingested:
    settings: Settings
    label_of: dict[str, str]  # media_id -> case label
    runs_ok: dict[str, bool]  # media_id -> the partition's run succeeded
    sentinel_opened: bool


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingested]:
    """Every case dropped in one inbox, admitted as the sensor does, then one ingest run per item."""
    settings = get_settings(data_dir=tmp_path_factory.mktemp("hostile-lake"))
    settings.ensure_dirs()
    watch = OpenWatch(tmp_path_factory.mktemp("outside-root") / "sentinel.mp4")
    try:
        by_source: dict[str, str] = {}
        for label, case in CASES.items():
            target = Path(os.fsdecode(settings.inbox)) / os.fsdecode(case.name)
            case.build(target, watch.fifo)
            by_source[display_path(target)] = label
        admitted = admit(settings.inbox, settings.library, quarantine_dir=settings.quarantine_dir)
        label_of = {item.media_id: by_source[item.source_uri] for item in admitted}
        assert sorted(label_of.values()) == sorted(CASES), "every upload is admitted, none twice"
        resources = {"streamlake": StreamlakeResource(data_dir=str(settings.data_dir))}
        runs_ok = {}
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("media", sorted(label_of))
            for media_id in sorted(label_of):
                result = dg.materialize(
                    [ingest], partition_key=media_id, instance=instance, resources=resources,
                    raise_on_error=False,
                )  # fmt: skip
                runs_ok[media_id] = result.success
    finally:
        opened = watch.close()
    yield Ingested(settings, label_of, runs_ok, opened)


def _verdict(ingested: Ingested, label: str) -> tuple[bool, bool, str]:
    """(survived, lost, what happened) for one case, from the tables and the quarantine folder."""
    media_id = next(m for m, name in ingested.label_of.items() if name == label)
    expected = CASES[label].reason
    items = read_table(ingested.settings, "media_items").filter(media_id=media_id)
    held = read_table(ingested.settings, "quarantine").filter(pl.col("sha256").str.starts_with(media_id))
    if not ingested.runs_ok[media_id]:
        return False, items.is_empty() and held.is_empty(), "the ingest run failed"
    if items.height == 1 and held.is_empty():
        return expected is None, False, "ingested"
    if held.height != 1 or not items.is_empty():
        return False, held.is_empty(), f"{items.height} media_items rows, {held.height} quarantine rows"
    row = held.row(0, named=True)
    folder = Path(row["quarantined_path"])
    kept = [p for p in folder.iterdir() if p.name not in BOOKKEEPING]
    if len(kept) != 1 or (folder / REASON_FILE).read_text().strip() != row["reason"]:
        return False, not kept, f"quarantine folder incomplete: {sorted(p.name for p in folder.iterdir())}"
    return expected is not None and expected in row["reason"], False, f"quarantined: {row['reason']}"


@pytest.mark.parametrize("label", list(CASES))
def test_each_upload_is_ingested_or_quarantined_with_its_reason(
    ingested: Ingested, faults: Any, label: str
) -> None:
    survived, lost, happened = _verdict(ingested, label)
    faults.record(CATEGORY, survived=survived, lost=int(lost), note=f"{label}: {happened}")
    expected = CASES[label].reason
    assert survived and not lost, f"{label}: expected {expected or 'ingest'}, got {happened}"


def test_nothing_outside_the_media_root_is_opened(ingested: Ingested, faults: Any) -> None:
    """Playlists, concat lists and the symlink all name the sentinel; no process ever opened it."""
    faults.record(
        CATEGORY, survived=not ingested.sentinel_opened, note="the sentinel outside the root was opened"
    )
    assert not ingested.sentinel_opened


def test_the_sentinel_notices_a_read(tmp_path: Path) -> None:
    """The detector itself: an open for reading is seen, a stat and a resolve are not."""
    quiet = OpenWatch(tmp_path / "quiet")
    quiet.fifo.stat(), quiet.fifo.resolve()
    assert not quiet.close()
    watch = OpenWatch(tmp_path / "read")
    with open(watch.fifo, "rb") as handle:
        handle.read()
    assert watch.close()


def test_stored_names_and_uris_are_plain_text(ingested: Ingested) -> None:
    """A non-UTF-8 upload name must not reach the lake (or FFmpeg's argv) as undecodable bytes."""
    items = read_table(ingested.settings, "media_items")
    for uri in [*items["source_uri"], *read_table(ingested.settings, "quarantine")["source_uri"]]:
        uri.encode("utf-8")
    for folder in ingested.settings.library.iterdir():
        for path in folder.iterdir():
            assert path.name.isascii(), path
