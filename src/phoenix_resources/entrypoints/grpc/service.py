"""``phoenix.resources.v1.ResourceService``: the RPCs (``proto/phoenix/resources/v1``).

Guarantees (each RPC goes through :class:`~.edge.Edge`: auth, errors, metrics):

* **Reads** (``GetResource``, ``ListResources``, ``GetCommand``) run the HTTP API's
  queries (:class:`ReadQueries`) on a pool of the read-only role, with its semantics: a
  deleted resource is RES-004, an unknown one RES-002, page tokens are its keyset cursors
  (``http.listing.encode_cursor`` / ``decode_cursor``, the very same functions),
  ``page_size`` 1..500.
* **Writes** publish one command through the client library's :class:`CommandPublisher`
  (validated locally first: INVALID_ARGUMENT with the rule's code, nothing sent) and return
  once the broker acknowledged it; the worker stays the only writer. The command id goes
  out first, as initial metadata ``phoenix-command-id``, so even a call that then fails
  tells which command to retry (same ``command_id``: applied at most once) or look up.
  ``wait_for_outcome`` polls the recorded outcome until the call's budget ends
  (DEADLINE_EXCEEDED RES-003, ``command_id`` in the ErrorInfo metadata).
* **WatchResources**: see :mod:`.watch`. At most ``grpc_max_watch_streams`` at once
  (more: UNAVAILABLE RES-007); on shutdown each stream ends UNAVAILABLE RES-007 with its
  position in the ErrorInfo metadata.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

from phoenix_resources.adapters.postgres.queries import ReadQueries, ResourceDoc
from phoenix_resources.client import CommandPublisher, Sent
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.domain.model import NAME_MAX
from phoenix_resources.entrypoints.grpc.convert import (
    create_from,
    delete_from,
    outcome_from_json,
    parse_id,
    resource_from_json,
    status_filter,
    update_from,
)
from phoenix_resources.entrypoints.grpc.edge import Context, Edge, budget, within
from phoenix_resources.entrypoints.grpc.watch import EventTail, Start
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.listing import (
    CURSOR_MAX,
    LIMIT_DEFAULT,
    LIMIT_MAX,
    decode_cursor,
    encode_cursor,
)
from phoenix_resources.errors import DeliveryFailed
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2_grpc as pb_grpc
from phoenix_resources.wire.events import EventCodec

COMMAND_ID_METADATA = "phoenix-command-id"
RESOURCE_ID_METADATA = "phoenix-resource-id"
POSITION_METADATA = "phoenix-position"
CURSOR = re.compile(rf"[A-Za-z0-9_-]{{1,{CURSOR_MAX}}}")
"""What the HTTP API accepts as a cursor (its `cursor` parameter's pattern and length)."""
_POLL_FIRST_S, _POLL_MAX_S = 0.01, 0.2


class CommandSender:
    """A :class:`CommandPublisher` for the event loop: ``submit`` on the loop, delivery
    reports served by a thread of its own and settled on the loop."""

    def __init__(self, publisher: CommandPublisher) -> None:
        self.publisher = publisher
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="phoenix-grpc-deliveries",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.publisher.poll(0.1)

    async def send(self, command: AnyCommand) -> Sent:
        """Returns once the broker acknowledged the record; :class:`DeliveryFailed` if it
        refused it; :class:`CommandInvalid` (nothing sent) if it fails local validation."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[DeliveryFailed | None] = loop.create_future()

        def settle(error: DeliveryFailed | None) -> None:
            if not done.done():
                done.set_result(error)

        def delivered(_sent: Sent, error: DeliveryFailed | None) -> None:
            loop.call_soon_threadsafe(settle, error)  # runs in the delivery thread

        sent = self.publisher.submit(command, delivered)
        error = await done
        if error is not None:
            raise error
        return sent

    def close(self, timeout: float | None = None) -> None:
        """Wait for records in flight (``timeout``, default the publisher's delivery
        timeout), then stop; records still undelivered are reported failed."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.publisher.close(timeout)


class _Wave:
    """Lookups released together; the wave ends with the last of them."""

    __slots__ = ("left",)

    def __init__(self, size: int) -> None:
        self.left = size


class LookupWaves:
    """Lookups by id in waves, so that ``ReadQueries``' loader can coalesce them.

    gRPC starts each call in an event-loop turn of its own, so lookups rarely meet in one
    turn and the loader (which coalesces per turn) would send one query per call. Here at
    most :attr:`limit` waves run at once; lookups arriving meanwhile wait, and when a wave
    ends all of them start together, in one turn: one query for the whole wave. An idle
    server adds no wait (a lone lookup is a wave of its own, at once). Each caller still
    gets its own row or its own error; a caller cancelled while waiting leaves its wave.
    """

    def __init__(self, queries: ReadQueries, limit: int = 2) -> None:
        self.queries = queries
        self.limit = limit
        self.running = 0
        self._waiting: list[asyncio.Future[_Wave]] = []

    async def resource(self, resource_id: UUID) -> ResourceDoc | None:
        if self.running < self.limit:
            self.running += 1
            wave = _Wave(1)
        else:
            gate: asyncio.Future[_Wave] = asyncio.get_running_loop().create_future()
            self._waiting.append(gate)
            try:
                wave = await gate
            except asyncio.CancelledError:
                if gate.done() and not gate.cancelled():
                    self._leave(gate.result())  # released, then cancelled before running
                raise
        try:
            return await self.queries.resource(resource_id)
        finally:
            self._leave(wave)

    def _leave(self, wave: _Wave) -> None:
        wave.left -= 1
        if wave.left == 0:
            self.running -= 1
            self._release()

    def _release(self) -> None:
        if self.running >= self.limit:
            return
        live = [g for g in self._waiting if not g.done()]
        self._waiting = []
        if not live:
            return
        wave = _Wave(len(live))
        self.running += 1
        for gate in live:
            gate.set_result(wave)


class ResourceService(pb_grpc.ResourceServiceServicer):
    """The servicer. Holds no per-call state beyond the watch streams' count."""

    def __init__(self, settings: Settings, *, queries: ReadQueries, sender: CommandSender,
                 codec: EventCodec, edge: Edge, stopping: asyncio.Event) -> None:
        self.settings = settings
        self.queries = queries
        self.sender = sender
        self.codec = codec
        self.edge = edge
        self.stopping = stopping
        self.watch_streams = 0
        self.lookups = LookupWaves(queries)

    def _budget(self, context: Context, default: float | None = None) -> float:
        """The call's budget: its deadline, else ``default`` (the request timeout)."""
        return budget(context, self.settings.grpc_request_timeout_s if default is None
                      else default)

    # --- reads -------------------------------------------------------------------------

    async def GetResource(self, request: pb.GetResourceRequest,
                          context: Context) -> pb.Resource:
        async def body() -> pb.Resource:
            rid = parse_id(request.id, "id")
            doc = await within(self._budget(context), self.lookups.resource(rid))
            if doc is None:
                raise p.ApiProblem(p.NOT_FOUND, f"no resource with id {rid}")
            if doc.deleted_at is not None:
                raise p.ApiProblem(p.DELETED, f"resource {rid} was deleted at {doc.deleted_at}",
                                   deleted_at=doc.deleted_at, version=doc.version)
            return resource_from_json(doc.json)

        return await self.edge.unary("GetResource", context, body)

    async def ListResources(self, request: pb.ListResourcesRequest,
                            context: Context) -> pb.ListResourcesResponse:
        async def body() -> pb.ListResourcesResponse:
            if not 0 <= request.page_size <= LIMIT_MAX:
                raise p.ApiProblem(p.INVALID_REQUEST,
                                   f"page_size must be 1..{LIMIT_MAX} (0: {LIMIT_DEFAULT})")
            limit = request.page_size or LIMIT_DEFAULT
            prefix = request.name_prefix if request.HasField("name_prefix") else None
            if prefix is not None and not 1 <= len(prefix) <= NAME_MAX:
                raise p.ApiProblem(p.INVALID_REQUEST,
                                   f"name_prefix, when set, must be 1..{NAME_MAX} characters")
            status = status_filter(request.status)
            after = None
            if request.page_token:
                token = request.page_token
                if not CURSOR.fullmatch(token):
                    raise p.ApiProblem(p.INVALID_REQUEST, "invalid page_token: pass back "
                                       "next_page_token unchanged")
                after = decode_cursor(token, by_name=prefix is not None)
            rows = await within(self._budget(context), self.queries.resources(
                status=None if status is None else status.value, name_prefix=prefix,
                after=after, limit=limit + 1))
            return pb.ListResourcesResponse(
                resources=[resource_from_json(r.json) for r in rows[:limit]],
                next_page_token=encode_cursor(rows[limit - 1].key) if len(rows) > limit
                else "")

        return await self.edge.unary("ListResources", context, body)

    async def GetCommand(self, request: pb.GetCommandRequest,
                         context: Context) -> pb.CommandOutcome:
        async def body() -> pb.CommandOutcome:
            cid = parse_id(request.command_id, "command_id")
            doc = await within(self._budget(context), self.queries.command(cid))
            if doc is None:
                raise p.ApiProblem(p.NOT_FOUND, f"no outcome recorded for command {cid} "
                                   "(not processed yet, unknown, or pruned)")
            return outcome_from_json(doc)

        return await self.edge.unary("GetCommand", context, body)

    # --- writes ------------------------------------------------------------------------

    async def CreateResource(self, request: pb.CreateResourceRequest,
                             context: Context) -> pb.CommandReceipt:
        return await self._write("CreateResource", context, lambda: create_from(request),
                                 request.wait_for_outcome)

    async def UpdateResource(self, request: pb.UpdateResourceRequest,
                             context: Context) -> pb.CommandReceipt:
        return await self._write("UpdateResource", context, lambda: update_from(request),
                                 request.wait_for_outcome)

    async def DeleteResource(self, request: pb.DeleteResourceRequest,
                             context: Context) -> pb.CommandReceipt:
        return await self._write("DeleteResource", context, lambda: delete_from(request),
                                 request.wait_for_outcome)

    async def _write(self, method: str, context: Context, build: Callable[[], AnyCommand],
                     wait: bool) -> pb.CommandReceipt:
        async def body() -> pb.CommandReceipt:
            loop = asyncio.get_running_loop()
            command = build()
            cid, rid = str(command.command_id), str(command.resource_id)
            total = self._budget(context, self.settings.grpc_outcome_wait_s if wait else None)
            ends = loop.time() + total
            await context.send_initial_metadata(
                ((COMMAND_ID_METADATA, cid), (RESOURCE_ID_METADATA, rid)))
            try:
                await within(min(total, self._budget(context)), self.sender.send(command))
            except (DeliveryFailed, TimeoutError) as e:
                reason = str(e) if isinstance(e, DeliveryFailed) else "not acknowledged in time"
                raise p.ApiProblem(p.UNAVAILABLE, f"command {cid} not delivered ({reason}); "
                                   "retry with the same command_id", command_id=cid) from e
            receipt = pb.CommandReceipt(command_id=cid, resource_id=rid)
            if wait:
                receipt.outcome.CopyFrom(
                    await self._outcome(command.command_id, ends - loop.time()))
            return receipt

        return await self.edge.unary(method, context, body)

    async def _outcome(self, command_id: UUID, seconds: float) -> pb.CommandOutcome:
        """Poll the recorded outcome until it is final (applied, rejected, parked)."""
        loop = asyncio.get_running_loop()
        ends, delay = loop.time() + seconds, _POLL_FIRST_S
        while True:
            remaining = ends - loop.time()
            doc = None
            if remaining > 0:
                doc = await within(remaining, self.queries.command(command_id))
            if doc is not None:
                outcome = outcome_from_json(doc)
                if outcome.outcome != pb.OUTCOME_PENDING:
                    return outcome
            remaining = ends - loop.time()
            if remaining <= 0:
                raise p.ApiProblem(p.TIMEOUT, f"no outcome recorded for command {command_id} "
                                   f"within {seconds:.3g}s; ask GetCommand later",
                                   command_id=str(command_id))
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX_S)

    # --- the stream --------------------------------------------------------------------

    async def WatchResources(self, request: pb.WatchResourcesRequest,
                             context: Context) -> AsyncIterator[pb.ResourceEvent]:
        async for event in self.edge.stream("WatchResources", context,
                                            lambda: self._watch(request, context)):
            yield event

    async def _watch(self, request: pb.WatchResourcesRequest,
                     context: Context) -> AsyncIterator[pb.ResourceEvent]:
        rid = parse_id(request.resource_id, "resource_id") if request.resource_id else None
        start = start_of(request)
        limit = self.settings.grpc_max_watch_streams
        if self.watch_streams >= limit:
            raise p.ApiProblem(p.UNAVAILABLE, f"the server already serves {limit} watch "
                               "streams (PHOENIX_GRPC_MAX_WATCH_STREAMS); retry later")
        self.watch_streams += 1
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(1, thread_name_prefix="phoenix-grpc-watch")
        tail = EventTail(self.settings, self.codec, rid, self.settings.grpc_request_timeout_s)
        try:
            position = await loop.run_in_executor(executor, tail.open, start)
            await context.send_initial_metadata(((POSITION_METADATA, position),))
            while not self.stopping.is_set():
                for event in await loop.run_in_executor(executor, tail.read):
                    yield event
            raise p.ApiProblem(p.UNAVAILABLE, "the server is shutting down: reconnect and "
                               "resume with after_position", position=tail.position())
        finally:
            self.watch_streams -= 1
            # After any read still running in that thread; the loop never waits for it.
            executor.submit(tail.close)
            executor.shutdown(wait=False)


def start_of(request: pb.WatchResourcesRequest) -> Start:
    which = request.WhichOneof("start")
    if which == "after_position":
        return Start(after_position=request.after_position)
    if which == "since":
        return Start(since_ms=request.since.ToMilliseconds())
    return Start(from_beginning=which == "from_beginning" and request.from_beginning)
