"""The whole loop with real processes: the library and the CLI publish, ``phoenix-resources
worker`` applies, ``relay`` announces, the subscriber sees the event, ``api`` answers
``get`` / ``list`` and ``--wait --api-url``. A retried publish (same command id) has one
effect."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from phoenix_resources import bootstrap
from phoenix_resources.client import CommandPublisher, Delivery, EventSubscriber
from phoenix_resources.config import Settings
from phoenix_resources.domain.events import ResourceCreated, ResourceUpdated
from tests.support.kafka import read_all
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CLI = [sys.executable, "-c", "from phoenix_resources.entrypoints.cli import main; main()"]


@dataclass(frozen=True)
class Stack:
    settings: Settings
    env: dict[str, str]
    api_url: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=self.env, capture_output=True, text=True,
                              timeout=120, check=False)


def env_for(settings: Settings, http_port: int) -> dict[str, str]:
    return {**os.environ,
            "PHOENIX_DATABASE_URL": settings.database_url,
            "PHOENIX_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "PHOENIX_COMMANDS_TOPIC": settings.commands_topic,
            "PHOENIX_EVENTS_TOPIC": settings.events_topic,
            "PHOENIX_REJECTIONS_TOPIC": settings.rejections_topic,
            "PHOENIX_DLQ_TOPIC": settings.dlq_topic,
            "PHOENIX_CONSUMER_GROUP": settings.consumer_group,
            "PHOENIX_CREATE_TOPICS": "false", "PHOENIX_METRICS_PORT": "0",
            "PHOENIX_BATCH_MAX_WAIT_MS": "20", "PHOENIX_RELAY_POLL_INTERVAL_S": "0.2",
            "PHOENIX_HTTP_PORT": str(http_port), "PHOENIX_LOG_FORMAT": "console"}


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p.args for p in procs if p.poll() is not None]
        assert not dead, f"exited early: {dead}"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail("the API did not become ready")


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    port = free_port()
    env = env_for(settings, port)
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("worker", "relay", "api")}
    procs = [subprocess.Popen([*CLI, name], env=env, stdout=subprocess.DEVNULL, stderr=log)
             for name, log in logs.items()]
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, procs)
        yield Stack(settings, env, url)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for log in logs.values():
            log.close()


def _collect(sub: EventSubscriber, want: int, timeout: float = 30) -> list[Delivery]:
    out: list[Delivery] = []
    for d in sub.deliveries(timeout=timeout):
        out.append(d)
        sub.ack()
        if len(out) >= want:
            break
    return out


def test_publish_apply_subscribe_and_a_retry_has_one_effect(stack: Stack) -> None:
    s = stack.settings
    with (EventSubscriber(s, f"sub-{uuid.uuid4()}", from_beginning=True) as sub,
          CommandPublisher(s) as publisher):
        created = publisher.create("db-1", config={"size": "m"}, correlation_id="c-42",
                                   traceparent=TRACEPARENT)
        applied = publisher.wait_for_outcome(created, timeout=60)
        assert (applied.outcome, applied.resulting_version) == ("applied", 1)

        # The publisher's retry after, say, a timeout: same command id, sent again.
        retry = publisher.create("db-1", resource_id=created.resource_id,
                                 config={"size": "m"}, command_id=created.command_id)
        assert retry == created
        update_id = uuid.uuid4()
        for _ in range(3):
            publisher.update(created.resource_id, name="db-2", command_id=update_id)
        updated = publisher.wait_for_outcome(update_id, timeout=60)
        assert (updated.outcome, updated.resulting_version) == ("applied", 2)
        marker = publisher.update(created.resource_id, status="active")
        assert publisher.wait_for_outcome(marker, timeout=60).resulting_version == 3

        deliveries = _collect(sub, 3)

    assert [type(d.event) for d in deliveries] == [ResourceCreated, ResourceUpdated,
                                                   ResourceUpdated]
    assert [d.event.version for d in deliveries] == [1, 2, 3]
    first = deliveries[0]
    assert first.event.command_id == created.command_id
    assert first.event.correlation_id == "c-42"
    assert first.ce["type"] == "phoenix.resources.v1.ResourceCreated"
    assert first.ce["subject"] == str(created.resource_id)
    assert first.traceparent == TRACEPARENT  # the publisher's trace reaches the subscriber
    assert all(d.traceparent for d in deliveries)  # generated when not given

    # One effect: one event per command id on the topic, version 3 after 1 + 3 + 1 sends...
    events = read_all(s.kafka_bootstrap_servers, s.events_topic, expected=3, idle=3)
    codec = bootstrap.event_codec(s)
    command_ids = [codec.decode_event(r.value() or b"").command_id for r in events]
    assert sorted(map(str, command_ids)) == sorted(
        map(str, [created.command_id, update_id, marker.command_id]))
    # ... and the API records the repeats as duplicates of the first outcome.
    outcome = httpx.get(f"{stack.api_url}/api/v1/commands/{update_id}").json()
    assert (outcome["outcome"], outcome["resulting_version"]) == ("applied", 2)
    assert outcome["duplicate_deliveries"] == 2
    resource = httpx.get(f"{stack.api_url}/api/v1/resources/{created.resource_id}").json()
    assert (resource["version"], resource["name"], resource["status"]) == (3, "db-2", "active")


def test_cli_send_wait_get_list_and_exit_codes(stack: Stack) -> None:
    made = stack.cli("send", "create", "--name", "cli-1", "-c", "tier=gold", "--wait",
                     "--json", "--timeout", "60")
    assert made.returncode == 0, made.stderr
    sent = json.loads(made.stdout)
    assert (sent["outcome"], sent["resulting_version"]) == ("applied", 1)
    rid = sent["resource_id"]

    # --wait through the HTTP API instead of the topics.
    upd = stack.cli("send", "update", rid, "--status", "active", "--wait", "--timeout", "60",
                    "--api-url", stack.api_url)
    assert upd.returncode == 0, upd.stderr
    assert "applied version=2" in upd.stdout

    stale = stack.cli("send", "update", rid, "--name", "x", "--expected-version", "1",
                      "--wait", "--timeout", "60", "--json")
    assert stale.returncode == 4, stale.stderr
    assert json.loads(stale.stdout)["error_code"] == "CMD-006"

    got = stack.cli("get", rid, "--json", "--api-url", stack.api_url)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["version"] == 2
    human = stack.cli("get", rid, "--api-url", stack.api_url)
    assert "tier" in human.stdout
    assert "active" in human.stdout

    missing = stack.cli("get", str(uuid.uuid4()), "--api-url", stack.api_url)
    assert missing.returncode == 4
    assert "not found" in missing.stderr

    listed = stack.cli("list", "--status", "active", "--json", "--api-url", stack.api_url)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [rid]

    deleted = stack.cli("send", "delete", rid, "--wait", "--timeout", "60")
    assert deleted.returncode == 0, deleted.stderr
    again = stack.cli("send", "create", "--name", "cli-1", "--resource-id", rid, "--wait",
                      "--timeout", "60")
    assert again.returncode == 4
    assert "CMD-005" in again.stdout
    unreachable = stack.cli("get", rid, "--api-url", "http://127.0.0.1:1")
    assert unreachable.returncode == 6
    assert "cannot reach the API at http://127.0.0.1:1" in unreachable.stderr
