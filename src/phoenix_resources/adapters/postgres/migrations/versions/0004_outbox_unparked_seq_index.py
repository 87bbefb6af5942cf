"""Index the outbox's unparked rows by seq, for the relay's fetch.

The relay reads rows with ``parked_reason IS NULL`` in ``seq`` order
(``adapters/postgres/outbox.FETCH``). Before the outbox has statistics — a fresh database
that autovacuum has not analysed yet — PostgreSQL takes that condition for 0.5 % of the
rows, and sorted a scan of the whole outbox for every fetch. With this index, and the fetch
checking each row's aggregate against its parked rows in a subquery, the ordered scan of
this index is the plan with statistics or without (docs/performance.md, item 6). The index
holds every row waiting to be published: the outbox's own size, which the relay keeps small.

Built ``CONCURRENTLY`` (docs/decisions/0010-online-index-builds.md): the worker keeps
inserting into the outbox while it builds. A build that was interrupted leaves an INVALID
index behind; the online upgrade drops and rebuilds it, and ``IF NOT EXISTS`` lets an
operator build it by hand beforehand. The downgrade drops it concurrently; the fetch
returns the same rows without it, only its plan depends on it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from phoenix_resources.adapters.postgres.online_index import (
    create_index_concurrently,
    drop_index_concurrently,
)

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEX = "idx_outbox_unparked_seq"


def upgrade() -> None:
    create_index_concurrently(INDEX, "ON outbox (seq) WHERE parked_reason IS NULL")


def downgrade() -> None:
    drop_index_concurrently(INDEX)
