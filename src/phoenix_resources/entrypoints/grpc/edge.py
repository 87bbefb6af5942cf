"""The gRPC API's edge: what every ``ResourceService`` call goes through, in one place.

* **Auth**: when ``PHOENIX_API_TOKEN_HASHES`` is set, the ``authorization`` metadata must be
  ``Bearer <token>`` with an accepted token (the HTTP API's :class:`TokenCheck`): missing or
  malformed → ``UNAUTHENTICATED`` RES-005, not accepted → ``PERMISSION_DENIED`` RES-006. The
  health and reflection services stay open, as ``/healthz`` and ``/openapi.json`` do.
* **Errors**: every failure ends as a gRPC status whose details (``grpc-status-details-bin``)
  are a ``google.rpc.Status`` holding one ``google.rpc.ErrorInfo`` — ``reason`` is the stable
  code (``RES-…`` as in the HTTP API, or a command rule's ``CMD-…`` / ``invalid-field`` /
  ``too-large``), ``domain`` is :data:`DOMAIN`, ``metadata`` the problem's extra members
  (e.g. ``deleted_at``, ``command_id``). The reason is mirrored in the trailing metadata
  ``phoenix-code`` for tools that do not decode details. Unexpected exceptions are logged
  with their traceback and answered ``INTERNAL`` RES-008 without detail.
* **Deadlines**: :func:`budget` is the client's deadline when it sent one, else the server's
  default; work past it ends ``DEADLINE_EXCEEDED`` RES-003.
* **Metrics**: calls by method and status code, and their latency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry, Counter, Histogram

from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.edge import TokenCheck
from phoenix_resources.errors import (
    CommandInvalid,
    DatabaseUnavailable,
    DeliveryFailed,
    DeliveryUncertain,
    TransientError,
)

log = logging.getLogger("phoenix_resources.grpc")

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]

DOMAIN = "phoenix.resources"
"""``ErrorInfo.domain`` of every error this service sends."""
CODE_METADATA = "phoenix-code"
"""Trailing metadata key mirroring ``ErrorInfo.reason``."""

STATUS_OF: Mapping[str, grpc.StatusCode] = {
    p.INVALID_REQUEST.code: grpc.StatusCode.INVALID_ARGUMENT,
    p.NOT_FOUND.code: grpc.StatusCode.NOT_FOUND,
    p.TIMEOUT.code: grpc.StatusCode.DEADLINE_EXCEEDED,
    p.DELETED.code: grpc.StatusCode.NOT_FOUND,
    p.UNAUTHORIZED.code: grpc.StatusCode.UNAUTHENTICATED,
    p.FORBIDDEN.code: grpc.StatusCode.PERMISSION_DENIED,
    p.UNAVAILABLE.code: grpc.StatusCode.UNAVAILABLE,
    p.INTERNAL.code: grpc.StatusCode.INTERNAL,
    p.METHOD_NOT_ALLOWED.code: grpc.StatusCode.UNIMPLEMENTED,
    # "For operations that change the state of the system, this error may be returned even
    # if the operation has completed successfully" (gRPC's status codes): exactly this.
    p.DELIVERY_UNKNOWN.code: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""The HTTP API's stable codes as gRPC status codes (docs/interfaces.md)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A failure as it goes on the wire: status, message, ErrorInfo reason and metadata."""

    status: grpc.StatusCode
    reason: str
    message: str
    metadata: Mapping[str, str]

    def to_grpc(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN,
                                           metadata=dict(self.metadata))
        detail = any_pb2.Any()
        detail.Pack(info)
        rich = status_pb2.Status(code=_CODE_NUMBER[self.status], message=self.message,
                                 details=[detail])
        return rpc_status.to_status(rich)


_CODE_NUMBER: Mapping[grpc.StatusCode, int] = {
    s: getattr(code_pb2, s.name) for s in grpc.StatusCode if s is not grpc.StatusCode.OK}


