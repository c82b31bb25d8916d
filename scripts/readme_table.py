"""The README's generated tables: each script renders one and splices it between its markers.

Shared by scripts/recsys_table.py and scripts/faults_table.py: the same command line (--readme,
and --check or --print) and the same splice, so a table is written, checked or printed alike.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def replace_between_markers(text: str, table: str, begin: str, end_marker: str) -> str:
    """README text with the block between the markers replaced; ValueError without both markers."""
    start, end = text.find(begin), text.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"README needs the markers\n{begin}\n{end_marker}")
    return text[: start + len(begin)] + "\n" + table + "\n" + text[end:]


def parser(description: str) -> argparse.ArgumentParser:
    """--readme, and --check (fail when out of date) or --print (write nothing)."""
    parsed = argparse.ArgumentParser(description=description)
    parsed.add_argument("--readme", type=Path, default=README)
    mode = parsed.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail when the README is out of date")
    mode.add_argument("--print", action="store_true", help="print the table, write nothing")
    return parsed


def publish(table: str, args: argparse.Namespace, begin: str, end: str, script: str) -> int:
    """Print, check or write the table as the arguments ask; the exit status."""
    if args.print:
        print(table)
        return 0
    current = args.readme.read_text()
    updated = replace_between_markers(current, table, begin, end)
    if args.check:
        if updated != current:
            print(f"{args.readme} is out of date: run python {script}", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(updated)
    print(table)
    return 0
