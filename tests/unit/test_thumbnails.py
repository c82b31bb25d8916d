"""Thumbnails on real FFmpeg output: the poster skips a black leader, shot stills land inside their
shots, and every trickplay cue points inside a sprite sheet that exists."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from models.media.ladder import output_size
from models.media.probe import Probe, probe
from models.media.thumbnails import choose_poster, shot_thumbnails, trickplay

LEADER_S = 1.5


def _encode(target: Path, graph: str) -> Path:
    x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-filter_complex", graph, *x264, str(target)], check=True)
    return target


@pytest.fixture(scope="module")
def leader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.5 s of black, then 3 s of a sharp test pattern."""
    graph = (
        f"color=black:s=320x240:r=25:d={LEADER_S}[a];testsrc2=s=320x240:r=25:d=3[b];[a][b]concat=n=2:v=1:a=0"
    )
    return _encode(tmp_path_factory.mktemp("thumbs") / "leader.mp4", graph)


@pytest.fixture(scope="module")
def five(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _encode(tmp_path_factory.mktemp("thumbs") / "five.mp4", "testsrc2=s=320x180:r=25:d=5")


def _size(image: Path) -> tuple[int, int]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "json", str(image)],
        check=True,
        capture_output=True,
    ).stdout
    stream = json.loads(out)["streams"][0]
    return stream["width"], stream["height"]


def _gray(image: Path) -> np.ndarray:
    width, height = _size(image)
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(image), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width)


def test_poster_skips_the_black_leader(leader: Path, tmp_path: Path) -> None:
    probed = probe(leader)
    thumb = choose_poster(leader, probed, tmp_path / "poster.jpg", timeout_s=60)
    assert thumb.time_s >= LEADER_S
    assert (thumb.width, thumb.height) == _size(thumb.path) == (320, 240)  # 360 asked: never upscaled
    pixels = _gray(thumb.path)
    assert pixels.mean() > 24 and pixels.std() > 8


def test_poster_falls_back_on_an_all_black_clip(tmp_path: Path) -> None:
    clip = _encode(tmp_path / "black.mp4", "color=black:s=320x240:r=25:d=1")
    thumb = choose_poster(clip, probe(clip), tmp_path / "poster.jpg", timeout_s=60)
    assert thumb.path.is_file() and thumb.time_s > 0


def test_shot_thumbnails_land_inside_each_shot(leader: Path, tmp_path: Path) -> None:
    probed = probe(leader)
    thumbs = shot_thumbnails(leader, probed, [0.0, LEADER_S], tmp_path, timeout_s=60, height=121)
    assert [t.path.name for t in thumbs] == ["shot_0000.jpg", "shot_0001.jpg"]
    # start + min(0.5 s, a third of the way to the next start or the end)
    assert [t.time_s for t in thumbs] == [0.5, 2.0]
    assert {(t.width, t.height) for t in thumbs} == {output_size(probed, 121)}
    assert all(t.width % 2 == 0 and t.height % 2 == 0 and t.height <= 121 for t in thumbs)
    assert all(_size(t.path) == (t.width, t.height) for t in thumbs)
    assert _gray(thumbs[0].path).mean() < 24 < _gray(thumbs[1].path).mean()


def test_shot_thumbnails_are_never_upscaled(leader: Path, tmp_path: Path) -> None:
    thumbs = shot_thumbnails(leader, probe(leader), [0.0], tmp_path, timeout_s=60, height=1080)
    assert _size(thumbs[0].path) == (thumbs[0].width, thumbs[0].height) == (320, 240)


def _cues(vtt: str) -> list[tuple[float, float, str, tuple[int, ...]]]:
    def seconds(stamp: str) -> float:
        h, m, s = stamp.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    found = re.findall(r"(\S+) --> (\S+)\n(sprite_\d{3}\.jpg)#xywh=(\d+),(\d+),(\d+),(\d+)", vtt)
    return [(seconds(a), seconds(b), name, tuple(map(int, box))) for a, b, name, *box in found]


@pytest.mark.parametrize(("columns", "rows"), [(10, 10), (3, 2)])
def test_trickplay_cues_cover_the_clip_and_point_inside_sheets(
    five: Path, tmp_path: Path, columns: int, rows: int
) -> None:
    probed: Probe = probe(five)
    play = trickplay(five, probed, tmp_path, timeout_s=60, columns=columns, rows=rows, interval_s=0.5)
    text = play.vtt.read_text()
    assert text.startswith("WEBVTT\n\n")
    cues = _cues(text)
    assert len(cues) == play.frame_count == 10
    assert (play.tile_width, play.tile_height) == (160, 90)
    assert len(play.sprites) == math.ceil(play.frame_count / (columns * rows))
    assert cues[0][0] == 0 and cues[-1][1] == pytest.approx(probed.duration_s)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cues))
    sizes = {sheet.name: _size(sheet) for sheet in play.sprites}
    for _, _, name, (x, y, w, h) in cues:
        width, height = sizes[name]
        assert x + w <= width and y + h <= height
    assert len({(name, box) for _, _, name, box in cues}) == len(cues)
