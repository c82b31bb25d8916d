"""Quality scores on real encodes (VMAF and the PSNR fallback) and the per-title ladder's geometry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from models.media import per_title, quality
from models.media.per_title import ChosenRung, FixedRung, RDPoint
from models.media.probe import probe

SIZE = (640, 360)


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A noisy 3 s reference, a good encode, and a bad one packaged as HLS fMP4 (init + segments)."""
    root = tmp_path_factory.mktemp("quality")
    ref, good = root / "ref.mp4", root / "good.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=3", "-vf", "noise=alls=12:allf=t",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "10", "-pix_fmt", "yuv420p", str(ref),
    )  # fmt: skip
    _ffmpeg("-i", str(ref), "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", str(good))
    _ffmpeg(
        "-i", str(ref), "-c:v", "libx264", "-preset", "veryfast", "-crf", "40", "-g", "25",
        "-f", "hls", "-hls_time", "1", "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_segment_filename", str(root / "seg%d.m4s"), str(root / "bad.m3u8"),
    )  # fmt: skip
    segments = sorted(root.glob("seg*.m4s"), key=lambda p: int(p.stem[3:]))
    bad = root / "bad.mp4"
    bad.write_bytes(b"".join(p.read_bytes() for p in [root / "init.mp4", *segments]))
    window = root / "window.mp4"  # seconds 1..2 of the good encode, to check reference windows line up
    _ffmpeg("-ss", "1", "-t", "1", "-i", str(good), "-c:v", "libx264", "-crf", "20", str(window))
    return {"ref": ref, "good": good, "bad": bad, "window": window}


def _score(
    media: dict[str, Path], name: str, start_s: float | None = None, duration_s: float | None = None
) -> quality.QualityScore:
    return quality.score(
        media[name], "mov", media["ref"], "mov", SIZE, timeout_s=60, start_s=start_s, duration_s=duration_s
    )


def test_vmaf_orders_encodes(media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    if quality.vmaf_ffmpeg() is None:
        pytest.skip("no FFmpeg with libvmaf (imageio-ffmpeg missing or built without it)")
    monkeypatch.delenv(quality.METRIC_ENV, raising=False)
    good, bad, same = _score(media, "good"), _score(media, "bad"), _score(media, "ref")
    assert {good.metric, bad.metric, same.metric} == {"vmaf"}
    assert 0 <= bad.value < good.value <= 100
    assert same.value > 90
    aligned = _score(media, "window", start_s=1.0, duration_s=1.0)
    shifted = _score(media, "window", start_s=0.0, duration_s=1.0)
    assert aligned.value > 80 and aligned.value > shifted.value + 10


def test_psnr_fallback_orders_encodes(media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(quality.METRIC_ENV, "psnr")
    good, bad, same = _score(media, "good"), _score(media, "bad"), _score(media, "ref")
    assert {good.metric, bad.metric, same.metric} == {"psnr"}
    assert 20 < bad.value < good.value < 60
    assert same.value == quality.PSNR_CAP_DB


def _pt(kbps: float, q: float, height: int = 360, crf: int = 0) -> RDPoint:
    return RDPoint(height * 16 // 9, height, crf, kbps, q)


def test_hull_drops_dominated_and_under_hull_points() -> None:
    points = [_pt(100, 50), _pt(200, 55), _pt(300, 72), _pt(400, 90), _pt(500, 85), _pt(600, 95)]
    hull = per_title.convex_hull(points)
    # (500, 85) is dominated by (400, 90); (200, 55) and (300, 72) lie under the chord 100->400
    assert [(p.kbps, p.quality) for p in hull] == [(100, 50), (400, 90), (600, 95)]


def test_interpolation_and_choice_by_hand() -> None:
    curve = [(100.0, 60.0), (300.0, 80.0), (900.0, 90.0)]
    assert per_title.quality_at(curve, 200) == pytest.approx(70.0)
    assert per_title.quality_at(curve, 50) == 60.0 and per_title.quality_at(curve, 2000) == 90.0
    assert per_title.kbps_for(curve, 85) == pytest.approx(600.0)
    assert per_title.kbps_for(curve, 99) == 900.0
    points = [_pt(k, q) for k, q in curve]
    hull = per_title.convex_hull(points)
    # fixed 600 kbps gives 85; the ceiling 82 needs 300 + 600*2/10 = 420 kbps
    rung = per_title.choose(FixedRung("360p", 640, 360, 600), points, hull, ceiling=82.0)
    assert (rung.target_quality, rung.chosen_kbps, rung.hull_height) == (82.0, 420, 360)
    # without a binding ceiling the fixed bitrate itself is the answer
    assert per_title.choose(FixedRung("360p", 640, 360, 600), points, hull, 95.0).chosen_kbps == 600
    chosen = [ChosenRung("a", 1, 1, 1000, 600, 0, 0, 0), ChosenRung("b", 1, 1, 1000, 900, 0, 0, 0)]
    assert per_title.bits_saved(chosen) == pytest.approx(0.25)


def test_sample_windows() -> None:
    assert per_title.sample_windows(20.0, 3, 2.0) == [(4.0, 2.0), (9.0, 2.0), (14.0, 2.0)]
    assert per_title.sample_windows(3.0, 3, 2.0) == [(0.5, 2.0)]
    assert per_title.sample_windows(1.0, 1, 2.0) == [(0.0, 1.0)]


def test_per_title_ladder_end_to_end(media: dict[str, Path]) -> None:
    ladder = [FixedRung("180p", 320, 180, 300), FixedRung("360p", 640, 360, 1200)]
    result = per_title.per_title_ladder(
        media["ref"], probe(media["ref"]), ladder, timeout_s=60, crf_points=(24, 34), samples=1, sample_s=1.5
    )
    assert len(result.points) == 4 and result.hull
    top = 100.0 if result.metric == "vmaf" else 60.0
    for rung in result.rungs:
        assert rung.chosen_kbps <= rung.fixed_kbps
        assert 10 < rung.target_quality <= top
    assert result.rungs[1].target_quality > result.rungs[0].target_quality
    assert result.bits_saved >= 0
    rows = result.to_rows("m1")
    assert [r["rung"] for r in rows] == ["180p", "360p"] and rows[0]["metric"] == result.metric
    assert "Bits saved" in result.summary_markdown()
