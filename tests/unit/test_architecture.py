"""The layout's rules: imports flow models <- assets <- pipelines and models <- serving; our
top-level packages are ours (a dependency's `tests` or `models` must not shadow them)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "assets", "pipelines", "serving")
ALLOWED = {
    "models": {"models"},
    "assets": {"models", "assets"},
    "pipelines": {"models", "assets", "pipelines"},
    "serving": {"models", "serving"},
}
FORBIDDEN_IN_MODELS = ("dagster", "ray.serve")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.append("<relative import: write it absolute so its direction is checked>")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_flow_one_way(package: str) -> None:
    wrong = []
    for path in (ROOT / package).rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            if name.startswith("<relative"):
                wrong.append(f"{path.relative_to(ROOT)}: {name}")
            if top in PACKAGES and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if package == "models" and name.startswith(FORBIDDEN_IN_MODELS):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_resolve_inside_the_repository(package: str) -> None:
    module = importlib.import_module(package)
    assert Path(module.__file__).resolve().is_relative_to(ROOT)


def test_definitions_import_without_heavy_libraries() -> None:
    """`dagster dev` loads the code location; torch, ray, pyspark and mlflow wait until used."""
    heavy = ("torch", "ray", "pyspark", "mlflow", "feast", "transformers")
    code = f"import sys, pipelines.definitions; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_ruff_is_clean() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run([str(ruff), "check", str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
