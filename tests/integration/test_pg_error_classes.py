"""Real PostgreSQL errors land in the right class of the error tree (adapters/postgres/errors).

Each case makes the server raise the error for real, so the SQLSTATE is the one PostgreSQL
sends, not one a test invented. Reverting the classification (back to "anything unknown
propagates and is charged to the command") fails every environment case here.
"""

from __future__ import annotations

import psycopg
import pytest

from phoenix_resources.adapters.postgres.errors import translated
from phoenix_resources.errors import (
    ConcurrentModification,
    DatabaseReadOnly,
    DatabaseRefused,
    DatabaseUnavailable,
    RowRefused,
    TransientError,
)

pytestmark = pytest.mark.integration

ENVIRONMENT = [
    ("read-only transaction", ("SET TRANSACTION READ ONLY",
                               "INSERT INTO resources_probe VALUES (1)"), DatabaseReadOnly),
    ("missing privilege", ("SET ROLE probe_nobody", "SELECT * FROM resources_probe"),
     DatabaseRefused),
    ("missing table", "SELECT * FROM no_such_table", DatabaseRefused),
    ("missing column", "SELECT no_such_column FROM resources_probe", DatabaseRefused),
    ("cancelled statement", ("SET statement_timeout = 10", "SELECT pg_sleep(1)"),
     DatabaseRefused),
    ("an SQLSTATE nobody classified",
     "DO $$ BEGIN RAISE EXCEPTION 'odd' USING ERRCODE = 'ZZ999'; END $$", DatabaseRefused),
    ("out of resources",
     "DO $$ BEGIN RAISE EXCEPTION 'disk full' USING ERRCODE = '53100'; END $$",
     DatabaseUnavailable),
    ("internal error",
     "DO $$ BEGIN RAISE EXCEPTION 'corrupt' USING ERRCODE = 'XX001'; END $$",
     DatabaseUnavailable),
    ("a serialization race",
     "DO $$ BEGIN RAISE EXCEPTION 'race' USING ERRCODE = '40001'; END $$",
     ConcurrentModification),
]

DATA = [
    ("a check constraint", "INSERT INTO resources_probe VALUES (-1)", "23514"),
    ("a NUL in text", "SELECT E'a\\\\x00b'::bytea::text::jsonb", "22P02"),
    ("a value out of range", "SELECT 2147483648::int4", "22003"),
    ("a trigger's RAISE EXCEPTION",
     "DO $$ BEGIN RAISE EXCEPTION 'refusing this row'; END $$", "P0001"),
]


@pytest.fixture
def conn(database_url: str) -> psycopg.Connection[tuple[object, ...]]:
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("CREATE TABLE resources_probe (n int CHECK (n >= 0))")
        admin.execute("DO $$ BEGIN CREATE ROLE probe_nobody; "
                      "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        admin.execute("GRANT probe_nobody TO CURRENT_USER")
    with psycopg.connect(database_url) as c:
        yield c


@pytest.mark.parametrize(("case", "sql", "expected"), ENVIRONMENT,
                         ids=[c[0] for c in ENVIRONMENT])
def test_the_environment_is_transient(conn: psycopg.Connection[tuple[object, ...]], case: str,
                                      sql: str | tuple[str, ...],
                                      expected: type[Exception]) -> None:
    *setup, failing = (sql,) if isinstance(sql, str) else sql
    for statement in setup:
        conn.execute(statement)  # type: ignore[arg-type]
    with pytest.raises(expected) as raised, translated():
        conn.execute(failing)  # type: ignore[arg-type]
    assert isinstance(raised.value, TransientError), case
    assert isinstance(raised.value.__cause__, psycopg.Error)


@pytest.mark.parametrize(("case", "sql", "state"), DATA, ids=[c[0] for c in DATA])
def test_data_errors_are_charged_to_rows(conn: psycopg.Connection[tuple[object, ...]],
                                         case: str, sql: str, state: str) -> None:
    with pytest.raises(RowRefused) as raised, translated():
        conn.execute(sql)  # type: ignore[arg-type]
    assert raised.value.sqlstate == state, case
    assert not isinstance(raised.value, TransientError)
    assert f"SQLSTATE {state}" in str(raised.value)


def test_a_cluster_turned_read_only_is_read_only(database_url: str) -> None:
    """What every session sees after ``default_transaction_read_only`` is turned on (the
    way a demoted primary or a standby answers a write)."""
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("SET default_transaction_read_only = on")
        with pytest.raises(DatabaseReadOnly), translated():
            c.execute("CREATE TEMP TABLE t (n int)")


def test_a_connection_that_broke_is_unavailable(database_url: str) -> None:
    c = psycopg.connect(database_url, autocommit=True)
    c.close()
    with pytest.raises(DatabaseUnavailable), translated():
        c.execute("SELECT 1")


def test_errors_that_are_not_the_databases_pass_through() -> None:
    with pytest.raises(KeyError), translated():
        raise KeyError("a bug")
