"""The HTTP lookup API against real PostgreSQL, through the API's read-only role."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from phoenix_resources.entrypoints.http.app import create_app
from phoenix_resources.entrypoints.http.server import build_server
from phoenix_resources.observability import Metrics
from tests.support.http_api import (
    API_ROLE,
    TOKEN,
    Conn,
    TestClient,
    api_settings,
    assert_problem,
    assert_security_headers,
    insert_command,
    insert_resource,
)
from tests.support.net import free_port
from tests.support.pipeline import wait_until

pytestmark = pytest.mark.integration


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(database_url: str, read_url: str, metrics: Metrics) -> Iterator[TestClient]:
    app = create_app(api_settings(database_url, read_url), metrics=metrics)
    with TestClient(app) as c:
        yield c


# --- GET /api/v1/resources/{id} -------------------------------------------------------------

def test_get_resource_returns_document_etag_and_headers(
        client: TestClient, writer: Conn) -> None:
    rid = insert_resource(writer, name="db-1", version=3, config={"cpu": "2"})
    resp = client.get(f"/api/v1/resources/{rid}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["etag"] == '"3"'
    assert resp.headers["cache-control"] == "private, max-age=0"
    assert_security_headers(resp)
    body = resp.json()
    assert body["id"] == str(rid)
    assert body["name"] == "db-1"
    assert body["config"] == {"cpu": "2"}
    assert body["status"] == "active"
    assert body["version"] == 3
    assert set(body) == {"id", "name", "config", "status", "version", "created_at",
                         "updated_at", "last_command_id"}
    assert body["created_at"].endswith("Z")
    created = datetime.fromisoformat(body["created_at"])
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60


@pytest.mark.parametrize(("if_none_match", "status"), [
    ('"2"', 304), ('W/"2"', 304), ('"1", "2"', 304), ("*", 304), ('"1"', 200), ("2", 200)])
def test_if_none_match(client: TestClient, writer: Conn,
                       if_none_match: str, status: int) -> None:
    rid = insert_resource(writer, version=2)
    resp = client.get(f"/api/v1/resources/{rid}", headers={"If-None-Match": if_none_match})
    assert resp.status_code == status
    assert resp.headers["etag"] == '"2"'
    if status == 304:
        assert resp.content == b""
        assert_security_headers(resp)


def test_new_version_changes_etag(client: TestClient,
                                  writer: Conn) -> None:
    rid = insert_resource(writer, version=1)
    assert client.get(f"/api/v1/resources/{rid}").headers["etag"] == '"1"'
    writer.execute("UPDATE resources SET version = 2, name = 'renamed' WHERE id = %s", (rid,))
    resp = client.get(f"/api/v1/resources/{rid}", headers={"If-None-Match": '"1"'})
    assert resp.status_code == 200
    assert resp.json()["name"] == "renamed"


def test_deleted_resource_is_404_res004_with_deleted_at(
        client: TestClient, writer: Conn) -> None:
    rid = insert_resource(writer, deleted=True, version=4)
    body = assert_problem(client.get(f"/api/v1/resources/{rid}"), 404, "RES-004")
    assert "deleted" in str(body["detail"])
    assert str(body["deleted_at"]).endswith("Z")
    assert body["instance"] == f"/api/v1/resources/{rid}"


def test_unknown_resource_is_404_res002(client: TestClient) -> None:
    assert_problem(client.get(f"/api/v1/resources/{uuid.uuid4()}"), 404, "RES-002")


@pytest.mark.parametrize("bad", ["not-a-uuid", "123", "%00", "' OR 1=1 --"])
def test_malformed_id_is_400_res001(client: TestClient, bad: str) -> None:
    body = assert_problem(client.get(f"/api/v1/resources/{bad}"), 400, "RES-001")
    assert "resource_id" in str(body["detail"])


def test_unknown_query_parameter_is_400(client: TestClient,
                                        writer: Conn) -> None:
    rid = insert_resource(writer)
    body = assert_problem(client.get(f"/api/v1/resources/{rid}?expand=1"), 400, "RES-001")
    assert "expand" in str(body["detail"])


def test_concurrent_lookups_are_answered_individually(
        database_url: str, read_url: str, writer: Conn) -> None:
    """Lookups coalesced into one query still get their own row (or 404)."""
    ids = [insert_resource(writer, name=f"n{i}", version=i + 1) for i in range(40)]
    missing = [uuid.uuid4() for _ in range(10)]
    app = create_app(api_settings(database_url, read_url))

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=transport, base_url="http://api") as c:
            return await asyncio.gather(*(c.get(f"/api/v1/resources/{i}")
                                          for i in [*ids, *missing, *ids]))

    responses = asyncio.run(run())
    for i, resp in zip([*ids, *missing, *ids], responses, strict=True):
        if i in missing:
            assert resp.status_code == 404
        else:
            assert resp.json()["id"] == str(i)
            assert resp.headers["etag"] == f'"{ids.index(i) + 1}"'


# --- GET /api/v1/resources ------------------------------------------------------------------

def test_list_filters_by_status_and_excludes_deleted(
        client: TestClient, writer: Conn) -> None:
    active = {insert_resource(writer, status="active") for _ in range(3)}
    pending = {insert_resource(writer, status="pending") for _ in range(2)}
    insert_resource(writer, status="active", deleted=True)
    resp = client.get("/api/v1/resources")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    assert_security_headers(resp)
    body = resp.json()
    assert {uuid.UUID(r["id"]) for r in body["items"]} == active | pending
    assert body["next_cursor"] is None
    ids = {uuid.UUID(r["id"]) for r in
           client.get("/api/v1/resources?status=active").json()["items"]}
    assert ids == active
    assert client.get("/api/v1/resources?status=inactive").json()["items"] == []


def test_list_by_name_prefix_treats_wildcards_literally(
        client: TestClient, writer: Conn) -> None:
    for name in ["web-1", "web-2", "web_x", "web%y", "db-1", "WEB-3"]:
        insert_resource(writer, name=name)
    names = [r["name"] for r in
             client.get("/api/v1/resources?name_prefix=web").json()["items"]]
    assert names == sorted(["web-1", "web-2", "web_x", "web%y"])
    assert [r["name"] for r in client.get(
        "/api/v1/resources", params={"name_prefix": "web_"}).json()["items"]] == ["web_x"]
    assert [r["name"] for r in client.get(
        "/api/v1/resources", params={"name_prefix": "web%"}).json()["items"]] == ["web%y"]


def test_limit_default_and_pages(client: TestClient,
                                 writer: Conn) -> None:
    for i in range(120):
        insert_resource(writer, name=f"r{i:03d}")
    first = client.get("/api/v1/resources").json()
    assert len(first["items"]) == 50
    assert first["next_cursor"]
    last = client.get("/api/v1/resources", params={"limit": 500}).json()
    assert len(last["items"]) == 120
    assert last["next_cursor"] is None
    exact = client.get("/api/v1/resources", params={"limit": 60}).json()
    second = client.get("/api/v1/resources",
                        params={"limit": 60, "cursor": exact["next_cursor"]}).json()
    assert len(second["items"]) == 60
    assert second["next_cursor"] is None, "a full last page must not promise another"


@pytest.mark.parametrize("query", [
    "limit=501", "limit=0", "limit=-1", "limit=abc", "status=deleted", "status=",
    "cursor=%%%", "cursor=bm9wZQ", "cursor=WyJub3QtYS11dWlkIl0", "name_prefix=",
    "unknown=1", "limit=10&sort=name"])
def test_bad_list_parameters_are_400(client: TestClient, query: str) -> None:
    assert_problem(client.get(f"/api/v1/resources?{query}"), 400, "RES-001")


BIG_CONFIG = {f"k{i}": "v" * 4000 for i in range(25)}  # ~100 kB a resource


@pytest.mark.parametrize("limit", [None, 500])
def test_pages_are_bounded_by_bytes_and_a_walk_skips_nothing(
        client: TestClient, writer: Conn, limit: int | None) -> None:
    ids = {str(insert_resource(writer, name=f"big-{i}", config=BIG_CONFIG)) for i in range(50)}
    seen: list[str] = []
    params = {} if limit is None else {"limit": str(limit)}
    pages = 0
    while True:
        resp = client.get("/api/v1/resources", params=params)
        assert resp.status_code == 200
        assert len(resp.content) <= 1024 * 1024 + 1024  # PHOENIX_HTTP_PAGE_MAX_BYTES + frame
        body = resp.json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert sorted(seen) == sorted(ids)  # every resource once: none skipped, none repeated
    assert pages >= 5


def _forged_cursor(name: str) -> str:
    # A fixed id: parameters must be the same in every xdist worker.
    raw = orjson.dumps([name, "6fd12515-aaef-463f-af52-cf4e9c4d604a"])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("query", [
    "name_prefix=%00", "name_prefix=db%00", "name_prefix=%00&limit=5",
    "name_prefix=" + "x" * 256,
    "name_prefix=db&cursor=" + _forged_cursor("db\x00"),
    "name_prefix=db&cursor=" + _forged_cursor("x" * 300),
    "name_prefix=db&cursor=" + _forged_cursor(""),
])
def test_values_postgresql_refuses_are_400_not_500_and_log_no_traceback(
        client: TestClient, writer: Conn, query: str, caplog: pytest.LogCaptureFixture) -> None:
    insert_resource(writer, name="db-1")
    with caplog.at_level("WARNING", logger="phoenix_resources"):
        assert_problem(client.get(f"/api/v1/resources?{query}"), 400, "RES-001")
    assert [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []
    assert all(r.exc_info is None for r in caplog.records)


def test_cursor_is_bound_to_its_ordering(client: TestClient,
                                         writer: Conn) -> None:
    for i in range(3):
        insert_resource(writer, name=f"a{i}")
    by_id = client.get("/api/v1/resources?limit=1").json()["next_cursor"]
    by_name = client.get("/api/v1/resources?limit=1&name_prefix=a").json()["next_cursor"]
    assert_problem(client.get(f"/api/v1/resources?name_prefix=a&cursor={by_id}"),
                   400, "RES-001")
    assert_problem(client.get(f"/api/v1/resources?cursor={by_name}"), 400, "RES-001")


def _walk(client: TestClient, params: dict[str, str | int]) -> list[dict[str, object]]:
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = client.get("/api/v1/resources", params=query)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


@pytest.mark.parametrize("params", [{"limit": 97}, {"limit": 113, "name_prefix": "n"}])
def test_pagination_has_no_gaps_or_repeats_under_concurrent_inserts(
        client: TestClient, writer: Conn, database_url: str,
        params: dict[str, str | int]) -> None:
    with writer.cursor() as cur:
        cur.executemany(
            "INSERT INTO resources (id, name, status, last_command_id) VALUES (%s,%s,%s,%s)",
            [(uuid.uuid4(), f"n{i:05d}", "active", uuid.uuid4()) for i in range(3000)])
    before = {str(r[0]) for r in writer.execute("SELECT id FROM resources")}
    stop = threading.Event()
    inserted = 0

    def insert_meanwhile() -> None:
        nonlocal inserted
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop.is_set():
                insert_resource(conn, name=f"n{uuid.uuid4().hex[:6]}")
                inserted += 1

    thread = threading.Thread(target=insert_meanwhile)
    thread.start()
    try:
        seen = _walk(client, params)
    finally:
        stop.set()
        thread.join()
    ids = [str(r["id"]) for r in seen]
    assert inserted > 0, "the writer must have run during the walk"
    assert len(ids) == len(set(ids)), "no repeats"
    assert before <= set(ids), "no gaps: every row present before the walk is seen"
    keys: list[Any] = ([(r["name"], r["id"]) for r in seen] if "name_prefix" in params
                       else ids)
    assert keys == sorted(keys), "strict key order"


def test_name_pagination_breaks_ties_by_id(client: TestClient, writer: Conn) -> None:
    """Many rows share a name: the id tiebreak still yields each row exactly once."""
    ids = {str(insert_resource(writer, name=f"dup-{i % 3}")) for i in range(120)}
    seen = _walk(client, {"limit": 7, "name_prefix": "dup-"})
    assert [r["id"] for r in seen if r["id"] in ids] == [r["id"] for r in seen]
    assert sorted(str(r["id"]) for r in seen) == sorted(ids)
    keys = [(r["name"], r["id"]) for r in seen]
    assert keys == sorted(keys)


# --- GET /api/v1/commands/{command_id} ------------------------------------------------------

def test_command_outcomes(client: TestClient, writer: Conn) -> None:
    applied = insert_command(writer, resulting_version=5)
    rejected = insert_command(writer, outcome="rejected", error_code="RULE-003",
                              error_message="stale expected_version", resulting_version=None)
    duplicate = insert_command(writer, duplicates=2, resulting_version=2)

    body = client.get(f"/api/v1/commands/{applied}").json()
    assert body["outcome"] == "applied"
    assert body["resulting_version"] == 5
    assert body["duplicate"] is False
    assert body["duplicate_deliveries"] == 0
    assert body["command_type"] == "UPDATE"
    assert body["correlation_id"] == "corr-1"
    assert body["processed_at"].endswith("Z")

    resp = client.get(f"/api/v1/commands/{rejected}")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    assert_security_headers(resp)
    body = resp.json()
    assert (body["outcome"], body["error_code"], body["error_message"]) == (
        "rejected", "RULE-003", "stale expected_version")
    assert body["resulting_version"] is None

    body = client.get(f"/api/v1/commands/{duplicate}").json()
    assert (body["duplicate"], body["duplicate_deliveries"]) == (True, 2)

    parked = insert_command(writer, outcome="parked", error_code="PRK-001",
                            error_message="DataError: refused", resulting_version=None)
    body = client.get(f"/api/v1/commands/{parked}").json()
    assert (body["outcome"], body["error_code"]) == ("parked", "PRK-001")


def test_command_errors(client: TestClient) -> None:
    assert_problem(client.get(f"/api/v1/commands/{uuid.uuid4()}"), 404, "RES-002")
    assert_problem(client.get("/api/v1/commands/xyz"), 400, "RES-001")
    assert_problem(client.get(f"/api/v1/commands/{uuid.uuid4()}?x=1"), 400, "RES-001")


# --- routing errors -------------------------------------------------------------------------

def test_unknown_route_and_writes_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/api/v1/nothing"), 404, "RES-002")
    resp = client.post("/api/v1/resources", json={})
    body = assert_problem(resp, 405, "RES-009")
    assert "read-only" in str(body["detail"])
    assert resp.headers["allow"] == "GET"
    assert_problem(client.delete(f"/api/v1/resources/{uuid.uuid4()}"), 405, "RES-009")


# --- operations routes ----------------------------------------------------------------------

def test_healthz_and_readyz(client: TestClient) -> None:
    resp = client.get("/healthz")
    assert (resp.status_code, resp.json()) == (200, {"status": "ok"})
    assert_security_headers(resp)
    resp = client.get("/readyz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True


def test_readyz_is_503_when_database_is_unreachable(database_url: str) -> None:
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1"
    app = create_app(api_settings(database_url, dead, db_pool_min=0))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        body = assert_problem(c.get("/readyz"), 503, "RES-007")
        assert body["checks"] == {"database": {"ok": False}}
        assert c.get("/readyz").headers["retry-after"] == "1"
        assert_problem(c.get(f"/api/v1/resources/{uuid.uuid4()}"), 503, "RES-007")


def test_an_api_process_exports_the_readyz_verdict_at_each_scrape(
        database_url: str, read_url: str) -> None:
    """``phoenix_ready{component="api"}`` says what /readyz says, when the scrape asks."""
    app = create_app(api_settings(database_url, read_url))  # its own metrics: an api process
    with TestClient(app) as c:
        assert 'phoenix_ready{component="api"} 1.0' in c.get("/metrics").text
        assert 'phoenix_build_info{component="api"' in c.get("/metrics").text
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1"
    app = create_app(api_settings(database_url, dead, db_pool_min=0))
    with TestClient(app) as c:
        assert 'phoenix_ready{component="api"} 0.0' in c.get("/metrics").text


def test_inside_run_the_api_leaves_readiness_to_the_process(client: TestClient) -> None:
    """``run`` exports its own verdict (component ``all``), which covers the API's."""
    assert "phoenix_ready{" not in client.get("/metrics").text


