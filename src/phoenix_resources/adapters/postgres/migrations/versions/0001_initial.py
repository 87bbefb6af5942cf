"""Initial schema: resources, processed_commands (the dedupe inbox), outbox, read-only role.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE resources (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name             VARCHAR(255) NOT NULL,
    config           JSONB NOT NULL DEFAULT '{}',
    status           VARCHAR(50) NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'active', 'inactive')),
    created_at       TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at       TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    version          BIGINT NOT NULL DEFAULT 1 CHECK (version >= 1),
    deleted_at       TIMESTAMP WITH TIME ZONE,
    last_command_id  UUID NOT NULL
);
CREATE INDEX idx_resources_status ON resources (status);
CREATE INDEX idx_resources_created_at ON resources (created_at);
-- Keyset pagination of live resources, optionally by name prefix.
CREATE INDEX idx_resources_live_id ON resources (id) WHERE deleted_at IS NULL;
CREATE INDEX idx_resources_live_name ON resources (name text_pattern_ops, id)
    WHERE deleted_at IS NULL;

-- The inbox: one row per command ever accepted. The primary key IS the dedupe.
CREATE TABLE processed_commands (
    command_id           UUID PRIMARY KEY,
    resource_id          UUID NOT NULL,
    command_type         VARCHAR(10) NOT NULL
                         CHECK (command_type IN ('CREATE', 'UPDATE', 'DELETE')),
    outcome              VARCHAR(10) NOT NULL CHECK (outcome IN ('pending', 'applied', 'rejected')),
    error_code           VARCHAR(16),
    error_message        TEXT,
    resulting_version    BIGINT,
    duplicate_deliveries INTEGER NOT NULL DEFAULT 0,
    correlation_id       VARCHAR(255),
    source_partition     INTEGER,
    source_offset        BIGINT,
    processed_at         TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_processed_commands_processed_at ON processed_commands (processed_at);

-- Transactional outbox, close to Debezium's outbox shape (id, aggregatetype, aggregateid,
-- type, payload) so change-data-capture could replace the relay. seq gives commit-safe order.
CREATE TABLE outbox (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             UUID NOT NULL,
    aggregatetype  VARCHAR(255) NOT NULL,
    aggregateid    VARCHAR(255) NOT NULL,
    type           VARCHAR(255) NOT NULL,
    topic          VARCHAR(249) NOT NULL,
    payload        BYTEA NOT NULL,
    occurred_at    TIMESTAMP WITH TIME ZONE NOT NULL,
    traceparent    VARCHAR(55)
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'phoenix_reader') THEN
        CREATE ROLE phoenix_reader NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO phoenix_reader;
GRANT SELECT ON resources, processed_commands TO phoenix_reader;
"""

DOWNGRADE = """
REVOKE SELECT ON resources, processed_commands FROM phoenix_reader;
REVOKE USAGE ON SCHEMA public FROM phoenix_reader;
DROP TABLE outbox;
DROP TABLE processed_commands;
DROP TABLE resources;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
