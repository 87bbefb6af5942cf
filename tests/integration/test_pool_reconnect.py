"""A pool that lost its connections connects at the first checkout after the database is
back: it never sits out psycopg_pool's doubling backoff (1, 2, 4, 8 … s for up to 5 minutes)
longer than the processes' own retries (``retry_max_s``)."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg import sql

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings
from tests.support import databases

pytestmark = pytest.mark.integration


def test_a_pool_connects_at_the_first_checkout_after_the_database_is_back(
        pg_server: str, settings: Settings) -> None:
    name = f"late_{time.monotonic_ns()}"
    quick = settings.model_copy(update={"retry_max_s": 0.5})
    pool = bootstrap.db_pool(quick, databases.with_database(pg_server, name),
                             min_size=1, max_size=1)
    pool.open(wait=False)
    created = False
    try:
        # The database does not exist yet: the pool's attempts fail (at 0, 1 and 3 s, the
        # next one 7 s after the first with psycopg_pool's own schedule).
        time.sleep(4)
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created = True
        with pool.connection(timeout=2) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
    finally:
        pool.close()
        if created:
            databases.drop_database(pg_server, name)
