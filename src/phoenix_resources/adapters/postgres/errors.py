"""Translation of psycopg errors into the service's error tree."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from phoenix_resources.errors import ConcurrentModification, DatabaseUnavailable

_RACES = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure,
          pg_errors.LockNotAvailable)
_GONE = (psycopg.OperationalError, psycopg_pool.PoolTimeout, pg_errors.AdminShutdown,
         pg_errors.CannotConnectNow, pg_errors.QueryCanceled)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Races become ConcurrentModification, outages DatabaseUnavailable; both are retried.
    Anything else (a bug, a constraint we did not expect) propagates unchanged."""
    try:
        yield
    except _RACES as e:
        raise ConcurrentModification(str(e)) from e
    except _GONE as e:
        raise DatabaseUnavailable(str(e).strip() or type(e).__name__) from e
