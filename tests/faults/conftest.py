"""Fixtures of the fault suite: the figures collector, and the real Serve app of tests/serving.

Every fault test records what it tried into `faults`, a session-scoped collector that writes
bench/results/faults.json when the session ends (per category: cases tried, survived, lost), so the
README's Reliability table (scripts/faults_table.py) comes from a run, never by hand. Categories a
run did not exercise keep their previous figures.

The serving fixtures are loaded from tests/serving/conftest.py by path and re-exported, not copied:
one lake builder and one app starter for both suites (run them in separate sessions: each starts
its own Ray).
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.settings import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results" / "faults.json"
STARTED = time.perf_counter()  # conftest import: the session's start, collection included


def _load_serving_fixtures() -> object:
    """tests/serving/conftest.py as a module of its own name (the tests/ dir is no package, §9)."""
    path = Path(__file__).resolve().parents[1] / "serving" / "conftest.py"
    spec = importlib.util.spec_from_file_location("streamlake_serving_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_serving = _load_serving_fixtures()
sample_lake = _serving.sample_lake  # type: ignore[attr-defined]
serving_settings = _serving.serving_settings  # type: ignore[attr-defined]
reload_interval_s = _serving.reload_interval_s  # type: ignore[attr-defined]
spans_file = _serving.spans_file  # type: ignore[attr-defined]
api_url = _serving.api_url  # type: ignore[attr-defined]
client = _serving.client  # type: ignore[attr-defined]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse a session that would start the serving app twice: both suites' app fixtures are session
    scoped, and a second ray.init in one process fails with a far less clear error."""
    suites = {
        Path(item.path).parent.name
        for item in session.items
        if "api_url" in getattr(item, "fixturenames", ())
    }
    if {"serving", "faults"} <= suites:
        raise pytest.UsageError(
            "tests/serving and tests/faults each start the Serve app: run them in separate sessions "
            "(make test, then make test-faults)"
        )


@dataclass
class Tally:
    """One category's figures: a case survived when the system ended in an allowed state; lost
    counts acknowledged data (rows, events, uploads) that is gone afterwards."""

    tried: int = 0
    survived: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)
    counters: collections.Counter[str] = field(default_factory=collections.Counter)


class FaultCollector:
    """Per-category figures of this session, merged into bench/results/faults.json at its end."""

    def __init__(self) -> None:
        self.tallies: dict[str, Tally] = {}

    def record(
        self,
        category: str,
        *,
        survived: bool | int,
        tried: int = 1,
        lost: int = 0,
        note: str | None = None,
        **counters: int,
    ) -> None:
        """One case (or `tried` cases, `survived` of them survived): acknowledged items lost, a note
        kept if it failed, and counters summed per category (retries, orphaned files) that say what
        the faults did."""
        tally = self.tallies.setdefault(category, Tally())
        tally.tried += tried
        tally.survived += int(survived)
        tally.lost += lost
        tally.counters.update(counters)
        if note and int(survived) < tried:
            tally.notes.append(note)

    def write(self, path: Path = RESULTS) -> None:
        previous = json.loads(path.read_text()) if path.exists() else {}
        categories = previous.get("categories", {})
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for name, tally in self.tallies.items():
            categories[name] = {
                "tried": tally.tried,
                "survived": tally.survived,
                "lost": tally.lost,
                **dict(sorted(tally.counters.items())),
                "failures": tally.notes[:20],
                "date": now,
            }
        result = {
            "name": "faults",
            "categories": dict(sorted(categories.items())),
            "session": {
                "categories": sorted(self.tallies),
                "duration_s": round(time.perf_counter() - STARTED, 1),
            },
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "date": now,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


@pytest.fixture(scope="session")
def faults() -> Iterator[FaultCollector]:
    collector = FaultCollector()
    yield collector
    if collector.tallies:
        collector.write()