def refusal(error: BaseException) -> Refusal | None:
    """How ``error`` is answered; None for what must propagate (cancellation, aborts)."""
    if isinstance(error, p.ApiProblem):
        extra = {k: str(v) for k, v in error.extensions.items()}
        return Refusal(STATUS_OF[error.code.code], error.code.code, error.detail, extra)
    if isinstance(error, CommandInvalid):
        return Refusal(grpc.StatusCode.INVALID_ARGUMENT, error.code, error.message, {})
    if isinstance(error, TimeoutError):
        return Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, p.TIMEOUT.code,
                       "no answer within the call's budget (its deadline, or the server's "
                       "PHOENIX_GRPC_REQUEST_TIMEOUT_S)", {})
    if isinstance(error, DeliveryUncertain):
        return Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, p.DELIVERY_UNKNOWN.code,
                       str(error), {})
    if isinstance(error, DatabaseUnavailable | DeliveryFailed | TransientError):
        return Refusal(grpc.StatusCode.UNAVAILABLE, p.UNAVAILABLE.code, str(error), {})
    if isinstance(error, Exception) and not isinstance(error, grpc.aio.AbortError):
        return Refusal(grpc.StatusCode.INTERNAL, p.INTERNAL.code,
                       "internal error; it has been logged", {})
    return None


DEADLINE_MARGIN_S = 0.05
"""The server gives up this much before the client's deadline, so that its own answer (with
its ErrorInfo, e.g. a command id) arrives rather than the client's bare timeout."""


def budget(context: Context, default: float) -> float:
    """Seconds this call may take: up to the client's deadline (less
    :data:`DEADLINE_MARGIN_S`) if it sent one, else ``default``."""
    remaining = context.time_remaining()
    return default if remaining is None else max(0.0, remaining - DEADLINE_MARGIN_S)


class Edge:
    """Auth, error translation and metrics around every call of the service."""

    def __init__(self, tokens: TokenCheck, registry: CollectorRegistry | None) -> None:
        self.tokens = tokens
        self._calls = Counter("phoenix_grpc_calls", "gRPC calls by method and status code",
                              ["method", "code"], registry=registry)
        self._seconds = Histogram("phoenix_grpc_call_seconds",
                                  "gRPC unary call latency (streams: time to first message)",
                                  ["method"], registry=registry,
                                  buckets=(.001, .0025, .005, .01, .025, .05, .1, .5, 1))
        self._answered: dict[str, tuple[Any, Any]] = {}
        """Per method: the children counting its OK calls and timing them (a label lookup
        costs more than the increment)."""

    def authenticate(self, context: Context) -> None:
        """Raise ``ApiProblem`` RES-005/RES-006 unless the call may pass."""
        if not self.tokens.enabled:
            return
        value = next((v for k, v in context.invocation_metadata() or ()
                      if k == "authorization"), None)
        raw = value if isinstance(value, bytes) or value is None else value.encode()
        refused = self.tokens.problem(raw)
        if refused is not None:
            raise p.ApiProblem(*refused)

    async def unary(self, method: str, context: Context,
                    body: Callable[[], Awaitable[T]]) -> T:
        """Run ``body`` for one unary call; any failure ends the call with its status."""
        start = time.perf_counter()
        try:
            self.authenticate(context)
            result = await body()
        except BaseException as e:
            await self._fail(method, context, e)
            raise  # _fail re-raises what it does not answer; for mypy's sake
        answered = self._answered.get(method)
        if answered is None:
            answered = self._answered[method] = (self._calls.labels(method, "OK"),
                                                 self._seconds.labels(method))
        answered[0].inc()
        answered[1].observe(time.perf_counter() - start)
        return result

    async def stream(self, method: str, context: Context,
                     body: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Relay ``body``'s messages for one streaming call; a failure ends it with its
        status (messages already sent stay sent)."""
        start = time.perf_counter()
        first = True
        try:
            self.authenticate(context)
            async for message in body():
                if first:
                    self._seconds.labels(method).observe(time.perf_counter() - start)
                    first = False
                yield message
        except BaseException as e:
            await self._fail(method, context, e)
            raise
        self._calls.labels(method, "OK").inc()

    async def _fail(self, method: str, context: Context, error: BaseException) -> None:
        answer = refusal(error)
        if answer is None:
            code = "ABORTED" if isinstance(error, grpc.aio.AbortError) else "CANCELLED"
            self._calls.labels(method, code).inc()
            raise error
        if answer.status is grpc.StatusCode.INTERNAL:
            log.error("unexpected error in %s", method, exc_info=error)
        self._calls.labels(method, answer.status.name).inc()
        status = answer.to_grpc()
        await context.abort(status.code, status.details,
                            (*status.trailing_metadata, (CODE_METADATA, answer.reason)))


async def within(seconds: float, work: Awaitable[T]) -> T:
    """``work``, or :class:`TimeoutError` (→ DEADLINE_EXCEEDED RES-003) after ``seconds``."""
    async with asyncio.timeout(seconds):
        return await work

