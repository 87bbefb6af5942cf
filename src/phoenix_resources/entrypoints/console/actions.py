"""The console's actions, each in two steps: ``GET`` shows what will happen (the
confirmation page, nothing changes), ``POST`` does it.

Every ``POST`` passes the gate (:meth:`Console.operator`: same origin, an operator, the CSRF
token), calls the same function as the CLI command it mirrors (through
:class:`~.operations.Operations`), writes one audit line — ``console action`` on
``phoenix_resources.console.audit`` with ``who`` (the token's label), ``action``, ``target``,
``result`` and ``ok`` — and answers with the page of what it acted on, the result in its
status region (a failure in its alert region).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from phoenix_resources.entrypoints.console import layout
from phoenix_resources.entrypoints.console.app import (
    COMMANDS_LIMIT,
    Caller,
    Console,
    Form,
    blocking,
    dlq_page,
    html,
    outbox_page,
    parked_page,
    unavailable,
)
from phoenix_resources.entrypoints.console.layout import View
from phoenix_resources.entrypoints.console.markup import el
from phoenix_resources.entrypoints.console.operations import Operations
from phoenix_resources.entrypoints.console.views import letter_flags, letter_source
from phoenix_resources.errors import PhoenixError

if TYPE_CHECKING:
    from phoenix_resources.adapters.dlq_topic import ReplayReport as LetterReport
    from phoenix_resources.services.replay import ReplayReport

audit = logging.getLogger("phoenix_resources.console.audit")

T = TypeVar("T")
DEFAULT_REASON = "discarded by an operator"
MAX_REASON = 500


def record(caller: Caller, action: str, target: str, result: str, *, ok: bool = True) -> None:
    """The audit line of one action."""
    (audit.info if ok else audit.warning)("console action", extra={
        "who": caller.identity.label, "role": caller.identity.role.label, "action": action,
        "target": target, "result": result, "ok": ok})


async def attempt(caller: Caller, action: str, target: str, fn: Callable[[], T],
                  ) -> T | PhoenixError:
    """``fn()`` off the event loop; a failure is recorded, and returned when it is one of the
    service's errors (the database or broker did not answer), raised otherwise."""
    try:
        return await blocking(fn)
    except Exception as e:
        record(caller, action, target, f"failed: {type(e).__name__}: {e}"[:500], ok=False)
        if isinstance(e, PhoenixError):
            return e
        raise


def _failed(e: PhoenixError) -> str:
    return (f"Not done: {type(e).__name__}. Nothing changed that the error did not allow; "
            "the console's log has the details.")


async def _operator_page(request: Request) -> tuple[Console, Caller] | Response:
    console: Console = request.app.state.console
    gate = await console.operator(request, form=False)
    return gate if isinstance(gate, Response) else (console, gate[0])


async def _operator_form(request: Request) -> tuple[Console, Caller, dict[str, str]] | Response:
    console: Console = request.app.state.console
    gate = await console.operator(request, form=True)
    return gate if isinstance(gate, Response) else (console, *gate)


@dataclass(frozen=True)
class Said:
    """What an action's page says it did."""

    text: str
    ok: bool = True
    """False: the audit line records it as not done."""
    alert: bool = False
    """Shown in the page's alert region rather than its status region."""


Page = Callable[[Request, View, int], Awaitable[Response]]
"""The page an action answers with: the request, what to say, the HTTP status."""


async def _act(request: Request, action: str, target: str,
               operation: Callable[[Operations, Caller, Form], Callable[[], T]],
               *, page: Page, say: Callable[[T], Said]) -> Response:
    """One ``POST``: the gate, ``operation`` off the event loop, the audit line, the page.

    A failure of the service (the database or broker did not answer) answers the page with
    503 and the error in its alert region; nothing is said to be done."""
    gate = await _operator_form(request)
    if isinstance(gate, Response):
        return gate
    console, caller, form = gate
    result = await attempt(caller, action, target,
                           operation(console.operations, caller, form))
    if isinstance(result, PhoenixError):
        return await page(request, console.view(caller, alert=_failed(result)), 503)
    said = say(result)
    record(caller, action, target, said.text, ok=said.ok)
    view = (console.view(caller, alert=said.text) if said.alert
            else console.view(caller, status=said.text))
    return await page(request, view, 200)


# --- parked commands -----------------------------------------------------------------------


