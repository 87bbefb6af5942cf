"""``outbox``, ``dlq`` and ``watch --on-error`` as an operator runs them (a real process, the
real broker and database): output, and the shared exit codes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from confluent_kafka import Producer

from phoenix_resources.adapters.dlq import build_dead_letter
from phoenix_resources.adapters.kafka import new_producer, publish_all
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.cli.common import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
)
from tests.support.cli import cli
from tests.support.events import make_event, produce_events
from tests.support.kafka import header, read_all

pytestmark = pytest.mark.e2e


def park_rows(settings: Settings, resource: str, n: int) -> list[int]:
    """``n`` outbox rows of ``resource``, the first parked as the relay would have."""
    seqs = []
    with psycopg.connect(settings.database_url) as conn:
        for i in range(n):
            row = conn.execute(
                "INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload, "
                "occurred_at, parked_reason, parked_at) VALUES (%s, 'resource', %s, "
                "'ResourceUpdated', %s, %s, %s, %s, %s) RETURNING seq",
                (uuid.uuid4(), resource, settings.events_topic, b"p", datetime.now(UTC),
                 "MSG_SIZE_TOO_LARGE: Broker: Message size too large" if i == 0 else None,
                 datetime.now(UTC) if i == 0 else None)).fetchone()
            assert row is not None
            seqs.append(row[0])
    return seqs


def test_outbox_list_retry_discard(settings: Settings) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    a_seqs = park_rows(settings, a, 3)
    b_seqs = park_rows(settings, b, 1)

    listed = cli(settings, "outbox", "list", "--json")
    assert listed.returncode == EXIT_OK, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["seq"], r["resource_id"], r["waiting_behind"]) for r in rows] == [
        (a_seqs[0], a, 2), (b_seqs[0], b, 0)]
    assert rows[0]["reason"].startswith("MSG_SIZE_TOO_LARGE")

    assert cli(settings, "outbox", "retry").returncode == EXIT_USAGE
    assert cli(settings, "outbox", "retry", "not-an-id").returncode == EXIT_USAGE
    assert cli(settings, "outbox", "retry", "999999").returncode == EXIT_NOT_FOUND
    retried = cli(settings, "outbox", "retry", a)
    assert retried.returncode == EXIT_OK, retried.stderr
    assert str(a_seqs[0]) in retried.stdout

    refused = cli(settings, "outbox", "discard", str(b_seqs[0]))
    assert refused.returncode == EXIT_USAGE
    assert "--yes" in refused.stderr
    discarded = cli(settings, "outbox", "discard", "--all", "--yes")
    assert discarded.returncode == EXIT_OK, discarded.stderr
    assert str(b_seqs[0]) in discarded.stdout
    assert "discarded" in discarded.stderr  # the log line, one per row
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT count(*) FILTER (WHERE parked_reason IS NOT NULL), "
                           "count(*) FROM outbox").fetchone()
    assert row == (0, 3)  # a's rows are back in line for the relay; b's row is gone


def test_dlq_list_show_replay(settings: Settings) -> None:
    key = str(uuid.uuid4()).encode()
    publish_all(new_producer(settings), [build_dead_letter(
        settings.dlq_topic, source=(settings.commands_topic, 1, 7), key=key,
        value=b'{"broken', headers=[("content-type", b"application/json")],
        reason="malformed-json", detail="unterminated string")])

    listed = cli(settings, "dlq", "list", "--json")
    assert listed.returncode == EXIT_OK, listed.stderr
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (entry["offset"], entry["reason"], entry["key"], entry["size"]) == (
        0, "malformed-json", key.decode(), 8)
    assert entry["source"] == {"topic": settings.commands_topic, "partition": 1, "offset": 7}
    assert cli(settings, "dlq", "list", "--reason", "too-large", "--json").stdout == ""

    shown = cli(settings, "dlq", "show", "0", "--as", "hex")
    assert shown.returncode == EXIT_OK, shown.stderr
    assert b'{"broken'.hex() in shown.stdout
    assert "dlq.reason: " + b"malformed-json".hex() in shown.stdout
    assert cli(settings, "dlq", "show", "0:5").returncode == EXIT_NOT_FOUND

    assert cli(settings, "dlq", "replay").returncode == EXIT_USAGE
    assert cli(settings, "dlq", "replay", "3").returncode == EXIT_NOT_FOUND
    replayed = cli(settings, "dlq", "replay", "--all", "--no-progress")
    assert replayed.returncode == EXIT_OK, replayed.stderr
    assert "replayed 1, skipped 0, refused 0" in replayed.stdout
    [command] = read_all(settings.kafka_bootstrap_servers, settings.commands_topic, 1)
    assert command.key() == key
    assert command.value() == b'{"broken'
    assert header(command, "dlq.replayed") is not None
    assert header(command, "dlq.reason") is None
    assert header(command, "content-type") == "application/json"


def test_watch_on_error_policies(settings: Settings) -> None:
    rid = uuid.uuid4()
    produce_events(settings, [make_event(rid, 1)])
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(settings.events_topic, key=str(rid).encode(), value=b"garbage")
    assert producer.flush(10) == 0
    produce_events(settings, [make_event(rid, 2)])
    common = ("watch", "--from-beginning", "--json", "--max", "2", "--timeout", "60")

    skipped = cli(settings, *common)  # skip is the tail's default
    assert skipped.returncode == EXIT_OK, skipped.stderr
    assert [json.loads(x)["version"] for x in skipped.stdout.splitlines()] == [1, 2]
    assert "undecodable event skipped" in skipped.stderr

    raised = cli(settings, *common, "--on-error", "raise")
    assert raised.returncode == EXIT_ERROR
    assert [json.loads(x)["version"] for x in raised.stdout.splitlines()] == [1]

    assert cli(settings, *common, "--on-error", "dead-letter").returncode == EXIT_USAGE
    lettered = cli(settings, *common, "--on-error", "dead-letter", "--dead-letter-topic",
                   settings.dlq_topic)
    assert lettered.returncode == EXIT_OK, lettered.stderr
    [letter] = read_all(settings.kafka_bootstrap_servers, settings.dlq_topic, 1)
    assert letter.value() == b"garbage"
    assert header(letter, "__connect.errors.topic") == settings.events_topic
