"""Schema migrations (Alembic), run on demand: never at import, never implicitly by the API.

:func:`upgrade_sql` / :func:`downgrade_sql` render the same migrations as SQL (Alembic's
offline mode) for review or for a DBA to apply: they never connect to the database.
"""

from __future__ import annotations

import io
from pathlib import Path

import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from phoenix_resources.errors import DatabaseUnavailable

MIGRATIONS = Path(__file__).with_name("migrations")
OFFLINE_URL = "postgresql+psycopg://offline/phoenix"
"""The dialect offline rendering uses when no URL is given: PostgreSQL, never contacted."""


def _sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def alembic_config(url: str, output: io.StringIO | None = None) -> Config:
    cfg = Config(output_buffer=output) if output is not None else Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", _sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def upgrade_sql(revision: str = "head", from_revision: str | None = None) -> str:
    """The SQL that upgrades a database at ``from_revision`` (None: an empty one) to
    ``revision``, including the ``alembic_version`` bookkeeping. No connection is made."""
    target = f"{from_revision}:{revision}" if from_revision else revision
    return _offline(lambda cfg: command.upgrade(cfg, target, sql=True))


def downgrade_sql(from_revision: str, revision: str = "base") -> str:
    """The SQL that reverts a database at ``from_revision`` to ``revision``. No connection."""
    return _offline(lambda cfg: command.downgrade(cfg, f"{from_revision}:{revision}", sql=True))


def _offline(run: object) -> str:
    buffer = io.StringIO()
    assert callable(run)
    run(alembic_config(OFFLINE_URL, output=buffer))
    return buffer.getvalue()


def current_revision(url: str) -> str | None:
    engine = create_engine(_sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            rev: str | None = MigrationContext.configure(conn).get_current_revision()
            return rev
    except sqlalchemy.exc.OperationalError as e:
        raise DatabaseUnavailable(str(e.orig or e)) from e
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()