async def confirm_replay(request: Request) -> Response:
    gate = await _operator_page(request)
    if isinstance(gate, Response):
        return gate
    console, caller = gate
    rid: UUID = request.path_params["resource_id"]
    view = console.view(caller)
    try:
        queue = await blocking(console.operations.parked_commands, rid, COMMANDS_LIMIT)
    except PhoenixError as e:
        return unavailable(view, "parked commands", e)
    if not queue:
        return html(layout.problem("Nothing to replay", view, f"Nothing is parked for "
                                   f"resource {rid}.", back="/parked"), 404)
    n = len(queue)
    return html(layout.confirm(
        f"Replay resource {rid}?", view, f"/parked/{rid}/replay",
        [f"Its {n} parked command(s) are applied again in order, one transaction each, "
         "through the rules live commands go through (a rule may still reject one: that is "
         "an outcome too).",
         f"The replay stops at the first command that still fails (now: {queue[0].error}); "
         "that one and those behind it stay parked, with the attempt recorded."],
        button=f"Replay {n} command(s)", cancel=f"/parked/{rid}"))


async def replay(request: Request) -> Response:
    rid: UUID = request.path_params["resource_id"]

    def said(report: ReplayReport) -> Said:
        if report.stopped_at is not None:
            return Said(f"The replay of resource {rid} stopped at command {report.stopped_at} "
                        f"after {report.applied} applied and {report.rejected} rejected; "
                        f"{report.remaining} still parked: {report.error}", ok=False,
                        alert=True)
        return Said(f"Resource {rid} replayed: {report.applied} applied, {report.rejected} "
                    "rejected." if report.applied or report.rejected
                    else f"Nothing was parked for {rid}.")

    return await _act(request, "parked.replay", str(rid),
                      lambda ops, _caller, _form: partial(ops.replay_parked, rid),
                      page=_parked, say=said)


async def confirm_discard(request: Request) -> Response:
    gate = await _operator_page(request)
    if isinstance(gate, Response):
        return gate
    console, caller = gate
    rid: UUID = request.path_params["resource_id"]
    view = console.view(caller)
    try:
        queue = await blocking(console.operations.parked_commands, rid, COMMANDS_LIMIT)
    except PhoenixError as e:
        return unavailable(view, "parked commands", e)
    if not queue:
        return html(layout.problem("Nothing to discard", view, f"Nothing is parked for "
                                   f"resource {rid}.", back="/parked"), 404)
    n = len(queue)
    reason = (el("label", {"for": "reason"}, "Reason, for the record"),
              el("input", {"type": "text", "id": "reason", "name": "reason", "required": True,
                           "maxlength": MAX_REASON, "value": DEFAULT_REASON}))
    return html(layout.confirm(
        f"Discard the parked commands of resource {rid}?", view, f"/parked/{rid}/discard",
        [f"Its {n} parked command(s) are refused for good: outcome rejected, code CMD-010, "
         "announced on the rejections topic. This cannot be undone."],
        *reason, button=f"Discard {n} command(s)", cancel=f"/parked/{rid}", danger=True))


async def discard(request: Request) -> Response:
    rid: UUID = request.path_params["resource_id"]

    def operation(ops: Operations, caller: Caller, form: Form) -> Callable[[], list[UUID]]:
        reason = " ".join((form.get("reason") or DEFAULT_REASON).split())[:MAX_REASON]
        reason = f"{reason or DEFAULT_REASON} (by {caller.identity.label})"
        return partial(ops.discard_parked, rid, reason)

    return await _act(request, "parked.discard", str(rid), operation, page=_parked,
                      say=lambda gone: Said(
                          f"Discarded {len(gone)} command(s) of resource {rid} (rejected, "
                          "CMD-010)." if gone else f"Nothing was parked for resource {rid}."))


# --- parked events (outbox rows) -----------------------------------------------------------


async def _confirm_event(request: Request, verb: str) -> Response:
    gate = await _operator_page(request)
    if isinstance(gate, Response):
        return gate
    console, caller = gate
    seq: int = request.path_params["seq"]
    view = console.view(caller)
    try:
        row = await blocking(console.operations.parked_event, seq)
    except PhoenixError as e:
        return unavailable(view, "parked events", e)
    if row is None:
        return html(layout.problem("Not parked", view, f"Outbox row {seq} is not parked.",
                                   back="/outbox"), 404)
    if verb == "retry":
        return html(layout.confirm(
            f"Retry outbox row {seq}?", view, f"/outbox/{seq}/retry",
            [f"Its park is cleared: the relay publishes it ({row.type} of resource "
             f"{row.aggregateid} to {row.topic}), then the {row.waiting} row(s) waiting behind "
             "it, in order, within its poll interval.",
             f"The broker refused it with: {row.reason}. Fix that first, or the row is parked "
             "again."], button=f"Retry row {seq}", cancel="/outbox"))
    return html(layout.confirm(
        f"Discard outbox row {seq}?", view, f"/outbox/{seq}/discard",
        [f"The row is deleted: event {row.event_id} ({row.type} of resource "
         f"{row.aggregateid}) is never published. The {row.waiting} row(s) behind it flow "
         "on. This cannot be undone."], button=f"Discard row {seq}", cancel="/outbox",
        danger=True))


