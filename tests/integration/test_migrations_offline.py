"""`migrate --sql`: Alembic's offline SQL, applied with psql, builds the schema the online
upgrade builds, and rendering it never touches a database (docs/decisions/0007)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import psycopg
import pytest

from phoenix_resources.adapters.postgres import schema
from phoenix_resources.devstack.postgres import pg_bin_dir
from tests.support import databases
from tests.support.net import free_port
from tests.support.processes import CLI

pytestmark = pytest.mark.integration

EXEMPT_PLAIN_INDEXES = {"idx_outbox_parked"}
"""0003's index on the small outbox table (decision 0010 says why)."""

CATALOG = {
    "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
               "FROM information_schema.columns WHERE table_schema = 'public' "
               "ORDER BY 1, 2",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes "
               "WHERE schemaname = 'public' ORDER BY 1, 2",
    "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                   "FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
                   "ORDER BY 1, 2",
    "grants": "SELECT table_name, grantee, privilege_type FROM "
              "information_schema.role_table_grants WHERE table_schema = 'public' "
              "AND grantee = 'phoenix_reader' ORDER BY 1, 3",
    "invalid indexes": "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid",
}


def _catalog(url: str) -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(query).fetchall() for name, query in CATALOG.items()}


def _psql(url: str, sql: str, tmp_path: Path) -> None:
    script = tmp_path / "migration.sql"
    script.write_text(sql, encoding="utf-8")
    result = subprocess.run([str(pg_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                             "-d", url, "-f", str(script)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def _cli_sql(*args: str) -> str:
    """The CLI's --sql output with a database URL nothing listens on: proof it connects
    nowhere."""
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/nowhere"
    result = subprocess.run([*CLI, "migrate", *args, "--sql"], capture_output=True, text=True,
                            check=False, env={"PHOENIX_DATABASE_URL": dead, "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_offline_sql_applied_with_psql_equals_the_online_upgrade(
        pg_server: str, tmp_path: Path) -> None:
    online = databases.create_database(pg_server)
    offline = databases.create_database(pg_server)
    try:
        schema.upgrade(databases.with_database(pg_server, online))
        sql = _cli_sql("upgrade")
        assert "CREATE TABLE resources" in sql
        _psql(databases.with_database(pg_server, offline), sql, tmp_path)
        offline_url = databases.with_database(pg_server, offline)
        assert schema.current_revision(offline_url) == schema.head_revision()
        assert _catalog(offline_url) == _catalog(databases.with_database(pg_server, online))
    finally:
        databases.drop_database(pg_server, online)
        databases.drop_database(pg_server, offline)


def test_offline_sql_from_a_revision_upgrades_an_existing_database(
        pg_server: str, tmp_path: Path) -> None:
    name = databases.create_database(pg_server)
    url = databases.with_database(pg_server, name)
    try:
        schema.upgrade(url, "0001")
        with psycopg.connect(url) as conn:  # the builds must not need empty tables
            conn.execute("INSERT INTO resources (name, last_command_id) "
                         "SELECT 'r' || g, gen_random_uuid() FROM generate_series(1, 500) g")
            conn.execute("INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, "
                         "payload, occurred_at) SELECT gen_random_uuid(), 'resource', "
                         "'r' || g % 50, 'T', 't', '\\x00', now() "
                         "FROM generate_series(1, 500) g")
        sql = _cli_sql("upgrade", "--from", "0001")
        assert "CREATE TABLE resources" not in sql
        _psql(url, sql, tmp_path)
        assert schema.current_revision(url) == schema.head_revision()
        assert _catalog(url)["invalid indexes"] == []
        down = _cli_sql("downgrade", "--from", schema.head_revision() or "", "--revision",
                        "0001")
        _psql(url, down, tmp_path)
        assert schema.current_revision(url) == "0001"
    finally:
        databases.drop_database(pg_server, name)


def test_every_index_on_an_existing_table_is_built_concurrently() -> None:
    created: set[str] = set()
    offenders = []
    for revision in re.split(r"-- Running upgrade \S+ -> ", schema.upgrade_sql())[1:]:
        name = revision.split()[0]
        created_here = set(re.findall(r"CREATE TABLE (\w+)", revision))
        for index, table in re.findall(
                r"CREATE (?:UNIQUE )?INDEX (?!CONCURRENTLY)(\w+) ON (\w+)", revision):
            if table not in created_here and index not in EXEMPT_PLAIN_INDEXES:
                offenders.append(f"{name}: {index} ON {table}")
        created |= created_here
    assert offenders == [], "build these CONCURRENTLY (docs/decisions/0007)"
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_resources_live_status_id" in \
        schema.upgrade_sql("0002", "0001")
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_outbox_unparked_seq ON outbox (seq) " \
        "WHERE parked_reason IS NULL" in schema.upgrade_sql("0004", "0003")
    assert "DROP INDEX CONCURRENTLY IF EXISTS idx_outbox_unparked_seq" in \
        schema.downgrade_sql("0004", "0003")


def test_migrate_sql_refuses_what_it_cannot_render() -> None:
    result = subprocess.run([*CLI, "migrate", "downgrade", "--sql"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 2
    assert "--from" in result.stderr
