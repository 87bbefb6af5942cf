"""The hot paths, ``GET /api/v1/resources/{id}`` and ``GET /api/v1/resources``, answered below
the framework.

FastAPI's routing, dependency solving and response classes cost more per request than the
lookup itself (``docs/decisions/0006-fast-lookup-path.md``). :class:`FastLookup` sits inside
:class:`~.edge.Edge` (so authentication, timeout, security headers and metrics still
apply) and answers the plain form of the request (GET, canonical UUID, no query string)
straight on the ASGI channel, and the plain forms of the listing (``listing``). Anything
else falls through to the FastAPI routes. Both send what :func:`~.lookup.lookup` and
:func:`~.listing.listing` answer, so both give byte-for-byte the same answers.
"""

from __future__ import annotations

from uuid import UUID

from starlette.types import ASGIApp, Receive, Scope, Send

from phoenix_resources.adapters.postgres.queries import ReadQueries
from phoenix_resources.entrypoints.http.edge import header
from phoenix_resources.entrypoints.http.listing import listing, plain_listing
from phoenix_resources.entrypoints.http.lookup import lookup
from phoenix_resources.errors import DatabaseUnavailable

PREFIX = "/api/v1/resources/"
_PATH_LEN = len(PREFIX) + 36
_HYPHENS = tuple(len(PREFIX) + i for i in (8, 13, 18, 23))


class ApiState:
    """What the lifespan opens and the routes use."""

    queries: ReadQueries


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
    """Pure-ASGI middleware: the plain lookup answered here, everything else passed on."""

    def __init__(self, app: ASGIApp, *, state: ApiState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        resource_id = _plain_lookup(scope)
        if resource_id is None:
            await self._list_or_pass(scope, receive, send)
            return
        # Starlette decodes headers as latin-1 for the route; the same here.
        if_none_match = header(scope, b"if-none-match")
        answer = await lookup(self.state.queries, resource_id,
                              None if if_none_match is None else if_none_match.decode("latin-1"),
                              scope["path"])
        await answer.send(send)

    async def _list_or_pass(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = plain_listing(scope)
        if query is not None:
            try:
                answer = await listing(self.state.queries, query)
            except DatabaseUnavailable:
                pass  # the route answers it (503), as every error of the endpoint
            else:
                await answer.send(send)
                return
        await self.app(scope, receive, send)
