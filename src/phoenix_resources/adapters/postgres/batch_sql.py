"""The statements of the worker's transaction (``batch_unit.py``) and the element types of
their array parameters, in parameter order. Shared with the compiled hot path, which builds
the same parameters (``native/``)."""

from __future__ import annotations

from phoenix_resources.adapters.postgres.arrays import (
    ByteaArray,
    Int4Array,
    Int8Array,
    JsonbArray,
    TextArray,
    TimestamptzArray,
    UuidArray,
)

AGGREGATE = "resource"

KNOWN = """
SELECT command_id, resource_id, command_type FROM processed_commands
WHERE command_id = ANY(%b::uuid[])
"""
# Whose each recorded id is, to tell a repeat of its command from a reuse of the id (CMD-012):
# the same primary key probes, reading the heap only for the ids found.

INSERT_OUTCOMES = """
INSERT INTO processed_commands
    (command_id, resource_id, command_type, outcome, error_code, error_message,
     resulting_version, duplicate_deliveries, correlation_id, source_partition, source_offset,
     issued_at, processed_at)
SELECT *, %b FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::text[], %b::text[],
                         %b::text[], %b::int8[], %b::int4[], %b::text[], %b::int4[],
                         %b::int8[], %b::timestamptz[])
ON CONFLICT (command_id) DO NOTHING
"""
# DO NOTHING + the row count: a claimer that got there first is seen, never overwritten.

BUMP_DUPLICATES = """
UPDATE processed_commands AS p SET duplicate_deliveries = p.duplicate_deliveries + u.n
FROM unnest(%b::uuid[], %b::int4[]) AS u(command_id, n) WHERE p.command_id = u.command_id
"""

LOAD = """
SELECT id, name, config, status, version, created_at, updated_at, last_command_id, deleted_at
FROM resources WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE
"""

PARKED_AMONG = """
SELECT resource_id FROM parked_resources WHERE resource_id = ANY(%b::uuid[])
ORDER BY resource_id FOR KEY SHARE
"""
# KEY SHARE: conflicts with a replay's FOR UPDATE of the same row, so parking behind a
# resource's queue and emptying that queue never interleave.

PARK = """
INSERT INTO parked_commands (command_id, resource_id, command_type, payload, traceparent,
                             source_partition, source_offset, reason, error)
SELECT * FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::bytea[], %b::text[], %b::int4[],
                     %b::int8[], %b::text[], %b::text[])
"""

PARK_RESOURCES = """
INSERT INTO parked_resources (resource_id) SELECT DISTINCT unnest(%b::uuid[])
ON CONFLICT (resource_id) DO NOTHING
"""

INSERT_NEW = """
INSERT INTO resources
    (id, name, config, status, version, created_at, updated_at, last_command_id, deleted_at)
SELECT * FROM unnest(%b::uuid[], %b::text[], %b::jsonb[], %b::text[], %b::int8[],
                     %b::timestamptz[], %b::timestamptz[], %b::uuid[], %b::timestamptz[])
ON CONFLICT (id) DO NOTHING
"""

UPDATE_EXISTING = """
UPDATE resources AS r SET name = u.name, config = u.config, status = u.status,
    version = u.version, updated_at = u.updated_at, last_command_id = u.last_command_id,
    deleted_at = u.deleted_at
FROM unnest(%b::uuid[], %b::text[], %b::jsonb[], %b::text[], %b::int8[], %b::timestamptz[],
            %b::uuid[], %b::timestamptz[], %b::int8[])
    AS u(id, name, config, status, version, updated_at, last_command_id, deleted_at, prior)
WHERE r.id = u.id AND r.version = u.prior
"""

RECORD_OUTCOMES = """
UPDATE processed_commands AS p SET outcome = u.outcome, error_code = u.code,
    error_message = u.message, resulting_version = u.version, processed_at = %b
FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::int8[])
    AS u(command_id, outcome, code, message, version)
WHERE p.command_id = u.command_id
"""

INSERT_OUTBOX = """
INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload, occurred_at,
                    traceparent)
SELECT id, %b, aggregateid, type, topic, payload, occurred_at, traceparent
FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::bytea[], %b::timestamptz[],
            %b::text[]) AS u(id, aggregateid, type, topic, payload, occurred_at, traceparent)
"""


CHECK_WRITABLE = """
SELECT pg_is_in_recovery(), current_setting('transaction_read_only'),
       bool_and(has_table_privilege(t, p)) FROM (VALUES ('resources', 'SELECT,INSERT,UPDATE'),
    ('processed_commands', 'SELECT,INSERT,UPDATE'), ('outbox', 'INSERT'),
    ('parked_commands', 'SELECT,INSERT'), ('parked_resources', 'SELECT,INSERT,UPDATE')) AS v(t, p)
"""

LOCK_QUEUE = """
SELECT 1 FROM parked_resources WHERE resource_id = %s FOR UPDATE
"""

QUEUE = """
SELECT seq, payload, traceparent, source_partition, source_offset, reason, error, attempts
FROM parked_commands WHERE resource_id = %s ORDER BY seq
"""

UNPARK = """
WITH gone AS (DELETE FROM parked_commands WHERE command_id = ANY(%s::uuid[]))
DELETE FROM parked_resources r WHERE r.resource_id = %s AND NOT EXISTS (
    SELECT 1 FROM parked_commands c WHERE c.resource_id = r.resource_id
      AND c.command_id <> ALL(%s::uuid[]))
"""
# One statement: the CTE's delete is not visible to the outer NOT EXISTS, hence the <> ALL.

NOTE_ATTEMPT = """
UPDATE parked_commands SET attempts = attempts + 1, last_error = %s, last_attempt_at = now()
WHERE command_id = %s
"""


# The element type of each statement's arrays, in parameter order (adapters/postgres/arrays);
# an OutcomeRow and an OutboxEntry hold their columns in this order.
OUTCOME_COLUMNS = (UuidArray, UuidArray, TextArray, TextArray, TextArray, TextArray,
                   Int8Array, Int4Array, TextArray, Int4Array, Int8Array, TimestamptzArray)
RECORD_COLUMNS = (UuidArray, TextArray, TextArray, TextArray, Int8Array)
PARK_COLUMNS = (UuidArray, UuidArray, TextArray, ByteaArray, TextArray, Int4Array, Int8Array,
                TextArray, TextArray)
NEW_COLUMNS = (UuidArray, TextArray, JsonbArray, TextArray, Int8Array, TimestamptzArray,
               TimestamptzArray, UuidArray, TimestamptzArray)
UPDATE_COLUMNS = (UuidArray, TextArray, JsonbArray, TextArray, Int8Array, TimestamptzArray,
                  UuidArray, TimestamptzArray, Int8Array)
OUTBOX_COLUMNS = (UuidArray, TextArray, TextArray, TextArray, ByteaArray, TimestamptzArray,
                  TextArray)
