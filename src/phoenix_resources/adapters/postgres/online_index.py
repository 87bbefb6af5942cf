"""Online index builds for migrations (docs/decisions/0010-online-index-builds.md).

Guarantees: the index is built ``CONCURRENTLY`` outside any transaction (``autocommit_block``),
so writers of the table never wait for the build; ``IF NOT EXISTS`` makes a re-run, or an
index an operator built by hand beforehand, harmless; when run online, an ``INVALID`` index
that an interrupted build left under the same name is dropped first and built again. The
offline SQL (``alembic upgrade --sql``) is the two statements without that check.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

_INVALID = sa.text("SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                   "WHERE c.relname = :name AND NOT i.indisvalid")


def create_index_concurrently(name: str, definition: str) -> None:
    """``CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}``, e.g. ``definition``
    = ``"ON outbox (seq) WHERE parked_reason IS NULL"``."""
    with op.get_context().autocommit_block():
        if not context.is_offline_mode() and \
                op.get_bind().execute(_INVALID, {"name": name}).first() is not None:
            op.execute(f"DROP INDEX CONCURRENTLY {name}")
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}")


def drop_index_concurrently(name: str) -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
