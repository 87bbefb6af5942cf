"""A worker process that cannot reach its broker: librdkafka complains, and every line the
process writes is still one JSON object; /healthz says live, /readyz says why not ready."""

from __future__ import annotations

import json

import httpx
import pytest

from phoenix_resources.config import Settings
from tests.support.net import free_port
from tests.support.pipeline import wait_until
from tests.support.processes import Process

pytestmark = pytest.mark.e2e


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def test_a_worker_without_a_broker_logs_json_only_and_is_live_but_not_ready(
        settings: Settings) -> None:
    port = free_port()
    broken = settings.model_copy(update={
        "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}",  # nobody listens there
        "create_topics": False, "log_format": "json", "metrics_port": port})
    worker = Process("worker", broken)
    base = f"http://127.0.0.1:{port}"
    try:
        worker.wait_for_log('"logger":"phoenix_resources.librdkafka"', 90)
        wait_until(lambda: (r := _get(f"{base}/healthz")) is not None and r.status_code == 200,
                   60, "/healthz")
        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "not ready"
        assert body["checks"]["database"]["ok"] is True
        assert body["checks"]["consumer"]["ok"] is False
        assert body["checks"]["consumer"]["joined"] is False
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'phoenix_ready{component="worker"} 0.0' in metrics
        assert 'phoenix_build_info{component="worker"' in metrics
        assert httpx.get(f"{base}/nothing", timeout=5).status_code == 404
    finally:
        code = worker.terminate()
    assert code == 0, worker.output()[-4000:]
    lines = [line for line in worker.output().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a line that is not JSON: {line!r}")
    kafka = [r for r in records if r["logger"] == "phoenix_resources.librdkafka"]
    assert kafka, "librdkafka said nothing?"
    assert all({"ts", "level", "msg"} <= set(r) for r in records)
    assert any("127.0.0.1" in r["msg"] for r in kafka)  # its own words, e.g. Connect … failed
