"""Raw ceilings: how fast Python can merely read the topic, and PostgreSQL merely take the rows.

* consume: a bare confluent-kafka consumer, ``consume(1000)`` in a loop, nothing decoded
  (and, for comparison, a ``poll()`` loop);
* COPY: binary ``COPY … (FORMAT BINARY)`` with ``set_types`` of the rows our worker writes for
  the same workload (one ``processed_commands`` row per command, one ``outbox`` row per
  event, one ``resources`` row per resource), in one transaction.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import psycopg
from confluent_kafka import Consumer, TopicPartition

from bench.workload import Workload
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import Framing


def consume_rate(bootstrap: str, topic: str, n: int, batch: int = 1000) -> float:
    """Messages/s of ``consume(batch)`` (``batch`` = 1 → a ``poll()`` loop).

    The partitions are assigned directly (no group join) and the clock starts at ``assign``,
    so the fetches are inside the measured time (librdkafka prefetches, which would
    otherwise make "first message → last" meaningless).
    """
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ceiling-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "fetch.wait.max.ms": 50, "log_level": "0"})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    got = 0
    deadline = time.monotonic() + 120
    try:
        start = time.monotonic()
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        while got < n and time.monotonic() < deadline:
            if batch == 1:
                m = c.poll(1.0)
                msgs = [] if m is None else [m]
            else:
                msgs = c.consume(batch, timeout=1.0)
            for m in msgs:
                if m.error() is None:
                    got += 1
                    m.value()
        return got / (time.monotonic() - start)
    finally:
        c.close()


def copy_rate(db_url: str, wl: Workload) -> tuple[float, int]:
    """Commands/s when PostgreSQL only has to COPY the rows; also returns the row count."""
    codec = EventCodec(Framing())
    now = datetime.now(UTC)
    inbox = [(cid, rid, t, o, code, ver, 0, None, None, None, now)
             for cid, rid, t, o, code, ver in wl.outcomes]
    outbox = [(e.event_id, "resource", str(e.resource_id), e.type_name,
               "phoenix.resources.events.v1", codec.encode_event(e), e.occurred_at)
              for e in wl.events_list]
    resources = [(r.id, r.name, json.dumps(dict(r.config)), r.status.value, r.created_at,
                  r.updated_at, r.version, r.deleted_at, r.last_command_id)
                 for r in wl.final.values()]
    rows = len(inbox) + len(outbox) + len(resources)
    with psycopg.connect(db_url) as conn:
        t = time.monotonic()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy("COPY processed_commands (command_id, resource_id, command_type, "
                          "outcome, error_code, resulting_version, duplicate_deliveries, "
                          "correlation_id, source_partition, source_offset, processed_at) "
                          "FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["uuid", "uuid", "varchar", "varchar", "varchar", "int8", "int4",
                              "varchar", "int4", "int8", "timestamptz"])
                for r in inbox:
                    cp.write_row(r)
            with cur.copy("COPY outbox (id, aggregatetype, aggregateid, type, topic, payload,"
                          " occurred_at) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["uuid", "varchar", "varchar", "varchar", "varchar", "bytea",
                              "timestamptz"])
                for r in outbox:
                    cp.write_row(r)
            with cur.copy("COPY resources (id, name, config, status, created_at, updated_at, "
                          "version, deleted_at, last_command_id) FROM STDIN (FORMAT BINARY)"
                          ) as cp:
                cp.set_types(["uuid", "varchar", "jsonb", "varchar", "timestamptz",
                              "timestamptz", "int8", "timestamptz", "uuid"])
                for r in resources:
                    cp.write_row(r)
        elapsed = time.monotonic() - t
    return wl.commands / elapsed, rows
