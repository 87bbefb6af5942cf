"""The console's ASGI app: sign-in, the gate every page and action passes, and the pages
that only look.

Gate, in order, for a request that changes something (every ``POST``): the browser must not
say it comes from another site (:func:`auth.same_origin`); the caller must be known (a
session cookie, or an ``Authorization: Bearer`` header); an action needs an operator; a
caller that came with the cookie must send the form's CSRF token. Each refusal is answered
with a page that says why (401 / 403) and logged on ``phoenix_resources.console.audit``.
Pages that only look need a viewer (or operator); a browser without a session is sent to the
sign-in form and back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote
from uuid import UUID

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phoenix_resources.entrypoints.console import layout, views
from phoenix_resources.entrypoints.console.auth import (
    COOKIE,
    Identity,
    Session,
    Sessions,
    Tokens,
    cookie_header,
    safe_next,
    same_origin,
)
from phoenix_resources.entrypoints.console.glance import Watcher
from phoenix_resources.entrypoints.console.layout import View
from phoenix_resources.entrypoints.console.markup import Html
from phoenix_resources.entrypoints.console.operations import Operations
from phoenix_resources.errors import PhoenixError

log = logging.getLogger("phoenix_resources.console")
audit = logging.getLogger("phoenix_resources.console.audit")

MAX_FORM_BYTES = 16 * 1024
PARKED_LIMIT = 200
COMMANDS_LIMIT = 500
OUTBOX_LIMIT = 500
LETTERS_PER_PAGE = 50
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = (("content-security-policy", CSP), ("x-content-type-options", "nosniff"),
                    ("x-frame-options", "DENY"), ("referrer-policy", "same-origin"),
                    ("cross-origin-opener-policy", "same-origin"),
                    ("cross-origin-resource-policy", "same-origin"))
# Referrer-Policy is same-origin, not no-referrer: under no-referrer a browser sends
# "Origin: null" with its own forms, and the origin check could not tell them apart.

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Caller:
    identity: Identity
    session: Session | None
    """``None`` when the caller sent its own bearer header (no cookie, no CSRF token)."""


Form = dict[str, str]


@dataclass
class Console:
    """What every handler needs: who is who, and what there is to see and do."""

    tokens: Tokens
    sessions: Sessions
    operations: Operations
    watcher: Watcher
    dlq_topic: str

    def caller(self, request: Request) -> Caller | None:
        authorization = request.headers.get("authorization")
        if authorization is not None:
            identity = self.tokens.from_header(authorization)
            return None if identity is None else Caller(identity, None)
        session = self.sessions.read(request.cookies.get(COOKIE))
        return None if session is None else Caller(session.identity, session)

    def view(self, caller: Caller | None, *, status: str | None = None,
             alert: str | None = None) -> View:
        if caller is None:
            return View(status=status, alert=alert)
        csrf = None if caller.session is None else self.sessions.csrf(caller.session)
        return View(caller.identity, csrf, status, alert)

    async def viewer(self, request: Request) -> Caller | Response:
        """The caller of a page that only looks, or where to send them."""
        caller = self.caller(request)
        if caller is not None:
            return caller
        if "authorization" in request.headers:
            return self.refuse(request, None, 401, "Not signed in",
                               "The bearer token is not accepted.")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    async def operator(self, request: Request, *, form: bool) -> tuple[Caller, Form] | Response:
        """The caller of an action (``form``: a POST that does it; else its confirmation
        page), with the submitted form, or the refusal."""
        if form and not same_origin(request.headers):
            return self.refuse(request, self.caller(request), 403, "Refused",
                               "This request came from another site.")
        caller = self.caller(request)
        if caller is None:
            return self.refuse(request, None, 401, "Not signed in",
                               "Sign in with an operator token to do this.")
        if not caller.identity.may_act:
            return self.refuse(request, caller, 403, "Not allowed",
                               f"The token of {caller.identity.label} may view the console, "
                               "not act: that needs an operator token.")
        if not form:
            return caller, {}
        submitted = await read_form(request)
        if isinstance(submitted, Response):
            return submitted
        if caller.session is not None and not self.sessions.csrf_ok(caller.session,
                                                                    submitted.get("csrf")):
            return self.refuse(request, caller, 403, "Refused",
                               "The form's CSRF token is missing or stale: reload the page "
                               "and try again.")
        return caller, submitted

    def refuse(self, request: Request, caller: Caller | None, status: int, title: str,
               detail: str) -> Response:
        audit.warning("console request refused", extra={
            "who": caller.identity.label if caller else "anonymous",
            "method": request.method, "path": request.url.path, "status": status,
            "why": detail})
        back = "/login" if status == 401 else "/"
        return html(layout.problem(title, self.view(caller), detail, back=back), status)


def html(document: Html, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return HTMLResponse(str(document), status_code=status, headers=headers)


async def read_form(request: Request) -> Form | Response:
    """An ``application/x-www-form-urlencoded`` body of at most :data:`MAX_FORM_BYTES`, one
    value per name (the first); no body at all is an empty form."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return PlainTextResponse("the form is too large", status_code=413)
    if not body:
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return PlainTextResponse("a form (application/x-www-form-urlencoded) is expected",
                                 status_code=415)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except ValueError:  # UnicodeDecodeError is one; so is "too many fields"
        return PlainTextResponse("the form cannot be read", status_code=400)
    return {name: values[0] for name, values in fields.items()}


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking operation (database, broker) off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


# --- sign-in -------------------------------------------------------------------------------


async def login_form(request: Request) -> Response:
    console: Console = request.app.state.console
    target = safe_next(request.query_params.get("next"))
    return html(layout.login(console.view(None), target))


