"""A database that refuses some rows, as a CHECK constraint or a trigger added after the
fact would: a resource named ``poison`` cannot be written (SQLSTATE 22023) until allowed
again. The parking lot's tests use it to make PostgreSQL refuse one command's row."""

from __future__ import annotations

import psycopg

POISON = "poison"

REFUSE_POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name = 'poison' THEN
        RAISE EXCEPTION 'refusing a poison row' USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON resources
    FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""

ALLOW_POISON = "DROP TRIGGER refuse_poison ON resources"


def refuse_poison(database_url: str) -> None:
    """From now on the database refuses to write a resource named ``poison``."""
    _execute(database_url, REFUSE_POISON)


def allow_poison(database_url: str) -> None:
    """The fix: the database writes ``poison`` rows again."""
    _execute(database_url, ALLOW_POISON)


def _execute(database_url: str, statement: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]
