"""The two paths of the HTTP API's hot routes, driven in-process without a server or a
database: the fast path alone, and everything below it (FastAPI's routing, the routes, their
exception handlers), both taken from the app ``create_app`` builds, over fake read queries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.http.app import create_app
from phoenix_resources.entrypoints.http.fast import ApiState, FastLookup

Wire = tuple[int, list[tuple[bytes, bytes]], bytes]
"""Status, headers in wire order, body."""


def fast_and_framework(queries: object, passed_on: ASGIApp) -> tuple[ASGIApp, ASGIApp]:
    """(the fast path alone, handing what it does not answer to ``passed_on``; the framework
    below it), both reading from ``queries`` in place of ReadQueries."""
    app = create_app(Settings(api_token_hashes=[]))
    layer: Any = app.build_middleware_stack()
    while not isinstance(layer, FastLookup):
        layer = layer.app
    state: ApiState = layer.state
    state.queries = queries  # type: ignore[assignment]
    framework: ASGIApp = layer.app

    async def below_starlette(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app  # what Starlette.__call__ adds before its middleware stack
        await framework(scope, receive, send)

    return FastLookup(passed_on, state=state), below_starlette


def get(target: ASGIApp, path: str, *, query: bytes = b"",
        headers: Sequence[tuple[bytes, bytes]] = ()) -> Wire:
    """One ``GET`` through ``target``, and what it sent."""
    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query, "headers": [(b"host", b"api"), *headers],
        "client": ("127.0.0.1", 40000), "server": ("api", 80), "state": {}}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    async def call() -> None:
        await target(scope, receive, send)

    asyncio.run(call())
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    return (start["status"], [(bytes(k), bytes(v)) for k, v in start["headers"]],
            b"".join(m.get("body", b"") for m in bodies))
