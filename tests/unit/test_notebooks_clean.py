"""Notebooks are kept in git without outputs: CI executes them (`make notebooks`), so stored outputs
would only be stale plots, base64 images in diffs and, at worst, tokens or data printed by a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
FILES = sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def test_there_are_notebooks() -> None:
    assert FILES, f"no notebooks under {NOTEBOOKS}"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_notebook_is_stripped(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    dirty = [
        f"cell {index} ({cell.get('id', 'no id')})"
        for index, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name} has outputs or execution counts in {', '.join(dirty)}: clear all outputs "
        "(Jupyter: Edit > Clear Outputs of All Cells) before committing"
    )
