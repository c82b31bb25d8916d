"""The Prometheus alert rules (ops/prometheus) stay valid and name only series the code exports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.observability.pipeline_metrics import PipelineStats
from serving.metrics import Metrics

yaml = pytest.importorskip("yaml")

RULES_DIR = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts_test.yml"
METRIC_NAME = re.compile(r"\bstreamlake_[a-zA-Z0-9_]+")
# `make install` unpacks promtool into the venv's bin; a system-wide one works too.
PROMTOOL = shutil.which("promtool", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")


def exported_names() -> set[str]:
    """Every sample name /metrics can carry: one of each series, as the API renders them."""
    metrics = Metrics()
    metrics.observe("/search", "GET", 200, 0.01)
    metrics.rate_limited.labels("free").inc()
    metrics.set_model_version("1")
    metrics.pipeline.stats = PipelineStats(
        encode_fps={("h264", "libx264"): 90.0},
        asr_real_time_factor={"faster-whisper": 0.2},
        model_drift_psi=0.1,
        drift_psi_threshold=0.25,
        qoe_score={"mobile": 70.0},
    )
    families = text_string_to_metric_families(metrics.render().decode())
    return {sample.name for family in families for sample in family.samples}


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def test_every_rule_names_only_exported_series() -> None:
    exported = exported_names()
    exprs = rule_exprs()
    assert {"StreamlakeApiLatencyHigh", "StreamlakeApiErrorRate", "StreamlakeTranscodeBacklog",
            "StreamlakeModelDrift", "StreamlakeQoeDrop"} <= set(exprs)  # fmt: skip
    for alert, expr in exprs.items():
        named = set(METRIC_NAME.findall(expr))
        assert named, f"{alert} names no streamlake_ series"
        assert named <= exported, f"{alert} names series /metrics does not export: {named - exported}"


def test_rule_unit_tests_feed_exported_series() -> None:
    series = [s["series"] for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for s in t["input_series"]]
    assert {METRIC_NAME.match(s).group(0) for s in series} <= exported_names()  # type: ignore[union-attr]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (`make install` unpacks it)")
@pytest.mark.parametrize("command", [["check", "rules", RULES.name], ["test", "rules", RULE_TESTS.name]])
def test_promtool_accepts_the_rules(command: list[str]) -> None:
    result = subprocess.run(
        [str(PROMTOOL), *command], cwd=RULES_DIR, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
