"""Translation of psycopg errors into the service's error tree.

The rule is the broker side's (``adapters/produce_errors.py``): **an error is charged to the
data only when its SQLSTATE says it describes data**; everything else is the environment's
and is waited out. Charging an outage, a read-only node after a failover, a revoked
privilege, a table a bad migration dropped, or a code nobody classified to the commands of
the batch that met it would turn one incident into mass parking.

=============================  =====================================================
SQLSTATE                       becomes
=============================  =====================================================
40001, 40P01, 55P03            :class:`ConcurrentModification` (a race; redo the batch)
25006                          :class:`DatabaseReadOnly` (a standby or demoted primary)
08, 53, 57P01-57P05, 58, XX,   :class:`DatabaseUnavailable` (gone, restarting, out of
no SQLSTATE (connection lost)  resources, crashed)
22, 23, 54000, P0001           :class:`RowRefused` (a row's content: maybe one command's
                               fault; the isolation decides, with proof)
anything else (42501, 42P01,   :class:`DatabaseRefused` (privileges, schema, cancelled
42703, 57014, 0A000, unknown)  statements, unknown codes)
=============================  =====================================================

``P0001`` is what a PL/pgSQL ``RAISE EXCEPTION`` without a code raises: a trigger checking
rows uses it. A trigger refusing *every* row raises it too; that is why a
:class:`RowRefused` only parks a command after isolation has proved the environment healthy
(``services/isolate.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import psycopg_pool

from phoenix_resources.errors import (
    ConcurrentModification,
    DatabaseReadOnly,
    DatabaseRefused,
    DatabaseUnavailable,
    RowRefused,
)

RACE_STATES = frozenset({"40001", "40P01", "55P03"})
READ_ONLY_STATE = "25006"
UNAVAILABLE_CLASSES = frozenset({"08", "53", "58", "XX"})
UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "57P04", "57P05"})
DATA_CLASSES = frozenset({"22", "23"})
DATA_STATES = frozenset({"54000", "P0001"})


def sqlstate(error: BaseException) -> str | None:
    """The error's SQLSTATE as the server sent it (``None`` for client-side failures)."""
    if not isinstance(error, psycopg.Error):
        return None
    diag = error.diag.sqlstate if error.pgresult is not None else None
    return diag or error.sqlstate


def classify(error: psycopg.Error | psycopg_pool.PoolTimeout) -> type[Exception]:
    """Which class of the service's error tree ``error`` becomes (see the module's table)."""
    if isinstance(error, psycopg_pool.PoolTimeout):
        return DatabaseUnavailable
    state = sqlstate(error)
    if state is None:
        # No answer from a server at all: the connection failed, broke or was closed.
        return DatabaseUnavailable
    if state in RACE_STATES:
        return ConcurrentModification
    if state == READ_ONLY_STATE:
        return DatabaseReadOnly
    if state[:2] in UNAVAILABLE_CLASSES or state in UNAVAILABLE_STATES:
        return DatabaseUnavailable
    if state[:2] in DATA_CLASSES or state in DATA_STATES:
        return RowRefused
    return DatabaseRefused


def describe(error: psycopg.Error | psycopg_pool.PoolTimeout) -> str:
    state = sqlstate(error)
    text = str(error).strip() or type(error).__name__
    return f"{text} (SQLSTATE {state}, {type(error).__name__})" if state else text


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Every psycopg error becomes a class of the service's tree (the module's table): races
    and the environment's failures are :class:`~phoenix_resources.errors.TransientError`
    (retried, waited out), a row refused for its content is :class:`RowRefused`. Errors
    that are not psycopg's (a bug in this package) propagate unchanged."""
    try:
        yield
    except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
        kind, text = classify(e), describe(e)
        if kind is RowRefused:
            raise RowRefused(text, sqlstate(e)) from e
        if kind is ConcurrentModification:
            raise ConcurrentModification(text) from e
        if kind is DatabaseReadOnly:
            raise DatabaseReadOnly(text) from e
        if kind is DatabaseRefused:
            raise DatabaseRefused(text) from e
        raise DatabaseUnavailable(text) from e


def poisons_connection(error: BaseException) -> bool:
    """True when the connection that raised ``error`` must not be reused: its server went
    away, cannot write (a failover moved the primary), or refused for reasons of its own.
    A pool that got it back discards it, so the next connection is made afresh (and a
    multi-host URL with ``target_session_attrs=read-write`` finds the new primary)."""
    return isinstance(error, DatabaseUnavailable)
