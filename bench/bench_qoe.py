"""qoe_hourly over N simulated playback beacons: Polars (ours, models/qoe/metrics.py) against the
same formulas in pandas (baseline), in one process run, reading one parquet file each.

Beacons come from models/qoe/network.py over synthetic sessions (2,000 titles, each with a 4-rung
ladder whose lowest rung is drawn from 0.3-6 Mb/s; devices web/ios/android/tv), written chunk by
chunk. The time is read + aggregate; the ratio is pandas_s / polars_s. It fails loudly if any
output cell differs by more than 1e-6. Run from the repository root:
`python bench/bench_qoe.py [--rows 10000000]` (fewer rows where CPUs are contended). The result also
carries the QoE-demotion table (NDCG@10 and expected QoE per device class and weight).
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
from _result import run_stamp, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.qoe.metrics import (  # noqa: E402
    DEVICE_CLASSES,
    GROUP,
    SCORES,
    SMOOTHNESS_K,
    STARTUP_HALF_S,
    by_device_class,
    qoe_hourly,
)
from models.qoe.network import simulate_beacons  # noqa: E402
from models.qoe.ranking import DemotionSetup, evaluate_demotion  # noqa: E402

BEACONS_PER_SESSION = 4.9  # measured on the network model's output
CHUNK_SESSIONS = 200_000
START = datetime(2026, 11, 1, tzinfo=UTC)


def ladders(titles: int, seed: int) -> pl.DataFrame:
    """A 4-rung ladder per title, each rung 2.2x the one below, the lowest in 0.3-6 Mb/s."""
    rng = np.random.default_rng(seed)
    lowest = np.exp(rng.uniform(np.log(300_000), np.log(6_000_000), titles))
    heights = np.array([360, 720, 1080, 2160])
    return pl.DataFrame(
        {
            "media_id": np.repeat([f"m{i:05d}" for i in range(titles)], 4),
            "bitrate": (lowest[:, None] * 2.2 ** np.arange(4)).round().astype(np.int64).ravel(),
            "width": np.tile(heights * 16 // 9, titles),
            "height": np.tile(heights, titles),
        }
    )


def sessions(start: int, n: int, titles: int, seed: int) -> pl.DataFrame:
    """Synthetic sessions start..start+n: Zipf-ish titles, four devices, 1-60 min watched."""
    rng = np.random.default_rng([seed, start])
    ids = np.arange(start, start + n)
    return pl.DataFrame(
        {
            "session_id": [f"s{i:09d}" for i in ids],
            "user_id": [f"u{i % 100_000:06d}" for i in ids],
            "media_id": [f"m{i:05d}" for i in np.minimum(rng.zipf(1.3, n) - 1, titles - 1)],
            "device": rng.choice(["web", "ios", "android", "tv"], n, p=[0.4, 0.25, 0.25, 0.1]),
            "tier": "free",
            "started_at": [START + timedelta(seconds=int(s)) for s in rng.integers(0, 2 * 86_400, n)],
            "watched_s": rng.uniform(60, 3_600, n).round(3),
        }
    )


def write_beacons(path: str, rows: int, titles: int, seed: int) -> dict[str, float]:
    """Simulate about `rows` beacons into one parquet file; (rows, sessions, seconds)."""
    ladder = ladders(titles, seed)
    total = int(rows / BEACONS_PER_SESSION)
    began, written, writer = time.perf_counter(), 0, None
    for start in range(0, total, CHUNK_SESSIONS):
        chunk = simulate_beacons(
            sessions(start, min(CHUNK_SESSIONS, total - start), titles, seed), ladder, seed
        )
        table = chunk.to_arrow()
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        written += chunk.height
    assert writer is not None
    writer.close()
    return {"rows": written, "sessions": total, "seconds": round(time.perf_counter() - began, 2)}


def pandas_qoe(b: pd.DataFrame) -> pd.DataFrame:
    """models/qoe/metrics.qoe_hourly, formula by formula, in pandas."""
    kind, by = b["event_type"], b["session_id"]
    g = b.groupby("session_id")
    first = b.loc[g["ts"].idxmin(), ["session_id", "device"]].set_index("session_id")["device"]
    s = pd.DataFrame(
        {
            "media_id": g["media_id"].min(),
            "hour": g["ts"].min().dt.floor("h"),
            "device_class": first.map(DEVICE_CLASSES).fillna("other"),
            "played_s": g["played_s"].max().fillna(0.0),
            "failed": (kind == "fatal_error").groupby(by).any(),
            "exited": (kind == "exit_before_start").groupby(by).any(),
            "startup_ms": b["duration_ms"].where(kind == "first_frame").groupby(by).min(),
            "rebuffer_ms": b["duration_ms"].where(kind == "rebuffer_end").groupby(by).sum(),
            "rebuffers": (kind == "rebuffer_start").groupby(by).sum(),
        }
    )
    cols = ["session_id", "ts", "event_id", "played_s", "height", "player_height"]
    w = b.loc[kind == "rendition_switch", cols].sort_values(["session_id", "ts", "event_id"])
    w["from_s"] = w["played_s"].fillna(0.0)
    w["to_s"] = w.groupby("session_id")["from_s"].shift(-1).fillna(w["session_id"].map(s["played_s"]))
    w["seconds"] = (w["to_s"] - w["from_s"]).clip(lower=0.0)
    w["upscale"] = w["player_height"] / w["height"]
    w["sized_s"] = w["seconds"].where(w["upscale"].notna())
    w["height_s"] = w["height"] * w["seconds"]
    w["upscale_s"] = w["upscale"] * w["sized_s"]
    w["sharp_s"] = np.minimum(1.0 / w["upscale"], 1.0) * w["sized_s"]
    per = w.groupby("session_id").agg(
        rendition_s=("seconds", "sum"),
        height_s=("height_s", "sum"),
        peak_height=("height", "max"),
        sized_s=("sized_s", "sum"),
        upscale_s=("upscale_s", "sum"),
        sharp_s=("sharp_s", "sum"),
        peak_upscale=("upscale", "min"),
    )
    s = s.join(per)
    s["startup_s"] = s["startup_ms"] / 1000.0
    s["rebuffer_s"] = s["rebuffer_ms"] / 1000.0
    s["broken"] = s["failed"] | s["exited"]
    groups = s.groupby(GROUP)
    out = groups.agg(
        sessions=("failed", "size"),
        failed=("failed", "sum"),
        exited=("exited", "sum"),
        broken=("broken", "sum"),
        played_s=("played_s", "sum"),
        rebuffer_s=("rebuffer_s", "sum"),
        rebuffers=("rebuffers", "sum"),
        rendition_s=("rendition_s", "sum"),
        height_s=("height_s", "sum"),
        peak_height=("peak_height", "max"),
        sized_s=("sized_s", "sum"),
        upscale_s=("upscale_s", "sum"),
        sharp_s=("sharp_s", "sum"),
        peak_upscale=("peak_upscale", "min"),
    )
    out["startup_p50_s"] = groups["startup_s"].quantile(0.5)
    out["startup_p95_s"] = groups["startup_s"].quantile(0.95)

    def share(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
        return (numerator / denominator).where(denominator > 0)

    out["failure_rate"] = out["failed"] / out["sessions"]
    out["exit_before_start_rate"] = out["exited"] / out["sessions"]
    stalled, played = out["rebuffer_s"], out["played_s"]
    out["rebuffer_pct"] = share(100.0 * stalled, stalled + played)
    out["rebuffers_per_min"] = share(out["rebuffers"].astype(float), played / 60.0)
    out["avg_height"] = share(out["height_s"], out["rendition_s"])
    out["avg_upscale"] = share(out["upscale_s"], out["sized_s"])
    out["success_score"] = 100.0 * (1.0 - out["broken"] / out["sessions"])
    out["startup_score"] = 100.0 * STARTUP_HALF_S / (STARTUP_HALF_S + out["startup_p50_s"])
    out["smoothness_score"] = 100.0 * np.exp(-SMOOTHNESS_K * out["rebuffer_pct"])
    out["quality_score"] = 100.0 * share(out["sharp_s"], out["sized_s"])
    with np.errstate(divide="ignore"):
        out["qoe_score"] = np.exp(np.nanmean(np.log(out[SCORES].to_numpy(dtype=float)), axis=1))
    return out.reset_index()


def compare(ours: pl.DataFrame, theirs: pd.DataFrame) -> float:
    """The largest difference between the two outputs' cells; exits when keys or nulls differ."""
    theirs_pl = pl.from_pandas(theirs[ours.columns]).with_columns(pl.col("hour").dt.convert_time_zone("UTC"))
    theirs_pl = theirs_pl.sort(GROUP)
    ours = ours.sort(GROUP)
    if ours.select(GROUP).cast(pl.String).to_dicts() != theirs_pl.select(GROUP).cast(pl.String).to_dicts():
        sys.exit("pandas and Polars give different groups")
    worst = 0.0
    for name in ours.columns[len(GROUP) :]:
        a, b = ours[name].cast(pl.Float64), theirs_pl[name].cast(pl.Float64).fill_nan(None)
        if not a.is_null().equals(b.is_null()):
            sys.exit(f"{name}: pandas and Polars disagree on which groups have no value")
        worst = max(worst, pl.DataFrame({"d": (a - b).abs()}).select(pl.col("d").max().fill_null(0.0)).item())
    if worst > 1e-6:
        sys.exit(f"pandas and Polars differ by {worst} (> 1e-6)")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000, help="beacons to simulate (about)")
    parser.add_argument("--titles", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        source = f"{scratch}/beacons.parquet"
        simulated = write_beacons(source, args.rows, args.titles, args.seed)
        print("simulated", simulated, flush=True)
        began = time.perf_counter()
        ours = qoe_hourly(pl.scan_parquet(source)).collect(engine="streaming")
        polars_s = time.perf_counter() - began
        print(f"polars {polars_s:.2f} s", flush=True)
        began = time.perf_counter()
        theirs = pandas_qoe(pd.read_parquet(source))
        pandas_s = time.perf_counter() - began
        print(f"pandas {pandas_s:.2f} s", flush=True)
        source_mb = os.path.getsize(source) / 2**20
    worst = compare(ours, theirs)
    result = {
        "name": "qoe_hourly",
        "ours": round(polars_s, 2),
        "baseline": round(pandas_s, 2),
        "ratio": round(pandas_s / polars_s, 2),
        "unit": "s (qoe_hourly of N beacons, read + aggregate; ours: Polars streaming, baseline: pandas)",
        **run_stamp(),
        "params": {
            "beacons": simulated["rows"],
            "sessions": simulated["sessions"],
            "titles": args.titles,
            "seed": args.seed,
            "output_rows": ours.height,
            "input": f"one parquet file, {source_mb:.0f} MiB, from models.qoe.network.simulate_beacons",
            "simulator_seconds": simulated["seconds"],
            "max_abs_difference": worst,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "versions": {"polars": pl.__version__, "pandas": pd.__version__},
            "qoe_by_device_class": by_class(ours),
            "ranking_demotion": {
                "protocol": "models.qoe.ranking.evaluate_demotion: simulated users and titles, truth "
                "independent of QoE, top-50 candidates re-ranked by score - weight * (1 - qoe / 100), "
                "NDCG@10 and mean QoE of the top-10 for viewers on each device class",
                "setup": asdict(DemotionSetup()),
                "rows": evaluate_demotion(DemotionSetup()),
            },
        },
    }
    out = ROOT / "bench" / "results" / "qoe.json"
    write_result(out, result)
    print(json.dumps(result, indent=2))


def by_class(qoe: pl.DataFrame) -> dict[str, float]:
    """Session-weighted mean qoe_score per device class, for the result file."""
    return {name: score for name, _, score in by_device_class(qoe).iter_rows()}


if __name__ == "__main__":
    main()
