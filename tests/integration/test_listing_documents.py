"""Listings with the documents they keep, against real PostgreSQL: a page read again comes from
the kept documents only for the versions the database names now, with exactly the rows, cut
and continuation of a fresh read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from psycopg_pool import AsyncConnectionPool

from phoenix_resources.adapters.postgres.queries import Listed, PageKey, ReadQueries, page_within
from phoenix_resources.entrypoints.http.documents import Documents
from tests.support.http_api import Conn, insert_resource

pytestmark = pytest.mark.integration

T = TypeVar("T")


def _with_queries(read_url: str, body: Callable[[ReadQueries, ReadQueries], Awaitable[T]]) -> T:
    """``body(kept, fresh)``: one reader that keeps documents, one that never does."""

    async def run() -> T:
        async with AsyncConnectionPool(read_url, min_size=1, max_size=2, open=False) as pool:
            return await body(ReadQueries(pool, documents=Documents(1 << 20)),
                              ReadQueries(pool))

    return asyncio.run(run())


async def _page(queries: ReadQueries, **query: Any) -> Listed:
    args: dict[str, Any] = {"status": None, "name_prefix": None, "after": None,
                            "max_bytes": 1 << 20} | query
    return await queries.resources(**args)


def test_a_page_read_again_reuses_kept_documents_only_for_the_version_read_now(
        writer: Conn, read_url: str) -> None:
    ids = sorted(insert_resource(writer, name=f"r-{i}") for i in range(5))

    async def body(kept: ReadQueries, fresh: ReadQueries) -> None:
        first = await _page(kept, limit=10)
        assert first == await _page(fresh, limit=10)
        assert kept.documents is not None
        # Mark the kept document of ids[1]: a read that reuses it shows the mark.
        marked = first.rows[1].json.replace('"r-1"', '"kept"')
        kept.documents.keep(ids[1], 1, marked)
        assert (await _page(kept, limit=10)).rows[1].json == marked
        writer.execute("UPDATE resources SET name = 'renamed', version = 2 WHERE id = %s",
                       (ids[1],))
        writer.execute("UPDATE resources SET deleted_at = now(), version = 2 WHERE id = %s",
                       (ids[3],))
        again = await _page(kept, limit=10)
        assert again == await _page(fresh, limit=10)
        assert [r.key for r in again.rows] == [ids[0], ids[1], ids[2], ids[4]]
        assert '"renamed"' in again.rows[1].json

    _with_queries(read_url, body)


@pytest.mark.parametrize("budget", [1, 400, 700, 1 << 20])
@pytest.mark.parametrize("prefix", [None, "r-"])
def test_pages_from_kept_documents_cut_and_continue_as_fresh_reads(
        writer: Conn, read_url: str, budget: int, prefix: str | None) -> None:
    for i in range(9):
        insert_resource(writer, name=f"r-{i % 4}", config={"k": "v" * (i * 40)})

    async def walk(queries: ReadQueries) -> list[tuple[list[str], bool]]:
        pages, after = [], None
        while True:
            listed = await _page(queries, name_prefix=prefix, after=after, limit=4,
                                 max_bytes=budget)
            page, more = page_within(listed, 3, budget)
            pages.append(([r.json for r in page], more))
            if not more:
                return pages
            key: PageKey = page[-1].key
            after = key

    async def body(kept: ReadQueries, fresh: ReadQueries) -> None:
        expected = await walk(fresh)
        assert await walk(kept) == expected  # reads everything, keeps the documents
        assert await walk(kept) == expected  # from kept documents
        assert sum(len(docs) for docs, _ in expected) == 9

    _with_queries(read_url, body)
