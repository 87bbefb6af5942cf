"""The HTTP API in tests: a read-only role to serve it with, rows to look up, an in-process
client that runs the app's lifespan, a real uvicorn server on a free port, and the checks
every answer gets (problem documents, security headers)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI
from psycopg.types.json import Jsonb

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.http.server import build_server
from tests.support.databases import ensure_login_role, with_user

Conn = psycopg.Connection[tuple[Any, ...]]

API_ROLE = "phoenix_api"
TOKEN = "s3cret-token"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def reader_url(pg_server: str, database_url: str) -> str:
    """A login role that is only a member of phoenix_reader (created by migration 0001)."""
    ensure_login_role(pg_server, API_ROLE, "phoenix_reader")
    with psycopg.connect(pg_server, autocommit=True) as conn:
        # Membership lets the fixtures' DROP DATABASE ... WITH (FORCE) end API backends that
        # are still exiting after the pool closed (signalling needs membership).
        if not _is_member(conn):
            try:
                conn.execute(f"GRANT {API_ROLE} TO CURRENT_USER")
            except psycopg.Error:
                # Another test process may be granting it at the same moment.
                if not _is_member(conn):
                    raise
    return with_user(database_url, API_ROLE)


def _is_member(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (API_ROLE,)).fetchone()
    return bool(row and row[0])


def api_settings(database_url: str, read_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {"database_url": database_url, "read_database_url": read_url,
                               "db_pool_min": 1, "db_pool_max": 4,
                               "http_request_timeout_s": 3.0}
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


def insert_resource(conn: Conn, *, name: str = "res",
                    status: str = "active", version: int = 1,
                    config: dict[str, str] | None = None, deleted: bool = False,
                    rid: uuid.UUID | None = None) -> uuid.UUID:
    rid = rid or uuid.uuid4()
    conn.execute(
        "INSERT INTO resources (id, name, config, status, version, last_command_id, deleted_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)",
        (rid, name, Jsonb(config or {}), status, version, uuid.uuid4(), deleted))
    return rid


def insert_command(conn: Conn, *, outcome: str = "applied",
                   error_code: str | None = None, error_message: str | None = None,
                   resulting_version: int | None = 1, duplicates: int = 0) -> uuid.UUID:
    cid = uuid.uuid4()
    conn.execute(
        "INSERT INTO processed_commands (command_id, resource_id, command_type, outcome,"
        " error_code, error_message, resulting_version, duplicate_deliveries, correlation_id,"
        " source_partition, source_offset) VALUES (%s,%s,'UPDATE',%s,%s,%s,%s,%s,'corr-1',0,7)",
        (cid, uuid.uuid4(), outcome, error_code, error_message, resulting_version, duplicates))
    return cid


class TestClient:
    """A synchronous client over httpx's ASGI transport that runs the app's lifespan.

    (Starlette's own TestClient warns about httpx, and warnings are errors here.)
    """

    __test__ = False

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._runner = asyncio.Runner()
        self._stack = AsyncExitStack()
        self._client: httpx.AsyncClient | None = None

    def __enter__(self) -> TestClient:
        async def start() -> None:
            await self._stack.enter_async_context(self.app.router.lifespan_context(self.app))
            self._client = await self._stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.app), base_url="http://api"))

        self._runner.run(start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.run(self._stack.aclose())
        self._runner.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        assert self._client is not None
        return self._runner.run(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["cache-control"] == "no-store"
    body: dict[str, object] = resp.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail", "instance"} <= body.keys()
    assert_security_headers(resp)
    return body


def assert_security_headers(resp: httpx.Response) -> None:
    for key, value in SECURITY_HEADERS.items():
        assert resp.headers[key] == value
    assert "default-src 'none'" in resp.headers["content-security-policy"]


@contextmanager
def served_api(settings: Settings, start_timeout: float = 15.0) -> Iterator[str]:
    """A real uvicorn server (``build_server``) in a thread, on ``settings.http_port``;
    yields its base URL and stops it on the way out."""
    server = build_server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        assert thread.is_alive(), "the API exited"
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.http_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
