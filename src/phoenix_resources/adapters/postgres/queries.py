"""Read-side SQL for the HTTP API (psycopg 3, async), on the API's read-only pool.

Guarantees:

* Every statement is a single ``SELECT`` on a connection in autocommit mode, so no request ever
  holds a transaction (or a snapshot) open and the pool never needs a rollback to reset it.
* Sessions are read-only (``default_transaction_read_only``) on top of the read-only role, so
  even a misconfigured URL naming a writer role cannot write through the API.
* Documents are rendered to JSON **by PostgreSQL** (``json_build_object``): the hot path moves
  one text column per row instead of decoding and re-encoding every field in Python.
  Timestamps are RFC 3339 in UTC (``...Z``) whatever the session's time zone.
* Lookups by id issued concurrently are coalesced into one ``id = ANY($1)`` query per event-loop
  turn (:class:`ResourceLoader`), so under load one round trip serves many requests.
* Driver failures that mean "the database is not there" (``psycopg.OperationalError``,
  including pool timeouts and statement timeouts) become :class:`DatabaseUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, LiteralString, NamedTuple, Protocol, TypeVar
from uuid import UUID

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from phoenix_resources.errors import DatabaseUnavailable

T = TypeVar("T")

_TS = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"


def _ts(column: str) -> str:
    return f"to_char({column} AT TIME ZONE 'UTC', {_TS})"


RESOURCE_JSON = (
    "json_build_object('id', id, 'name', name, 'config', config, 'status', status,"
    " 'version', version, 'created_at', " + _ts("created_at") + ","
    " 'updated_at', " + _ts("updated_at") + ", 'last_command_id', last_command_id)::text"
)

RESOURCES_BY_IDS: LiteralString = (
    "SELECT id, " + RESOURCE_JSON + ", version, " + _ts("deleted_at")
    + " FROM resources WHERE id = ANY(%s)"
)

COMMAND_JSON = (
    "json_build_object('command_id', command_id, 'resource_id', resource_id,"
    " 'command_type', command_type, 'outcome', outcome, 'error_code', error_code,"
    " 'error_message', error_message, 'resulting_version', resulting_version,"
    " 'duplicate_deliveries', duplicate_deliveries, 'duplicate', duplicate_deliveries > 0,"
    " 'correlation_id', correlation_id, 'processed_at', " + _ts("processed_at") + ")::text"
)

COMMAND_BY_ID: LiteralString = (
    "SELECT " + COMMAND_JSON + " FROM processed_commands WHERE command_id = %s"
)

LOADER_MAX_BATCH = 256
"""Ids per coalesced lookup: large enough to absorb a burst, small enough to stay one page."""


@dataclass(frozen=True, slots=True)
class ResourceDoc:
    """One stored resource: its JSON document, version (the ETag) and tombstone time."""

    json: str
    version: int
    deleted_at: str | None


class DocumentStore(Protocol):
    """Where listings keep the documents they read, by ``(id, version)``
    (``entrypoints.http.documents.Documents``)."""

    def get(self, resource_id: UUID, version: int) -> str | None: ...

    def keep(self, resource_id: UUID, version: int, document: str) -> None: ...


PageKey = tuple[str, UUID] | UUID
"""Where a page ends: the id, or (name, id) when listing by name prefix."""


class ListedResource(NamedTuple):
    """One row of a page (a tuple: a page builds up to 501 of them per request)."""

    json: str
    key: PageKey
    size: int
    """Bytes of ``json`` in UTF-8 (PostgreSQL's ``octet_length``)."""


@dataclass(frozen=True, slots=True)
class Listed:
    """What :meth:`ReadQueries.resources` read: the first ``rows`` of a keyset page of
    ``total`` rows (fewer when the byte budget cut the page)."""

    rows: list[ListedResource]
    total: int


@asynccontextmanager
async def _connection(pool: AsyncConnectionPool,
                      timeout: float | None = None) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled autocommit connection; connectivity failures become DatabaseUnavailable."""
    try:
        async with pool.connection(timeout=timeout) as conn:
            if not conn.autocommit:
                # Once per physical connection: reads never need a transaction of their own,
                # and the session refuses writes even if the URL names a role that could.
                await conn.set_autocommit(True)
                await conn.execute("SET default_transaction_read_only = on")
            yield conn
    except psycopg.OperationalError as e:
        raise DatabaseUnavailable(f"read database unavailable: {e}") from e


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _page_filter(status: str | None, name_prefix: str | None,
                 after: PageKey | None) -> tuple[str, list[Any], str]:
    """The WHERE clause, its parameters and the ORDER BY of a page of live resources."""
    conditions = ["deleted_at IS NULL"]
    params: list[Any] = []
    if status is not None:
        conditions.append("status = %s")
        params.append(status)
    if name_prefix is not None:
        # LIKE 'p%' and the ~<~ order both use idx_resources_live_name (text_pattern_ops).
        conditions.append("name LIKE %s")
        params.append(_like_prefix(name_prefix))
        if isinstance(after, tuple):
            # (name, id) > (n, i), written so that "name ~>=~ n" bounds the index scan.
            conditions.append("name ~>=~ %s AND (name ~>~ %s OR id > %s)")
            params += [after[0], after[0], after[1]]
        return " AND ".join(conditions), params, "name USING ~<~, id"
    if isinstance(after, UUID):
        conditions.append("id > %s")
        params.append(after)
    return " AND ".join(conditions), params, "id"


class ReadQueries:
    """Every query the HTTP API runs. Holds no state beyond the pool, the loader and the
    listings' documents."""

    def __init__(self, pool: AsyncConnectionPool, *, checkout_timeout: float = 30.0,
                 documents: DocumentStore | None = None) -> None:
        """``checkout_timeout``: how long a query waits for a connection before giving up
        (DatabaseUnavailable); keep it below the request timeout so callers learn why.
        ``documents``: where listings keep the documents they read (:meth:`resources`)."""
        self.pool = pool
        self.checkout_timeout = checkout_timeout
        self.loader = ResourceLoader(pool, checkout_timeout)
        self.documents = documents
        self._pages: SharedReads[Listed] = SharedReads()

    async def resource(self, resource_id: UUID) -> ResourceDoc | None:
        """The resource (live or tombstone), or None when the id was never stored."""
        return await self.loader.load(resource_id)

    async def command(self, command_id: UUID) -> str | None:
        """The recorded outcome of a command as a JSON document, or None if unknown."""
        async with _connection(self.pool, self.checkout_timeout) as conn:
            cur = await conn.execute(COMMAND_BY_ID, (command_id,), prepare=True)
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def resources(self, *, status: str | None, name_prefix: str | None,
                        after: PageKey | None, limit: int,
                        max_bytes: int | None = None) -> Listed:
        """One page of live resources, in ``id`` order, or ``(name, id)`` order with a prefix.

        Identical pages asked for in one event-loop turn are read once, for all of them
        (:class:`SharedReads`); the :class:`Listed` they get is the same object: read-only.

        Keyset pagination: the page starts strictly after ``after``, so rows are never
        repeated or skipped across pages, whatever is inserted or deleted meanwhile.

        At most ``limit`` rows; with ``max_bytes``, only the first rows whose documents fit
        in that many bytes (a running sum in the query; the first row always), so neither
        the transfer nor the memory of one page grows with the limit times the largest
        resource. ``total`` is more than the rows returned exactly when more rows follow
        (the caller then continues after the last row it keeps: :func:`page_within`).

        With a document store (``documents``), a page whose documents are all kept for the
        versions the database names is read as ``(id, version)`` pairs alone and its
        documents taken from the store (same rows, same cut); any other page is read whole,
        and its documents kept.

        The callers check their text first (``http.listing.check_name_prefix``,
        ``decode_cursor``): ``name_prefix`` and the name in ``after`` hold no NUL and no lone
        surrogate, which PostgreSQL (or the driver) refuses with an error that is no
        client's fault to see.
        """
        return await self._pages.read((status, name_prefix, after, limit, max_bytes),
                                      lambda: self._page(status, name_prefix, after, limit,
                                                         max_bytes))

    async def _page(self, status: str | None, name_prefix: str | None, after: PageKey | None,
                    limit: int, max_bytes: int | None) -> Listed:
        where, params, order = _page_filter(status, name_prefix, after)
        by_name = name_prefix is not None
        if self.documents is not None and max_bytes is not None:
            kept = await self._kept_page(where, [*params, limit], order, by_name, max_bytes)
            if kept is not None:
                return kept
        page = (f"SELECT {RESOURCE_JSON} AS doc, name, id, version FROM resources"
                f" WHERE {where} ORDER BY {order} LIMIT %s")
        params.append(limit)
        if max_bytes is None:
            query = f"SELECT doc, name, id, version, octet_length(doc) FROM ({page}) p"
        else:
            # The rows within the budget, with their documents, and the first row past it
            # without (so the caller knows more follow); the second row always.
            query = ("SELECT CASE WHEN upto <= %s OR n = 1 THEN doc END, name, id, version, size"
                     " FROM (SELECT doc, name, id, version, octet_length(doc) AS size,"
                     " sum(octet_length(doc)) OVER w AS upto, row_number() OVER w AS n"
                     f" FROM ({page}) p WINDOW w AS (ORDER BY {order} ROWS UNBOUNDED PRECEDING)"
                     ") s WHERE upto - size <= %s OR n <= 2")
            params = [max_bytes, *params, max_bytes]
        query += f" ORDER BY {order}"
        async with _connection(self.pool, self.checkout_timeout) as conn:
            cur = await conn.execute(query, params, prepare=True)
            rows = await cur.fetchall()
        listed = [ListedResource(r[0], (r[1], r[2]) if by_name else r[2], r[4])
                  for r in rows if r[0] is not None]
        if self.documents is not None:
            for r in rows:
                if r[0] is not None:
                    self.documents.keep(r[2], r[3], r[0])
        return Listed(listed, len(rows))

    async def _kept_page(self, where: str, params: list[Any], order: str, by_name: bool,
                         max_bytes: int) -> Listed | None:
        """The page from kept documents, as :meth:`resources` would read it; None when one
        of the documents it needs is not kept (for the version read now)."""
        assert self.documents is not None
        query = f"SELECT id, version, name FROM resources WHERE {where} ORDER BY {order} LIMIT %s"
        async with _connection(self.pool, self.checkout_timeout) as conn:
            cur = await conn.execute(query, params, prepare=True)
            rows = await cur.fetchall()
        listed: list[ListedResource] = []
        used = 0
        for rid, version, name in rows:
            doc = self.documents.get(rid, version)
            if doc is None:
                return None
            size = len(doc) if doc.isascii() else len(doc.encode())
            if listed and used + size > max_bytes:
                break
            listed.append(ListedResource(doc, (name, rid) if by_name else rid, size))
            used += size
        return Listed(listed, len(rows))

    async def ping(self, timeout: float) -> float:
        """Seconds one ``SELECT 1`` took; raises DatabaseUnavailable past ``timeout``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            async with asyncio.timeout(timeout), _connection(self.pool, timeout) as conn:
                await conn.execute("SELECT 1")
        except TimeoutError as e:
            raise DatabaseUnavailable(f"no answer from the database within {timeout}s") from e
        return loop.time() - start


def page_within(listed: Listed, limit: int, max_bytes: int,
                size: Callable[[ListedResource], int] | None = None,
                ) -> tuple[list[ListedResource], bool]:
    """The rows of one page — at most ``limit``, and no more than ``max_bytes`` by ``size``
    (default: the document's bytes), but never none while rows remain — and whether more
    rows follow (the caller then hands a cursor after the last row kept)."""
    kept: list[ListedResource] = []
    used = 0
    for row in listed.rows[:limit]:
        n = row.size if size is None else size(row)
        if kept and used + n > max_bytes:
            break
        kept.append(row)
        used += n
    return kept, listed.total > len(kept)


class SharedReads(Generic[T]):
    """Identical reads issued in one event-loop turn share one run: the first of a turn
    starts it once the turn's callbacks have run (``call_soon``), so every caller that
    joins asked before the read began, and sees what a read of its own would have seen. A
    caller that gives up (cancelled) leaves the others their read; a failure reaches each."""

    def __init__(self) -> None:
        self._turn: dict[Hashable, asyncio.Task[T]] = {}
        self._running: set[asyncio.Task[T]] = set()

    async def read(self, key: Hashable, run: Callable[[], Awaitable[T]]) -> T:
        task = self._turn.get(key)
        if task is None:
            loop = asyncio.get_running_loop()
            if not self._turn:
                loop.call_soon(self._turn.clear)  # before the task's first step: the turn ends
            task = self._turn[key] = loop.create_task(_awaited(run))
            self._running.add(task)
            task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[T]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, even when every caller gave up


async def _awaited(run: Callable[[], Awaitable[T]]) -> T:
    return await run()


class ResourceLoader:
    """Coalesces concurrent lookups by id into one query per event-loop turn.

    A request enqueues its id and awaits a future; the first request of a turn schedules a
    flush with ``call_soon``, so an idle server adds no delay and a busy one pays one round
    trip per batch instead of per request. A failure of the batch query fails every waiter
    of that batch with the same (translated) error.
    """

    def __init__(self, pool: AsyncConnectionPool, checkout_timeout: float) -> None:
        self._pool = pool
        self._checkout_timeout = checkout_timeout
        self._waiting: dict[UUID, list[asyncio.Future[ResourceDoc | None]]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self, resource_id: UUID) -> ResourceDoc | None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ResourceDoc | None] = loop.create_future()
        self._waiting.setdefault(resource_id, []).append(fut)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        waiting, self._waiting = self._waiting, {}
        ids = list(waiting)
        for start in range(0, len(ids), LOADER_MAX_BATCH):
            chunk = {i: waiting[i] for i in ids[start:start + LOADER_MAX_BATCH]}
            task = asyncio.get_running_loop().create_task(self._run(chunk))
            # Keep a reference: the loop only holds weak references to tasks.
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, waiting: dict[UUID, list[asyncio.Future[ResourceDoc | None]]]) -> None:
        try:
            rows = await self._fetch(list(waiting))
        except Exception as e:
            for fut in _pending(waiting):
                fut.set_exception(e)
            return
        except BaseException:
            for fut in _pending(waiting):
                fut.cancel()
            raise
        found = {r[0]: ResourceDoc(r[1], r[2], r[3]) for r in rows}
        for rid, futures in waiting.items():
            doc = found.get(rid)
            for fut in futures:
                # A waiter whose request timed out has been cancelled already.
                if not fut.done():
                    fut.set_result(doc)

    async def _fetch(self, ids: Sequence[UUID]) -> list[tuple[Any, ...]]:
        async with _connection(self._pool, self._checkout_timeout) as conn:
            cur = await conn.execute(RESOURCES_BY_IDS, (list(ids),), prepare=True)
            return await cur.fetchall()


def _pending(waiting: dict[UUID, list[asyncio.Future[ResourceDoc | None]]],
             ) -> list[asyncio.Future[ResourceDoc | None]]:
    return [f for futures in waiting.values() for f in futures if not f.done()]
