"""The console's pages: the pipeline at a glance, parked commands, parked events (outbox
rows) and dead letters, each a semantic table with the actions an operator may take."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from uuid import UUID

from phoenix_resources.entrypoints.console.glance import Glance, ProcessState
from phoenix_resources.entrypoints.console.layout import (
    View,
    action_link,
    page,
    section,
)
from phoenix_resources.entrypoints.console.markup import Html, dl, el, join, table

if TYPE_CHECKING:
    from phoenix_resources.adapters.dlq import DeadLetter
    from phoenix_resources.adapters.postgres.parked_outbox import ParkedRow as ParkedEvent
    from phoenix_resources.adapters.postgres.parking import ParkedResource, ParkedRow
    from phoenix_resources.entrypoints.console.operations import LetterPage

UNKNOWN = "unknown"


def number(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:,.0f}"


def rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}/s"


def seconds(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:,.1f} s"


# --- the pipeline --------------------------------------------------------------------------


def _readiness(p: ProcessState) -> Html:
    if not p.reachable:
        return el("span", {"class": "bad"}, f"unreachable ({p.error or 'no answer'})")
    if p.ready is None:
        return el("span", {"class": "bad"}, f"no readiness answer ({p.error or 'unknown'})")
    if p.ready:
        return el("span", {"class": "good"}, "ready")
    failing = ", ".join(p.failing) or "unknown check"
    return el("span", {"class": "bad"}, f"not ready: {failing}")


def _relay_role(p: ProcessState) -> str:
    if p.component not in ("relay", "all"):
        return "—"
    return "leader" if p.relay_active else "standby"


def _lag(glance: Glance) -> str:
    if glance.lag_seconds is not None:
        return f"{seconds(glance.lag_seconds)} ({number(glance.lag_messages)} records)"
    if any(p.component in ("worker", "all") for p in glance.processes):
        return "none reported: no partition is assigned to a worker that answers"
    return "unknown: no worker answers"


def overview(view: View, glance: Glance, parked: tuple[int, int] | str,
             parked_events: int | str) -> Html:
    """``parked`` and ``parked_events`` are the database's counts, or why it did not
    answer."""
    leader = glance.leader
    commands = (parked if isinstance(parked, str)
                else f"{parked[0]:,} commands of {parked[1]:,} resources")
    outcomes = ", ".join(f"{name.replace('_', '-')} {number(glance.outcome(name))}"
                         for name in ("applied", "rejected", "parked", "duplicate",
                                      "dead_lettered"))
    summary = dl([
        ("Throughput", "measured between two refreshes: shown from the next one"
         if glance.commands_per_s is None and glance.events_per_s is None else
         f"{rate(glance.commands_per_s)} commands, {rate(glance.events_per_s)} events "
         "published"),
        ("Outcomes since the processes started", outcomes),
        ("Consumer lag", _lag(glance)),
        ("Outbox (leading relay's count)",
         "unknown: no relay answers as leader" if leader is None else
         f"{number(leader.outbox_waiting)} waiting, {number(leader.outbox_parked)} parked, "
         f"oldest {seconds(leader.outbox_lag_seconds)}"),
        ("Relay leader", "none answering" if leader is None else leader.name),
        ("Parked commands (database)", join(commands, " ", el("a", {"href": "/parked"},
                                                                "Show them"))),
        ("Parked outbox rows (database)", join(
            parked_events if isinstance(parked_events, str) else f"{parked_events:,}", " ",
            el("a", {"href": "/outbox"}, "Show them"))),
    ])
    processes = table(
        "Configured processes (PHOENIX_CONSOLE_PROCESSES)",
        ("Process", "URL", "Kind", "Readiness", "Relay", "Commands", "Events published"),
        ([p.name, p.url, p.component or UNKNOWN, _readiness(p), _relay_role(p),
          rate(p.commands_per_s), rate(p.events_per_s)] for p in glance.processes),
        empty="No process is configured.")
    stamp = time.strftime("%H:%M:%S", time.localtime(glance.at))
    refresh = el("p", {"class": "refresh"},
                 el("input", {"type": "checkbox", "id": "auto-refresh", "checked": True}),
                 el("label", {"for": "auto-refresh"}, "Refresh every 5 seconds"),
                 " · ", el("span", {"id": "updated"}, f"Updated at {stamp}"))
    return page("Pipeline", view, refresh,
                el("div", {"id": "glance"}, section("summary", "At a glance", summary),
                   section("processes", "Processes", processes)), current="/")


# --- parked commands -----------------------------------------------------------------------


def parked(view: View, resources: Sequence[ParkedResource], limit: int) -> Html:
    headers = ["Resource", "Commands", "Parked since", "First command", "Error"]
    if view.may_act:
        headers.append("Actions")
    rows = []
    for r in resources:
        row: list[object] = [el("a", {"href": f"/parked/{r.resource_id}"}, str(r.resource_id)),
                             r.commands, r.since, str(r.head), el("pre", None, r.error)]
        if view.may_act:
            row.append(_resource_actions(r.resource_id))
        rows.append(row)
    more = (el("p", None, f"Showing the first {limit}; replay or discard these to see more.")
            if len(resources) >= limit else "")
    return page("Parked commands", view,
                el("p", None, "A command that failed in a way no rule foresaw is parked with "
                   "every later command of its resource, in order, until replayed or "
                   "discarded. Fix the cause (the error names it), then replay."),
                table("Parked resources, the longest-waiting first", headers, rows,
                      empty="Nothing is parked."), more, current="/parked")


def _resource_actions(rid: UUID) -> Html:
    return el("div", {"class": "actions"},
              action_link(f"/parked/{rid}/replay", "Replay", f"the commands of resource {rid}"),
              action_link(f"/parked/{rid}/discard", "Discard",
                          f"the commands of resource {rid}", danger=True))


def parked_resource(view: View, rid: UUID, commands: Sequence[ParkedRow]) -> Html:
    rows = [[c.seq, str(c.command_id), c.command_type, c.reason, el("pre", None, c.error),
             c.attempts,
             "—" if c.last_attempt_at is None else join(
                 c.last_attempt_at, ": ", el("pre", None, c.last_error or "")),
             _source(c.source_partition, c.source_offset), c.parked_at]
            for c in commands]
    actions = _resource_actions(rid) if view.may_act and commands else ""
    return page(f"Parked commands of resource {rid}", view, actions,
                table("Parked commands in the order they are replayed",
                      ("Seq", "Command", "Type", "Code", "Error", "Attempts", "Last attempt",
                       "Source partition / offset", "Parked at"), rows,
                      empty="Nothing is parked for this resource."),
                el("p", None, el("a", {"href": "/parked"}, "All parked resources")),
                current="/parked")


def _source(partition: int | None, offset: int | None) -> str:
    return "—" if partition is None else f"{partition} / {offset}"


# --- parked events (outbox rows) -----------------------------------------------------------


def outbox(view: View, rows: Sequence[ParkedEvent], limit: int) -> Html:
    headers = ["Row", "Parked at", "Resource", "Type", "Topic", "Size", "Waiting behind",
               "Broker's reason"]
    if view.may_act:
        headers.append("Actions")
    body = []
    for r in rows:
        row: list[object] = [r.seq, r.parked_at or "—", r.aggregateid, r.type, r.topic,
                             f"{r.size:,} B", r.waiting, el("pre", None, r.reason)]
        if view.may_act:
            row.append(el("div", {"class": "actions"},
                          action_link(f"/outbox/{r.seq}/retry", "Retry", f"row {r.seq}"),
                          action_link(f"/outbox/{r.seq}/discard", "Discard", f"row {r.seq}",
                                      danger=True)))
        body.append(row)
    more = el("p", None, f"Showing the first {limit}.") if len(rows) >= limit else ""
    return page("Parked events", view,
                el("p", None, "Outbox rows the broker refused for good (too large for the "
                   "topic, topic absent, not authorised). Each holds back its resource's later "
                   "events. Fix the cause, then retry; discard only an event that must never "
                   "be published."),
                table("Parked outbox rows, oldest first", headers, body,
                      empty="No outbox row is parked."), more, current="/outbox")


# --- dead letters --------------------------------------------------------------------------


def letter_source(letter: DeadLetter) -> str:
    topic, partition, offset = letter.source
    return f"{topic or '?'} [{'?' if partition is None else partition}] @ " \
           f"{'?' if offset is None else offset}"


def letter_flags(letter: DeadLetter) -> str:
    flags = [f for f, on in (("truncated", letter.truncated), ("replayed", letter.replayed))
             if on]
    return ", ".join(flags) or "—"


def dead_letters(view: View, letters: LetterPage, topic: str) -> Html:
    headers = ["Position", "Time", "Reason", "Detail", "Source topic [partition] @ offset",
               "Key", "Size", "Flags"]
    if view.may_act:
        headers.append("Actions")
    body = []
    for d in letters.letters:
        where = f"{d.partition}:{d.offset}"
        row: list[object] = [where, d.timestamp or "—", d.reason, el("pre", None, d.detail),
                             letter_source(d), d.key_text() or "—", f"{d.original_size:,} B",
                             letter_flags(d)]
        if view.may_act:
            row.append(action_link(f"/dlq/{d.partition}/{d.offset}/replay", "Replay",
                                   f"dead letter {where}"))
        body.append(row)
    chooser = el("form", {"method": "get", "action": "/dlq", "class": "inline"},
                 el("label", {"for": "partition"}, "Partition"),
                 el("input", {"type": "number", "id": "partition", "name": "partition",
                              "min": 0, "value": letters.partition, "inputmode": "numeric"}),
                 el("label", {"for": "from"}, "From offset"),
                 el("input", {"type": "number", "id": "from", "name": "from", "min": 0,
                              "value": letters.start, "inputmode": "numeric"}),
                 el("button", {"type": "submit"}, "Show"))
    pages = [] if letters.next_offset is None else [el("a", {
        "href": f"/dlq?partition={letters.partition}&from={letters.next_offset}",
        "rel": "next"}, f"Next page (from offset {letters.next_offset})")]
    return page("Dead letters", view,
                el("p", None, f"Commands the worker could not decode, read from {topic} "
                   "(never as a group member, nothing committed). Replay one after fixing its "
                   "cause: it is published to the commands topic again."),
                chooser,
                table(f"Dead letters of partition {letters.partition} from offset "
                      f"{letters.start}", headers, body,
                      empty="No dead letter here."),
                el("nav", {"aria_label": "Pages of dead letters"}, *pages) if pages else "",
                current="/dlq")
