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
from collections.abc import Callable
from functools import partial
from typing import TypeVar
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from phoenix_resources.entrypoints.console import layout
from phoenix_resources.entrypoints.console.app import (
    COMMANDS_LIMIT,
    Caller,
    Console,
    blocking,
    dlq_page,
    html,
    outbox_page,
    parked_page,
    unavailable,
)
from phoenix_resources.entrypoints.console.markup import el
from phoenix_resources.entrypoints.console.views import letter_flags, letter_source
from phoenix_resources.errors import PhoenixError

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
    gate = await _operator_form(request)
    if isinstance(gate, Response):
        return gate
    console, caller, _ = gate
    rid: UUID = request.path_params["resource_id"]
    report = await attempt(caller, "parked.replay", str(rid),
                           partial(console.operations.replay_parked, rid))
    if isinstance(report, PhoenixError):
        return await parked_page(request, console.view(caller, alert=_failed(report)), 503)
    if report.stopped_at is not None:
        text = (f"The replay of resource {rid} stopped at command {report.stopped_at} after "
                f"{report.applied} applied and {report.rejected} rejected; "
                f"{report.remaining} still parked: {report.error}")
        record(caller, "parked.replay", str(rid), text, ok=False)
        return await parked_page(request, console.view(caller, alert=text))
    text = (f"Resource {rid} replayed: {report.applied} applied, {report.rejected} rejected."
            if report.applied or report.rejected else f"Nothing was parked for {rid}.")
    record(caller, "parked.replay", str(rid), text)
    return await parked_page(request, console.view(caller, status=text))


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
    gate = await _operator_form(request)
    if isinstance(gate, Response):
        return gate
    console, caller, form = gate
    rid: UUID = request.path_params["resource_id"]
    reason = " ".join((form.get("reason") or DEFAULT_REASON).split())[:MAX_REASON]
    reason = f"{reason or DEFAULT_REASON} (by {caller.identity.label})"
    gone = await attempt(caller, "parked.discard", str(rid),
                         partial(console.operations.discard_parked, rid, reason))
    if isinstance(gone, PhoenixError):
        return await parked_page(request, console.view(caller, alert=_failed(gone)), 503)
    text = (f"Discarded {len(gone)} command(s) of resource {rid} (rejected, CMD-010)."
            if gone else f"Nothing was parked for resource {rid}.")
    record(caller, "parked.discard", str(rid), text)
    return await parked_page(request, console.view(caller, status=text))


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
    gate = await _operator_form(request)
    if isinstance(gate, Response):
        return gate
    console, caller, _ = gate
    seq: int = request.path_params["seq"]
    released = await attempt(caller, "outbox.retry", str(seq),
                             partial(console.operations.retry_event, seq))
    if isinstance(released, PhoenixError):
        return await outbox_page(request, console.view(caller, alert=_failed(released)), 503)
    text = (f"Row {seq} released: the relay publishes it and the rows behind it."
            if released else f"Row {seq} is not parked (any more).")
    record(caller, "outbox.retry", str(seq), text, ok=bool(released))
    return await outbox_page(request, console.view(caller, status=text))


async def discard_event(request: Request) -> Response:
    gate = await _operator_form(request)
    if isinstance(gate, Response):
        return gate
    console, caller, _ = gate
    seq: int = request.path_params["seq"]
    gone = await attempt(caller, "outbox.discard", str(seq),
                         partial(console.operations.discard_event, seq))
    if isinstance(gone, PhoenixError):
        return await outbox_page(request, console.view(caller, alert=_failed(gone)), 503)
    text = (f"Row {seq} discarded: event {gone[0].event_id} is not published."
            if gone else f"Row {seq} is not parked (any more).")
    record(caller, "outbox.discard", str(seq), text, ok=bool(gone))
    return await outbox_page(request, console.view(caller, status=text))


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
    gate = await _operator_form(request)
    if isinstance(gate, Response):
        return gate
    console, caller, form = gate
    p: int = request.path_params["partition"]
    o: int = request.path_params["offset"]
    where = f"{p}:{o}"
    force = form.get("force") == "yes"
    report = await attempt(caller, "dlq.replay", where,
                           partial(console.operations.replay_dead_letter, p, o, force=force))
    if isinstance(report, PhoenixError):
        return await dlq_page(request, console.view(caller, alert=_failed(report)), p, o, 503)
    if report.replayed:
        text, ok = f"Dead letter {where} replayed to the commands topic.", True
    elif report.skipped:
        text, ok = f"Dead letter {where} skipped: {report.skipped[(p, o)]}.", False
    elif report.refused:
        text, ok = f"Dead letter {where} refused by the broker: {report.refused[(p, o)]}.", False
    else:
        text, ok = f"There is no dead letter at {where}.", False
    record(caller, "dlq.replay", where, text, ok=ok)
    view = console.view(caller, status=text) if ok else console.view(caller, alert=text)
    return await dlq_page(request, view, p, o)


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
