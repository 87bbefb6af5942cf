"""The gRPC lookups over a real channel, against real PostgreSQL through the read-only role:
the HTTP API's semantics and codes, auth, health and reflection."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.grpc.positions import encode_position
from phoenix_resources.entrypoints.http.app import create_app
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from tests.support.grpc_server import RunningServer, grpc_settings, refused
from tests.support.http_api import Conn, TestClient, api_settings, insert_command, insert_resource

pytestmark = pytest.mark.integration

TOKEN = "grpc-s3cret"
SERVICE = "phoenix.resources.v1.ResourceService"


# --- GetResource ----------------------------------------------------------------------------

def test_get_resource_answers_what_the_http_api_answers(
        api: RunningServer, writer: Conn, database_url: str, read_url: str) -> None:
    rid = insert_resource(writer, name="db-1", version=3, config={"cpu": "2"})
    got = api.stub.GetResource(pb.GetResourceRequest(id=str(rid)), timeout=10)
    with TestClient(create_app(api_settings(database_url, read_url))) as http:
        body = http.get(f"/api/v1/resources/{rid}").json()
    assert (got.id, got.name, dict(got.config), got.version, got.last_command_id) == (
        body["id"], body["name"], body["config"], body["version"], body["last_command_id"])
    assert got.status == pb.RESOURCE_STATUS_ACTIVE
    assert got.created_at.ToDatetime(UTC) == datetime.fromisoformat(body["created_at"])
    assert got.updated_at.ToDatetime(UTC) == datetime.fromisoformat(body["updated_at"])


def test_get_resource_errors(api: RunningServer, writer: Conn) -> None:
    gone = insert_resource(writer, deleted=True, version=4)
    with pytest.raises(grpc.RpcError) as e:
        api.stub.GetResource(pb.GetResourceRequest(id=str(gone)), timeout=10)
    meta = refused(e.value, grpc.StatusCode.NOT_FOUND, "RES-004")
    assert meta["version"] == "4"
    assert meta["deleted_at"].endswith("Z")
    with pytest.raises(grpc.RpcError) as e:
        api.stub.GetResource(pb.GetResourceRequest(id=str(uuid.uuid4())), timeout=10)
    refused(e.value, grpc.StatusCode.NOT_FOUND, "RES-002")
    for bad in ["", "not-a-uuid", "' OR 1=1 --"]:
        with pytest.raises(grpc.RpcError) as e:
            api.stub.GetResource(pb.GetResourceRequest(id=bad), timeout=10)
        refused(e.value, grpc.StatusCode.INVALID_ARGUMENT, "RES-001")


def test_get_resource_answers_each_version_as_stored_and_a_deletion_at_once(
        api: RunningServer, writer: Conn) -> None:
    rid = insert_resource(writer, name="before", version=1)
    for _ in range(3):  # answered again and again: the same message
        assert api.stub.GetResource(pb.GetResourceRequest(id=str(rid)), timeout=10).name == \
            "before"
    writer.execute("UPDATE resources SET name = 'after', version = 2 WHERE id = %s", (rid,))
    got = api.stub.GetResource(pb.GetResourceRequest(id=str(rid)), timeout=10)
    assert (got.name, got.version) == ("after", 2)
    writer.execute("UPDATE resources SET deleted_at = now(), version = 3 WHERE id = %s", (rid,))
    with pytest.raises(grpc.RpcError) as e:
        api.stub.GetResource(pb.GetResourceRequest(id=str(rid)), timeout=10)
    assert refused(e.value, grpc.StatusCode.NOT_FOUND, "RES-004")["version"] == "3"


def test_calls_without_a_deadline_get_the_servers_budget(api: RunningServer,
                                                         writer: Conn) -> None:
    rid = insert_resource(writer)
    assert api.stub.GetResource(pb.GetResourceRequest(id=str(rid))).id == str(rid)


# --- ListResources --------------------------------------------------------------------------

def _walk_grpc(api: RunningServer, **request: Any) -> list[tuple[list[str], str]]:
    pages, token = [], ""
    while True:
        page = api.stub.ListResources(pb.ListResourcesRequest(page_token=token, **request),
                                      timeout=10)
        pages.append(([r.id for r in page.resources], page.next_page_token))
        token = page.next_page_token
        if not token:
            return pages


def _walk_http(http: TestClient, **params: Any) -> list[tuple[list[str], str]]:
    pages, cursor = [], None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        body = http.get("/api/v1/resources", params=query).json()
        pages.append(([r["id"] for r in body["items"]], body["next_cursor"] or ""))
        cursor = body["next_cursor"]
        if not cursor:
            return pages


def test_list_pages_and_tokens_are_the_http_apis(
        api: RunningServer, writer: Conn, database_url: str, read_url: str) -> None:
    for i, name in enumerate(["web-1", "web-2", "web_x", "web%y", "db-1", "db-2", "web-3"]):
        insert_resource(writer, name=name, status="active" if i % 3 else "pending")
    insert_resource(writer, name="web-gone", deleted=True)
    with TestClient(create_app(api_settings(database_url, read_url))) as http:
        assert _walk_grpc(api, page_size=3) == _walk_http(http, limit=3)
        assert _walk_grpc(api, page_size=2, name_prefix="web") == \
            _walk_http(http, limit=2, name_prefix="web")
        assert _walk_grpc(api, status=pb.RESOURCE_STATUS_ACTIVE, page_size=2) == \
            _walk_http(http, status="active", limit=2)
        # A page token is an HTTP cursor and the other way round.
        first = http.get("/api/v1/resources", params={"limit": 2}).json()
        page = api.stub.ListResources(pb.ListResourcesRequest(
            page_size=2, page_token=first["next_cursor"]), timeout=10)
        second = http.get("/api/v1/resources",
                          params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r.id for r in page.resources] == [r["id"] for r in second["items"]]
    names = [r.name for r in api.stub.ListResources(
        pb.ListResourcesRequest(name_prefix="web_"), timeout=10).resources]
    assert names == ["web_x"], "wildcards are literal"
    everything = api.stub.ListResources(pb.ListResourcesRequest(), timeout=10)
    assert len(everything.resources) == 7
    assert everything.next_page_token == ""


@pytest.mark.parametrize("request_", [
    pb.ListResourcesRequest(page_size=501), pb.ListResourcesRequest(page_size=-1),
    pb.ListResourcesRequest(name_prefix=""), pb.ListResourcesRequest(name_prefix="x" * 256),
    pb.ListResourcesRequest(status=7),  # type: ignore[arg-type]
    pb.ListResourcesRequest(page_token="%%%"), pb.ListResourcesRequest(page_token="bm9wZQ"),
    pb.ListResourcesRequest(page_token="WyJub3QtYS11dWlkIl0"),
    pb.ListResourcesRequest(page_token="A" * 3000),
])
def test_bad_list_requests_are_res001(api: RunningServer,
                                      request_: pb.ListResourcesRequest) -> None:
    with pytest.raises(grpc.RpcError) as e:
        api.stub.ListResources(request_, timeout=10)
    refused(e.value, grpc.StatusCode.INVALID_ARGUMENT, "RES-001")


@pytest.mark.parametrize("request_", [
    pb.ListResourcesRequest(name_prefix="\x00"),
    pb.ListResourcesRequest(name_prefix="db\x00x"),
    pb.ListResourcesRequest(name_prefix="db", page_token=base64.urlsafe_b64encode(
        b'["db\\u0000", "' + str(uuid.UUID(int=1)).encode() + b'"]').rstrip(b"=").decode()),
])
def test_values_postgresql_refuses_are_invalid_argument_not_internal(
        api: RunningServer, writer: Conn, request_: pb.ListResourcesRequest,
        caplog: pytest.LogCaptureFixture) -> None:
    insert_resource(writer, name="db-1")
    with caplog.at_level("WARNING", logger="phoenix_resources"), \
            pytest.raises(grpc.RpcError) as e:
        api.stub.ListResources(request_, timeout=10)
    refused(e.value, grpc.StatusCode.INVALID_ARGUMENT, "RES-001")
    assert [r for r in caplog.records if r.exc_info is not None] == []


def test_default_pages_of_large_resources_fit_in_a_message_and_skip_nothing(
        api: RunningServer, writer: Conn) -> None:
    config = {f"k{i}": "v" * 4000 for i in range(25)}  # ~100 kB: 50 of them exceed 4 MiB
    ids = {str(insert_resource(writer, name=f"big-{i}", config=config)) for i in range(50)}
    seen: list[str] = []
    token = ""
    for _ in range(60):
        page = api.stub.ListResources(pb.ListResourcesRequest(page_token=token), timeout=10)
        assert page.ByteSize() <= api.server.settings.grpc_page_max_bytes + 4096
        seen += [r.id for r in page.resources]
        if not (token := page.next_page_token):
            break
    assert sorted(seen) == sorted(ids)


def test_a_page_token_is_valid_only_with_the_same_name_prefix(api: RunningServer,
                                                              writer: Conn) -> None:
    for i in range(3):
        insert_resource(writer, name=f"n-{i}")
    token = api.stub.ListResources(pb.ListResourcesRequest(page_size=1),
                                   timeout=10).next_page_token
    assert token
    with pytest.raises(grpc.RpcError) as e:
        api.stub.ListResources(pb.ListResourcesRequest(page_token=token, name_prefix="n"),
                               timeout=10)
    refused(e.value, grpc.StatusCode.INVALID_ARGUMENT, "RES-001")


# --- GetCommand -----------------------------------------------------------------------------

def test_get_command(api: RunningServer, writer: Conn) -> None:
    cid = insert_command(writer, outcome="rejected", error_code="CMD-006",
                         error_message="stale expected_version", resulting_version=None,
                         duplicates=2)
    out = api.stub.GetCommand(pb.GetCommandRequest(command_id=str(cid)), timeout=10)
    assert (out.command_id, out.outcome, out.error_code, out.duplicate_deliveries,
            out.correlation_id, out.command_type) == (
        str(cid), pb.OUTCOME_REJECTED, "CMD-006", 2, "corr-1", pb.COMMAND_TYPE_UPDATE)
    assert not out.HasField("resulting_version")
    applied = insert_command(writer, resulting_version=5)
    out = api.stub.GetCommand(pb.GetCommandRequest(command_id=str(applied)), timeout=10)
    assert (out.outcome, out.resulting_version) == (pb.OUTCOME_APPLIED, 5)
    with pytest.raises(grpc.RpcError) as e:
        api.stub.GetCommand(pb.GetCommandRequest(command_id=str(uuid.uuid4())), timeout=10)
    refused(e.value, grpc.StatusCode.NOT_FOUND, "RES-002")
    with pytest.raises(grpc.RpcError) as e:
        api.stub.GetCommand(pb.GetCommandRequest(command_id="x"), timeout=10)
    refused(e.value, grpc.StatusCode.INVALID_ARGUMENT, "RES-001")


# --- auth, health, reflection ---------------------------------------------------------------

def test_bearer_tokens_guard_every_rpc_but_not_health_or_reflection(
        settings: Settings, read_url: str, writer: Conn) -> None:
    rid = insert_resource(writer)
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    with RunningServer(grpc_settings(settings, read_url, api_token_hashes=[digest])) as api:
        get = pb.GetResourceRequest(id=str(rid))
        calls = [
            lambda md: api.stub.GetResource(get, timeout=10, metadata=md),
            lambda md: api.stub.ListResources(pb.ListResourcesRequest(), timeout=10,
                                              metadata=md),
            lambda md: api.stub.GetCommand(pb.GetCommandRequest(command_id=str(rid)),
                                           timeout=10, metadata=md),
            lambda md: api.stub.DeleteResource(pb.DeleteResourceRequest(
                resource_id=str(rid)), timeout=10, metadata=md),
            lambda md: next(api.stub.WatchResources(pb.WatchResourcesRequest(), timeout=10,
                                                    metadata=md)),
        ]
        for call in calls:
            for metadata, status, reason in [
                    ((), grpc.StatusCode.UNAUTHENTICATED, "RES-005"),
                    ((("authorization", TOKEN),), grpc.StatusCode.UNAUTHENTICATED, "RES-005"),
                    ((("authorization", "Bearer wrong"),), grpc.StatusCode.PERMISSION_DENIED,
                     "RES-006")]:
                with pytest.raises(grpc.RpcError) as e:
                    call(metadata)
                refused(e.value, status, reason)
        ok = api.stub.GetResource(get, timeout=10,
                                  metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert ok.id == str(rid)
        assert api.channel is not None
        health = health_pb2_grpc.HealthStub(api.channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
        assert _services(api) >= {SERVICE}


def _services(api: RunningServer) -> set[str]:
    assert api.channel is not None
    stub = reflection_pb2_grpc.ServerReflectionStub(api.channel)
    answers = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    return {s.name for a in answers for s in a.list_services_response.service}


def test_health_and_reflection(api: RunningServer) -> None:
    assert api.channel is not None
    health = health_pb2_grpc.HealthStub(api.channel)
    for service in ("", SERVICE):
        assert health.Check(health_pb2.HealthCheckRequest(service=service),
                            timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    assert _services(api) == {SERVICE, "grpc.health.v1.Health",
                              "grpc.reflection.v1alpha.ServerReflection"}
    stub = reflection_pb2_grpc.ServerReflectionStub(api.channel)
    answer = next(iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        file_containing_symbol=SERVICE)]), timeout=10)))
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in answer.file_descriptor_response.file_descriptor_proto]
    methods = {m.name for f in files for s in f.service for m in s.method}
    assert "WatchResources" in methods
    assert len(methods) == 7
    # A method's full name is a symbol too (ghz resolves methods this way).
    by_method, unknown = stub.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=f"{SERVICE}.GetResource"),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=f"{SERVICE}.Nope")]),
        timeout=10)
    assert by_method.file_descriptor_response.file_descriptor_proto[0] == \
        answer.file_descriptor_response.file_descriptor_proto[0]
    assert unknown.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_a_port_in_use_is_an_error_at_start(api: RunningServer, settings: Settings,
                                            read_url: str) -> None:
    from phoenix_resources.entrypoints.grpc.server import GrpcServer
    from phoenix_resources.errors import ConfigurationError

    taken = grpc_settings(settings, read_url, grpc_port=api.server.port)
    with pytest.raises(ConfigurationError):
        GrpcServer(taken).run()


def test_watch_refuses_positions_it_did_not_issue(api: RunningServer) -> None:
    for request in [pb.WatchResourcesRequest(after_position="nope"),
                    pb.WatchResourcesRequest(resource_id="nope"),
                    pb.WatchResourcesRequest(after_position=encode_position(
                        "", {0: 10**9, 1: 0, 2: 0})),
                    pb.WatchResourcesRequest(resource_id=str(uuid.uuid4()),
                                             after_position=encode_position("", {0: 0}))]:
        with pytest.raises(grpc.RpcError) as e:
            next(api.stub.WatchResources(request, timeout=10))
        refused(e.value, grpc.StatusCode.INVALID_ARGUMENT, "RES-001")
