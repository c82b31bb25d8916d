"""hourly_stats over N synthetic view events: Polars streaming (ours) against pandas (baseline) and
Spark local[2], each in its own process so peak memory is that engine's alone.

Events come from the platform's simulator (models/events/simulator.py: Zipf titles, genre taste,
2 s heartbeats, seeks, pause or complete), written chunk by chunk to one parquet file that every
engine reads (only the columns it needs); the simulator's own rate and peak memory are reported.
The time is read + aggregate, without Spark's JVM start (reported apart). The ratio is
pandas_s / polars_s. Polars' user_stats and co_watch on the same events are timed too.
It fails loudly if the three engines' hourly_stats differ in any row or bit.
Run from the repository root: `python bench/bench_events.py [--events 10000000]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil
from _result import run_stamp, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow.parquet as pq  # noqa: E402

from models.events.aggregates import as_table  # noqa: E402
from models.events.simulator import (  # noqa: E402
    EVENT_COLUMNS,
    SimulationConfig,
    iter_events,
    simulate_users,
)

COLUMNS = ["user_id", "media_id", "session_id", "event_type", "position_s", "ts"]
SPARK_CONF = {"spark.driver.memory": "2g"}
GOAL = {"seconds": 60.0, "peak_mb": 4096.0, "ratio": 5.0}


def simulation_inputs(n: int, seed: int = 42) -> tuple[pl.DataFrame, pl.DataFrame, SimulationConfig]:
    """A catalog of n/5000 titles (20-120 s, 12 genres) and viewers enough for about n events."""
    rng = np.random.default_rng(seed)
    n_titles = max(2, n // 5000)
    catalog = pl.DataFrame(
        {
            "media_id": [f"m{i:015d}" for i in range(n_titles)],
            "duration_s": np.round(rng.uniform(20, 120, n_titles), 3),
            "tags": [[f"genre-{i % 12}"] for i in range(n_titles)],
        }
    )
    config = SimulationConfig(n_users=max(1, n // 50), days=14, seed=seed)  # ~150 events per viewer
    return catalog, simulate_users(config), config


# --- workers: one engine per process ---------------------------------------------------------


def _simulate(_: str, output: str, events: str) -> dict[str, float]:
    """The simulator, chunk by chunk into one parquet file, stopping at exactly `events` rows."""
    n = int(events)
    catalog, users, config = simulation_inputs(n)
    started = time.perf_counter()
    written, sessions, viewers = 0, 0, 0
    with pq.ParquetWriter(output, pl.DataFrame(schema=EVENT_COLUMNS).to_arrow().schema) as writer:
        for chunk in iter_events(catalog, users, config):
            chunk = chunk.head(n - written)
            writer.write_table(chunk.to_arrow())
            written += chunk.height
            sessions += chunk["session_id"].n_unique()
            viewers += chunk["user_id"].n_unique()
            if written >= n:
                break
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": written,
        "sessions": sessions,
        "viewers": viewers,
        "titles": catalog.height,
    }


def _polars(source: str, output: str, aggregate: str) -> dict[str, float]:
    from models.events import aggregates

    started = time.perf_counter()
    plan = getattr(aggregates, aggregate)(pl.scan_parquet(source))
    result = plan.collect(engine="streaming")
    seconds = time.perf_counter() - started
    result.write_parquet(output)
    return {"seconds": seconds, "rows": result.height}


def _pandas(source: str, output: str, aggregate: str) -> dict[str, float]:
    """What a pandas user writes: read the columns, one group-by per level; rounded like ours."""
    import pandas as pd

    assert aggregate == "hourly_stats"
    started = time.perf_counter()
    events = pd.read_parquet(source, columns=COLUMNS)
    events["completed"] = events["event_type"].eq("complete")
    sessions = events.groupby("session_id", sort=False).agg(
        media_id=("media_id", "first"),
        user_id=("user_id", "first"),
        started_at=("ts", "min"),
        watched_s=("position_s", "max"),
        completed=("completed", "any"),
    )
    sessions["hour"] = sessions["started_at"].dt.floor("h")
    stats = sessions.groupby(["media_id", "hour"], sort=True).agg(
        views=("user_id", "size"),
        unique_viewers=("user_id", "nunique"),
        watch_time_s=("watched_s", "sum"),
        timed=("watched_s", "count"),
        completions=("completed", "sum"),
    )
    stats["watch_time_s"] = stats["watch_time_s"].round(6)
    stats["avg_watch_time_s"] = (stats["watch_time_s"] / stats["timed"]).round(6)
    stats["completion_rate"] = (stats["completions"] / stats["views"]).round(6)
    stats = stats.drop(columns=["timed", "completions"]).reset_index()
    seconds = time.perf_counter() - started
    stats.to_parquet(output)
    return {"seconds": seconds, "rows": len(stats)}


def _spark(source: str, output: str, aggregate: str) -> dict[str, float]:
    from models.events import spark_aggregates

    begun = time.perf_counter()
    spark = spark_aggregates.spark_session(None, SPARK_CONF)
    started = time.perf_counter()
    result = getattr(spark_aggregates, aggregate)(spark.read.parquet(source)).toArrow()
    seconds = time.perf_counter() - started
    spark.stop()
    pl.from_arrow(result).write_parquet(output)  # type: ignore[union-attr]
    return {"seconds": seconds, "startup_s": started - begun, "rows": result.num_rows}


WORKERS = {"simulate": _simulate, "polars": _polars, "pandas": _pandas, "spark": _spark}


def _run_worker(engine: str, source: str, output: str, aggregate: str) -> dict[str, float]:
    """Run one engine in a child process; its time and peak memory (the whole process tree)."""
    command = [sys.executable, __file__, "--worker", engine, source, output, aggregate]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, done = 0, threading.Event()

    def watch() -> None:  # Spark's memory is its JVM's, a grandchild: sum the tree's RSS
        nonlocal peak
        parent = psutil.Process(child.pid)
        while not done.is_set():
            try:
                procs = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = child.communicate()
    done.set()
    watcher.join()
    if child.returncode != 0:
        sys.exit(f"{engine} {aggregate} failed:\n{stderr[-3000:]}")
    report = json.loads(stdout.strip().splitlines()[-1])
    timings = {k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}
    return {**timings, "peak_mb": round(peak / 2**20)}


def _hourly(path: str) -> pl.DataFrame:
    return as_table("hourly_stats", pl.read_parquet(path)).sort("media_id", "hour")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        source = f"{scratch}/events.parquet"
        simulated = _run_worker("simulate", "", source, str(args.events))
        print("simulate", simulated, flush=True)
        runs, outputs = {}, {}
        for engine in ("polars", "pandas", "spark"):
            outputs[engine] = f"{scratch}/{engine}.parquet"
            runs[engine] = _run_worker(engine, source, outputs[engine], "hourly_stats")
            print(engine, runs[engine], flush=True)
        expected = _hourly(outputs["polars"])
        for engine in ("pandas", "spark"):
            if not _hourly(outputs[engine]).equals(expected):
                sys.exit(f"{engine}'s hourly_stats differ from Polars'")
        others = {
            name: _run_worker("polars", source, f"{scratch}/{name}.parquet", name)
            for name in ("user_stats", "co_watch")
        }
        print("polars", others, flush=True)
        source_mb = os.path.getsize(source) / 2**20
    ours, baseline = runs["polars"]["seconds"], runs["pandas"]["seconds"]
    result = {
        "name": "events_hourly_stats",
        "ours": round(ours, 2),
        "baseline": round(baseline, 2),
        "ratio": round(baseline / ours, 2),
        "unit": "s (hourly_stats of N events, read + aggregate; ours: Polars streaming, baseline: pandas)",
        **run_stamp(),
        "params": {
            "events": args.events,
            "sessions": simulated["sessions"],
            "viewers": simulated["viewers"],
            "titles": simulated["titles"],
            "output_rows": expected.height,
            "input": f"one parquet file, {source_mb:.0f} MiB, from models.events.simulator.iter_events",
            "simulator": {
                "seconds": simulated["seconds"],
                "events_per_s": round(simulated["rows"] / simulated["seconds"]),
                "peak_mb": simulated["peak_mb"],
            },
            "outputs_identical": True,
            "goal": GOAL,
            "engines": {
                "polars": {**runs["polars"], "version": pl.__version__},
                "pandas": {
                    **runs["pandas"],
                    "version": _version("pandas"),
                    "strings": "object (pandas default)",
                },
                "spark": {
                    **runs["spark"],
                    "version": _version("pyspark"),
                    "conf": {"master": "local[2]", "shuffle_partitions": 4, **SPARK_CONF},
                },
            },
            "polars_other_aggregates": others | {"co_watch_window_h": 24},
            "peak_mb": "max RSS summed over the engine's process tree, polled every 50 ms",
        },
    }
    out = ROOT / "bench" / "results" / "events.json"
    write_result(out, result)
    print(json.dumps(result, indent=2))


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        engine, source, output, aggregate = sys.argv[2:6]
        print(json.dumps(WORKERS[engine](source, output, aggregate)))
    else:
        main()
