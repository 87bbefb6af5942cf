"""The hot path, ``GET /api/v1/resources/{id}``, answered below the framework.

FastAPI's routing, dependency solving and response classes cost more per request than the
lookup itself. :class:`FastLookup` sits inside :class:`~http_edge.Edge` (so authentication,
timeout, security headers and metrics still apply) and answers the plain form of the request
(canonical UUID, no query string) straight on the ASGI channel. Anything else falls through to
the FastAPI route, which shares :func:`resource_problem` and :func:`etag_matches` with it, so
both give byte-for-byte the same answers; the FastAPI route also documents the operation.
"""

from __future__ import annotations

from uuid import UUID

from starlette.types import ASGIApp, Receive, Scope, Send

from phoenix_resources.adapters.postgres.queries import ReadQueries, ResourceDoc
from phoenix_resources.entrypoints import http_problems as p
from phoenix_resources.entrypoints.http_edge import send_problem
from phoenix_resources.errors import DatabaseUnavailable

PREFIX = "/api/v1/resources/"
_PATH_LEN = len(PREFIX) + 36
_HYPHENS = tuple(len(PREFIX) + i for i in (8, 13, 18, 23))
RESOURCE_CACHE_CONTROL = b"private, max-age=0"
RETRY_AFTER = {"retry-after": "1"}


class ApiState:
    """What the lifespan opens and the routes use."""

    queries: ReadQueries


def resource_problem(resource_id: UUID, doc: ResourceDoc | None) -> p.ApiProblem | None:
    """The problem to answer for a lookup, or None when ``doc`` is a live resource."""
    if doc is None:
        return p.ApiProblem(p.NOT_FOUND, f"no resource with id {resource_id}")
    if doc.deleted_at is not None:
        return p.ApiProblem(p.DELETED, f"resource {resource_id} was deleted at {doc.deleted_at}",
                            deleted_at=doc.deleted_at, version=doc.version)
    return None


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match requires."""
    if if_none_match.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in if_none_match.split(","))


def _plain_lookup(scope: Scope) -> UUID | None:
    """The id when the request is the plain form this path serves, else None."""
    if scope["method"] != "GET" or scope["query_string"]:
        return None
    path: str = scope["path"]
    if len(path) != _PATH_LEN or not path.startswith(PREFIX):
        return None
    if any(path[i] != "-" for i in _HYPHENS):
        return None
    try:
        return UUID(path[len(PREFIX):])
    except ValueError:
        return None


class FastLookup:
    def __init__(self, app: ASGIApp, *, state: ApiState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        resource_id = _plain_lookup(scope) if scope["type"] == "http" else None
        if resource_id is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        try:
            doc = await self.state.queries.resource(resource_id)
        except DatabaseUnavailable as e:
            await send_problem(send, p.UNAVAILABLE, str(e), path, RETRY_AFTER)
            return
        problem = resource_problem(resource_id, doc)
        if problem is not None or doc is None:
            assert problem is not None
            await send_problem(send, problem.code, problem.detail, path, problem.headers,
                               **problem.extensions)
            return
        etag = f'"{doc.version}"'
        headers = [(b"etag", etag.encode()), (b"cache-control", RESOURCE_CACHE_CONTROL)]
        if_none_match = _header(scope, b"if-none-match")
        if if_none_match is not None and etag_matches(if_none_match.decode("latin-1"), etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = doc.json.encode()
        headers += [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