def _ready_with(database_url: str, read_url: str,
                readiness: Callable[[], Awaitable[dict[str, object]]]) -> httpx.Response:
    app = create_app(api_settings(database_url, read_url, http_request_timeout_s=0.5),
                     readiness=readiness)
    with TestClient(app) as c:
        return c.get("/readyz")


def test_readyz_includes_the_run_mode_check(database_url: str, read_url: str) -> None:
    async def ok() -> dict[str, object]:
        return {"worker": {"assigned_partitions": 3}, "ok": True}

    async def unassigned() -> dict[str, object]:
        return {"worker": {"assigned_partitions": 0}, "ok": False}

    async def failing_check() -> dict[str, object]:
        return {"worker": {"ok": False, "assigned_partitions": 0}}

    async def broken() -> dict[str, object]:
        raise RuntimeError("consumer not started")

    resp = _ready_with(database_url, read_url, ok)
    assert resp.status_code == 200
    checks = resp.json()["checks"]
    assert checks["worker"] == {"assigned_partitions": 3}
    assert set(checks) == {"database", "worker"}, "the verdict is not echoed as a check"
    body = assert_problem(_ready_with(database_url, read_url, unassigned), 503, "RES-007")
    assert body["checks"] == {"worker": {"assigned_partitions": 0}}
    body = assert_problem(_ready_with(database_url, read_url, failing_check), 503, "RES-007")
    assert body["checks"] == {"worker": {"ok": False, "assigned_partitions": 0}}
    assert "worker" in str(body["detail"])
    body = assert_problem(_ready_with(database_url, read_url, broken), 503, "RES-007")
    assert "readiness check" in str(body["detail"])
    assert "consumer not started" not in str(body["detail"]), "internals are logged, not shown"


