"""A lake writer for the fault suite to kill: commits batches of view_events through
models/lake/tables.py and says so after each commit, one line per acknowledged batch. It starts
writing when a line arrives on stdin.

    python tests/faults/lake_writer.py DATA_DIR WRITER FIRST_BATCH BATCHES BATCH_SIZE

Event ids are `<writer>-<batch>-<row>`, so the parent can tell which batches a table holds and
whether each one is whole. Not a test module: the suite runs it as a subprocess.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from models.lake.tables import insert_new
from models.settings import get_settings

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def batch_rows(writer: str, batch: int, size: int) -> list[dict]:
    """The rows of one batch: always the same, so a replay after a kill is an exact duplicate."""
    return [
        {
            "event_id": f"{writer}-{batch}-{row}",
            "user_id": f"user-{row % 7}",
            "media_id": f"{batch % 16:016x}",
            "session_id": f"{writer}-{batch}",
            "event_type": "heartbeat",
            "position_s": float(row),
            "ts": EPOCH + timedelta(seconds=batch * size + row),
            "device": "web",
            "tier": "free",
        }
        for row in range(size)
    ]


def main(argv: list[str]) -> None:
    data_dir, writer, first, batches, size = argv[0], argv[1], *map(int, argv[2:5])
    settings = get_settings(data_dir=Path(data_dir))
    print("ready", flush=True)
    sys.stdin.readline()  # "go": racing writers start together
    for batch in range(first, first + batches):
        insert_new(settings, "view_events", batch_rows(writer, batch, size))
        print(f"acked {batch}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
