"""The client library's pure parts: results, local validation, outcome parsing, the HTTP
outcome poll (over ``httpx.MockTransport``), CloudEvents headers, CLI parsing and usage
errors (which exit 2 before any I/O)."""

from __future__ import annotations

import json
import pickle
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaError
from typer.testing import CliRunner

from phoenix_resources.client import Delivery, OutcomeWatcher, Sent
from phoenix_resources.client.commands import (
    as_status,
    create_command,
    new_traceparent,
    resource_id_for,
    validate,
)
from phoenix_resources.client.outcomes import outcome_from_api
from phoenix_resources.client.publisher import delivery_error
from phoenix_resources.client.subscriber import parse_headers
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import CreateResource, DeleteResource, UpdateResource
from phoenix_resources.domain.events import ResourceUpdated, event_id_for
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.entrypoints.cli import app
from phoenix_resources.entrypoints.cli.bulk import command_from_line
from phoenix_resources.entrypoints.cli.read import delivery_json, delivery_line
from phoenix_resources.entrypoints.cli.send import parse_config
from phoenix_resources.errors import (
    CommandInvalid,
    DecodeError,
    DeliveryFailed,
    DeliveryUncertain,
    OutcomeTimeout,
    PhoenixError,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _common(**kw: Any) -> dict[str, Any]:
    return {"command_id": uuid.uuid4(), "resource_id": uuid.uuid4(), "issued_at": NOW, **kw}


def test_sent_is_the_command_id_and_carries_the_resource_id() -> None:
    cid, rid = uuid.uuid4(), uuid.uuid4()
    sent = Sent(cid, rid)
    assert sent == cid
    assert hash(sent) == hash(cid)
    assert str(sent) == str(cid)
    assert (sent.command_id, sent.resource_id) == (cid, rid)
    assert type(sent.command_id) is uuid.UUID
    assert pickle.loads(pickle.dumps(sent)).resource_id == rid
    assert str(rid) in repr(sent)
    with pytest.raises((TypeError, AttributeError)):
        sent.resource_id = uuid.uuid4()  # type: ignore[misc]


@pytest.mark.parametrize(("command", "code"), [
    (CreateResource(**_common(), name="", config={}), "CMD-001"),
    (CreateResource(**_common(), name="x" * 256, config={}), "CMD-001"),
    (CreateResource(**_common(), name="ok", config={"": "v"}), "CMD-002"),
    (CreateResource(**_common(), name="ok", config={"k": "v" * 4097}), "CMD-002"),
    (CreateResource(**_common(expected_version=3), name="ok", config={}), "CMD-006"),
    (UpdateResource(**_common(), name=" "), "CMD-001"),
    (UpdateResource(**_common(), config={f"k{i}": "" for i in range(257)}), "CMD-002"),
    (DeleteResource(**_common(expected_version=-1)), "invalid-field"),
])
def test_local_validation_uses_the_workers_codes(command: Any, code: str) -> None:
    with pytest.raises(CommandInvalid) as e:
        validate(command)
    assert e.value.code == code


@pytest.mark.parametrize(("code", "unknown"), [
    (KafkaError._MSG_TIMED_OUT, True),           # delivery.timeout.ms ran out, maybe in flight
    (KafkaError._PURGE_INFLIGHT, True),
    (KafkaError._TRANSPORT, True),
    (KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, True),  # written, under-replicated
    (KafkaError.MSG_SIZE_TOO_LARGE, False),
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, False),
    (KafkaError.UNKNOWN_TOPIC_OR_PART, False),
    (KafkaError._PURGE_QUEUE, False),            # purged before it was sent
])
def test_a_failed_delivery_says_refused_or_unknown(code: int, unknown: bool) -> None:
    sent = Sent(uuid.uuid4(), uuid.uuid4())
    error = delivery_error(sent, "commands", KafkaError(code))
    assert isinstance(error, DeliveryFailed)
    assert isinstance(error, DeliveryUncertain) is unknown
    assert str(sent) in str(error)
    assert ("same command_id" in str(error)) is unknown


def test_a_create_without_a_resource_id_derives_it_from_the_command_id() -> None:
    cid = uuid.uuid4()
    first, retry = create_command("db", command_id=cid), create_command("db", command_id=cid)
    assert first.resource_id == retry.resource_id == resource_id_for(cid)
    assert first.resource_id != cid
    fresh = create_command("db")
    assert fresh.resource_id == resource_id_for(fresh.command_id)
    assert create_command("db").resource_id != fresh.resource_id
    chosen = uuid.uuid4()
    assert create_command("db", command_id=cid, resource_id=chosen).resource_id == chosen


def test_valid_commands_pass_validation() -> None:
    validate(CreateResource(**_common(expected_version=0), name="db", config={"a": "b"}))
    validate(UpdateResource(**_common(expected_version=4), status=Status.INACTIVE))
    validate(DeleteResource(**_common()))


def test_status_strings() -> None:
    assert as_status("active") is Status.ACTIVE
    assert as_status(None) is None
    with pytest.raises(CommandInvalid, match="status must be one of"):
        as_status("archived")


def test_traceparent_is_w3c_shaped_and_fresh() -> None:
    a, b = new_traceparent(), new_traceparent()
    assert a != b
    version, trace, span, flags = a.split("-")
    assert (version, len(trace), len(span), flags) == ("00", 32, 16, "01")


