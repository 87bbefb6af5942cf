"""Deployment files stay consistent with the code: alert rules name only real metrics.
(Kubernetes: test_kubernetes.py; image and compose: test_container_files.py.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from phoenix_resources.observability import Metrics

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _exported_names() -> set[str]:
    names: set[str] = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                    "gauge": [""]}.get(family.type, [""])
        names |= {family.name + s for s in suffixes}
    return names


def test_every_metric_an_alert_uses_is_exported() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\bphoenix_[a-z_]+", e)}
    assert used, "the rules should use the service's metrics"
    assert used - _exported_names() == set()


def test_system_deps_script_parses_and_names_what_the_tests_need() -> None:
    script = DEPLOY / "local" / "system-deps.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for package in ("default-jre-headless", "maven", "postgresql", "chromium"):
        assert package in text
    assert "openjdk-17" not in text, "the distribution's default JRE, not a pinned one"
    assert "not a Debian-like system" in text
