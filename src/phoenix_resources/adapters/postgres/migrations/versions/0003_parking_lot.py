"""The parking lot: commands that failed unexpectedly (and those behind them, per resource),
outbox rows the broker refused for good, and what replay safety needs.

* ``processed_commands.outcome`` may be ``parked``; ``issued_at`` is recorded so pruning never
  forgets a command younger than the retention (a publisher's clock may run ahead).
* ``parked_commands``: one row per parked command, replayed in ``seq`` order per resource.
* ``parked_resources``: one row per resource with parked commands. The worker reads it with
  ``FOR KEY SHARE`` and a replay takes it ``FOR UPDATE``, so a command is never parked behind a
  queue that a concurrent replay is emptying.
* ``outbox.parked_reason``: set when the broker refused a row permanently; that row and every
  later row of the same aggregate wait until retried or discarded.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE processed_commands DROP CONSTRAINT processed_commands_outcome_check;
ALTER TABLE processed_commands ADD CONSTRAINT processed_commands_outcome_check
    CHECK (outcome IN ('pending', 'applied', 'rejected', 'parked'));
ALTER TABLE processed_commands ADD COLUMN issued_at TIMESTAMP WITH TIME ZONE;

CREATE TABLE parked_commands (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_id        UUID NOT NULL UNIQUE,
    resource_id       UUID NOT NULL,
    command_type      VARCHAR(10) NOT NULL
                      CHECK (command_type IN ('CREATE', 'UPDATE', 'DELETE')),
    payload           BYTEA NOT NULL,
    traceparent       VARCHAR(55),
    source_partition  INTEGER,
    source_offset     BIGINT,
    reason            VARCHAR(16) NOT NULL,
    error             TEXT NOT NULL,
    parked_at         TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    attempts          INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    last_attempt_at   TIMESTAMP WITH TIME ZONE
);
CREATE INDEX idx_parked_commands_resource ON parked_commands (resource_id, seq);

CREATE TABLE parked_resources (
    resource_id  UUID PRIMARY KEY,
    parked_at    TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

ALTER TABLE outbox ADD COLUMN parked_reason TEXT;
ALTER TABLE outbox ADD COLUMN parked_at TIMESTAMP WITH TIME ZONE;
CREATE INDEX idx_outbox_parked ON outbox (aggregateid, seq) WHERE parked_reason IS NOT NULL;

GRANT SELECT ON parked_commands TO phoenix_reader;
"""

DOWNGRADE = """
REVOKE SELECT ON parked_commands FROM phoenix_reader;
DROP INDEX idx_outbox_parked;
ALTER TABLE outbox DROP COLUMN parked_at;
ALTER TABLE outbox DROP COLUMN parked_reason;
DROP TABLE parked_resources;
DROP TABLE parked_commands;
ALTER TABLE processed_commands DROP COLUMN issued_at;
DELETE FROM processed_commands WHERE outcome = 'parked';
ALTER TABLE processed_commands DROP CONSTRAINT processed_commands_outcome_check;
ALTER TABLE processed_commands ADD CONSTRAINT processed_commands_outcome_check
    CHECK (outcome IN ('pending', 'applied', 'rejected'));
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
