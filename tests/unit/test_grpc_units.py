"""The gRPC API's pure parts: partitions, positions, error details, message conversion."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import grpc
import orjson
import pytest
from confluent_kafka import Consumer
from google.rpc import error_details_pb2, status_pb2

from phoenix_resources.adapters.kafka import consumer_config
from phoenix_resources.adapters.postgres.queries import Listed, ListedResource
from phoenix_resources.config import Settings
from phoenix_resources.domain.events import ResourceDeleted, ResourceUpdated
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.entrypoints.grpc.convert import (
    create_from,
    event_message,
    outcome_from_json,
    resource_from_json,
    resource_page,
    status_filter,
    update_from,
)
from phoenix_resources.entrypoints.grpc.edge import CODE_METADATA, DOMAIN, STATUS_OF, refusal
from phoenix_resources.entrypoints.grpc.positions import (
    decode_position,
    encode_position,
    murmur2,
    partition_for,
)
from phoenix_resources.entrypoints.grpc.server import server_options
from phoenix_resources.entrypoints.grpc.service import start_of
from phoenix_resources.entrypoints.grpc.watch import watch_consumer_options
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.listing import decode_cursor
from phoenix_resources.errors import (
    BrokerUnavailable,
    CommandInvalid,
    DatabaseUnavailable,
    DeliveryFailed,
    DeliveryUncertain,
)
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb

pytestmark = pytest.mark.unit


# --- partitions and positions ---------------------------------------------------------------

@pytest.mark.parametrize(("data", "expected"), [
    # Kafka's own test vectors (clients/.../UtilsTest.testMurmur2)
    (b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971), (b"abc", 479470107),
])
def test_murmur2_matches_the_java_client(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_for_is_in_range_and_spreads_keys() -> None:
    keys = [str(uuid.uuid4()).encode() for _ in range(200)]
    parts = [partition_for(k, 6) for k in keys]
    assert set(parts) == set(range(6))
    assert partition_for(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7


def test_position_round_trip_and_scope() -> None:
    rid = str(uuid.uuid4())
    token = encode_position(rid, {2: 41, 0: 7})
    assert "=" not in token
    assert decode_position(token, rid) == {0: 7, 2: 41}
    with pytest.raises(p.ApiProblem) as e:
        decode_position(token, "")
    assert e.value.code is p.INVALID_REQUEST
    assert "resource" in e.value.detail


def _b64(raw: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize("token", [
    "", "%%%", "bm9wZQ", _b64([2, "", [[0, 1]]]), _b64([1, "", []]), _b64([1, "", [[0, -1]]]),
    _b64([1, "", [[0, 1.5]]]), _b64([1, "", [[0, 1], [0, 2]]]), _b64({"a": 1}), "A" * 5000])
def test_positions_this_server_did_not_issue_are_res001(token: str) -> None:
    with pytest.raises(p.ApiProblem) as e:
        decode_position(token, "")
    assert e.value.code is p.INVALID_REQUEST


def test_start_of_a_watch() -> None:
    assert start_of(pb.WatchResourcesRequest()).after_position is None
    assert start_of(pb.WatchResourcesRequest()).since_ms is None
    assert not start_of(pb.WatchResourcesRequest()).from_beginning
    assert start_of(pb.WatchResourcesRequest(from_beginning=True)).from_beginning
    assert start_of(pb.WatchResourcesRequest(after_position="x")).after_position == "x"
    since = pb.WatchResourcesRequest()
    since.since.FromMilliseconds(1_700_000_000_123)
    assert start_of(since).since_ms == 1_700_000_000_123


# --- errors ---------------------------------------------------------------------------------

def test_every_res_code_has_a_grpc_status() -> None:
    assert set(STATUS_OF) == {c.code for c in p.ALL_CODES}


@pytest.mark.parametrize(("error", "status", "reason"), [
    (p.ApiProblem(p.DELETED, "gone", deleted_at="2026-01-01T00:00:00.000000Z", version=3),
     grpc.StatusCode.NOT_FOUND, "RES-004"),
    (p.ApiProblem(p.INVALID_REQUEST, "bad"), grpc.StatusCode.INVALID_ARGUMENT, "RES-001"),
    (CommandInvalid("CMD-001", "name must not be empty"), grpc.StatusCode.INVALID_ARGUMENT,
     "CMD-001"),
    (TimeoutError(), grpc.StatusCode.DEADLINE_EXCEEDED, "RES-003"),
    (DatabaseUnavailable("down"), grpc.StatusCode.UNAVAILABLE, "RES-007"),
    (BrokerUnavailable("down"), grpc.StatusCode.UNAVAILABLE, "RES-007"),
    (DeliveryFailed("refused"), grpc.StatusCode.UNAVAILABLE, "RES-007"),
    (DeliveryUncertain("no acknowledgement"), grpc.StatusCode.DEADLINE_EXCEEDED, "RES-010"),
    (p.ApiProblem(p.DELIVERY_UNKNOWN, "maybe", command_id="c"),
     grpc.StatusCode.DEADLINE_EXCEEDED, "RES-010"),
    (KeyError("bug"), grpc.StatusCode.INTERNAL, "RES-008"),
])
def test_errors_become_a_status_with_error_info(error: Exception, status: grpc.StatusCode,
                                                reason: str) -> None:
    answer = refusal(error)
    assert answer is not None
    assert answer.status is status
    assert answer.reason == reason
    wire = answer.to_grpc()
    assert wire.code is status
    (key, raw), = wire.trailing_metadata
    assert key == "grpc-status-details-bin"
    rich = status_pb2.Status.FromString(raw)
    assert rich.code == status.value[0]
    assert rich.message == wire.details
    info = error_details_pb2.ErrorInfo()
    assert rich.details[0].Unpack(info)
    assert (info.reason, info.domain) == (reason, DOMAIN)
    if reason == "RES-004":
        assert dict(info.metadata) == {"deleted_at": "2026-01-01T00:00:00.000000Z",
                                       "version": "3"}
    if reason == "RES-008":
        assert "bug" not in wire.details


def test_cancellation_is_not_answered() -> None:
    import asyncio

    assert refusal(asyncio.CancelledError()) is None
    assert refusal(GeneratorExit()) is None
    assert CODE_METADATA == "phoenix-code"


# --- conversion -----------------------------------------------------------------------------

RESOURCE_DOC = {"id": "0b7a4f43-5f8e-4a51-9a3a-2a4c0a1b2c3d", "name": "db-1",
                "config": {"cpu": "2"}, "status": "active", "version": 3,
                "created_at": "2026-11-24T22:12:10.009999Z",
                "updated_at": "2026-11-24T22:14:02.100000Z",
                "last_command_id": "9385f1e8-fb6a-4b9d-aac2-8e15a470bc40"}


def test_resource_from_the_read_queries_document() -> None:
    r = resource_from_json(orjson.dumps(RESOURCE_DOC).decode())
    assert (r.id, r.name, dict(r.config), r.status, r.version, r.last_command_id) == (
        RESOURCE_DOC["id"], "db-1", {"cpu": "2"}, pb.RESOURCE_STATUS_ACTIVE, 3,
        RESOURCE_DOC["last_command_id"])
    assert r.created_at.ToDatetime(UTC) == datetime(2026, 11, 24, 22, 12, 10, 9999, UTC)
    assert r.updated_at.ToJsonString() == "2026-11-24T22:14:02.100Z"


def _listed(configs: list[dict[str, str]], total: int | None = None) -> Listed:
    rows = []
    for i, config in enumerate(configs):
        rid = uuid.UUID(int=i + 1)
        doc = orjson.dumps({**RESOURCE_DOC, "id": str(rid), "config": config})
        rows.append(ListedResource(doc.decode(), rid, len(doc)))
    return Listed(rows, len(rows) if total is None else total)


@pytest.mark.parametrize("budget", [20_000, 100_000, 1024 * 1024])
def test_a_page_stays_within_its_byte_budget_and_continues_after_its_last(budget: int) -> None:
    big = {f"k{i}": "é" * 4000 for i in range(12)}  # ~100 kB a resource
    listed = _listed([big] * 51)
    page = resource_page(listed, 50, budget)
    assert page.resources, "never an empty page while rows remain"
    assert len(page.resources) == 1 or page.ByteSize() <= budget + 200  # + the token
    assert len(page.resources) < 50
    assert decode_cursor(page.next_page_token, by_name=False) == uuid.UUID(
        page.resources[-1].id)
    small = resource_page(_listed([{"a": "b"}] * 3), 50, budget)
    assert (len(small.resources), small.next_page_token) == (3, "")
    cut = resource_page(_listed([{"a": "b"}] * 3, total=9), 50, budget)  # cut by SQL
    assert decode_cursor(cut.next_page_token, by_name=False) == uuid.UUID(int=3)


def test_outcome_from_the_read_queries_document() -> None:
    doc = {"command_id": str(uuid.uuid4()), "resource_id": str(uuid.uuid4()),
           "command_type": "UPDATE", "outcome": "rejected", "error_code": "CMD-006",
           "error_message": "stale", "resulting_version": None, "duplicate_deliveries": 2,
           "duplicate": True, "correlation_id": None,
           "processed_at": "2026-11-24T22:14:02.100000Z"}
    out = outcome_from_json(orjson.dumps(doc).decode())
    assert out.outcome == pb.OUTCOME_REJECTED
    assert out.command_type == pb.COMMAND_TYPE_UPDATE
    assert (out.error_code, out.duplicate_deliveries, out.correlation_id) == ("CMD-006", 2, "")
    assert not out.HasField("resulting_version")
    doc |= {"outcome": "applied", "resulting_version": 4, "error_code": None}
    applied = outcome_from_json(orjson.dumps(doc).decode())
    assert applied.HasField("resulting_version")
    assert applied.resulting_version == 4


def test_events_carry_their_position_and_state() -> None:
    rid, cid = uuid.uuid4(), uuid.uuid4()
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    resource = Resource(id=rid, name="n", config={"a": "b"}, status=Status.INACTIVE,
                        version=2, created_at=at, updated_at=at, last_command_id=cid)
    msg = event_message(ResourceUpdated(event_id=uuid.uuid4(), resource_id=rid, version=2,
                                        occurred_at=at, command_id=cid, correlation_id=None,
                                        changed_fields=("status",), resource=resource),
                        "POS", "00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert (msg.event_type, msg.version, msg.position, list(msg.changed_fields)) == (
        pb.EVENT_TYPE_UPDATED, 2, "POS", ["status"])
    assert msg.resource.status == pb.RESOURCE_STATUS_INACTIVE
    assert msg.traceparent.startswith("00-")
    gone = event_message(ResourceDeleted(event_id=uuid.uuid4(), resource_id=rid, version=3,
                                         occurred_at=at, command_id=cid, correlation_id="c",
                                         changed_fields=(), resource=None), "P2", None)
    assert not gone.HasField("resource")
    assert (gone.event_type, gone.correlation_id, gone.traceparent) == (
        pb.EVENT_TYPE_DELETED, "c", "")


def test_requests_become_the_client_librarys_commands() -> None:
    create = create_from(pb.CreateResourceRequest(name="db", config={"k": "v"}))
    assert create.status is Status.PENDING
    assert dict(create.config) == {"k": "v"}
    assert isinstance(create.resource_id, uuid.UUID)
    cid = uuid.uuid4()
    same = create_from(pb.CreateResourceRequest(name="db", command_id=str(cid)))
    assert same.command_id == cid
    unchanged = update_from(pb.UpdateResourceRequest(resource_id=str(uuid.uuid4())))
    assert (unchanged.name, unchanged.config, unchanged.status, unchanged.expected_version) \
        == (None, None, None, None)
    cleared = update_from(pb.UpdateResourceRequest(
        resource_id=str(uuid.uuid4()), name="db-2", config=pb.Config(), expected_version=0,
        status=pb.RESOURCE_STATUS_ACTIVE))
    assert (cleared.name, cleared.config, cleared.status, cleared.expected_version) == (
        "db-2", {}, Status.ACTIVE, 0)
    with pytest.raises(CommandInvalid) as e:  # set, but empty: the rule's code, nothing sent
        update_from(pb.UpdateResourceRequest(resource_id=str(uuid.uuid4()), name=""))
    assert e.value.code == "CMD-001"


@pytest.mark.parametrize("request_", [
    pb.UpdateResourceRequest(resource_id="nope"),
    pb.UpdateResourceRequest(resource_id=str(uuid.uuid4()), status=9),  # type: ignore[arg-type]
    pb.CreateResourceRequest(name="x", command_id="nope"),
])
def test_malformed_command_fields_are_invalid_field(
        request_: pb.UpdateResourceRequest | pb.CreateResourceRequest) -> None:
    def convert() -> object:
        if isinstance(request_, pb.CreateResourceRequest):
            return create_from(request_)
        return update_from(request_)

    with pytest.raises(CommandInvalid) as e:
        convert()
    assert e.value.code == "invalid-field"


def test_status_filter() -> None:
    assert status_filter(pb.RESOURCE_STATUS_UNSPECIFIED) is None
    assert status_filter(pb.RESOURCE_STATUS_PENDING) is Status.PENDING
    with pytest.raises(p.ApiProblem):
        status_filter(42)


# --- lookup waves ---------------------------------------------------------------------------

class _SlowQueries:
    """Answers after ten loop turns (a query takes longer than calls take to arrive);
    records the ids of each loop turn's lookups (one turn = one coalesced query)."""

    def __init__(self) -> None:
        self.turns: list[list[uuid.UUID]] = []
        self._turn: list[uuid.UUID] | None = None
        self.fail: set[uuid.UUID] = set()

    async def resource(self, rid: uuid.UUID) -> object:
        import asyncio

        if self._turn is None:
            self._turn = []
            self.turns.append(self._turn)
            asyncio.get_running_loop().call_soon(self._close_turn)
        self._turn.append(rid)
        for _ in range(10):
            await asyncio.sleep(0)
        if rid in self.fail:
            raise DatabaseUnavailable("down")
        return rid

    def _close_turn(self) -> None:
        self._turn = None


