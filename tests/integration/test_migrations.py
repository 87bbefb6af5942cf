"""Alembic upgrade and downgrade on real PostgreSQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from phoenix_resources.adapters.postgres import schema
from tests.support import databases

pytestmark = pytest.mark.integration


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def _indexes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}


def test_upgrade_then_downgrade_then_upgrade_again(pg_server: str) -> None:
    name = databases.create_database(pg_server)
    url = databases.with_database(pg_server, name)
    try:
        assert schema.current_revision(url) is None
        schema.upgrade(url)
        assert schema.current_revision(url) == schema.head_revision() == "0004"
        assert {"resources", "processed_commands", "outbox", "parked_commands",
                "parked_resources"} <= _tables(url)
        assert {"idx_outbox_parked", "idx_outbox_unparked_seq"} <= _indexes(url)

        schema.downgrade(url, "0003")
        assert schema.current_revision(url) == "0003"
        assert "idx_outbox_unparked_seq" not in _indexes(url)
        assert "idx_outbox_parked" in _indexes(url)
        schema.downgrade(url, "0002")
        assert schema.current_revision(url) == "0002"
        assert not {"parked_commands", "parked_resources"} & _tables(url)
        schema.downgrade(url, "0001")
        assert schema.current_revision(url) == "0001"
        schema.downgrade(url, "base")
        assert schema.current_revision(url) is None
        assert not {"resources", "processed_commands", "outbox"} & _tables(url)

        schema.upgrade(url)
        assert schema.current_revision(url) == "0004"
        assert "idx_outbox_unparked_seq" in _indexes(url)
    finally:
        databases.drop_database(pg_server, name)


def test_an_interrupted_index_build_is_dropped_and_rebuilt_by_the_online_upgrade(
        pg_server: str) -> None:
    name = databases.create_database(pg_server)
    url = databases.with_database(pg_server, name)
    try:
        schema.upgrade(url, "0003")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, "
                         "payload, occurred_at) SELECT gen_random_uuid(), 'resource', 'r', "
                         "'T', 't', '\\x00', now() FROM generate_series(1, 3)")
            # a concurrent build that fails half-way leaves its INVALID index behind
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("CREATE UNIQUE INDEX CONCURRENTLY idx_outbox_unparked_seq "
                             "ON outbox (aggregateid)")
        schema.upgrade(url)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "WHERE i.indexrelid = 'idx_outbox_unparked_seq'::regclass").fetchone()
        assert row == (True, "CREATE INDEX idx_outbox_unparked_seq ON public.outbox USING "
                             "btree (seq) WHERE (parked_reason IS NULL)")
    finally:
        databases.drop_database(pg_server, name)


def test_resources_table_has_the_seed_columns_indexes_and_rules(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        cols = {r[0]: r[1] for r in conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'resources'")}
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'resources'")}
        assert cols["id"] == "uuid"
        assert cols["config"] == "jsonb"
        assert cols["version"] == "bigint"
        assert {"name", "status", "created_at", "updated_at", "deleted_at",
                "last_command_id"} <= set(cols)
        assert {"idx_resources_status", "idx_resources_created_at"} <= indexes
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO resources (name, status, last_command_id) "
                         "VALUES ('x', 'archived', %s)", (uuid.uuid4(),))


def test_processed_commands_primary_key_is_the_dedupe(database_url: str) -> None:
    command_id = uuid.uuid4()
    insert = ("INSERT INTO processed_commands (command_id, resource_id, command_type, outcome) "
              "VALUES (%s, %s, 'CREATE', 'applied')")
    with psycopg.connect(database_url) as conn:
        conn.execute(insert, (command_id, uuid.uuid4()))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, (command_id, uuid.uuid4()))


def test_processes_refuse_an_unmigrated_database_with_a_clear_message(pg_server: str) -> None:
    from phoenix_resources.bootstrap import check_schema
    from phoenix_resources.config import Settings
    from phoenix_resources.errors import ConfigurationError

    name = databases.create_database(pg_server)
    try:
        with pytest.raises(ConfigurationError, match="phoenix-resources migrate"):
            check_schema(Settings(database_url=databases.with_database(pg_server, name)))
    finally:
        databases.drop_database(pg_server, name)


def test_a_migrated_database_passes_the_start_check(database_url: str) -> None:
    from phoenix_resources.bootstrap import check_schema
    from phoenix_resources.config import Settings

    check_schema(Settings(database_url=database_url))