def test_request_timeout_is_408(database_url: str, read_url: str) -> None:
    async def slow() -> dict[str, object]:
        await asyncio.sleep(5)
        return {}

    body = assert_problem(_ready_with(database_url, read_url, slow), 408, "RES-003")
    assert "0.5s" in str(body["detail"])


def test_unexpected_error_is_500_res008(database_url: str, read_url: str) -> None:
    async def unserialisable() -> dict[str, object]:
        return {"worker": {"since": object()}}

    resp = _ready_with(database_url, read_url, unserialisable)
    body = assert_problem(resp, 500, "RES-008")
    assert "object" not in str(body["detail"]), "internals are logged, not leaked"


def test_metrics_count_requests_by_route_template(
        client: TestClient, writer: Conn, metrics: Metrics) -> None:
    rid = insert_resource(writer)
    client.get(f"/api/v1/resources/{rid}")
    client.get(f"/api/v1/resources/{uuid.uuid4()}")
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert 'phoenix_http_requests_total{route="/api/v1/resources/{id}",status="200"} 1.0' in text
    assert 'phoenix_http_requests_total{route="/api/v1/resources/{id}",status="404"} 1.0' in text
    assert "phoenix_http_request_seconds_bucket" in text
    assert str(rid) not in text


def test_openapi_and_docs(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert {"/api/v1/resources", "/api/v1/resources/{resource_id}",
            "/api/v1/commands/{command_id}", "/healthz", "/readyz", "/metrics"} <= set(paths)
    get_one = paths["/api/v1/resources/{resource_id}"]["get"]
    assert "422" not in get_one["responses"]
    assert set(get_one["responses"]["400"]["content"]) == {"application/problem+json"}
    assert "bearer" not in doc.get("components", {}).get("securitySchemes", {})
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    assert "script-src 'self';" in docs.headers["content-security-policy"]
    assert "http" not in docs.headers["content-security-policy"], "no other origin"
    assert docs.headers["x-frame-options"] == "DENY"


# --- auth -----------------------------------------------------------------------------------

@pytest.fixture
def auth_client(database_url: str, read_url: str) -> Iterator[TestClient]:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    settings = api_settings(database_url, read_url,
                            api_token_hashes=[hashlib.sha256(b"other").hexdigest(), digest])
    with TestClient(create_app(settings)) as c:
        yield c


def test_auth_required_when_tokens_configured(
        auth_client: TestClient, writer: Conn) -> None:
    rid = insert_resource(writer)
    for path in (f"/api/v1/resources/{rid}", "/api/v1/resources",
                 f"/api/v1/commands/{uuid.uuid4()}"):
        resp = auth_client.get(path)
        assert_problem(resp, 401, "RES-005")
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert_problem(auth_client.get(path, headers={"Authorization": f"Basic {TOKEN}"}),
                       401, "RES-005")
        assert_problem(auth_client.get(path, headers={"Authorization": "Bearer wrong"}),
                       403, "RES-006")
    ok = auth_client.get(f"/api/v1/resources/{rid}",
                         headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert ok.json()["id"] == str(rid)
    for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert auth_client.get(open_path).status_code == 200
    doc = auth_client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "401" in doc["paths"]["/api/v1/resources"]["get"]["responses"]


def test_auth_off_by_default(client: TestClient, writer: Conn) -> None:
    rid = insert_resource(writer)
    assert client.get(f"/api/v1/resources/{rid}",
                      headers={"Authorization": "Bearer anything"}).status_code == 200


# --- the read-only role and the pool's lifecycle --------------------------------------------

@pytest.mark.parametrize("statement", [
    "INSERT INTO resources (name, last_command_id) VALUES ('x', gen_random_uuid())",
    "UPDATE resources SET name = 'x'",
    "DELETE FROM processed_commands",
    "SELECT * FROM outbox",
    "CREATE TABLE sneaky (id int)",
])
def test_api_role_cannot_write(read_url: str, statement: str) -> None:
    with psycopg.connect(read_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_api_sessions_are_read_only_even_with_a_writer_url(database_url: str) -> None:
    from psycopg_pool import AsyncConnectionPool

    from phoenix_resources.adapters.postgres.queries import _connection

    async def attempt() -> None:
        pool = AsyncConnectionPool(database_url, min_size=1, open=False)
        async with pool, _connection(pool) as conn:
            await conn.execute("INSERT INTO resources (name, last_command_id)"
                               " VALUES ('x', gen_random_uuid())")

    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        asyncio.run(attempt())


def _api_connections(writer: Conn) -> int:
    row = writer.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
                         " AND datname = current_database()", (API_ROLE,)).fetchone()
    assert row is not None
    return int(row[0])


def test_lifespan_opens_and_closes_the_pool(database_url: str, read_url: str,
                                            writer: Conn) -> None:
    app = create_app(api_settings(database_url, read_url))
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 200
        assert _api_connections(writer) >= 1
    # A backend exits asynchronously once its client has closed the socket.
    wait_until(lambda: _api_connections(writer) == 0, 10, "the API's connections closed")


def test_build_server_serves_over_tcp(database_url: str, read_url: str,
                                      writer: Conn) -> None:
    rid = insert_resource(writer)
    port = free_port()
    server = build_server(api_settings(database_url, read_url, http_port=port))

    async def run() -> httpx.Response:
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.02)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
                return await c.get(f"/api/v1/resources/{rid}")
        finally:
            server.should_exit = True
            await task

    resp = asyncio.run(run())
    assert resp.status_code == 200
    assert orjson.loads(resp.content)["id"] == str(rid)
    assert "server" not in resp.headers
