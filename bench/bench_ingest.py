"""Event ingest with exactly-once dedupe: N events through ingest_events in producer-sized batches
into a fresh Delta lake, then a replay of 20% of them (an at-least-once producer resending).

The baseline is the strongest naive alternative: write_deltalake(mode="append") of the same
validated rows, no dedupe. The ratio is ours_s / baseline_s, the price of validation plus
exactly-once. Events come from the platform's simulator (models/events/simulator.py). It fails
loudly unless both tables end with the same N distinct event_ids and ours holds each one once
(the append table holds the replayed duplicates too).
Run from the repository root: `python bench/bench_ingest.py [--events 1000000]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from _result import run_stamp, write_result
from deltalake import write_deltalake

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_events import simulation_inputs  # noqa: E402

from models.events.ingest import EVENT_SCHEMA, IngestResult, ingest_events  # noqa: E402
from models.events.simulator import iter_events  # noqa: E402
from models.lake.tables import read_table, table_uri  # noqa: E402
from models.settings import get_settings  # noqa: E402

REPLAY_FRACTION = 0.2
BEFORE_COMMIT = "45740419e40eedac9746657a8ca01fe475c9b6ac"  # ingest.py with per-row validation only


def _ingest_before() -> tuple[Callable[..., IngestResult], str]:
    """ingest_events as it was at BEFORE_COMMIT, for before/after in one run; without git, the
    per-row path that lists of rows still take (same validation, this change's replay shortcut)."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE_COMMIT}:models/events/ingest.py"], cwd=ROOT, capture_output=True, text=True
    )
    if source.returncode != 0:
        return lambda settings, frame, **kw: ingest_events(settings, frame.to_dicts(), **kw), "per-row path"
    module = sys.modules["ingest_before"] = types.ModuleType("ingest_before")  # dataclasses need it
    exec(compile(source.stdout, "ingest_before.py", "exec"), module.__dict__)
    return module.ingest_events, f"models/events/ingest.py at {BEFORE_COMMIT[:10]}"


def producer_events(n: int, seed: int = 42) -> pl.DataFrame:
    """The simulator's first n events (the platform's own producer), in view_events' shape."""
    catalog, users, config = simulation_inputs(n, seed)
    chunks, total = [], 0
    for chunk in iter_events(catalog, users, config):
        chunks.append(chunk)
        total += chunk.height
        if total >= n:
            break
    return pl.concat(chunks).head(n).select(EVENT_SCHEMA.names())


def _ours(
    data_dir: str,
    batches: list[pl.DataFrame],
    received_at: datetime,
    ingest: Callable[..., IngestResult] = ingest_events,
) -> dict[str, float | int]:
    settings = get_settings(data_dir=data_dir)
    started = time.perf_counter()
    accepted = duplicates = 0
    for batch in batches:
        result = ingest(settings, batch, received_at=received_at)
        accepted, duplicates = accepted + result.accepted, duplicates + result.duplicates
        if result.rejected:
            sys.exit(f"ingest_events rejected {result.rejected} valid synthetic events")
    return {"seconds": time.perf_counter() - started, "accepted": accepted, "duplicates": duplicates}


