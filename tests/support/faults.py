"""Faults injected on the PostgreSQL side, and what fault tests read back.

* :func:`fail_every` — a statement trigger that raises on chosen executions of a statement on
  a table. It counts with a *sequence* (sequences are not transactional: the count survives
  the rollback the trigger causes), so "fail the 2nd and 4th insert" means exactly that.
* :func:`hold_transactions` — a trigger that makes every transaction writing a table wait for
  an advisory lock the test holds: the writer is frozen *inside* its transaction, at a point
  the test controls, for as long as the test likes (then the test kills it, or lets go).
* :func:`committed_offsets` — what the consumer group committed, read from the broker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition

from phoenix_resources.config import Settings

HOLD_KEY = 0x70_68_66_74  # "phft": the advisory lock a held writer waits for


def fail_every(url: str, table: str, *, every: int, times: int,
               sqlstate: str = "P0001") -> None:
    """Make every ``every``-th INSERT statement on ``table`` raise ``sqlstate``, ``times``
    times in all (then never again). ``P0001`` is a plain error (the worker isolates the
    batch); ``40001`` a serialization failure (the worker retries it)."""
    name = f"fault_{table}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {name}_seq")
        conn.execute(f"""
            CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE n int8 := nextval('{name}_seq');
            BEGIN
              IF n % {every} = 0 AND n <= {every * times} THEN
                RAISE EXCEPTION 'injected fault #% on {table}', n / {every}
                  USING ERRCODE = '{sqlstate}';
              END IF;
              RETURN NULL;
            END $$""")
        conn.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        conn.execute(f"CREATE TRIGGER {name} BEFORE INSERT ON {table} "
                     f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()")


def injected_faults(url: str, table: str) -> int:
    """How many statements the :func:`fail_every` trigger of ``table`` has seen."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(f"SELECT last_value, is_called FROM fault_{table}_seq").fetchone()
    assert row is not None
    return int(row[0]) if row[1] else 0


@contextlib.contextmanager
def hold_transactions(url: str, table: str) -> Iterator[psycopg.Connection[Any]]:
    """While the block runs, every transaction that inserts into ``table`` waits (inside the
    transaction, before the insert) for an advisory lock held by the yielded connection."""
    holder = psycopg.connect(url, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
        holder.execute(f"""
            CREATE OR REPLACE FUNCTION hold_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_advisory_xact_lock_shared({HOLD_KEY}); RETURN NULL; END $$""")
        holder.execute(f"CREATE TRIGGER hold_{table} BEFORE INSERT ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION hold_{table}()")
        yield holder
    finally:
        with contextlib.suppress(psycopg.Error):
            holder.execute(f"DROP TRIGGER IF EXISTS hold_{table} ON {table}")
        holder.close()


def held_writers(url: str) -> int:
    """Backends of this database waiting for the :func:`hold_transactions` lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND objid::int8 = %s AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())", (HOLD_KEY & 0xFFFFFFFF,)).fetchone()
    return int(row[0]) if row else 0


def lock_holders(url: str, key: int) -> list[int]:
    """Backend pids holding the advisory lock ``key`` (a bigint key) in this database."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::int8 = %s AND objid::int8 = %s AND objsubid = 1 AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)).fetchall()
    return [r[0] for r in rows]


def committed_offsets(settings: Settings, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (-1001 when nothing was committed)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": settings.consumer_group})
    try:
        tps = consumer.committed([TopicPartition(settings.commands_topic, p)
                                  for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()
