"""The CLI against services that are not there, run as a user runs it (the installed
``phoenix-resources`` script, a real process): every command that needs the broker, the HTTP
API or PostgreSQL gives up within its ``--connect-timeout`` (plus start-up, with a generous
margin for a busy machine) with exit 6 and one line naming what it could not reach — not 30
seconds and a screenful of librdkafka retries, and not ``watch``'s "saw 0 of 1 events".

Two ways to be absent: a port nothing listens on (dead from the start), and a private broker
stopped while ``watch`` tails it and ``send --file -`` is half-way through its input.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from phoenix_resources.adapters import codecs
from phoenix_resources.client import ClientSettings
from phoenix_resources.devstack import KafkaBroker
from phoenix_resources.domain.events import ResourceCreated, event_id_for
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.entrypoints.cli.common import EXIT_UNREACHABLE
from tests.support.kafka import read_all
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

TIMEOUT = 3.0
"""``--connect-timeout`` given to every command."""
MOST_STDERR_LINES = 5
"""A handful: librdkafka's line per broker and problem, and the one error line."""

RID = "6f0c2a4e-7a4b-4c1d-8d8e-0b3f5a6c7de1"


def _cli() -> list[str]:
    """The installed console script beside this interpreter (else the module)."""
    script = Path(sys.executable).with_name("phoenix-resources")
    found = script if script.exists() else shutil.which("phoenix-resources")
    return [str(found)] if found else [sys.executable, "-m", "phoenix_resources.entrypoints.cli"]


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    return {**env, "PHOENIX_ENV_FILE": "/nonexistent", **settings}


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run(args: list[str], env: dict[str, str], stdin: str | None = None) -> Run:
    started = time.monotonic()
    done = subprocess.run([*_cli(), *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def assert_unreachable(result: Run, names: str) -> None:
    """Exit 6, a handful of stderr lines, the last one naming ``names``. (How soon is
    measured, not asserted: a command that waited out its own timeouts instead — ``send``'s
    30 s delivery, ``watch``'s --timeout — ends with another code and message.)"""
    assert result.code == EXIT_UNREACHABLE, result
    assert len(result.stderr_lines) <= MOST_STDERR_LINES, result.stderr
    assert result.stderr_lines[-1].startswith("error: cannot reach "), result.stderr
    assert names in result.stderr_lines[-1], result.stderr


# --- dead from the start ---------------------------------------------------------------------

KAFKA_COMMANDS = [
    ["send", "create", "--name", "db-1"],
    ["send", "update", RID, "--status", "active"],
    ["send", "delete", RID, "--wait"],
    ["send", "--file", "-", "--no-progress"],
    ["watch", "--max", "1", "--timeout", "60"],
    ["dlq", "list"],
    ["dlq", "show", "0"],
    ["dlq", "replay", "--all", "--no-progress"],
]


@pytest.mark.parametrize("args", KAFKA_COMMANDS, ids=" ".join)
def test_kafka_commands_name_the_dead_bootstrap_list_and_exit_6(args: list[str]) -> None:
    servers = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    line = json.dumps({"command_type": "CREATE", "name": "db-1"}) + "\n"

    result = run([*args, "--connect-timeout", f"{TIMEOUT:g}"],
                 _env(PHOENIX_KAFKA_BOOTSTRAP_SERVERS=servers), stdin=line)

    assert_unreachable(result, f"Kafka at {servers}")
    assert f"within {TIMEOUT:g}s" in result.stderr_lines[-1]
    assert "saw 0 of" not in result.stderr
    assert result.stdout == ""


def test_the_connect_timeout_given_to_send_applies_to_its_sub_command() -> None:
    servers = f"127.0.0.1:{free_port()}"
    result = run(["send", "--connect-timeout", "1", "create", "--name", "db-1"],
                 _env(PHOENIX_KAFKA_BOOTSTRAP_SERVERS=servers))
    assert_unreachable(result, f"Kafka at {servers} within 1s")


@pytest.mark.parametrize("args", [
    ["get", RID], ["list", "--all"], ["send", "create", "--name", "db-1", "--wait"],
], ids=" ".join)
def test_api_commands_name_the_dead_api_and_exit_6(args: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run([*args, "--api-url", url, "--connect-timeout", f"{TIMEOUT:g}"],
                 _env(PHOENIX_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}"))
    assert_unreachable(result, f"the API at {url}")


@pytest.mark.parametrize("args", [
    ["parked", "list"], ["parked", "show", RID], ["parked", "replay", "--all"],
    ["parked", "discard", "--resource", RID, "--yes"],
    ["outbox", "list"], ["outbox", "retry", "--all"], ["outbox", "discard", "--all", "--yes"],
], ids=" ".join)
def test_database_commands_name_the_dead_database_without_its_password(
        args: list[str]) -> None:
    port = free_port()
    result = run([*args, "--connect-timeout", f"{TIMEOUT:g}"],
                 _env(PHOENIX_DATABASE_URL=f"postgresql://phoenix:s3cret@127.0.0.1:{port}/db"))
    assert_unreachable(result, f"PostgreSQL at postgresql://phoenix:***@127.0.0.1:{port}/db")
    assert "s3cret" not in result.stderr


# --- stopped on the way --------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    commands: str
    events: str

    def env(self, servers: str) -> dict[str, str]:
        return _env(PHOENIX_KAFKA_BOOTSTRAP_SERVERS=servers,
                    PHOENIX_COMMANDS_TOPIC=self.commands, PHOENIX_EVENTS_TOPIC=self.events)


@pytest.fixture
def topics(private_broker: KafkaBroker) -> Topics:
    suffix = uuid.uuid4().hex[:8]
    made = Topics(f"cmds-{suffix}", f"events-{suffix}")
    admin = AdminClient({"bootstrap.servers": private_broker.bootstrap_servers})
    for future in admin.create_topics([NewTopic(made.commands, 3, 1),
                                       NewTopic(made.events, 3, 1)]).values():
        future.result(30)
    return made


def _publish_event(servers: str, topic: str) -> uuid.UUID:
    now = datetime.now(UTC)
    rid, cid = uuid.uuid4(), uuid.uuid4()
    resource = Resource(id=rid, name="db-1", config={}, status=Status.ACTIVE, version=1,
                        created_at=now, updated_at=now, last_command_id=cid)
    event = ResourceCreated(event_id=event_id_for(cid), resource_id=rid, version=1,
                            occurred_at=now, command_id=cid, correlation_id=None,
                            changed_fields=("name",), resource=resource)
    value = codecs.event_codec(ClientSettings(kafka_bootstrap_servers=servers)).encode_event(
        event)
    producer = Producer({"bootstrap.servers": servers})
    producer.produce(topic, key=str(rid).encode(), value=value)
    assert producer.flush(30) == 0
    return rid


def _wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> None:
    """Block until ``proc`` prints a line containing ``text`` on stdout."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"never printed {text!r}: {proc.poll()=}")


def _finish(proc: subprocess.Popen[str], since: float) -> Run:
    """Wait for ``proc`` (its output is a few lines: the pipes cannot fill up)."""
    code = proc.wait(timeout=120)
    seconds = time.monotonic() - since
    assert proc.stdout is not None
    assert proc.stderr is not None
    return Run(code, proc.stdout.read(), proc.stderr.read(), seconds)


def test_a_broker_stopped_midway_ends_watch_and_a_bulk_send_with_exit_6(
        private_broker: KafkaBroker, topics: Topics) -> None:
    servers = private_broker.bootstrap_servers
    env = topics.env(servers)
    flag = ["--connect-timeout", f"{TIMEOUT:g}"]
    rid = _publish_event(servers, topics.events)
    out, err = subprocess.PIPE, subprocess.PIPE
    with (subprocess.Popen([*_cli(), "watch", "--from-beginning", "--json", *flag], env=env,
                           stdout=out, stderr=err, text=True) as watch,
          subprocess.Popen([*_cli(), "send", "--file", "-", "--json", "--no-progress", *flag],
                           env=env, stdin=subprocess.PIPE, stdout=out, stderr=err,
                           text=True) as bulk):
        assert bulk.stdin is not None
        try:
            _wait_for_line(watch, str(rid))  # watch is connected and tailing
            for i in range(5):
                bulk.stdin.write(json.dumps({"command_type": "CREATE", "name": f"r-{i}"}) + "\n")
            bulk.stdin.flush()
            assert len(read_all(servers, topics.commands, expected=5)) == 5  # sent while up

            private_broker.stop()
            stopped = time.monotonic()
            for i in range(5, 10):
                bulk.stdin.write(json.dumps({"command_type": "CREATE", "name": f"r-{i}"}) + "\n")
            bulk.stdin.close()
            watched = _finish(watch, stopped)
            sent = _finish(bulk, stopped)
        finally:
            for proc in (watch, bulk):
                if proc.poll() is None:
                    proc.kill()

    print(f"\nwatch gave up {watched.seconds:.1f}s after the broker stopped:\n{watched.stderr}"
          f"send --file gave up {sent.seconds:.1f}s after it:\n{sent.stderr}")  # for -s
    assert_unreachable(watched, f"Kafka at {servers}")
    assert_unreachable(sent, f"Kafka at {servers}")
    summary = json.loads(sent.stdout)
    assert (summary["lines"], summary["sent"], summary["failed"]) == (10, 5, 5)
    assert summary["unconfirmed"] == 5
    assert "lines 6-10" in sent.stderr

    after = run(["send", "create", "--name", "db-2", *flag], env)
    assert_unreachable(after, f"Kafka at {servers}")
