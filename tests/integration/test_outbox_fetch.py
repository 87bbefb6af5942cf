"""The relay's fetch: which rows it returns around parked ones, and the plan PostgreSQL makes
for it whether or not the outbox has statistics (docs/performance.md, item 6).

The plan tests assert on the plan's shape, never on timing: rows read in ``seq`` order
from ``idx_outbox_unparked_seq`` (migration 0004), no sort, and no sequential scan anywhere —
the parked check of each row probes ``idx_outbox_parked``. Without that index, or with the
fetch's former ``NOT EXISTS``, PostgreSQL sorted a scan of the whole outbox (custom plans)
or scanned it once per row (a generic plan made while it was empty)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from phoenix_resources.adapters.postgres.outbox import FETCH, PostgresOutboxReader
from tests.support.plans import explain, nodes

pytestmark = pytest.mark.integration

ROWS = 100_000
AGGREGATES = 10_000
INSERT = """
INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload, occurred_at)
SELECT gen_random_uuid(), 'resource', 'r' || (g %% %(aggregates)s), 'ResourceCreated', 'events',
       convert_to(repeat('x', 240), 'UTF8'), now()
FROM generate_series(1, %(rows)s) g
"""


def insert(conn: psycopg.Connection[Any], aggregates: list[str]) -> list[int]:
    """One row per aggregate id, in this order; returns their seqs (identity values are
    taken in insertion order, so the sorted seqs follow the list)."""
    return sorted(r[0] for r in conn.execute(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload, occurred_at) "
        "SELECT gen_random_uuid(), 'resource', a, 'ResourceUpdated', 'events', '\\x00', now() "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS t(a, n) ORDER BY n RETURNING seq",
        (aggregates,)).fetchall())


def park(conn: psycopg.Connection[Any], seqs: list[int]) -> None:
    conn.execute("UPDATE outbox SET parked_reason = 'refused', parked_at = now() "
                 "WHERE seq = ANY(%s::int8[])", (seqs,))


def test_fetch_returns_rows_in_seq_order_except_parked_ones_and_those_behind_them(
        database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        seqs = insert(conn, ["a", "b", "a", "c", "b", "a", "c", "b"])
        # a: seqs[0] flows; seqs[2] parked; seqs[5] waits behind it.
        # b: seqs[1] and seqs[4] flow (b's parked row comes after them); seqs[7] parked.
        # c: nothing parked, both flow.
        park(conn, [seqs[2], seqs[7]])
    session = PostgresOutboxReader(database_url, lock_key=1)
    try:
        fetched = [r.seq for r in session.fetch(100)]
        assert fetched == [seqs[0], seqs[1], seqs[3], seqs[4], seqs[6]]
        assert [r.seq for r in session.fetch(2)] == fetched[:2]
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE outbox SET parked_reason = NULL, parked_at = NULL "
                         "WHERE seq = %s", (seqs[2],))  # a retry: a's rows flow in order
        assert [r.seq for r in session.fetch(100)] == \
            [seqs[0], seqs[1], seqs[2], seqs[3], seqs[4], seqs[5], seqs[6]]
    finally:
        session.close()


@pytest.fixture
def outbox(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A session on a migrated database whose outbox has no statistics and gets none during
    the test (autovacuum would analyse it once rows arrive)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE outbox SET (autovacuum_enabled = false)")
        yield conn


def fill(conn: psycopg.Connection[Any]) -> None:
    conn.execute(INSERT, {"rows": ROWS, "aggregates": AGGREGATES})
    # about 100 parked rows, each with rows of its aggregate before and behind it
    conn.execute("UPDATE outbox SET parked_reason = 'refused', parked_at = now() "
                 "WHERE seq % 997 = 7")


def unanalysed(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT c.reltuples < 0 AND NOT EXISTS (SELECT 1 FROM pg_stats s "
                       "WHERE s.schemaname = 'public' AND s.tablename = 'outbox') "
                       "FROM pg_class c WHERE c.oid = 'outbox'::regclass").fetchone()
    return bool(row and row[0])


def prepare(conn: psycopg.Connection[Any]) -> None:
    conn.execute("PREPARE relay_fetch AS " + FETCH.replace("%s", "$1"))


def plan(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    return explain(conn, "EXECUTE relay_fetch(2000)")


def assert_reads_the_unparked_index_in_order(top: dict[str, Any]) -> None:
    assert top["Node Type"] == "Limit"
    scan = top["Plans"][0]
    assert (scan["Node Type"], scan.get("Index Name")) == \
        ("Index Scan", "idx_outbox_unparked_seq"), top
    kinds = {n["Node Type"] for n in nodes(top)}
    assert not kinds & {"Sort", "Incremental Sort", "Seq Scan"}, top
    assert "idx_outbox_parked" in {n.get("Index Name") for n in nodes(top)}, top


def test_custom_plan_without_statistics_reads_the_unparked_index(
        outbox: psycopg.Connection[Any]) -> None:
    outbox.execute("SET plan_cache_mode = force_custom_plan")
    prepare(outbox)
    fill(outbox)
    assert unanalysed(outbox)
    assert_reads_the_unparked_index_in_order(plan(outbox))


def test_generic_plan_made_while_the_outbox_was_empty_reads_the_unparked_index(
        outbox: psycopg.Connection[Any]) -> None:
    prepare(outbox)
    for _ in range(6):  # five custom plans, then PostgreSQL settles on a generic one
        outbox.execute("EXECUTE relay_fetch(2000)").fetchall()
    fill(outbox)
    assert unanalysed(outbox)
    top = plan(outbox)
    row = outbox.execute("SELECT generic_plans > 0 FROM pg_prepared_statements "
                         "WHERE name = 'relay_fetch'").fetchone()
    assert row == (True,), "the plan above must be the generic one"
    assert_reads_the_unparked_index_in_order(top)


def test_plan_after_analyze_reads_the_unparked_index(
        outbox: psycopg.Connection[Any]) -> None:
    prepare(outbox)
    fill(outbox)
    outbox.execute("ANALYZE outbox")
    assert not unanalysed(outbox)
    assert_reads_the_unparked_index_in_order(plan(outbox))