def test_lookup_waves_group_waiting_lookups_and_answer_each() -> None:
    import asyncio

    from phoenix_resources.entrypoints.grpc.lookup import LookupWaves

    queries = _SlowQueries()
    ids = [uuid.uuid4() for _ in range(20)]
    queries.fail = {ids[7]}

    async def run() -> list[object]:
        waves = LookupWaves(queries, limit=2)  # type: ignore[arg-type]
        out = []
        for i in ids:  # one call per loop turn, as gRPC starts them
            out.append(asyncio.ensure_future(waves.resource(i)))
            await asyncio.sleep(0)
        results = await asyncio.gather(*out, return_exceptions=True)
        assert waves.running == 0
        return results

    results = asyncio.run(run())
    assert [r for r in results if not isinstance(r, Exception)] == [
        i for i in ids if i != ids[7]]
    assert isinstance(results[7], DatabaseUnavailable)
    assert len(queries.turns) < len(ids) / 2, queries.turns
    assert sorted(i for turn in queries.turns for i in turn) == sorted(ids)


def test_a_cancelled_waiting_lookup_leaves_its_wave() -> None:
    import asyncio

    from phoenix_resources.entrypoints.grpc.lookup import LookupWaves

    queries = _SlowQueries()

    async def run() -> None:
        waves = LookupWaves(queries, limit=1)  # type: ignore[arg-type]
        first = asyncio.ensure_future(waves.resource(uuid.uuid4()))
        await asyncio.sleep(0)
        waiting = [asyncio.ensure_future(waves.resource(uuid.uuid4())) for _ in range(3)]
        await asyncio.sleep(0)
        waiting[1].cancel()
        await asyncio.gather(first, *waiting, return_exceptions=True)
        assert waves.running == 0
        assert await waves.resource(uuid.uuid4()) is not None

    asyncio.run(run())


