"""The alert rules, their promtool tests, the runbook and the Grafana dashboard agree with
each other and with the metrics the code exports.

promtool (Debian's ``prometheus`` package) checks and unit-tests the rules; without it these
tests skip on a developer's machine and fail in CI (``tests/support/prometheus.py``).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from phoenix_resources.entrypoints.grpc.activity import ActiveStreams
from phoenix_resources.entrypoints.grpc.edge import Edge
from phoenix_resources.entrypoints.http.edge import TokenCheck
from phoenix_resources.observability import Metrics
from phoenix_resources.observability.metrics import family_names
from tests.support.prometheus import require_tool

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "alerts_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "phoenix-resources.json"
METRIC = re.compile(r"\b((?:phoenix|process|python)_[a-z_]+)")


def _alerts() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def _exported() -> set[str]:
    """Every metric a process can export: ``run``'s registry, with the gRPC server's edge
    and interceptor on it as ``run`` has them."""
    metrics = Metrics(component="all")
    Edge(TokenCheck(()), metrics.registry)
    ActiveStreams(metrics.registry)
    return set(family_names(metrics))


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True,
                          cwd=cwd, check=False)


def test_the_rules_pass_promtool_check() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("alert", sorted(_alerts()))
def test_each_alert_fires_when_it_should_and_only_then(alert: str) -> None:
    """The promtool test groups of this alert, run alone (one pytest case per alert)."""
    doc = yaml.safe_load(RULE_TESTS.read_text())
    groups = [t for t in doc["tests"]
              if any(c["alertname"] == alert for c in t.get("alert_rule_test", []))]
    assert groups, f"{alert} has no promtool test in {RULE_TESTS.name}"
    assert any(c.get("exp_alerts") for t in groups for c in t["alert_rule_test"]
               if c["alertname"] == alert), f"no test shows {alert} firing"
    with tempfile.TemporaryDirectory() as tmp:
        only = {**doc, "rule_files": [str(RULES)], "tests": groups}
        (Path(tmp) / "test.yml").write_text(yaml.safe_dump(only))
        done = _promtool("test", "rules", "test.yml", cwd=Path(tmp))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_whole_promtool_test_file_passes() -> None:
    done = _promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_runbook_section_and_link() -> None:
    headings = {line[3:].strip() for line in RUNBOOK.read_text().splitlines()
                if line.startswith("## ")}
    alerts = _alerts()
    assert set(alerts) - headings == set()
    for name, rule in alerts.items():
        assert rule["annotations"]["runbook"] == f"docs/runbook.md#{name.lower()}"


def test_every_metric_a_rule_uses_is_exported() -> None:
    used = {m for r in _alerts().values() for m in METRIC.findall(r["expr"])}
    assert used - _exported() == set()


# --- the dashboard --------------------------------------------------------------------------

def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def _exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    doc = _dashboard()
    assert {"uid", "title", "panels", "schemaVersion", "templating", "time"} <= set(doc)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    datasource = [v for v in doc["templating"]["list"] if v["type"] == "datasource"]
    assert datasource
    assert datasource[0]["query"] == "prometheus"
    for p in doc["panels"]:
        assert {"id", "type", "title", "gridPos"} <= set(p), p
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]), p["title"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["targets"], f"panel {p['title']!r} queries nothing"
            assert p["datasource"]["uid"] == "${datasource}"
            assert {t["refId"] for t in p["targets"]} == {
                chr(65 + i) for i in range(len(p["targets"]))}


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    text = " ".join(_exprs())
    for metric in ("phoenix_commands_total", "phoenix_consumer_lag_seconds",
                   "phoenix_command_latency_seconds_bucket",
                   "phoenix_event_publish_latency_seconds_bucket",
                   "phoenix_outbox_backlog_rows", "phoenix_relay_active",
                   "phoenix_http_requests_total", "phoenix_http_request_seconds_bucket",
                   "phoenix_grpc_calls_total", "phoenix_grpc_call_seconds_bucket",
                   "phoenix_grpc_active_streams", "phoenix_ready",
                   "process_cpu_seconds_total", "process_resident_memory_bytes",
                   "python_gc_collections_total"):
        assert metric in text, metric


def test_every_metric_on_the_dashboard_is_exported() -> None:
    used = {m for e in _exprs() for m in METRIC.findall(e)}
    assert used
    assert used - _exported() == set()


def test_every_dashboard_expression_parses() -> None:
    """promtool parses each expression as a recording rule (Grafana's ``$__rate_interval``
    stands in as 5m)."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(_exprs())]}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard.yml"
        path.write_text(yaml.safe_dump(rules))
        done = _promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
