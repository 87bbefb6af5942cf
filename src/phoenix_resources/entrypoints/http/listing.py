"""The one answer to ``GET /api/v1/resources`` (a page of live resources), whichever path
serves the request — the same two-path arrangement as the lookup by id
(``docs/decisions/0006-fast-lookup-path.md``):

* :class:`~phoenix_resources.entrypoints.http.fast.FastLookup` answers the plain forms below
  FastAPI: GET, and a query string of at most one of each of ``limit``, ``status``,
  ``name_prefix`` and ``cursor`` whose values are valid as they are (:func:`plain_listing`);
* the FastAPI route ``list_resources`` answers everything else, refusing what is invalid with
  its 400s, and documents the operation.

Both call :func:`listing` and send the :class:`~.edge.Answer` it returns, so they cannot
drift; ``tests/unit/test_http_listing.py`` compares them request by request. A database that
cannot answer, or a cursor this API did not issue, is left to the route (the fast path falls
through), so every error the endpoint gives comes from one place.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qsl
from uuid import UUID

import orjson
from starlette.types import Scope

from phoenix_resources.adapters.postgres.queries import PageKey, ReadQueries
from phoenix_resources.domain.model import NAME_MAX, Status
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.edge import Answer

PATH = "/api/v1/resources"
LIMIT_DEFAULT, LIMIT_MAX = 50, 500
CURSOR_MAX = 2048
_CURSOR_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_STATUSES = frozenset(s.value for s in Status)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A page request: only live resources, in id order, or (name, id) order by prefix."""

    status: str | None = None
    name_prefix: str | None = None
    after: PageKey | None = None
    limit: int = LIMIT_DEFAULT


async def listing(queries: ReadQueries, query: ListQuery) -> Answer:
    """The page as ``{"items": [...], "next_cursor": ...}``: each item the JSON PostgreSQL
    rendered, ``next_cursor`` the key of the page's last row when more rows follow.

    Raises :class:`~phoenix_resources.errors.DatabaseUnavailable` when the database cannot
    answer (the route turns it into 503 ``RES-007``)."""
    rows = await queries.resources(status=query.status, name_prefix=query.name_prefix,
                                   after=query.after, limit=query.limit + 1)
    limit = query.limit
    next_cursor = encode_cursor(rows[limit - 1].key) if len(rows) > limit else None
    body = b"".join((b'{"items":[', ",".join(r.json for r in rows[:limit]).encode(),
                     b'],"next_cursor":', orjson.dumps(next_cursor), b"}"))
    return Answer(200, [(b"content-length", str(len(body)).encode()),
                        (b"content-type", b"application/json")], body)


def plain_listing(scope: Scope) -> ListQuery | None:
    """The request as a :class:`ListQuery` when it is a plain, valid form, else None."""
    if scope["method"] != "GET" or scope["path"] != PATH:
        return None
    raw: bytes = scope["query_string"]
    if not raw:
        return ListQuery()
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    given = dict(pairs)
    if len(given) != len(pairs) or not given.keys() <= {"limit", "status", "name_prefix",
                                                         "cursor"}:
        return None
    return _valid(given)


def _valid(given: dict[str, str]) -> ListQuery | None:
    status = given.get("status")
    if status is not None and status not in _STATUSES:
        return None
    prefix = given.get("name_prefix")
    if prefix is not None and not 1 <= len(prefix) <= NAME_MAX:
        return None
    limit = LIMIT_DEFAULT
    if "limit" in given:
        text = given["limit"]
        if not (text.isascii() and text.isdigit() and len(text) <= 3):
            return None
        limit = int(text)
        if not 1 <= limit <= LIMIT_MAX:
            return None
    after = None
    cursor = given.get("cursor")
    if cursor is not None:
        if not cursor or len(cursor) > CURSOR_MAX or not _CURSOR_CHARS.issuperset(cursor):
            return None
        try:
            after = decode_cursor(cursor, by_name=prefix is not None)
        except p.ApiProblem:
            return None
    return ListQuery(status, prefix, after, limit)


def encode_cursor(key: PageKey) -> str:
    """Opaque to clients: base64url of ``[id]`` or ``[name, id]``, unpadded."""
    raw = [str(key)] if isinstance(key, UUID) else [key[0], str(key[1])]
    return base64.urlsafe_b64encode(orjson.dumps(raw)).rstrip(b"=").decode()


def decode_cursor(cursor: str, *, by_name: bool) -> PageKey:
    """The key a cursor encodes; ApiProblem RES-001 for anything this API did not issue."""
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if by_name and isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str):
            return raw[0], UUID(raw[1])
        if not by_name and isinstance(raw, list) and len(raw) == 1:
            return UUID(raw[0])
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
        pass
    raise p.ApiProblem(p.INVALID_REQUEST, "invalid cursor: pass back `next_cursor` unchanged, "
                       "with the same name_prefix (or none) as the request that issued it")