def _append(data_dir: str, batches: list[pl.DataFrame]) -> dict[str, float | int]:
    """What a producer-side job writes without dedupe: append each batch as it comes."""
    uri = table_uri(get_settings(data_dir=data_dir), "view_events")
    started = time.perf_counter()
    for batch in batches:
        write_deltalake(uri, batch.to_arrow(), mode="append")
    return {"seconds": time.perf_counter() - started, "rows": sum(b.height for b in batches)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--label", default="", help="names this run in the printout")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    begun = time.perf_counter()
    events = producer_events(args.events)
    received_at = datetime.now(UTC) + timedelta(minutes=1)
    batches = [events.slice(i, args.batch) for i in range(0, events.height, args.batch)]
    replay_frame = events.sample(fraction=REPLAY_FRACTION, seed=7, shuffle=True)
    replay = [replay_frame.slice(i, args.batch) for i in range(0, replay_frame.height, args.batch)]
    generate_s = time.perf_counter() - begun
    with tempfile.TemporaryDirectory() as scratch:
        ours_first = _ours(f"{scratch}/ours", batches, received_at)
        print("ours first pass", ours_first, flush=True)
        ours_replay = _ours(f"{scratch}/ours", replay, received_at)
        print("ours replay", ours_replay, flush=True)
        ingest_before, before_code = _ingest_before()
        before_first = _ours(f"{scratch}/before", batches, received_at, ingest_before)
        before_replay = _ours(f"{scratch}/before", replay, received_at, ingest_before)
        print("before", before_code, before_first, before_replay, flush=True)
        before_ids = read_table(get_settings(data_dir=f"{scratch}/before"), "view_events", ["event_id"])
        base_first = _append(f"{scratch}/append", batches)
        base_replay = _append(f"{scratch}/append", replay)
        print("append", base_first, base_replay, flush=True)
        ours_ids = read_table(get_settings(data_dir=f"{scratch}/ours"), "view_events", ["event_id"])
        base_ids = read_table(get_settings(data_dir=f"{scratch}/append"), "view_events", ["event_id"])
    expected = events["event_id"]
    if ours_ids.height != args.events or ours_ids["event_id"].n_unique() != args.events:
        sys.exit(f"ours holds {ours_ids.height} rows, {ours_ids['event_id'].n_unique()} distinct ids")
    if before_ids.height != args.events:
        sys.exit(f"the before code's table holds {before_ids.height} rows, not {args.events}")
    named = {"ours": ours_ids, "before": before_ids, "append": base_ids}
    for name, ids in ((name, frame["event_id"]) for name, frame in named.items()):
        if not ids.unique().sort().equals(expected.sort()):
            sys.exit(f"{name}'s distinct event_ids differ from the {args.events} sent")
    if (ours_first["accepted"], ours_replay["accepted"]) != (args.events, 0):
        sys.exit(f"accepted {ours_first['accepted']} then {ours_replay['accepted']} on the replay")
    ours = ours_first["seconds"] + ours_replay["seconds"]
    baseline = base_first["seconds"] + base_replay["seconds"]
    before = before_first["seconds"] + before_replay["seconds"]
    rate = {
        "first_pass": round(args.events / ours_first["seconds"]),
        "replay": round(replay_frame.height / ours_replay["seconds"]),
        "append_first_pass": round(args.events / base_first["seconds"]),
        "before_first_pass": round(args.events / before_first["seconds"]),
        "before_replay": round(replay_frame.height / before_replay["seconds"]),
    }
    print(args.label, json.dumps({"ours_s": ours, "baseline_s": baseline, "events_per_s": rate}))
    result = {
        "name": "events_ingest",
        "ours": round(ours, 2),
        "baseline": round(baseline, 2),
        "ratio": round(ours / baseline, 2),
        "unit": (
            "s (N events in batches + a 20% replay into Delta; ours: ingest_events, validate + "
            "exactly-once MERGE; baseline: write_deltalake append, no dedupe)"
        ),
        **run_stamp(),
        "params": {
            "events": args.events,
            "batch": args.batch,
            "batches": len(batches),
            "replayed": replay_frame.height,
            "input": f"typed Polars frames (ts Datetime UTC), generated in {generate_s:.1f} s",
            "events_per_s": rate,
            "ours": {
                "first_pass_s": round(ours_first["seconds"], 2),
                "replay_s": round(ours_replay["seconds"], 2),
            }
            | {"accepted": ours_first["accepted"], "replay_duplicates": ours_replay["duplicates"]},
            "append": {
                "first_pass_s": round(base_first["seconds"], 2),
                "replay_s": round(base_replay["seconds"], 2),
            }
            | {"rows": base_first["rows"] + base_replay["rows"], "distinct_event_ids": args.events},
            "before_after": {
                "before": f"{before_code}: validate_event row by row for every row, "
                "measured in this run on its own lake",
                "after": "column-wise Polars checks, validate_event only for rows they do not pass; "
                "a batch with nothing new skips insert_new's second key scan",
                "before_s": round(before, 2),
                "before_first_pass_s": round(before_first["seconds"], 2),
                "before_replay_s": round(before_replay["seconds"], 2),
                "after_s": round(ours, 2),
                "speedup": round(before / ours, 2),
                "before_ratio_to_baseline": round(before / baseline, 2),
            },
            "distinct_event_ids_identical": True,
            "versions": {"polars": pl.__version__, "deltalake": _version("deltalake")},
        },
    }
    out = ROOT / "bench" / "results" / "ingest.json"
    write_result(out, result)
    print(json.dumps(result, indent=2))


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
