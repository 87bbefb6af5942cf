"""processed_commands older than the retention window are pruned; newer ones stay."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from phoenix_resources.adapters.postgres.outbox import OutboxSession
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.relay import build_relay
from phoenix_resources.observability import Metrics
from tests.support.pipeline import scalar

pytestmark = pytest.mark.integration

INSERT = """
INSERT INTO processed_commands (command_id, resource_id, command_type, outcome, processed_at)
SELECT gen_random_uuid(), gen_random_uuid(), 'CREATE', 'applied', now() - %s::interval
FROM generate_series(1, %s)
"""


def test_prune_deletes_only_rows_older_than_the_window_in_chunks(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT, ("10 days", 2500))
        conn.execute(INSERT, ("1 hour", 30))
    session = OutboxSession(database_url, lock_key=1)
    try:
        pruned = session.prune_processed(older_than_s=7 * 24 * 3600, chunk=1000)
    finally:
        session.close()
    assert pruned == 2500
    assert scalar(database_url, "SELECT count(*) FROM processed_commands") == 30


def test_the_leading_relay_prunes_in_the_background(settings: Settings,
                                                    database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT, ("3 hours", 10))
        conn.execute(INSERT, ("1 minute", 5))
    short = settings.model_copy(update={"processed_retention_hours": 1.0,
                                        "relay_lock_key": uuid.uuid4().int % 2**31})
    metrics = Metrics()
    relay = build_relay(short, metrics)
    relay.session.try_lead()
    relay.leading = True
    relay._housekeep()
    relay.session.close()
    assert metrics.outbox_pruned._value.get() == 10
    assert scalar(database_url, "SELECT count(*) FROM processed_commands") == 5