def test_the_server_options_carry_every_bound() -> None:
    options = dict(server_options(Settings(**{
        "grpc_max_connections": 7, "grpc_max_concurrent_streams": 9,
        "grpc_handshake_timeout_s": 3.0, "grpc_keepalive_s": 11.0,
        "grpc_client_ping_min_interval_s": 13.0, "grpc_max_connection_idle_s": 17.0,
        "grpc_max_message_bytes": 5 * 1024 * 1024})))  # type: ignore[arg-type]
    assert options == {
        "grpc.so_reuseport": 0,
        "grpc.max_send_message_length": 5 * 1024 * 1024,
        "grpc.max_receive_message_length": 5 * 1024 * 1024,
        "grpc.max_allowed_incoming_connections": 7, "grpc.max_concurrent_streams": 9,
        "grpc.server_handshake_timeout_ms": 3000, "grpc.keepalive_time_ms": 11000,
        "grpc.keepalive_timeout_ms": 20000,
        "grpc.http2.min_ping_interval_without_data_ms": 13000,
        "grpc.http2.max_ping_strikes": 2, "grpc.max_connection_idle_ms": 17000}


@pytest.mark.parametrize("buffer", [64 * 1024, 1024 * 1024, 8 * 1024 * 1024])
def test_a_watch_streams_consumer_prefetches_a_bounded_amount(buffer: int) -> None:
    settings = Settings(grpc_watch_buffer_bytes=buffer, kafka_bootstrap_servers="127.0.0.1:9")
    config = consumer_config(settings, "phoenix-grpc-watch-x", **watch_consumer_options(settings))
    assert config["queued.max.messages.kbytes"] == buffer // 1024  # librdkafka: 65,536
    assert config["fetch.max.bytes"] == config["max.partition.fetch.bytes"] == buffer
    assert config["queued.min.messages"] <= 1000  # librdkafka: 100,000
    assert config["enable.auto.commit"] is False
    Consumer(config).close()  # librdkafka accepts the combination
