"""The naive baseline: the worker most teams write first, on the same schema and input.

Per message: ``poll()`` one record; one PostgreSQL transaction (dedupe insert into
``processed_commands``, ``SELECT … FOR UPDATE`` of the resource, the same ``decide`` rules,
resource upsert, outbox insert); ``COMMIT``; one synchronous produce of the event
(``produce`` + ``flush()``); a synchronous offset commit (``sync_commit=False``: an
asynchronous one, the cheaper variant also reported). It is correct (effectively once,
atomic outbox) — just one round trip after another. Measured on this machine, the parts cost
about: PostgreSQL transaction + fsync'd commit ~1.3 ms, produce + flush ~0.3 ms, synchronous
offset commit ~7 ms (Kafka 4.x's group coordinator batches appends with a 5 ms linger).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer

from phoenix_resources.domain.decide import Applied, decide
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.errors import DecodeError
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import Framing

SELECT = ("SELECT id, name, config, status, version, created_at, updated_at, last_command_id,"
          " deleted_at FROM resources WHERE id = %s FOR UPDATE")
UPSERT = """
INSERT INTO resources (id, name, config, status, version, created_at, updated_at,
                       last_command_id, deleted_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, config = EXCLUDED.config,
  status = EXCLUDED.status, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
  last_command_id = EXCLUDED.last_command_id, deleted_at = EXCLUDED.deleted_at
"""
INBOX = """
INSERT INTO processed_commands (command_id, resource_id, command_type, outcome, error_code,
                                error_message, resulting_version, source_partition,
                                source_offset)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (command_id) DO NOTHING
"""
OUTBOX = """
INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload, occurred_at)
VALUES (%s, 'resource', %s, %s, %s, %s, %s)
"""


@dataclass
class NaiveResult:
    processed: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.processed / self.seconds if self.seconds else 0.0


def _resource(row: tuple[Any, ...]) -> Resource:
    return Resource(id=row[0], name=row[1], config=row[2], status=Status(row[3]),
                    version=row[4], created_at=row[5], updated_at=row[6],
                    last_command_id=row[7], deleted_at=row[8])


def run(bootstrap: str, *, db_url: str, topic: str, events_topic: str, dlq_topic: str,  # noqa: PLR0915
        seconds: float, limit: int, sync_commit: bool = True) -> NaiveResult:
    """Process messages one by one for ``seconds`` (or until ``limit``); return the rate."""
    codec = CommandCodec(Framing())
    events = EventCodec(Framing())
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"naive-{events_topic}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "log_level": "0"})
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "log_level": "0"})
    consumer.subscribe([topic])
    processed = 0
    started: float | None = None
    ended: float | None = None
    try:
        with psycopg.connect(db_url) as conn:
            while processed < limit:
                msg = consumer.poll(1.0)
                if msg is None:
                    if started is not None and time.monotonic() - started > seconds:
                        break
                    continue
                if msg.error():
                    continue
                if started is None:
                    started = time.monotonic()
                try:
                    cmd = codec.decode(msg.value())
                except DecodeError as e:
                    producer.produce(dlq_topic, msg.value(), msg.key(),
                                     headers=[("reason", e.reason.encode())])
                    producer.flush()
                else:
                    payload, ptopic, etype = None, events_topic, ""
                    with conn.transaction():
                        cur = conn.execute(INBOX, (cmd.command_id, cmd.resource_id,
                                                   cmd.type.value, "pending", None, None, None,
                                                   msg.partition(), msg.offset()))
                        if cur.rowcount == 1:  # not a duplicate
                            row = conn.execute(SELECT, (cmd.resource_id,)).fetchone()
                            state = _resource(row) if row else None
                            d = decide(state, cmd, datetime.now(UTC))
                            if isinstance(d, Applied):
                                s = d.state
                                if d.event is not None:
                                    conn.execute(UPSERT, (
                                        s.id, s.name, json.dumps(dict(s.config)),
                                        s.status.value, s.version, s.created_at, s.updated_at,
                                        s.last_command_id, s.deleted_at))
                                    payload = events.encode_event(d.event)
                                    etype = d.event.type_name
                                    conn.execute(OUTBOX, (d.event.event_id, str(s.id), etype,
                                                          events_topic, payload,
                                                          d.event.occurred_at))
                                conn.execute(
                                    "UPDATE processed_commands SET outcome = 'applied', "
                                    "resulting_version = %s WHERE command_id = %s",
                                    (s.version, cmd.command_id))
                            else:
                                conn.execute(
                                    "UPDATE processed_commands SET outcome = 'rejected', "
                                    "error_code = %s, error_message = %s "
                                    "WHERE command_id = %s",
                                    (d.code.value, d.message, cmd.command_id))
                        else:
                            conn.execute("UPDATE processed_commands SET duplicate_deliveries ="
                                         " duplicate_deliveries + 1 WHERE command_id = %s",
                                         (cmd.command_id,))
                    if payload is not None:
                        producer.produce(ptopic, payload, str(cmd.resource_id).encode(),
                                         headers=[("ce_type", etype.encode())])
                        producer.flush()
                consumer.commit(message=msg, asynchronous=not sync_commit)
                processed += 1
                if time.monotonic() - started > seconds:
                    break
        ended = time.monotonic()  # before close(): leaving the group is not part of the rate
    finally:
        consumer.close()
        producer.flush(10)
    elapsed = (ended or time.monotonic()) - started if started is not None else 0.0
    return NaiveResult(processed, elapsed)
