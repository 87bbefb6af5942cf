"""The fast lookup path and the FastAPI route give byte-identical answers.

``GET /api/v1/resources/{id}`` is served twice (docs/decisions/0006-fast-lookup-path.md):
:class:`FastLookup` answers the plain form below the framework, the route answers the rest.
Here the same request goes through each, on the app ``create_app`` builds, with a fake
:class:`ReadQueries` (no database): the fast path alone (falling through would fail the
test) and everything below it (FastAPI's routing, the route, its exception handlers).
"""

from __future__ import annotations

import uuid

import orjson
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from phoenix_resources.adapters.postgres.queries import ResourceDoc
from phoenix_resources.errors import DatabaseUnavailable
from tests.support.asgi import Wire, fast_and_framework, get

pytestmark = pytest.mark.unit

LIVE = uuid.UUID("0b7a4f43-5f8e-4a51-9a3a-2a4c0a1b2c3d")
DELETED = uuid.UUID("5d1c9a8e-3b2f-4e6d-8c7b-1a0f9e8d7c6b")
UNKNOWN = uuid.UUID("9385f1e8-fb6a-4b9d-aac2-8e15a470bc40")
LIVE_JSON = (f'{{"id":"{LIVE}","name":"db-1","config":{{"cpu":"2","note":"é"}},'
             '"status":"active","version":3}')
DOCS = {LIVE: ResourceDoc(LIVE_JSON, 3, None),
        DELETED: ResourceDoc(f'{{"id":"{DELETED}"}}', 7, "2026-11-24T22:14:02.100000Z")}

class FakeQueries:
    """Stands in for ReadQueries: stored docs, or a database that is away."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down

    async def resource(self, resource_id: uuid.UUID) -> ResourceDoc | None:
        if self.down:
            raise DatabaseUnavailable("connection refused")
        return DOCS.get(resource_id)


async def _fall_through(scope: Scope, receive: Receive, send: Send) -> None:
    pytest.fail(f"the fast path passed {scope['path']} on instead of answering it")


def _paths(*, down: bool) -> tuple[ASGIApp, ASGIApp]:
    """(the fast path alone, the framework below it) of the app create_app builds."""
    return fast_and_framework(FakeQueries(down=down), _fall_through)


def _get(target: ASGIApp, path: str, headers: list[tuple[bytes, bytes]]) -> Wire:
    return get(target, path, headers=headers)


def _inm(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"if-none-match", value)]


CASES: list[tuple[str, uuid.UUID, list[tuple[bytes, bytes]], bool, int]] = [
    # (case, id, request headers, database down, expected status)
    ("live", LIVE, [], False, 200),
    ("live, etag not matching", LIVE, _inm(b'"4"'), False, 200),
    ("live, unquoted tag is not the etag", LIVE, _inm(b"3"), False, 200),
    ("304 strong", LIVE, _inm(b'"3"'), False, 304),
    ("304 weak W/", LIVE, _inm(b'W/"3"'), False, 304),
    ("304 star", LIVE, _inm(b"*"), False, 304),
    ("304 list", LIVE, _inm(b' "1" , W/"3" '), False, 304),
    ("two If-None-Match fields: the first counts", LIVE,
     [*_inm(b'"9"'), *_inm(b'"3"')], False, 200),
    ("unknown id RES-002", UNKNOWN, [], False, 404),
    ("deleted RES-004", DELETED, [], False, 404),
    ("deleted, even if the etag matches", DELETED, _inm(b'"7"'), False, 404),
    ("database unavailable RES-007", LIVE, [], True, 503),
    ("database unavailable, conditional", LIVE, _inm(b'"3"'), True, 503),
]


@pytest.mark.parametrize(("rid", "headers", "down", "status"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fast_path_and_route_answer_byte_for_byte_the_same(
        rid: uuid.UUID, headers: list[tuple[bytes, bytes]], down: bool, status: int) -> None:
    fast, route = _paths(down=down)
    path = f"/api/v1/resources/{rid}"
    fast_answer = _get(fast, path, headers)
    assert fast_answer == _get(route, path, headers)
    assert fast_answer[0] == status


def test_the_answers_themselves() -> None:
    """Pinned bytes: the lookup answer must not change while the two paths are kept equal."""
    fast, _ = _paths(down=False)
    path = f"/api/v1/resources/{LIVE}"
    assert _get(fast, path, []) == (200, [
        (b"etag", b'"3"'), (b"cache-control", b"private, max-age=0"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(LIVE_JSON.encode())).encode())], LIVE_JSON.encode())
    assert _get(fast, path, _inm(b'W/"3"')) == (
        304, [(b"etag", b'"3"'), (b"cache-control", b"private, max-age=0")], b"")
    status, headers, body = _get(fast, f"/api/v1/resources/{DELETED}", [])
    assert (status, [k for k, _ in headers]) == (404, [b"content-type", b"content-length"])
    assert orjson.loads(body) == {
        "type": "urn:phoenix:resources:problem:RES-004", "title": "Resource deleted",
        "status": 404, "code": "RES-004", "instance": f"/api/v1/resources/{DELETED}",
        "detail": f"resource {DELETED} was deleted at 2026-11-24T22:14:02.100000Z",
        "deleted_at": "2026-11-24T22:14:02.100000Z", "version": 7}
    down, _ = _paths(down=True)
    status, headers, body = _get(down, path, [])
    assert (status, headers[2:]) == (503, [(b"retry-after", b"1")])
    assert orjson.loads(body)["code"] == "RES-007"


def test_the_route_serves_the_forms_the_fast_path_passes_on() -> None:
    """An id without hyphens is not the plain form: the route answers it, the same way."""
    fast, route = _paths(down=False)
    status, headers, body = _get(route, f"/api/v1/resources/{LIVE.hex}", [])
    assert (status, body) == (200, LIVE_JSON.encode())
    assert headers == _get(fast, f"/api/v1/resources/{LIVE}", [])[1]
