"""What every benchmark's JSON result carries besides its figures: where and when it ran, and how
it is written (bench/results/<name>.json, also printed)."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def run_stamp(*details: str) -> dict[str, str]:
    """`machine` (architecture, cores, Python, and any details such as the device) and `date`."""
    machine = ", ".join([platform.machine(), f"{os.cpu_count()} cores", platform.python_version(), *details])
    return {"machine": machine, "date": datetime.now(UTC).isoformat(timespec="seconds")}


def write_result(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
