"""Writers killed mid-write and writers racing each other, through models/lake/tables.py.

A SIGKILLed writer leaves whatever it had half done (data files never committed, a temp commit
file); Delta's log decides what exists. After each kill the table must open at its last committed
version, hold whole batches only (a commit is atomic), and hold every batch the writer acknowledged
(durable); the next writer resumes and completes. Two writers on one table must both commit, one
retrying on conflict, and lose no rows. Kill times are drawn from a seeded generator.
"""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from models.lake.tables import open_table, read_table, table_uri
from models.settings import Settings, get_settings

pytestmark = pytest.mark.faults

WRITER = Path(__file__).with_name("lake_writer.py")
SEED = 20261129
KILLS = 20
BATCH_SIZE = 40
BATCHES_PER_RUN = 12  # more than a run gets through before its kill, most of the time
MAX_KILL_DELAY_S = 0.8  # after the writer says it is ready (imports done)
CONCURRENT_ROUNDS = 3
CONCURRENT_BATCHES = 15


def _writers(settings: Settings, first: int, batches: int, *names: str) -> list[subprocess.Popen[str]]:
    """Writer processes, released together once all have imported their libraries."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                str(settings.data_dir),
                name,
                str(first),
                str(batches),
                str(BATCH_SIZE),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "a writer did not start"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


def _acked(stdout: str) -> set[int]:
    return {int(line.split()[1]) for line in stdout.splitlines() if line.startswith("acked ")}


def _batches(settings: Settings, writer: str) -> collections.Counter[int]:
    """Rows per batch of one writer in the table's current version."""
    ids = read_table(settings, "view_events", columns=["event_id"])["event_id"]
    assert ids.n_unique() == ids.len(), "an event_id is stored twice"
    mine = [int(i.split("-")[1]) for i in ids if i.startswith(f"{writer}-")]
    return collections.Counter(mine)


def _check(settings: Settings, writer: str, acked: set[int]) -> tuple[bool, int, str]:
    """(consistent, acknowledged batches lost, detail) for the table as a kill left it."""
    if open_table(settings, "view_events") is None:
        return not acked, len(acked), "no table"
    held = _batches(settings, writer)
    torn = sorted(b for b, rows in held.items() if rows != BATCH_SIZE)
    lost = acked - set(held)
    return not torn and not lost, len(lost), f"torn batches {torn}, lost acknowledged batches {sorted(lost)}"


def _every_version_reads_whole_batches(settings: Settings) -> bool:
    """Each committed version, time-travelled to, holds whole batches and never fewer rows than the last."""
    table = open_table(settings, "view_events")
    assert table is not None
    counts = [
        DeltaTable(table_uri(settings, "view_events"), version=v).count() for v in range(table.version() + 1)
    ]
    return all(c % BATCH_SIZE == 0 for c in counts) and counts == sorted(counts)


def _uncommitted_files(settings: Settings) -> int:
    """Data files no version references: the traces of kills that landed mid-write (vacuum's job)."""
    table = open_table(settings, "view_events")
    assert table is not None
    folder = Path(table_uri(settings, "view_events"))
    referenced = {
        Path(f).name
        for v in range(table.version() + 1)
        for f in DeltaTable(str(folder), version=v).file_uris()
    }
    return sum(1 for f in folder.rglob("*.parquet") if f.name not in referenced)


def test_sigkilled_writers_leave_committed_versions_and_a_rerun_completes(
    tmp_path: Path, faults: Any
) -> None:
    settings = get_settings(data_dir=tmp_path)
    rng = random.Random(SEED)
    next_batch, acked_all = 0, set[int]()
    for kill in range(KILLS):
        [proc] = _writers(settings, next_batch, BATCHES_PER_RUN, "w")
        time.sleep(rng.uniform(0.0, MAX_KILL_DELAY_S))
        proc.send_signal(signal.SIGKILL)
        stdout, _ = proc.communicate(timeout=30)
        acked_all |= _acked(stdout)
        consistent, lost, detail = _check(settings, "w", acked_all)
        faults.record("killed writers", survived=consistent, lost=lost, note=f"kill {kill}: {detail}")
        assert consistent, f"after kill {kill}: {detail}"
        held = _batches(settings, "w")
        next_batch = max(held, default=-1) + 1  # resume after the last committed batch
    total = next_batch + 2
    [proc] = _writers(settings, 0, total, "w")  # the re-run: replays every batch, adds the last two
    stdout, stderr = proc.communicate(timeout=120)
    held = _batches(settings, "w")
    completed = proc.returncode == 0 and held == dict.fromkeys(range(total), BATCH_SIZE)
    completed &= _every_version_reads_whole_batches(settings)
    faults.record(
        "killed writers",
        survived=completed,
        note=f"re-run: exit {proc.returncode} {stderr[-300:]}",
        uncommitted_files_left=_uncommitted_files(settings),
    )
    assert completed, stderr[-2000:]


@pytest.mark.parametrize("round_", range(CONCURRENT_ROUNDS))
def test_two_concurrent_writers_both_commit_and_lose_no_rows(
    tmp_path: Path, faults: Any, round_: int
) -> None:
    """Both start on an absent table, so the create race is run too; conflicts are retried."""
    settings = get_settings(data_dir=tmp_path)
    procs = dict(zip("ab", _writers(settings, 0, CONCURRENT_BATCHES, "a", "b"), strict=True))
    results = {name: proc.communicate(timeout=180) for name, proc in procs.items()}
    retries = sum(err.count("commit conflict") for _, err in results.values())
    expected = dict.fromkeys(range(CONCURRENT_BATCHES), BATCH_SIZE)
    lost = sum(
        len(set(expected) - set(_batches(settings, name)))
        for name in procs
        if open_table(settings, "view_events") is not None
    )
    ok = all(p.returncode == 0 for p in procs.values()) and all(
        _batches(settings, name) == expected for name in procs
    )
    rows = read_table(settings, "view_events").height
    faults.record(
        "concurrent writers",
        survived=ok,
        lost=lost,
        note=f"round {round_}: {rows} rows",
        conflict_retries=retries,
    )
    assert ok, {name: err[-1500:] for name, (_, err) in results.items()}
    assert rows == 2 * CONCURRENT_BATCHES * BATCH_SIZE