async def login(request: Request) -> Response:
    console: Console = request.app.state.console
    if not same_origin(request.headers):
        return console.refuse(request, None, 403, "Refused", "This request came from another "
                              "site.")
    form = await read_form(request)
    if isinstance(form, Response):
        return form
    identity = console.tokens.identify(form.get("token", ""))
    target = safe_next(form.get("next"))
    if identity is None:
        audit.warning("console sign-in refused", extra={"who": "anonymous"})
        return html(layout.login(console.view(None, alert="That token is not accepted."),
                                 target), 401)
    _, cookie = console.sessions.issue(identity)
    audit.info("console sign-in", extra={"who": identity.label, "role": identity.role.label})
    return RedirectResponse(target, status_code=303, headers={"set-cookie": cookie_header(
        cookie, secure=request.url.scheme == "https", max_age=console.sessions.ttl_s)})


async def logout(request: Request) -> Response:
    console: Console = request.app.state.console
    caller = console.caller(request)
    if caller is None or caller.session is None:
        return RedirectResponse("/login", status_code=303)
    form = await read_form(request)
    if isinstance(form, Response):
        return form
    if not same_origin(request.headers) or not console.sessions.csrf_ok(caller.session,
                                                                        form.get("csrf")):
        return console.refuse(request, caller, 403, "Refused", "The form's CSRF token is "
                              "missing or stale: reload the page and try again.")
    audit.info("console sign-out", extra={"who": caller.identity.label})
    return RedirectResponse("/login", status_code=303, headers={"set-cookie": cookie_header(
        "", secure=request.url.scheme == "https", max_age=0)})


# --- pages that only look ------------------------------------------------------------------


async def _counted(fn: Callable[[], T]) -> T | str:
    """A count from the database, or a plain word on why there is none."""
    try:
        return await blocking(fn)
    except PhoenixError as e:
        log.warning("console: database count failed", extra={"error": str(e)[:300]})
        return "unknown: the database did not answer"


async def overview(request: Request) -> Response:
    console: Console = request.app.state.console
    caller = await console.viewer(request)
    if isinstance(caller, Response):
        return caller
    glance = await console.watcher.look()
    ops = console.operations
    parked = await _counted(ops.parked_counts)
    events = await _counted(ops.parked_event_count)
    return html(views.overview(console.view(caller), glance, parked, events))


async def parked_page(request: Request, view: View | None = None, status: int = 200,
                      ) -> Response:
    console: Console = request.app.state.console
    if view is None:
        caller = await console.viewer(request)
        if isinstance(caller, Response):
            return caller
        view = console.view(caller)
    try:
        resources = await blocking(console.operations.parked_resources, PARKED_LIMIT)
    except PhoenixError as e:
        return unavailable(view, "parked commands", e)
    return html(views.parked(view, resources, PARKED_LIMIT), status)


async def parked_resource_page(request: Request) -> Response:
    console: Console = request.app.state.console
    caller = await console.viewer(request)
    if isinstance(caller, Response):
        return caller
    rid: UUID = request.path_params["resource_id"]
    view = console.view(caller)
    try:
        commands = await blocking(console.operations.parked_commands, rid, COMMANDS_LIMIT)
    except PhoenixError as e:
        return unavailable(view, "parked commands", e)
    return html(views.parked_resource(view, rid, commands))


async def outbox_page(request: Request, view: View | None = None, status: int = 200,
                      ) -> Response:
    console: Console = request.app.state.console
    if view is None:
        caller = await console.viewer(request)
        if isinstance(caller, Response):
            return caller
        view = console.view(caller)
    try:
        rows = await blocking(console.operations.parked_events, OUTBOX_LIMIT)
    except PhoenixError as e:
        return unavailable(view, "parked events", e)
    return html(views.outbox(view, rows, OUTBOX_LIMIT), status)


def _natural(text: str | None) -> int:
    return int(text) if text and text.isdigit() and len(text) < 19 else 0


async def dlq_page(request: Request, view: View | None = None, partition: int | None = None,
                   start: int | None = None, status: int = 200) -> Response:
    console: Console = request.app.state.console
    if view is None:
        caller = await console.viewer(request)
        if isinstance(caller, Response):
            return caller
        view = console.view(caller)
    partition = _natural(request.query_params.get("partition")) if partition is None \
        else partition
    start = _natural(request.query_params.get("from")) if start is None else start
    try:
        letters = await blocking(console.operations.dead_letters, partition, start,
                                 LETTERS_PER_PAGE)
    except PhoenixError as e:
        return unavailable(view, "dead letters", e)
    return html(views.dead_letters(view, letters, console.dlq_topic), status)


def unavailable(view: View, what: str, error: PhoenixError) -> Response:
    log.warning("console: reading failed", extra={"what": what, "error": str(error)[:300]})
    return html(layout.problem("Unavailable", view, f"The {what} cannot be read now: "
                               f"{type(error).__name__}. The console's log has the details."),
                503)


async def healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


async def no_icon(_: Request) -> Response:
    return Response(status_code=204)


# --- the app -------------------------------------------------------------------------------


def secured(app: ASGIApp) -> ASGIApp:
    """Every answer gets the security headers and, unless it says otherwise, no-store."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers[name] = value
                if "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
            await send(message)

        await app(scope, receive, send_secured)

    return wrapper


def page_routes() -> list[BaseRoute]:
    """Sign-in and the pages that only look (the actions are in :mod:`.actions`)."""
    return [
        Route("/healthz", healthz),
        Route("/favicon.ico", no_icon),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", overview),
        Route("/parked", parked_page, methods=["GET"]),
        Route("/parked/{resource_id:uuid}", parked_resource_page, methods=["GET"]),
        Route("/outbox", outbox_page, methods=["GET"]),
        Route("/dlq", dlq_page, methods=["GET"]),
    ]
