"""The gRPC writes and WatchResources over a real channel, with the real worker and relay
(``Pipeline``) on a real broker and PostgreSQL: commands are published, applied by the
worker, and their events stream back in order, resumably."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.grpc.positions import partition_for
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from tests.support.grpc_server import RunningServer, grpc_settings, refused
from tests.support.kafka import Topics, read_all
from tests.support.pipeline import Pipeline, wait_until

pytestmark = pytest.mark.integration

WAIT = 60.0
"""Deadline of calls that wait for the worker (generous: the machine is shared)."""


def _create(api: RunningServer, name: str, **fields: object) -> pb.CommandReceipt:
    receipt: pb.CommandReceipt = api.stub.CreateResource(
        pb.CreateResourceRequest(name=name, wait_for_outcome=True, **fields),  # type: ignore[arg-type]
        timeout=WAIT)
    return receipt


def _rename(api: RunningServer, rid: str, name: str) -> pb.CommandReceipt:
    receipt: pb.CommandReceipt = api.stub.UpdateResource(
        pb.UpdateResourceRequest(resource_id=rid, name=name, wait_for_outcome=True),
        timeout=WAIT)
    return receipt


def _take(stream: Iterator[pb.ResourceEvent], n: int) -> list[pb.ResourceEvent]:
    return [next(stream) for _ in range(n)]


# --- writes ---------------------------------------------------------------------------------

def test_create_update_delete_with_wait_for_outcome(api: RunningServer,
                                                    settings: Settings) -> None:
    with Pipeline(settings):
        created = _create(api, "db-1", config={"cpu": "2"}, correlation_id="corr-7")
        assert created.outcome.outcome == pb.OUTCOME_APPLIED
        assert created.outcome.resulting_version == 1
        assert created.outcome.command_id == created.command_id
        rid = created.resource_id
        got = api.stub.GetResource(pb.GetResourceRequest(id=rid), timeout=10)
        assert (got.name, dict(got.config), got.status, got.version, got.last_command_id) == (
            "db-1", {"cpu": "2"}, pb.RESOURCE_STATUS_PENDING, 1, created.command_id)

        updated = api.stub.UpdateResource(pb.UpdateResourceRequest(
            resource_id=rid, status=pb.RESOURCE_STATUS_ACTIVE, config=pb.Config(),
            expected_version=1, wait_for_outcome=True), timeout=WAIT)
        assert (updated.outcome.outcome, updated.outcome.resulting_version) == (
            pb.OUTCOME_APPLIED, 2)
        got = api.stub.GetResource(pb.GetResourceRequest(id=rid), timeout=10)
        assert (got.name, dict(got.config), got.status) == (
            "db-1", {}, pb.RESOURCE_STATUS_ACTIVE), "unset fields unchanged, config cleared"

        stale = api.stub.UpdateResource(pb.UpdateResourceRequest(
            resource_id=rid, name="x", expected_version=1, wait_for_outcome=True),
            timeout=WAIT)
        assert (stale.outcome.outcome, stale.outcome.error_code) == (
            pb.OUTCOME_REJECTED, "CMD-006")

        deleted = api.stub.DeleteResource(pb.DeleteResourceRequest(
            resource_id=rid, wait_for_outcome=True), timeout=WAIT)
        assert deleted.outcome.outcome == pb.OUTCOME_APPLIED
        with pytest.raises(grpc.RpcError) as e:
            api.stub.GetResource(pb.GetResourceRequest(id=rid), timeout=10)
        refused(e.value, grpc.StatusCode.NOT_FOUND, "RES-004")

        outcome = api.stub.GetCommand(pb.GetCommandRequest(command_id=created.command_id),
                                      timeout=10)
        assert (outcome.outcome, outcome.correlation_id, outcome.command_type) == (
            pb.OUTCOME_APPLIED, "corr-7", pb.COMMAND_TYPE_CREATE)


def test_writes_without_waiting_return_the_command_id_at_once(
        api: RunningServer, settings: Settings, topics: Topics) -> None:
    rid = str(uuid.uuid4())
    receipt, call = api.stub.CreateResource.with_call(
        pb.CreateResourceRequest(resource_id=rid, name="later"), timeout=30)
    assert receipt.resource_id == rid
    assert not receipt.HasField("outcome")
    assert dict(call.initial_metadata())["phoenix-command-id"] == receipt.command_id
    records = read_all(settings.kafka_bootstrap_servers, topics.commands, expected=1)
    assert [(m.key(), m.partition()) for m in records] == [
        (rid.encode(), partition_for(rid.encode(), 3))], "keyed by resource, Java partition"
    with Pipeline(settings):
        wait_until(lambda: _outcome(api, receipt.command_id) == pb.OUTCOME_APPLIED,
                   what="the worker to apply the command")


def _outcome(api: RunningServer, command_id: str) -> int:
    try:
        out: pb.CommandOutcome = api.stub.GetCommand(
            pb.GetCommandRequest(command_id=command_id), timeout=10)
    except grpc.RpcError:
        return pb.OUTCOME_UNSPECIFIED
    return out.outcome


def test_a_retry_with_the_same_command_id_is_applied_once(api: RunningServer,
                                                          settings: Settings) -> None:
    cid, rid = str(uuid.uuid4()), str(uuid.uuid4())
    request = pb.CreateResourceRequest(resource_id=rid, name="once", command_id=cid,
                                       wait_for_outcome=True)
    with Pipeline(settings):
        first = api.stub.CreateResource(request, timeout=WAIT)
        again = api.stub.CreateResource(request, timeout=WAIT)
        assert first.command_id == again.command_id == cid
        assert first.outcome.outcome == again.outcome.outcome == pb.OUTCOME_APPLIED
        assert first.outcome.resulting_version == again.outcome.resulting_version == 1
        wait_until(lambda: api.stub.GetCommand(pb.GetCommandRequest(command_id=cid),
                                               timeout=10).duplicate_deliveries == 1,
                   what="the repeat to be counted as a duplicate")
        assert api.stub.GetResource(pb.GetResourceRequest(id=rid), timeout=10).version == 1


@pytest.mark.parametrize(("request_", "reason"), [
    (pb.CreateResourceRequest(name=""), "CMD-001"),
    (pb.CreateResourceRequest(name="   "), "CMD-001"),
    (pb.CreateResourceRequest(name="x" * 256), "CMD-001"),
    (pb.CreateResourceRequest(name="ok", config={"": "v"}), "CMD-002"),
    (pb.CreateResourceRequest(name="ok", config={f"k{i}": "v" * 4000 for i in range(100)}),
     "too-large"),
    (pb.CreateResourceRequest(name="ok", resource_id="nope"), "invalid-field"),
    (pb.CreateResourceRequest(name="ok", status=9), "invalid-field"),  # type: ignore[arg-type]
    (pb.UpdateResourceRequest(resource_id="nope"), "invalid-field"),
    (pb.UpdateResourceRequest(resource_id=str(uuid.uuid4()), expected_version=-1), "CMD-006"),
    (pb.DeleteResourceRequest(resource_id=""), "invalid-field"),
])
def test_invalid_commands_are_invalid_argument_and_not_sent(
        api: RunningServer, settings: Settings, topics: Topics,
        request_: pb.CreateResourceRequest | pb.UpdateResourceRequest | pb.DeleteResourceRequest,
        reason: str) -> None:
    method = {pb.CreateResourceRequest: api.stub.CreateResource,
              pb.UpdateResourceRequest: api.stub.UpdateResource,
              pb.DeleteResourceRequest: api.stub.DeleteResource}[type(request_)]
    with pytest.raises(grpc.RpcError) as e:
        method(request_, timeout=10)
    refused(e.value, grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert read_all(settings.kafka_bootstrap_servers, topics.commands, idle=1.0) == []


def test_waiting_past_the_deadline_is_deadline_exceeded_and_the_command_stays_sent(
        api: RunningServer, settings: Settings) -> None:
    with pytest.raises(grpc.RpcError) as e:
        api.stub.CreateResource(pb.CreateResourceRequest(name="slow", wait_for_outcome=True),
                                timeout=2.0)  # no worker runs: no outcome can come
    assert isinstance(e.value, grpc.Call)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    command_id = dict(e.value.initial_metadata() or ())["phoenix-command-id"]
    with Pipeline(settings):
        wait_until(lambda: _outcome(api, command_id) == pb.OUTCOME_APPLIED,
                   what="the command sent before the deadline to be applied")


# --- WatchResources -------------------------------------------------------------------------

def test_watch_streams_events_in_version_order_and_resumes_without_gaps(
        api: RunningServer, settings: Settings) -> None:
    with Pipeline(settings):
        stream = api.stub.WatchResources(pb.WatchResourcesRequest(), timeout=WAIT * 2)
        start = dict(stream.initial_metadata())["phoenix-position"]
        assert start
        a = _create(api, "a").resource_id
        b = _create(api, "b").resource_id
        for i in range(3):
            _rename(api, a, f"a{i}")
        first = _take(stream, 5)
        stream.cancel()

        by_resource = {a: [e.version for e in first if e.resource_id == a],
                       b: [e.version for e in first if e.resource_id == b]}
        assert by_resource == {a: [1, 2, 3, 4], b: [1]}
        types = [e.event_type for e in first if e.resource_id == a]
        assert types == [pb.EVENT_TYPE_CREATED] + [pb.EVENT_TYPE_UPDATED] * 3
        last_a = [e for e in first if e.resource_id == a][-1]
        assert (last_a.resource.name, last_a.resource.version) == ("a2", 4)
        assert last_a.traceparent.startswith("00-")

        # Meanwhile, with nobody watching:
        _rename(api, a, "a3")
        _rename(api, b, "b1")
        api.stub.DeleteResource(pb.DeleteResourceRequest(resource_id=a, wait_for_outcome=True),
                                timeout=WAIT)
        resumed = api.stub.WatchResources(
            pb.WatchResourcesRequest(after_position=first[-1].position), timeout=WAIT * 2)
        rest = _take(resumed, 3)
        resumed.cancel()
        assert sorted((e.resource_id, e.version) for e in rest) == sorted(
            [(a, 5), (a, 6), (b, 2)]), "exactly the events after the position"
        assert [e.event_type for e in rest if e.resource_id == a] == [
            pb.EVENT_TYPE_UPDATED, pb.EVENT_TYPE_DELETED]
        assert not [e for e in rest if e.resource_id == a][-1].HasField("resource")

        # From the starting position again: everything, once.
        replay = api.stub.WatchResources(pb.WatchResourcesRequest(after_position=start),
                                         timeout=WAIT * 2)
        every = _take(replay, 8)
        replay.cancel()
        assert [e.event_id for e in every if e.resource_id == a] == \
            [e.event_id for e in [*first, *rest] if e.resource_id == a]


def test_watch_one_resource_reads_only_its_events(api: RunningServer,
                                                  settings: Settings) -> None:
    with Pipeline(settings):
        created = [_create(api, f"r{i}").resource_id for i in range(6)]
        target = created[2]
        for i in range(2):
            _rename(api, target, f"t{i}")
        stream = api.stub.WatchResources(
            pb.WatchResourcesRequest(resource_id=target, from_beginning=True), timeout=WAIT * 2)
        mine = _take(stream, 3)
        assert [(e.resource_id, e.version) for e in mine] == [(target, v) for v in (1, 2, 3)]
        # Live: the next event of the target arrives; other resources' never do.
        _rename(api, created[3], "other")
        _rename(api, target, "t2")
        (live,) = _take(stream, 1)
        stream.cancel()
        assert (live.resource_id, live.version) == (target, 4)

        # Resume this resource from its position; a position is tied to its scope.
        after = api.stub.WatchResources(pb.WatchResourcesRequest(
            resource_id=target, after_position=mine[-1].position), timeout=WAIT)
        (again,) = _take(after, 1)
        after.cancel()
        assert (again.resource_id, again.version) == (target, 4)
        with pytest.raises(grpc.RpcError) as e:
            next(api.stub.WatchResources(pb.WatchResourcesRequest(
                after_position=mine[-1].position), timeout=10))
        refused(e.value, grpc.StatusCode.INVALID_ARGUMENT, "RES-001")


def test_watch_since_a_time_and_until_the_deadline(api: RunningServer,
                                                   settings: Settings) -> None:
    with Pipeline(settings):
        rid = _create(api, "s").resource_id
    request = pb.WatchResourcesRequest()
    request.since.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    stream = api.stub.WatchResources(request, timeout=WAIT)
    (event,) = _take(stream, 1)
    stream.cancel()
    assert (event.resource_id, event.version) == (rid, 1)
    later = pb.WatchResourcesRequest()
    later.since.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    quiet = api.stub.WatchResources(later, timeout=3)
    with pytest.raises(grpc.RpcError) as e:
        next(quiet)  # nothing comes: the client's deadline ends the stream
    assert isinstance(e.value, grpc.Call)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_shutdown_ends_streams_with_unavailable_and_their_position(
        settings: Settings, read_url: str) -> None:
    running = RunningServer(grpc_settings(settings, read_url))
    with running:
        stream = running.stub.WatchResources(pb.WatchResourcesRequest(), timeout=WAIT)
        position = dict(stream.initial_metadata())["phoenix-position"]
        running.server.stop()
        with pytest.raises(grpc.RpcError) as e:
            next(stream)
        metadata = refused(e.value, grpc.StatusCode.UNAVAILABLE, "RES-007")
        assert metadata["position"] == position
