"""The worker's batch statements probe primary keys once their tables hold some rows
(docs/performance.md, item 10).

At PostgreSQL's default ``random_page_cost`` (4, priced for spinning disks) the claim of a
1,000-id batch scanned the whole dedupe table until it held about 100k rows, and the update
of a batch's resources hashed a scan of ``resources``. The worker's sessions
(``bootstrap.db_pool``) price index probes for SSDs and cached data instead. These tests
assert on the plan's shape, never on timing: each fails with the default setting.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from phoenix_resources import bootstrap
from phoenix_resources.adapters.postgres.arrays import (
    Int8Array,
    JsonbArray,
    TextArray,
    TimestamptzArray,
    UuidArray,
)
from phoenix_resources.adapters.postgres.batch_unit import KNOWN, UPDATE_EXISTING
from phoenix_resources.config import Settings
from tests.support.plans import explain, nodes

pytestmark = pytest.mark.integration

FILL_PROCESSED = """
INSERT INTO processed_commands (command_id, resource_id, command_type, outcome,
                                duplicate_deliveries, issued_at, processed_at)
SELECT gen_random_uuid(), gen_random_uuid(), 'UPDATE', 'applied', 0, now(), now()
FROM generate_series(1, 40000)
"""

FILL_RESOURCES = """
INSERT INTO resources (id, name, config, status, version, created_at, updated_at,
                       last_command_id)
SELECT gen_random_uuid(), 'res-' || g, '{}', 'active', 1, now(), now(), gen_random_uuid()
FROM generate_series(1, 20000) g
"""


@pytest.fixture
def worker_session(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    pool: ConnectionPool = bootstrap.db_pool(settings, min_size=1, max_size=1, name="plans")
    pool.open()
    try:
        with pool.connection() as conn:
            yield conn
            conn.rollback()
    finally:
        pool.close()


def scanned_whole(top: dict[str, Any]) -> set[str]:
    return {n["Relation Name"] for n in nodes(top) if n["Node Type"] == "Seq Scan"}


def indexes(top: dict[str, Any]) -> set[str]:
    return {n["Index Name"] for n in nodes(top) if "Index Name" in n}


def test_the_claim_probes_the_dedupe_key_of_a_40k_row_table(
        worker_session: psycopg.Connection[Any]) -> None:
    """Also when it reads whose each recorded id is (resource and type, CMD-012): probes of
    the key (an index scan, or a bitmap of the key's matches for many ids), visiting the
    table only for the ids it finds."""
    worker_session.execute(FILL_PROCESSED)
    worker_session.execute("ANALYZE processed_commands")
    recorded = [r[0] for r in worker_session.execute(
        "SELECT command_id FROM processed_commands ORDER BY random() LIMIT 100").fetchall()]
    ids = [uuid.uuid4() for _ in range(900)] + recorded
    top = explain(worker_session, KNOWN, [UuidArray(ids)])
    assert "processed_commands" not in scanned_whole(top), top
    assert "processed_commands_pkey" in indexes(top), top
    assert {n["Node Type"] for n in nodes(top)} <= {
        "Index Scan", "Bitmap Index Scan", "Bitmap Heap Scan"}, top
    found = worker_session.execute(KNOWN, [UuidArray(ids)]).fetchall()
    assert {row[0] for row in found} == set(recorded)
    assert {row[2] for row in found} == {"UPDATE"}


def test_the_update_of_a_batch_probes_the_resources_key_of_a_20k_row_table(
        worker_session: psycopg.Connection[Any]) -> None:
    worker_session.execute(FILL_RESOURCES)
    worker_session.execute("ANALYZE resources")
    ids = [r[0] for r in worker_session.execute(
        "SELECT id FROM resources ORDER BY random() LIMIT 250").fetchall()]
    n = len(ids)
    top = explain(worker_session, UPDATE_EXISTING, [
        UuidArray(ids), TextArray(["x"] * n), JsonbArray(["{}"] * n), TextArray(["active"] * n),
        Int8Array([2] * n), TimestamptzArray([None] * n), UuidArray(ids),
        TimestamptzArray([None] * n), Int8Array([1] * n)])
    assert "resources" not in scanned_whole(top), top
    assert "resources_pkey" in indexes(top), top


def test_the_worker_sessions_say_so(worker_session: psycopg.Connection[Any]) -> None:
    shown = {name: worker_session.execute(f"SHOW {name}").fetchone()
             for name in ("random_page_cost", "plan_cache_mode")}
    assert shown == {"random_page_cost": ("1.1",), "plan_cache_mode": ("force_custom_plan",)}
