"""Is PostgreSQL there? One short-lived connection and ``SELECT 1`` (readiness checks)."""

from __future__ import annotations

import time

import psycopg

from phoenix_resources.adapters.postgres.errors import translated


def ping(url: str, timeout: float) -> float:
    """The round trip of connect + ``SELECT 1`` in seconds; :class:`DatabaseUnavailable`
    when the database does not answer within ``timeout`` (rounded up to whole seconds, as
    libpq counts)."""
    started = time.perf_counter()
    with translated(), psycopg.connect(url, connect_timeout=max(1, round(timeout + 0.49)),
                                       autocommit=True) as conn:
        conn.execute("SELECT 1")
    return time.perf_counter() - started
