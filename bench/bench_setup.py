"""Fresh-clone setup time (`make install` + the first `make demo`), the idempotent re-run, and
the default test suite (`make test`).

The baseline is the issue's budget (10 minutes for a fresh-clone setup on 2 cores); the ratio is
ours / budget, so below 1 is inside it. The suite's own budget is 25 minutes.
Run from the repository root: `python bench/bench_setup.py`.
It fails loudly if the re-run changed any table (the demo must be idempotent).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _result import run_stamp, write_result

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 600.0
TEST_BUDGET_S = 1500.0
TABLE_ROW = re.compile(r"^(\w+)\s+(\d+)\s+(\d+|-)$", re.MULTILINE)


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "CI": "true"})
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        clone = Path(scratch) / "streamlake"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        install_s, _ = _timed(["make", "install"], clone)
        demo_s, first = _timed(["make", "demo"], clone)
        rerun_s, second = _timed(["make", "demo"], clone)
        test_s, test_out = _timed(["make", "test"], clone)
        tables_first, tables_second = TABLE_ROW.findall(first), TABLE_ROW.findall(second)
        if not tables_first or tables_first != tables_second:
            sys.exit(f"re-running make demo changed the lake:\n{tables_first}\n{tables_second}")
        shutil.rmtree(clone / ".venv", ignore_errors=True)
    total = install_s + demo_s
    result = {
        "name": "setup",
        "ours": round(total, 1),
        "baseline": BUDGET_S,
        "ratio": round(total / BUDGET_S, 3),
        "unit": "s (fresh clone: make install + first make demo; baseline = the 10-minute budget)",
        **run_stamp(),
        "params": {
            "install_s": round(install_s, 1),
            "first_demo_s": round(demo_s, 1),
            "rerun_demo_s": round(rerun_s, 1),
            "test_s": round(test_s, 1),
            "test_budget_s": TEST_BUDGET_S,
            "test_summary": test_out.strip().splitlines()[-1].strip("= "),
            "tables": {name: int(rows) for name, rows, _ in tables_first},
            "pip_cache": "warm (packages already downloaded once on this machine)",
        },
    }
    out = ROOT / "bench" / "results" / "setup.json"
    write_result(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
