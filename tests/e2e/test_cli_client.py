"""The CLI as a user runs it (a real process, real broker): bulk send reports bad lines by
number and still sends the rest; ``watch --json`` prints one parseable object per line;
``send create --json`` output and exit codes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings
from phoenix_resources.domain.events import (
    ResourceChanged,
    ResourceCreated,
    ResourceUpdated,
    event_id_for,
)
from phoenix_resources.domain.model import Resource, Status
from tests.support.cli import cli
from tests.support.kafka import read_all

pytestmark = pytest.mark.e2e


def test_bulk_file_reports_bad_lines_by_number_and_sends_the_rest(
        settings: Settings, tmp_path: Path) -> None:
    lines: list[str] = []
    bad: dict[int, str] = {}
    good_ids: set[str] = set()
    for i in range(3000):
        number = len(lines) + 1
        if i % 500 == 17:
            bad[number] = "malformed-json"
            lines.append('{"command_type": "CREATE", "name": ')  # truncated
        elif i % 500 == 42:
            bad[number] = "CMD-001"
            lines.append(json.dumps({"command_type": "CREATE", "name": ""}))
        elif i % 500 == 99:
            bad[number] = "missing-field"
            lines.append(json.dumps({"command_type": "UPDATE", "name": "x"}))  # no resource
        elif i % 500 == 123:
            bad[number] = "invalid-field"
            lines.append(json.dumps({"command_type": "CREATE", "name": "x", "status": "gone"}))
        else:
            command_id = str(uuid.uuid4())
            good_ids.add(command_id)
            kind = ("CREATE", "UPDATE", "DELETE")[i % 3]
            record: dict[str, object] = {"command_type": kind, "command_id": command_id,
                                         "resource_id": str(uuid.uuid4())}
            if kind != "DELETE":
                record |= {"name": f"r-{i}", "config": {"i": str(i)}}
            lines.append(json.dumps(record))
        if i % 1000 == 500:
            lines.append("")  # blank lines are skipped, not errors
    path = tmp_path / "commands.jsonl"
    path.write_text("\n".join(lines) + "\n")

    result = cli(settings, "send", "--file", str(path), "--json", "--no-progress")

    assert result.returncode == 1, result.stderr
    reported = {int(line.split(":")[0].removeprefix("line ")): line
                for line in result.stderr.splitlines() if line.startswith("line ")}
    assert set(reported) == set(bad)
    for number, reason in bad.items():
        assert reason in reported[number]
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["failed"]) == (len(good_ids), len(bad))
    assert summary["rate"] > 0
    print(f"\nbulk send: {summary}")  # the measured rate, for the report (-s)

    records = read_all(settings.kafka_bootstrap_servers, settings.commands_topic,
                       expected=len(good_ids))
    codec = bootstrap.command_codec(settings)
    decoded = [codec.decode(r.value()) for r in records]
    assert {str(c.command_id) for c in decoded} == good_ids
    assert all(r.key() == str(c.resource_id).encode() for r, c in zip(records, decoded,
                                                                       strict=True))


def _event_record(kind: type[ResourceChanged], rid: uuid.UUID,
                  version: int) -> tuple[ResourceChanged, list[tuple[str, bytes]]]:
    now = datetime.now(UTC)
    cid = uuid.uuid4()
    resource = Resource(id=rid, name=f"svc-{version}", config={"k": "v"}, status=Status.ACTIVE,
                        version=version, created_at=now, updated_at=now, last_command_id=cid)
    event = kind(event_id=event_id_for(cid), resource_id=rid, version=version, occurred_at=now,
                 command_id=cid, correlation_id="c-1", changed_fields=("name",),
                 resource=resource)
    headers = [("ce_id", str(event.event_id).encode()),
               ("ce_type", f"phoenix.resources.v1.{event.type_name}".encode()),
               ("ce_source", b"urn:phoenix:resources"), ("ce_subject", str(rid).encode()),
               ("ce_time", now.isoformat().encode()), ("ce_specversion", b"1.0"),
               ("content-type", b"application/avro"),
               ("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    return event, headers


def test_watch_json_prints_one_parseable_event_per_line(settings: Settings) -> None:
    codec = bootstrap.event_codec(settings)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    rid = uuid.uuid4()
    events: list[ResourceChanged] = []
    for version, kind in ((1, ResourceCreated), (2, ResourceUpdated), (3, ResourceUpdated)):
        event, headers = _event_record(kind, rid, version)
        events.append(event)
        producer.produce(settings.events_topic, key=str(rid).encode(),
                         value=codec.encode_event(event), headers=headers)
    # A relay repeat of version 2: watch drops it (dedupe is on by default).
    producer.produce(settings.events_topic, key=str(rid).encode(),
                     value=codec.encode_event(events[1]), headers=_event_record(
                         ResourceUpdated, rid, 2)[1])
    assert producer.flush(10) == 0

    result = cli(settings, "watch", "--json", "--from-beginning", "--max", "3",
                 "--timeout", "60")

    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["version"] for o in out] == [1, 2, 3]
    assert [o["event_type"] for o in out] == ["CREATED", "UPDATED", "UPDATED"]
    assert {o["resource_id"] for o in out} == {str(rid)}
    assert out[0]["command_id"] == str(events[0].command_id)
    assert out[0]["resource"]["name"] == "svc-1"
    assert out[0]["ce"]["type"] == "phoenix.resources.v1.ResourceCreated"
    assert out[0]["ce"]["specversion"] == "1.0"
    assert out[0]["traceparent"].startswith("00-1111")

    human = cli(settings, "watch", "--from-beginning", "--max", "1", "--timeout", "60")
    assert human.returncode == 0, human.stderr
    assert "CREATED" in human.stdout
    assert str(rid) in human.stdout

    short = cli(settings, "watch", "--from-beginning", "--max", "10", "--timeout", "4")
    assert short.returncode == 1
    assert "saw 3 of 10" in short.stderr


def test_send_create_prints_ids_and_usage_errors_exit_2(settings: Settings) -> None:
    ok = cli(settings, "send", "create", "--name", "db-1", "-c", "size=m", "--json")
    assert ok.returncode == 0, ok.stderr
    sent = json.loads(ok.stdout)
    records = read_all(settings.kafka_bootstrap_servers, settings.commands_topic, expected=1)
    assert [r.key() for r in records] == [sent["resource_id"].encode()]

    invalid = cli(settings, "send", "create", "--name", " ")
    assert invalid.returncode == 2
    assert "CMD-001" in invalid.stderr
    bad_config = cli(settings, "send", "create", "--name", "x", "-c", "novalue")
    assert bad_config.returncode == 2
    bad_id = cli(settings, "send", "delete", "not-a-uuid")
    assert bad_id.returncode == 2
