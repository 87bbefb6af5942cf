"""A real Prometheus (Debian's ``prometheus`` package) for tests, and promtool.

A missing binary skips the test on a developer's machine and fails it in CI (``CI`` set):
CI installs them through ``make deps`` (deploy/local/system-deps.sh), so a missing one there
is a broken install, never a reason to skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.net import free_port


def require_tool(name: str) -> str:
    """The path of ``name`` (``/usr/bin`` first); skip (locally) or fail (CI) without it."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}")
                                  else None)
    if path is None:
        message = f"{name} is not installed (Debian package 'prometheus'; make system-deps)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class Prometheus:
    """Prometheus on a free port scraping ``targets`` ({job: ["host:port", ...]}) every
    second, with its data in a temporary directory."""

    def __init__(self, targets: dict[str, list[str]], *, interval: str = "1s") -> None:
        binary = require_tool("prometheus")
        self.dir = Path(tempfile.mkdtemp(prefix="phoenix-prometheus-"))
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": t}]}
                                     for job, t in targets.items()]}
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (self.dir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus did not start:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: ``[(labels, value), ...]``."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body: dict[str, Any] = answer.json()
        assert body["status"] == "success", body
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]

    def value(self, expr: str) -> float | None:
        """The single value of ``expr``, or None when it has no result."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return result[0][1] if result else None

    def wait_for(self, expr: str, expected: float, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last: float | None = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last == expected:
                return
            time.sleep(0.5)
        raise AssertionError(f"{expr} = {last}, expected {expected}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
