"""Shot detection: TransNetV2 against PySceneDetect's detectors on the generated labelled set.

A hard-cut clip (40 cuts) and a gradual one (12 cross-dissolves, 4 fades through black) are built
with FFmpeg (`models.analysis.shot_testset`), so the truth is exact to the frame. Every detector in
`shots.DETECTORS` runs on both through `shots.cut_frames` (our guarded decode included in the
time), and is scored with one-to-one matching within 2 frames (a gradual transition's span +-2).
ours = TransNetV2's F1 on hard cuts; baseline = the strongest PySceneDetect detector's (highest
mean of hard and gradual F1); ratio = ours / baseline. fps is frames analysed per second of wall
time, decode included, model load excluded (recorded apart).
Published anchors (BBC Planet Earth) are kept in params: they were measured on real footage and
are not comparable to F1 on this synthetic set, only a sanity reference.
Run from the repository root: `python bench/bench_shots.py` (about 3 minutes on 2 cores).
It fails loudly if any detector's shots are not contiguous and covering the clip.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

from _result import run_stamp, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.analysis import shots  # noqa: E402
from models.analysis.shot_testset import LabelledClip, build_gradual, build_hard_cuts, f1  # noqa: E402
from models.media.probe import probe  # noqa: E402

CUTS = 40
DISSOLVES = 12
FADES = 4
GOAL_F1 = 0.95
GOAL_FPS_CPU = 40.0


def _check_coverage(found: list[shots.Shot], duration_s: float, label: str) -> None:
    ok = (
        bool(found)
        and [s.shot_idx for s in found] == list(range(len(found)))
        and found[0].start_s == 0.0
        and abs(found[-1].end_s - duration_s) < 1e-6
        and all(a.end_s == b.start_s for a, b in pairwise(found))
        and all(s.start_s < s.end_s for s in found)
    )
    if not ok:
        sys.exit(f"{label}: shots are not contiguous over 0..{duration_s} s: {found}")


def _score(clip: LabelledClip, detector: str) -> dict[str, float | int]:
    probed = probe(clip.path)
    started = time.perf_counter()
    cuts = shots.cut_frames(clip.path, probed, timeout_s=600, detector=detector)
    wall = time.perf_counter() - started
    _check_coverage(
        shots.shots_from_cuts(cuts, probed.duration_s), probed.duration_s, f"{detector} on {clip.path.name}"
    )
    precision, recall, score = f1(cuts.frames, clip.spans)
    return {
        "f1": round(score, 3),
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "predicted": len(cuts.frames),
        "truth": len(clip.transitions),
        "fps": round(cuts.decoded / wall, 1),
        "wall_s": round(wall, 2),
    }


def main() -> None:
    import torch

    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        hard = build_hard_cuts(Path(scratch), cuts=CUTS, name="bench_hard")
        gradual = build_gradual(Path(scratch), dissolves=DISSOLVES, fades=FADES, name="bench_gradual")
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        model = shots.transnet_model()
        load_s = time.perf_counter() - started
        results = {}
        for detector in shots.DETECTORS:
            results[detector] = {"hard": _score(hard, detector), "gradual": _score(gradual, detector)}
            print(detector, json.dumps(results[detector]), flush=True)
    frames = hard.frames + gradual.frames
    for scores in results.values():
        wall = scores["hard"]["wall_s"] + scores["gradual"]["wall_s"]
        scores["fps"] = round(frames / wall, 1)
    ours = results["transnetv2"]
    baseline_name = max(
        (d for d in shots.DETECTORS if d != "transnetv2"),
        key=lambda d: (results[d]["hard"]["f1"] + results[d]["gradual"]["f1"], results[d]["hard"]["f1"]),
    )
    baseline = results[baseline_name]
    device = model.device.type
    result = {
        "name": "shots",
        "ours": ours["hard"]["f1"],
        "baseline": baseline["hard"]["f1"],
        "ratio": round(ours["hard"]["f1"] / baseline["hard"]["f1"], 3) if baseline["hard"]["f1"] else None,
        "unit": (
            f"F1 on {CUTS} generated hard cuts (+-2 frames, one-to-one); ours = TransNetV2, "
            f"baseline = PySceneDetect {baseline_name} (strongest of content/adaptive/threshold)"
        ),
        **run_stamp(device),
        "params": {
            "set": {
                "hard": {"frames": hard.frames, "cuts": CUTS},
                "gradual": {"frames": gradual.frames, "dissolves": DISSOLVES, "fades_through_black": FADES},
                "size": "320x180",
                "fps": hard.fps,
                "tolerance_frames": 2,
                "build_s": round(build_s, 1),
            },
            "gradual_ratio": (
                round(ours["gradual"]["f1"] / baseline["gradual"]["f1"], 3)
                if baseline["gradual"]["f1"]
                else None
            ),
            "detectors": results,
            "fps_per_detector": {d: r["fps"] for d, r in results.items()},
            "transnetv2": {
                "device": device,
                "torch_threads": shots.TRANSNET_CPU_THREADS if device == "cpu" else None,
                "batch_windows": shots.TRANSNET_BATCH.get(device, 1),
                "threshold": shots.TRANSNET_THRESHOLD,
                "model_load_s": round(load_s, 2),
                "torch": torch.__version__,
            },
            "goal": {
                "f1_hard": GOAL_F1,
                "fps_cpu": GOAL_FPS_CPU,
                "f1_met": ours["hard"]["f1"] >= GOAL_F1,
                "fps_met": ours["fps"] >= GOAL_FPS_CPU if device == "cpu" else None,
            },
            "anchors": {
                "transnetv2_paper_f1_bbc": 96.2,
                "pyscenedetect_adaptive_f1_bbc": 91.6,
                "note": "published on real footage; not comparable to this synthetic set",
            },
            "load": f"shared machine, 1-min load average {os.getloadavg()[0]:.1f} at the end",
        },
    }
    out = ROOT / "bench" / "results" / "shots.json"
    write_result(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
