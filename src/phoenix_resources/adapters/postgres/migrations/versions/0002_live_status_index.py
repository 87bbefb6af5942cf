"""Index live resources by (status, id) for the API's status-filtered keyset pagination.

Built ``CONCURRENTLY`` (docs/decisions/0010-online-index-builds.md): on a deployment that
upgrades from 0001 with a large ``resources`` table, the worker keeps writing while it builds.
Deployments already at 0002 or later are unaffected (the end state is the same index). A
build that was interrupted leaves an INVALID index behind; the online upgrade drops and
rebuilds it, and ``IF NOT EXISTS`` lets an operator build it by hand beforehand.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from phoenix_resources.adapters.postgres.online_index import (
    create_index_concurrently,
    drop_index_concurrently,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEX = "idx_resources_live_status_id"


def upgrade() -> None:
    create_index_concurrently(INDEX, "ON resources (status, id) WHERE deleted_at IS NULL")


def downgrade() -> None:
    drop_index_concurrently(INDEX)
