"""The fast listing path and the FastAPI route give byte-identical answers, and the fast path
takes only the plain forms (everything else — errors included — is the route's)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from phoenix_resources.adapters.postgres.queries import ListedResource, PageKey
from phoenix_resources.entrypoints.http.listing import encode_cursor, plain_listing
from phoenix_resources.errors import DatabaseUnavailable
from tests.support.asgi import Wire, fast_and_framework, get

pytestmark = pytest.mark.unit

IDS = sorted(uuid.UUID(int=i * 7919 + 1) for i in range(1, 8))
NAMES = {rid: f"db-{i}" for i, rid in enumerate(IDS)}

class FakeQueries:
    """Live resources in id order (or (name, id) with a prefix); a database that is away."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down

    async def resources(self, *, status: str | None, name_prefix: str | None,
                        after: PageKey | None, limit: int) -> list[ListedResource]:
        if self.down:
            raise DatabaseUnavailable("connection refused")
        rows = [(NAMES[r], r) for r in IDS
                if status in (None, "active") and (name_prefix is None
                                                   or NAMES[r].startswith(name_prefix))]
        if name_prefix is not None:
            rows.sort()
            keyed = [((n, r), n, r) for n, r in rows]
            keyed = [k for k in keyed if after is None or k[0] > after]  # type: ignore[operator]
        else:
            keyed = [(r, n, r) for n, r in rows if after is None or r > after]  # type: ignore[operator]
        return [ListedResource(orjson.dumps({"id": str(r), "name": n}).decode(), key)
                for key, n, r in keyed[:limit]]


class Passed(Exception):
    """The fast path passed the request on."""


async def _pass(scope: Scope, receive: Receive, send: Send) -> None:
    raise Passed(scope["path"])


def _paths(*, down: bool = False) -> tuple[ASGIApp, ASGIApp]:
    return fast_and_framework(FakeQueries(down=down), _pass)


def _get(target: ASGIApp, query: bytes) -> Wire:
    return get(target, "/api/v1/resources", query=query)


PLAIN = [b"", b"limit=3", b"status=active", b"status=inactive", b"name_prefix=db-",
         b"limit=2&name_prefix=db-1", b"limit=500", b"limit=1&status=active",
         b"cursor=" + encode_cursor(IDS[2]).encode(),
         b"limit=2&name_prefix=db&cursor=" + encode_cursor(("db-2", IDS[2])).encode()]


@pytest.mark.parametrize("query", PLAIN, ids=[q.decode()[:40] or "none" for q in PLAIN])
def test_plain_forms_are_answered_fast_and_as_the_route_answers(query: bytes) -> None:
    fast, route = _paths()
    answer = _get(fast, query)
    assert answer == _get(route, query)
    assert answer[0] == 200


def test_pages_chain_through_next_cursor() -> None:
    fast, _ = _paths()
    seen: list[str] = []
    query = b"limit=3"
    while True:
        body = orjson.loads(_get(fast, query)[2])
        seen += [item["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            break
        query = b"limit=3&cursor=" + body["next_cursor"].encode()
    assert seen == [str(r) for r in IDS]


ROUTE_ONLY = [b"limit=0", b"limit=501", b"limit=abc", b"limit=", b"status=gone", b"status=",
              b"name_prefix=", b"colour=red", b"cursor=not-a-cursor",
              b"cursor=" + encode_cursor(IDS[1]).encode() + b"&name_prefix=db", b"cursor=%00",
              b"a&&b"]


@pytest.mark.parametrize("query", ROUTE_ONLY, ids=[q.decode()[:40] for q in ROUTE_ONLY])
def test_everything_else_is_left_to_the_route(query: bytes) -> None:
    fast, route = _paths()
    with pytest.raises(Passed):
        _get(fast, query)
    status, _, body = _get(route, query)
    assert status == 400
    assert orjson.loads(body)["code"] == "RES-001"


def test_a_repeated_parameter_is_left_to_the_route() -> None:
    fast, route = _paths()
    with pytest.raises(Passed):
        _get(fast, b"limit=1&limit=2")
    assert _get(route, b"limit=1&limit=2")[0] == 200  # the framework takes the last value


def test_a_database_that_is_away_is_the_routes_503() -> None:
    fast, route = _paths(down=True)
    with pytest.raises(Passed):
        _get(fast, b"")
    assert _get(route, b"")[0] == 503


def test_plain_listing_reads_the_query_as_starlette_would() -> None:
    def query(raw: bytes) -> Any:
        return plain_listing({"method": "GET", "path": "/api/v1/resources",
                              "query_string": raw})
    assert query(b"name_prefix=caf%C3%A9&limit=005").name_prefix == "café"
    assert query(b"name_prefix=caf%C3%A9&limit=005").limit == 5
    assert query(b"name_prefix=a+b").name_prefix == "a b"
    assert plain_listing({"method": "POST", "path": "/api/v1/resources",
                          "query_string": b""}) is None
