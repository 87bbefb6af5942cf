"""The API's edge: one pure-ASGI layer around the whole app.

In one pass (no per-request objects beyond a closure) it:

* authenticates ``/api`` routes when bearer-token hashes are configured (401 / 403);
* enforces the request timeout (408 ``RES-003`` if no response has started by then);
* turns any unhandled exception into 500 ``RES-008`` (logged, never leaked);
* adds the security headers to every response and ``Cache-Control: no-store`` by default;
* counts and times every request by route template (bounded label cardinality);
* writes the access log when asked to (``PHOENIX_HTTP_ACCESS_LOG_RATIO``): that share of
  requests, and then every 5xx, as one JSON line each (method, route, path, status,
  duration_ms, and trace_id when traced).

It also holds the one shape of a response written straight on the ASGI channel
(:class:`Answer`), which its own problems and the lookup (``lookup``) use.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from prometheus_client import Counter, Histogram
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phoenix_resources.entrypoints.http import problems as p

log = logging.getLogger("phoenix_resources.http")
access = logging.getLogger("phoenix_resources.http.access")

Headers = list[tuple[bytes, bytes]]

JSON_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The docs page (docs.py) is static HTML, its init script and Swagger UI's assets, all from
# this origin: nothing inline, nothing from elsewhere. Swagger UI's stylesheet embeds its
# icons as data: URIs.
DOCS_CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; "
            b"img-src 'self' data:; connect-src 'self'; "
            b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_COMMON: Headers = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
JSON_SECURITY: Headers = [*_COMMON, (b"content-security-policy", JSON_CSP)]
DOCS_SECURITY: Headers = [*_COMMON, (b"content-security-policy", DOCS_CSP)]
NO_STORE = (b"cache-control", b"no-store")
WWW_AUTHENTICATE = 'Bearer realm="phoenix-resources"'


def route_label(path: str) -> str:
    """The route template of a path, so metrics never get one label per id."""
    if path.startswith("/api/v1/resources/"):
        return "/api/v1/resources/{id}"
    if path.startswith("/api/v1/commands/"):
        return "/api/v1/commands/{command_id}"
    if path in ("/api/v1/resources", "/healthz", "/readyz", "/metrics", "/openapi.json",
                "/docs"):
        return path
    if path.startswith("/docs/"):
        return "/docs/{asset}"
    return "other"


class TokenCheck:
    """Bearer tokens checked against SHA-256 hex digests, in constant time per digest."""

    def __init__(self, hashes: Iterable[str]) -> None:
        self._hashes = [h.strip().lower().encode() for h in hashes if h.strip()]

    @property
    def enabled(self) -> bool:
        return bool(self._hashes)

    def problem(self, authorization: bytes | None) -> tuple[p.Code, str] | None:
        """None when the request may pass, else the problem to answer with."""
        if authorization is None:
            return p.UNAUTHORIZED, "this endpoint requires 'Authorization: Bearer <token>'"
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return p.UNAUTHORIZED, "the Authorization header must be 'Bearer <token>'"
        digest = hashlib.sha256(token).hexdigest().encode()
        # Compare against every digest (no early exit) so timing says nothing about which.
        ok = False
        for h in self._hashes:
            ok |= hmac.compare_digest(digest, h)
        return None if ok else (p.FORBIDDEN, "the bearer token is not accepted")


class _Recorder:
    """Cached metric children: label lookups cost more than the increments themselves."""

    def __init__(self, requests: Counter, seconds: Histogram) -> None:
        self._requests = requests
        self._seconds = seconds
        self._counters: dict[tuple[str, int], Any] = {}
        self._timers: dict[str, Any] = {}

    def record(self, route: str, status: int, elapsed: float) -> None:
        counter = self._counters.get((route, status))
        if counter is None:
            counter = self._counters[(route, status)] = self._requests.labels(route, str(status))
        counter.inc()
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = self._seconds.labels(route)
        timer.observe(elapsed)


class Edge:
    """The outermost layer of the app (inside Starlette's own error middleware)."""

    def __init__(self, app: ASGIApp, *, timeout_s: float, tokens: TokenCheck,
                 requests: Counter, seconds: Histogram, access_log_ratio: float = 0.0) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.tokens = tokens
        self.recorder = _Recorder(requests, seconds)
        self.access_log_ratio = access_log_ratio

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope["path"]
        security = DOCS_SECURITY if path.startswith("/docs") else JSON_SECURITY
        state = {"status": 0}

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                headers: Headers = list(message.get("headers", ()))
                if not any(k == b"cache-control" for k, _ in headers):
                    headers.append(NO_STORE)
                headers.extend(security)
                message["headers"] = headers
            await send(message)

        try:
            await self._dispatch(scope, receive, send_secured, path, state)
        finally:
            status, elapsed = state["status"] or 500, time.perf_counter() - start
            self.recorder.record(route_label(path), status, elapsed)
            if self.access_log_ratio and (status >= 500
                                          or random.random() < self.access_log_ratio):
                access_log(scope, path, status, elapsed)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, path: str,
                        state: dict[str, int]) -> None:
        if self.tokens.enabled and path.startswith("/api/"):
            refused = self.tokens.problem(header(scope, b"authorization"))
            if refused is not None:
                code, detail = refused
                extra = {"www-authenticate": WWW_AUTHENTICATE} if code is p.UNAUTHORIZED else {}
                await send_problem(send, code, detail, path, extra)
                return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, receive, send)
        except TimeoutError:
            if not state["status"]:
                await send_problem(send, p.TIMEOUT,
                                   f"no answer within {self.timeout_s:g}s", path)
            # A response already under way cannot be replaced; the connection is cut short.
        except Exception:
            log.exception("unhandled error", extra={"path": path})
            if not state["status"]:
                await send_problem(send, p.INTERNAL, "internal error; it has been logged",
                                   path)


def access_log(scope: Scope, path: str, status: int, elapsed: float) -> None:
    """One access-log line (the trace id comes from the current span, when traced)."""
    access.info("request", extra={"method": scope.get("method"), "route": route_label(path),
                                  "path": path, "status": status,
                                  "duration_ms": round(elapsed * 1000, 3)})


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header ``name`` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class Answer(NamedTuple):
    """A complete response: status, headers in wire order, body.

    Whoever holds an Answer sends exactly these bytes, whether on the ASGI channel
    (:meth:`send`) or through the framework (:meth:`response`); the Edge then adds the same
    security headers to either. Two paths that produce equal Answers are indistinguishable
    on the wire.
    """

    status: int
    headers: Headers
    body: bytes

    async def send(self, send: Callable[[Message], Any]) -> None:
        await send({"type": "http.response.start", "status": self.status,
                    "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})

    def response(self) -> Response:
        """The same answer for a framework route to return: headers as given, none added."""
        response = Response(self.body, status_code=self.status)
        response.raw_headers = list(self.headers)
        return response


def problem_answer(code: p.Code, detail: str, instance: str,
                   headers: dict[str, str] | None = None, **extensions: Any) -> Answer:
    """A problem document: Content-Type, Content-Length, then ``headers`` (lower-cased)."""
    body = p.problem_body(code, detail, instance, **extensions)
    raw: Headers = [(b"content-type", p.PROBLEM_TYPE.encode()),
                    (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Answer(code.status, raw, body)


async def send_problem(send: Callable[[Message], Any], code: p.Code, detail: str,
                       instance: str, headers: dict[str, str] | None = None,
                       **extensions: Any) -> None:
    """Answer with a problem document straight on the ASGI channel."""
    await problem_answer(code, detail, instance, headers, **extensions).send(send)
