"""``phoenix.resources.v1.ResourceService``: the RPCs (``proto/phoenix/resources/v1``).

Guarantees (each RPC goes through :class:`~.edge.Edge`: auth, errors, metrics):

* **Reads** (``GetResource``, ``ListResources``, ``GetCommand``) run the HTTP API's
  queries (:class:`ReadQueries`) on a pool of the read-only role, with its semantics: a
  deleted resource is RES-004, an unknown one RES-002, page tokens are its keyset cursors
  (``http.listing.encode_cursor`` / ``decode_cursor``, the very same functions),
  ``page_size`` 1..500; a page also ends before ``grpc_page_max_bytes`` (below the
  message size limit), with a ``next_page_token`` after its last resource.
* **Writes** publish one command through the client library's :class:`CommandPublisher`
  (validated locally first: INVALID_ARGUMENT with the rule's code, nothing sent) and return
  once the broker acknowledged it; the worker stays the only writer. The command id goes
  out first, as initial metadata ``phoenix-command-id``, so even a call that then fails
  tells which command to retry (same ``command_id``: applied at most once) or look up.
  Delivery answers are honest: refused by the broker (not written) is UNAVAILABLE RES-007;
  no acknowledgement before the call's time ran out is DEADLINE_EXCEEDED RES-010 —
  *unknown*, it may be applied — never "not delivered".
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
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import grpc

from phoenix_resources.adapters.postgres.queries import ReadQueries
from phoenix_resources.client import CommandPublisher, Sent
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.entrypoints.grpc.convert import (
    create_from,
    delete_from,
    outcome_from_json,
    parse_id,
    resource_page,
    status_filter,
    update_from,
)
from phoenix_resources.entrypoints.grpc.edge import Context, Edge, budget, within
from phoenix_resources.entrypoints.grpc.lookup import ResourceLookup
from phoenix_resources.entrypoints.grpc.watch import EventTail, Start
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.listing import (
    CURSOR_MAX,
    LIMIT_DEFAULT,
    LIMIT_MAX,
    check_name_prefix,
    decode_cursor,
)
from phoenix_resources.errors import DeliveryFailed, DeliveryUncertain
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
        self.lookup = ResourceLookup(queries, cache_bytes=settings.grpc_lookup_cache_bytes)

    def _budget(self, context: Context, default: float | None = None) -> float:
        """The call's budget: its deadline, else ``default`` (the request timeout)."""
        return budget(context, self.settings.grpc_request_timeout_s if default is None
                      else default)

    # --- reads -------------------------------------------------------------------------

    async def GetResource(self, request: pb.GetResourceRequest,
                          context: Context) -> pb.Resource:
        """The typed form; servers register :meth:`get_resource_encoded` for this RPC
        (:func:`method_handlers`), which answers the same message already encoded."""
        return pb.Resource.FromString(await self.get_resource_encoded(request, context))

    async def get_resource_encoded(self, request: pb.GetResourceRequest,
                                   context: Context) -> bytes:
        async def body() -> bytes:
            rid = parse_id(request.id, "id")
            return await self.lookup.encoded(rid, self._budget(context))

        return await self.edge.unary("GetResource", context, body)

    async def ListResources(self, request: pb.ListResourcesRequest,
                            context: Context) -> pb.ListResourcesResponse:
        async def body() -> pb.ListResourcesResponse:
            if not 0 <= request.page_size <= LIMIT_MAX:
                raise p.ApiProblem(p.INVALID_REQUEST,
                                   f"page_size must be 1..{LIMIT_MAX} (0: {LIMIT_DEFAULT})")
            limit = request.page_size or LIMIT_DEFAULT
            prefix = check_name_prefix(request.name_prefix if request.HasField("name_prefix")
                                       else None)
            status = status_filter(request.status)
            after = None
            if request.page_token:
                token = request.page_token
                if not CURSOR.fullmatch(token):
                    raise p.ApiProblem(p.INVALID_REQUEST, "invalid page_token: pass back "
                                       "next_page_token unchanged")
                after = decode_cursor(token, by_name=prefix is not None)
            budget = self.settings.grpc_page_max_bytes
            rows = await within(self._budget(context), self.queries.resources(
                status=None if status is None else status.value, name_prefix=prefix,
                after=after, limit=limit + 1, max_bytes=budget))
            return resource_page(rows, limit, budget)

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
            except (DeliveryUncertain, TimeoutError) as e:
                # Handed to the producer, not acknowledged (yet): it may well be written and
                # applied. Saying "not delivered" here would invite a retry without the id.
                reason = str(e) if isinstance(e, DeliveryUncertain) else (
                    "the call's time ran out before the broker acknowledged it")
                raise p.ApiProblem(p.DELIVERY_UNKNOWN, f"command {cid} may or may not have "
                                   f"been delivered ({reason}); retry with the same "
                                   "command_id: it is applied at most once",
                                   command_id=cid, resource_id=rid) from e
            except DeliveryFailed as e:  # refused by the broker: not written
                raise p.ApiProblem(p.UNAVAILABLE, f"command {cid} not delivered ({e})",
                                   command_id=cid, resource_id=rid) from e
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


# --- the handlers a server registers ------------------------------------------------------

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ResourceService"].full_name


def _as_sent(encoded: bytes) -> bytes:
    """The response serializer of ``GetResource``: its answer is encoded already."""
    return encoded


def method_handlers(service: ResourceService,
                    ) -> Mapping[str, grpc.RpcMethodHandler[Any, Any]]:
    """What ``resources_pb2_grpc.add_ResourceServiceServicer_to_server`` registers, except
    that ``GetResource`` answers the encoded message (:meth:`~ResourceService.get_resource_encoded`)
    and so is not serialized again."""
    unary = grpc.unary_unary_rpc_method_handler
    return {
        "GetResource": unary(service.get_resource_encoded,
                             request_deserializer=pb.GetResourceRequest.FromString,
                             response_serializer=_as_sent),
        "ListResources": unary(service.ListResources,
                               request_deserializer=pb.ListResourcesRequest.FromString,
                               response_serializer=pb.ListResourcesResponse.SerializeToString),
        "CreateResource": unary(service.CreateResource,
                                request_deserializer=pb.CreateResourceRequest.FromString,
                                response_serializer=pb.CommandReceipt.SerializeToString),
        "UpdateResource": unary(service.UpdateResource,
                                request_deserializer=pb.UpdateResourceRequest.FromString,
                                response_serializer=pb.CommandReceipt.SerializeToString),
        "DeleteResource": unary(service.DeleteResource,
                                request_deserializer=pb.DeleteResourceRequest.FromString,
                                response_serializer=pb.CommandReceipt.SerializeToString),
        "GetCommand": unary(service.GetCommand,
                            request_deserializer=pb.GetCommandRequest.FromString,
                            response_serializer=pb.CommandOutcome.SerializeToString),
        "WatchResources": grpc.unary_stream_rpc_method_handler(
            service.WatchResources, request_deserializer=pb.WatchResourcesRequest.FromString,
            response_serializer=pb.ResourceEvent.SerializeToString),
    }


def add_to_server(service: ResourceService, server: grpc.aio.Server) -> None:
    """Register ``service`` on ``server`` as the generated code would (generic and
    registered handlers), with :func:`method_handlers`."""
    handlers = dict(method_handlers(service))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