async def confirm_retry_event(request: Request) -> Response:
    return await _confirm_event(request, "retry")


async def confirm_discard_event(request: Request) -> Response:
    return await _confirm_event(request, "discard")


async def retry_event(request: Request) -> Response:
    seq: int = request.path_params["seq"]
    return await _act(
        request, "outbox.retry", str(seq),
        lambda ops, _caller, _form: partial(ops.retry_event, seq), page=_outbox,
        say=lambda released: Said(
            f"Row {seq} released: the relay publishes it and the rows behind it."
            if released else f"Row {seq} is not parked (any more).", ok=bool(released)))


async def discard_event(request: Request) -> Response:
    seq: int = request.path_params["seq"]
    return await _act(
        request, "outbox.discard", str(seq),
        lambda ops, _caller, _form: partial(ops.discard_event, seq), page=_outbox,
        say=lambda gone: Said(f"Row {seq} discarded: event {gone[0].event_id} is not published."
                          if gone else f"Row {seq} is not parked (any more).", ok=bool(gone)))


# --- dead letters --------------------------------------------------------------------------


async def confirm_letter(request: Request) -> Response:
    gate = await _operator_page(request)
    if isinstance(gate, Response):
        return gate
    console, caller = gate
    p: int = request.path_params["partition"]
    o: int = request.path_params["offset"]
    view = console.view(caller)
    try:
        letter = await blocking(console.operations.dead_letter, p, o)
    except PhoenixError as e:
        return unavailable(view, "dead letters", e)
    if letter is None:
        return html(layout.problem("No such dead letter", view, f"There is no dead letter "
                                   f"at {p}:{o}.", back="/dlq"), 404)
    force = (el("input", {"type": "checkbox", "id": "force", "name": "force", "value": "yes"}),
             el("label", {"for": "force"}, "Replay it even if it had been replayed before "
                "(a truncated one never is)"))
    return html(layout.confirm(
        f"Replay dead letter {p}:{o}?", view, f"/dlq/{p}/{o}/replay",
        [f"Dead-lettered for {letter.reason}: {letter.detail or 'no detail'} (from "
         f"{letter_source(letter)}; flags: {letter_flags(letter)}).",
         "The original command is published to the commands topic again with its key and "
         "headers, plus dlq.replayed. Commands are idempotent by command_id: one applied "
         "meanwhile is a duplicate, never a second change. If it fails again it is "
         "dead-lettered again."],
        *force, button=f"Replay dead letter {p}:{o}", cancel=f"/dlq?partition={p}&from={o}"))


async def replay_letter(request: Request) -> Response:
    p: int = request.path_params["partition"]
    o: int = request.path_params["offset"]
    where = f"{p}:{o}"

    def said(report: LetterReport) -> Said:
        if report.replayed:
            return Said(f"Dead letter {where} replayed to the commands topic.")
        if report.skipped:
            text = f"Dead letter {where} skipped: {report.skipped[(p, o)]}."
        elif report.refused:
            text = f"Dead letter {where} refused by the broker: {report.refused[(p, o)]}."
        else:
            text = f"There is no dead letter at {where}."
        return Said(text, ok=False, alert=True)

    async def page(request: Request, view: View, status: int) -> Response:
        return await dlq_page(request, view, p, o, status)

    return await _act(
        request, "dlq.replay", where,
        lambda ops, _caller, form: partial(ops.replay_dead_letter, p, o,
                                           force=form.get("force") == "yes"),
        page=page, say=said)


async def _parked(request: Request, view: View, status: int) -> Response:
    return await parked_page(request, view, status)


async def _outbox(request: Request, view: View, status: int) -> Response:
    return await outbox_page(request, view, status)


def action_routes() -> list[BaseRoute]:
    parked = "/parked/{resource_id:uuid}"
    row = "/outbox/{seq:int}"
    letter = "/dlq/{partition:int}/{offset:int}/replay"
    return [
        Route(f"{parked}/replay", confirm_replay, methods=["GET"]),
        Route(f"{parked}/replay", replay, methods=["POST"]),
        Route(f"{parked}/discard", confirm_discard, methods=["GET"]),
        Route(f"{parked}/discard", discard, methods=["POST"]),
        Route(f"{row}/retry", confirm_retry_event, methods=["GET"]),
        Route(f"{row}/retry", retry_event, methods=["POST"]),
        Route(f"{row}/discard", confirm_discard_event, methods=["GET"]),
        Route(f"{row}/discard", discard_event, methods=["POST"]),
        Route(letter, confirm_letter, methods=["GET"]),
        Route(letter, replay_letter, methods=["POST"]),
    ]
