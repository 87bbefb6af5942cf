"""The HTTP server's guard against slow and abusive clients, below the ASGI app.

uvicorn bounds the idle time between two requests of a connection (``timeout_keep_alive``)
and, with ``limit_concurrency``, answers 503 once a request's headers have arrived — but
nothing bounds how long a client may take to *send* its request, nor how many connections it
may hold meanwhile (uvicorn issue #157: a header-completion timeout was never added). A
client that opens connections and never finishes their headers keeps every one of them, and
their file descriptors, for ever; with enough of them the process cannot accept or open
anything (``/readyz``, ``/metrics``, gRPC and the database pool included), and since the
request never completes, no credential is ever checked.

:class:`GuardedProtocol` (uvicorn's httptools protocol, subclassed) adds, per server:

* **A deadline to send a request**: ``header_timeout_s`` from the connection (or from the
  first byte of a later request on a kept-alive connection) until the headers are complete,
  then ``body_timeout_s`` until the body is. Past it the connection is closed — with a 408
  problem document when part of a request head had arrived and nothing was answered yet.
* **A bound on a request head's size** (:data:`MAX_HEAD_BYTES`): more is 431, closed.
* **A bound on connections** (``max_connections``): when it is reached, a new connection
  takes the place of the connection that has been *waiting* longest — one sending a request
  head, or idle between requests — which is closed; only when every connection has a request
  in progress is the new one answered 503 ``RES-007`` and closed at once. So a flood of
  stalled connections displaces itself, and a client that sends its request promptly is
  served; the process never holds more than ``max_connections`` client sockets.

The bound replaces uvicorn's ``limit_concurrency`` (which counts connections too, and would
refuse the requests of connections the bound admitted). :class:`GuardedConfig` is a uvicorn
``Config`` carrying the limits; it pickles with them to ``http_workers`` processes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from phoenix_resources.entrypoints.http import problems as p

log = logging.getLogger("phoenix_resources.http.guard")

MAX_HEAD_BYTES = 64 * 1024
"""Largest request head (request line and headers). Longer cursors than this do not exist."""
FILES_RESERVE = 256
"""Descriptors a server process needs beyond its client connections (pools, Kafka, logs)."""


def ensure_open_files(needed: int) -> int:
    """Raise this process's soft limit of open files to its hard limit (the servers' bounds,
    not the OS's customary 1,024, should be what limits them) and warn when it is still
    below ``needed``; returns the soft limit."""
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to raise
        return needed
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("the open-files limit is below what the connection bounds need: lower "
                    "PHOENIX_HTTP_MAX_CONNECTIONS / PHOENIX_GRPC_MAX_CONNECTIONS or raise it",
                    extra={"limit": soft, "needed": needed})
    return int(soft)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int
    header_timeout_s: float
    body_timeout_s: float


class GuardedConfig(uvicorn.Config):
    """A uvicorn ``Config`` whose connections are served by :class:`GuardedProtocol`."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **options: Any) -> None:
        super().__init__(app, http=GuardedProtocol, **options)
        self.limits = limits


class Slots:
    """The connections one server holds, and which of them wait (oldest first)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.waiting: OrderedDict[GuardedProtocol, None] = OrderedDict()

    def admit(self) -> bool:
        """Take a slot: a free one, else the longest-waiting connection's (closed)."""
        if self.held >= self.limit:
            if not self.waiting:
                return False
            oldest, _ = self.waiting.popitem(last=False)
            oldest.evict()  # its slot is given up now, not when its close completes
            self.held -= 1
        self.held += 1
        return True

    def release(self, conn: GuardedProtocol) -> None:
        self.held -= 1
        self.waiting.pop(conn, None)

    def wait(self, conn: GuardedProtocol) -> None:
        self.waiting[conn] = None
        self.waiting.move_to_end(conn)

    def work(self, conn: GuardedProtocol) -> None:
        self.waiting.pop(conn, None)


_SLOTS: weakref.WeakKeyDictionary[ServerState, Slots] = weakref.WeakKeyDictionary()


def _response(code: p.Code, detail: str) -> bytes:
    body = p.problem_body(code, detail, "")
    head = (f"HTTP/1.1 {code.status} {code.title}\r\ncontent-type: {p.PROBLEM_TYPE}\r\n"
            f"content-length: {len(body)}\r\ncache-control: no-store\r\nconnection: close\r\n")
    if code is p.UNAVAILABLE:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + body


_TIMEOUT = _response(p.TIMEOUT, "the request was not received in time")
_BUSY = _response(p.UNAVAILABLE, "too many connections; retry later")
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
              b"connection: close\r\n\r\n")


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and bounds of the module doc."""

    def __init__(self, config: uvicorn.Config, server_state: ServerState,
                 app_state: dict[str, Any], _loop: asyncio.AbstractEventLoop | None = None,
                 ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(config, "limits", None)
        assert isinstance(limits, ConnectionLimits), "serve with GuardedConfig"
        self.limits = limits
        self.limit_concurrency = None  # the slots bound connections (see the module doc)
        slots = _SLOTS.get(server_state)
        if slots is None:
            slots = _SLOTS[server_state] = Slots(limits.max_connections)
        self.slots = slots
        self._held = False
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True  # the next bytes belong to a request head
        self._in_body = False  # a request's headers are in, its body is not
        self._head_bytes = 0

    # --- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.slots.admit():
            transport.write(_BUSY)
            transport.close()
            return
        self._held = True
        self.slots.wait(self)
        self._arm(self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._held:
            self._held = False
            self.slots.release(self)
        super().connection_lost(exc)

    def evict(self) -> None:
        """Give the slot up at once (another connection takes it) and close."""
        self._held = False
        self.slots.work(self)
        self._disarm()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if not self._open():
            return
        # Deadlines are armed only for what is still missing once this chunk is parsed: a
        # request that arrives whole (the usual case) costs no timer at all.
        if self._in_head:
            if self._head_bytes > MAX_HEAD_BYTES:
                self._end(_TOO_LARGE)
            elif self._deadline is None:  # a head begun on a kept-alive connection
                self._arm(self.limits.header_timeout_s)
        elif self._in_body and self._deadline is None:
            self._arm(self.limits.body_timeout_s)

    # --- the request (httptools' callbacks, on top of uvicorn's) -------------------------

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        self._head_bytes = 0
        self._disarm()
        self.slots.work(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Unless a pipelined request was started just now, the connection waits again.
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._in_head = True
            if self._held:
                self.slots.wait(self)

    # --- deadlines -----------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self._open():
            return
        log.debug("closing a connection that did not send its request in time",
                  extra={"client": self.client, "head_bytes": self._head_bytes})
        answered = self.cycle is None or self.cycle.response_complete
        self._end(_TIMEOUT if self._in_head and self._head_bytes and answered else b"")

    def _open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def _end(self, answer: bytes) -> None:
        if answer:
            self.transport.write(answer)
        self.transport.close()
