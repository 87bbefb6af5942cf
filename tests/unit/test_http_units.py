"""Pure parts of the HTTP API: cursors, tokens, ETags, the fast-path matcher, the loader."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from phoenix_resources.adapters.postgres.queries import ResourceLoader
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.app import create_app
from phoenix_resources.entrypoints.http.edge import TokenCheck, route_label
from phoenix_resources.entrypoints.http.fast import _plain_lookup
from phoenix_resources.entrypoints.http.listing import decode_cursor, encode_cursor
from phoenix_resources.entrypoints.http.lookup import etag_matches
from phoenix_resources.errors import DatabaseUnavailable

pytestmark = pytest.mark.unit

RID = uuid.UUID("0b7a4f43-5f8e-4a51-9a3a-2a4c0a1b2c3d")


# --- cursors --------------------------------------------------------------------------------

def test_cursor_round_trips_and_is_url_safe() -> None:
    for key in (RID, ("name with spaces/é+?", RID)):
        by_name = isinstance(key, tuple)
        cursor = encode_cursor(key)
        assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789-_")
        assert decode_cursor(cursor, by_name=by_name) == key


@pytest.mark.parametrize("cursor", ["", "!!!", "bm9wZQ", "WzFd", "WyJhIiwiYiIsImMiXQ",
                                    "eyJpZCI6MX0", "WyJub3QtYS11dWlkIl0"])
def test_bad_cursors_are_invalid_request(cursor: str) -> None:
    for by_name in (False, True):
        with pytest.raises(p.ApiProblem) as err:
            decode_cursor(cursor, by_name=by_name)
        assert err.value.code is p.INVALID_REQUEST


def test_cursor_kind_must_match_the_ordering() -> None:
    with pytest.raises(p.ApiProblem):
        decode_cursor(encode_cursor(RID), by_name=True)
    with pytest.raises(p.ApiProblem):
        decode_cursor(encode_cursor(("a", RID)), by_name=False)


# --- tokens, etags, routes ------------------------------------------------------------------

def test_token_check() -> None:
    check = TokenCheck([hashlib.sha256(b"good").hexdigest().upper(), " "])
    assert check.enabled
    assert check.problem(b"Bearer good") is None
    assert check.problem(b"bearer  good ") is None
    assert check.problem(None) is not None
    assert check.problem(None)[0] is p.UNAUTHORIZED  # type: ignore[index]
    assert check.problem(b"Basic Z29vZA==")[0] is p.UNAUTHORIZED  # type: ignore[index]
    assert check.problem(b"Bearer ")[0] is p.UNAUTHORIZED  # type: ignore[index]
    assert check.problem(b"Bearer bad")[0] is p.FORBIDDEN  # type: ignore[index]
    assert not TokenCheck([]).enabled


@pytest.mark.parametrize(("header", "match"), [
    ('"3"', True), ('W/"3"', True), (' "1" , "3" ', True), ("*", True),
    ('"4"', False), ("3", False), ("", False)])
def test_etag_matching(header: str, match: bool) -> None:
    assert etag_matches(header, '"3"') is match


def test_route_labels_are_templates() -> None:
    assert route_label(f"/api/v1/resources/{RID}") == "/api/v1/resources/{id}"
    assert route_label("/api/v1/commands/x") == "/api/v1/commands/{command_id}"
    assert route_label("/api/v1/resources") == "/api/v1/resources"
    assert route_label("/wp-admin/x.php") == "other"


def _scope(path: str, query: bytes = b"", method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": query,
            "headers": []}


def test_fast_path_takes_only_the_plain_form() -> None:
    assert _plain_lookup(_scope(f"/api/v1/resources/{RID}")) == RID
    assert _plain_lookup(_scope(f"/api/v1/resources/{str(RID).upper()}")) == RID
    assert _plain_lookup(_scope(f"/api/v1/resources/{RID}", b"x=1")) is None
    assert _plain_lookup(_scope(f"/api/v1/resources/{RID}", method="POST")) is None
    assert _plain_lookup(_scope(f"/api/v1/resources/{RID.hex}")) is None
    assert _plain_lookup(_scope("/api/v1/resources/" + "z" * 8 + str(RID)[8:])) is None
    assert _plain_lookup(_scope(f"/api/v1/commands/{RID}x")) is None


def test_problem_body_has_every_member() -> None:
    import orjson

    doc = orjson.loads(p.problem_body(p.DELETED, "gone", "/x", deleted_at="t"))
    assert doc == {"type": "urn:phoenix:resources:problem:RES-004", "title": "Resource deleted",
                   "status": 404, "detail": "gone", "code": "RES-004", "instance": "/x",
                   "deleted_at": "t"}
    assert len({c.code for c in p.ALL_CODES}) == len(p.ALL_CODES)


def test_openapi_document_without_a_database() -> None:
    doc = create_app(Settings(api_token_hashes=[])).openapi()
    for item in doc["paths"].values():
        for op in item.values():
            assert "422" not in op["responses"]
            for code, resp in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert list(resp["content"]) == ["application/problem+json"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]


# --- the coalescing loader ------------------------------------------------------------------

class FakeConnection:
    def __init__(self, pool: FakePool) -> None:
        self.pool = pool
        self.autocommit = False

    async def set_autocommit(self, value: bool) -> None:
        self.autocommit = value

    async def execute(self, query: str, params: tuple[list[uuid.UUID]] | None = None,
                      **_: Any) -> Any:
        if params is None:  # session setup (SET ...)
            self.pool.settings.append(query)
            return None
        self.pool.queries.append(list(params[0]))
        await asyncio.sleep(0)
        if self.pool.fail is not None:
            raise self.pool.fail
        rows = [(i, f'{{"id":"{i}"}}', 1, None) for i in params[0] if i in self.pool.stored]

        class Cursor:
            async def fetchall(self) -> list[tuple[Any, ...]]:
                return rows

        return Cursor()


class FakePool:
    def __init__(self, stored: set[uuid.UUID]) -> None:
        self.stored = stored
        self.queries: list[list[uuid.UUID]] = []
        self.settings: list[str] = []
        self.fail: Exception | None = None

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[FakeConnection]:
        yield FakeConnection(self)


def test_concurrent_lookups_share_one_query() -> None:
    stored = {uuid.uuid4() for _ in range(20)}
    pool = FakePool(stored)
    loader = ResourceLoader(pool, 1.0)  # type: ignore[arg-type]
    missing = uuid.uuid4()
    wanted = [*stored, missing, *stored]

    async def run() -> list[Any]:
        return await asyncio.gather(*(loader.load(i) for i in wanted))

    docs = asyncio.run(run())
    assert pool.settings == ["SET default_transaction_read_only = on"]
    assert len(pool.queries) == 1
    assert sorted(map(str, pool.queries[0])) == sorted(map(str, {*stored, missing}))
    for rid, doc in zip(wanted, docs, strict=True):
        assert (doc is None) if rid == missing else (doc.json == f'{{"id":"{rid}"}}')


def test_a_failed_batch_fails_every_waiter_with_the_translated_error() -> None:
    pool = FakePool(set())
    pool.fail = psycopg.OperationalError("server closed the connection")
    loader = ResourceLoader(pool, 1.0)  # type: ignore[arg-type]

    async def run() -> list[Any]:
        return await asyncio.gather(*(loader.load(uuid.uuid4()) for _ in range(5)),
                                    return_exceptions=True)

    results = asyncio.run(run())
    assert all(isinstance(r, DatabaseUnavailable) for r in results)


def test_a_cancelled_waiter_does_not_disturb_the_others() -> None:
    rid = uuid.uuid4()
    pool = FakePool({rid})
    loader = ResourceLoader(pool, 1.0)  # type: ignore[arg-type]

    async def run() -> Any:
        doomed = asyncio.ensure_future(loader.load(rid))
        survivor = asyncio.ensure_future(loader.load(rid))
        await asyncio.sleep(0)
        doomed.cancel()
        return await survivor

    assert asyncio.run(run()).json == f'{{"id":"{rid}"}}'


def test_worker_factory_rebuilds_the_served_settings(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    """serve() hands its exact Settings (secrets included) to uvicorn's worker processes
    through a private file the environment names."""
    import gc

    from phoenix_resources.config import revealed
    from phoenix_resources.entrypoints.http import server as http

    served = Settings(http_port=18123, api_token_hashes=["ab" * 32],
                      schema_registry_basic_auth="user:s3cret")  # type: ignore[arg-type]
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(revealed(served)))
    monkeypatch.setenv(http.SETTINGS_FILE_ENV, str(path))
    monkeypatch.setattr(gc, "freeze", lambda: None)  # not in the test process
    app = http.create_app_from_env()
    doc = app.openapi()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert not any("s3cret" in v for v in os.environ.values()), "a secret in the environment"
    rebuilt = Settings.model_validate(json.loads(path.read_text()))
    assert rebuilt.schema_registry_basic_auth is not None
    assert rebuilt.schema_registry_basic_auth.get_secret_value() == "user:s3cret"
    assert "s3cret" not in served.model_dump_json()
    assert "s3cret" not in repr(served)