def test_outcome_from_api_body() -> None:
    cid, rid = uuid.uuid4(), uuid.uuid4()
    applied = outcome_from_api({"command_id": str(cid), "resource_id": str(rid),
                                "outcome": "applied", "resulting_version": 7,
                                "error_code": None, "error_message": None})
    assert (applied.applied, applied.resulting_version, applied.resource_id) == (True, 7, rid)
    rejected = outcome_from_api({"command_id": str(cid), "outcome": "rejected",
                                 "error_code": "CMD-004", "error_message": "gone"})
    assert (rejected.rejected, rejected.error_code) == (True, "CMD-004")
    assert rejected.to_json()["outcome"] == "rejected"
    with pytest.raises(PhoenixError):
        outcome_from_api({"command_id": str(cid), "outcome": "maybe"})


def _watcher(handler: Any) -> OutcomeWatcher:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return OutcomeWatcher(Settings(), api_url="http://api.test/", api_token="t0k",
                          http_client=client)


def test_http_outcome_waits_through_404_and_pending() -> None:
    cid = uuid.uuid4()
    answers = [httpx.Response(404, json={"code": "RES-002"}),
               httpx.Response(200, json={"command_id": str(cid), "outcome": "pending"}),
               httpx.Response(200, json={"command_id": str(cid), "outcome": "applied",
                                         "resulting_version": 2})]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    outcome = _watcher(handler).wait(cid, timeout=5)
    assert (outcome.outcome, outcome.resulting_version) == ("applied", 2)
    assert seen[0].url == f"http://api.test/api/v1/commands/{cid}"
    assert seen[0].headers["authorization"] == "Bearer t0k"
    assert len(seen) == 3


def test_http_outcome_timeout_and_server_error() -> None:
    with pytest.raises(OutcomeTimeout, match="not processed yet"):
        _watcher(lambda _r: httpx.Response(404)).wait(uuid.uuid4(), timeout=0.3)
    with pytest.raises(PhoenixError, match="answered 500"):
        _watcher(lambda _r: httpx.Response(500, text="boom")).wait(uuid.uuid4(), timeout=5)


def test_cloudevents_headers() -> None:
    ce, traceparent = parse_headers([("ce_id", b"e1"), ("ce_type", b"t"),
                                     ("content-type", b"application/avro"),
                                     ("traceparent", b"00-ab-cd-01"), ("other", b"x"),
                                     ("ce_subject", None)])
    assert ce == {"id": "e1", "type": "t", "datacontenttype": "application/avro",
                  "subject": ""}
    assert traceparent == "00-ab-cd-01"
    assert parse_headers(None) == ({}, None)


def test_parse_config() -> None:
    assert parse_config(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    assert parse_config(None) is None
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_config(["novalue"])


def test_command_from_line_fills_ids_and_reports_reasons() -> None:
    command = command_from_line('{"command_type": "CREATE", "name": "db"}')
    assert isinstance(command, CreateResource)
    assert command.issued_at.tzinfo is not None
    kept = uuid.uuid4()
    again = command_from_line(json.dumps({"command_type": "DELETE", "command_id": str(kept),
                                          "resource_id": str(uuid.uuid4())}))
    assert again.command_id == kept
    for line, reason in [("{nope", "malformed-json"), ("[1]", "malformed-json"),
                         ('{"command_type": "UPDATE"}', "missing-field"),
                         ('{"command_type": "MOVE"}', "invalid-field")]:
        with pytest.raises(DecodeError) as e:
            command_from_line(line)
        assert e.value.reason == reason


def test_event_rendering() -> None:
    cid, rid = uuid.uuid4(), uuid.uuid4()
    resource = Resource(id=rid, name="db", config={"a": "b"}, status=Status.ACTIVE, version=2,
                        created_at=NOW, updated_at=NOW, last_command_id=cid)
    event = ResourceUpdated(event_id=event_id_for(cid), resource_id=rid, version=2,
                            occurred_at=NOW, command_id=cid, correlation_id=None,
                            changed_fields=("status",), resource=resource)
    d = Delivery(event=event, ce={"type": "phoenix.resources.v1.ResourceUpdated"},
                 traceparent=None, topic="t", partition=0, offset=5, key=str(rid))
    doc = json.loads(json.dumps(delivery_json(d)))
    assert (doc["event_type"], doc["version"], doc["resource"]["config"]) == (
        "UPDATED", 2, {"a": "b"})
    assert f"{rid}  v2" in delivery_line(d)
    assert "changed=status" in delivery_line(d)


@pytest.mark.parametrize("args", [
    ["send"],
    ["send", "create", "--name", "x", "-c", "novalue"],
    ["send", "update", "not-a-uuid", "--name", "x"],
    ["send", "update", str(uuid.uuid4()), "--clear-config", "-c", "a=b"],
    ["send", "--file", "x.jsonl", "delete", str(uuid.uuid4())],
    ["send", "create"],
    ["get", "not-a-uuid"],
    ["watch", "--max", "0"],
])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output


def test_every_client_command_has_an_example_in_its_help() -> None:
    for args in (["send"], ["send", "create"], ["send", "update"], ["send", "delete"],
                 ["watch"], ["get"], ["list"]):
        result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "phoenix-resources " in result.output, args


def test_send_sub_commands_share_the_send_options() -> None:
    for sub in ("create", "update", "delete"):
        result = CliRunner().invoke(app, ["send", sub, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        for flag in ("--command-id", "--correlation-id", "--issued-by", "--expected-version",
                     "--wait", "--timeout", "--api-url", "--json", "--format"):
            assert flag in result.output, (sub, flag)
