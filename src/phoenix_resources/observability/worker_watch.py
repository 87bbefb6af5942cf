"""What the worker reports about itself: metrics, consumer lag, readiness and batch spans.

The worker calls a handful of hooks (one line each) and this module does the rest, so the
hot path keeps its shape:

* :meth:`WorkerWatch.polled` after every consume (refreshes cached high watermarks at most
  every :data:`REFRESH_S`, no broker round trip);
* :meth:`WorkerWatch.batch` when a batch is taken → a :class:`BatchWatch`, whose
  :meth:`~BatchWatch.decoded`, :meth:`~BatchWatch.span`, :meth:`~BatchWatch.counted` and
  :meth:`~BatchWatch.finished` / :meth:`~BatchWatch.abandoned` follow the batch;
* :meth:`WorkerWatch.rebalanced`, :meth:`WorkerWatch.paused`, :meth:`WorkerWatch.resumed`;
* :meth:`WorkerWatch.dlq_blocked` / :meth:`WorkerWatch.dlq_released` while a partition waits
  for dead letters the DLQ topic refuses.

Per batch it costs one pass over the records (first and last record per partition) and one
over the decoded commands (their end-to-end latency, observed in bulk).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol
from uuid import UUID

from confluent_kafka import Consumer, Message, TopicPartition
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from phoenix_resources.observability.lag import Key
from phoenix_resources.observability.metrics import NO_CODE, Metrics
from phoenix_resources.observability.tracing import Tracing
from phoenix_resources.services.ports import Incoming

REFRESH_S = 0.25
"""How often the cached high watermarks are read while consuming."""


class _Report(Protocol):
    applied: int
    unchanged: int
    rejected: int
    duplicates: int
    parked: int
    codes: dict[str, int]
    duplicate_ids: list[Any]


class _DeadLetters(Protocol):
    delivered_reasons: dict[str, int]


class _Membership(Protocol):
    """``adapters.group_membership.GroupMembership``, as readiness reads it."""

    state: str

    def out_of_group_s(self) -> float: ...


def _stamp(m: Message) -> tuple[int, float | None]:
    kind, ms = m.timestamp()
    return (m.offset() or 0), (ms / 1000 if kind and ms and ms > 0 else None)


class WorkerWatch:
    """The observability side of one :class:`~phoenix_resources.entrypoints.worker.Worker`."""

    def __init__(self, metrics: Metrics, consumer: Consumer, *, tracing: Tracing | None = None,
                 stuck_after_s: float = 120.0, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 membership: _Membership | None = None) -> None:
        self.metrics = metrics
        self.lag = metrics.consumer_lag
        self.tracing = tracing or Tracing()
        self._consumer = consumer
        self._stuck_after_s = stuck_after_s
        self._membership = membership
        self._monotonic = monotonic
        self._wall = wall
        self._assigned: set[Key] = set()
        self._joined = False
        self._paused_at: float | None = None
        self._paused_reason: str | None = None
        self._blocked: dict[int, tuple[int, str, float]] = {}
        """Partitions waiting for refused dead letters: (how many, the refusal, since)."""
        self._progress_at = monotonic()
        self._next_refresh = 0.0

    # --- the consume loop ------------------------------------------------------------------

    def polled(self) -> None:
        """After each consume: refresh the cached high watermarks now and then."""
        now = self._monotonic()
        if now < self._next_refresh or not self._assigned:
            return
        self._next_refresh = now + REFRESH_S
        highs = {}
        for key in self._assigned:
            marks = self._consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
            if marks is not None:
                highs[key] = marks[1]
        unknown = self.lag.unknown_position()
        positions = {}
        if unknown:
            for tp in self._consumer.position([TopicPartition(*k) for k in unknown]):
                positions[(tp.topic, tp.partition)] = tp.offset
        self.lag.update(highs, positions)
        if self.lag.total() == 0:
            self._progress_at = now

    def use(self, consumer: Consumer) -> None:
        """The worker replaced its consumer: read watermarks and positions from this one."""
        self._consumer = consumer
        self._next_refresh = 0.0

    def batch(self, messages: Sequence[Message]) -> BatchWatch:
        """A batch was taken; follow it until :meth:`BatchWatch.finished`."""
        return BatchWatch(self, messages)

    # --- rebalances and faults -------------------------------------------------------------

    def rebalanced(self, event: str, partitions: Collection[Key],
                   assignment: Collection[Key]) -> None:
        """``event`` is ``assigned``, ``revoked`` or ``lost``; ``assignment`` is what the
        worker holds afterwards."""
        self._joined = True
        self.metrics.rebalances.labels(event).inc()
        self.metrics.assigned_partitions.set(len(assignment))
        if event == "assigned":
            self.lag.assign(partitions)
        else:
            self.lag.remove(partitions)
        self._assigned = set(assignment)
        self._next_refresh = 0.0

    def paused(self, reason: str | None = None) -> None:
        """Consumption paused by a fault; ``reason`` (the fault's kind) is reported by
        readiness until :meth:`resumed`."""
        if reason is not None:
            self._paused_reason = reason
        if self._paused_at is None:
            self._paused_at = self._monotonic()
            self.metrics.consumer_paused.set(1)

    def resumed(self) -> None:
        if self._paused_at is not None:
            self.metrics.paused_seconds.inc(max(0.0, self._monotonic() - self._paused_at))
            self._paused_at = None
            self._paused_reason = None
            self.metrics.consumer_paused.set(0)

    def progressed(self) -> None:
        self._progress_at = self._monotonic()

    def dlq_blocked(self, partition: int, letters: int, refusal: str) -> None:
        """``letters`` dead letters of ``partition`` are refused by the DLQ topic (for
        ``refusal``); the partition waits for them. Readiness is off until every partition
        is released."""
        since = self._blocked.get(partition, (0, "", self._monotonic()))[2]
        self._blocked[partition] = (letters, refusal, since)
        self.metrics.dlq_blocked.labels(str(partition)).set(letters)

    def dlq_released(self, partition: int) -> None:
        """``partition`` waits for no dead letter any more (delivered, or it left)."""
        if self._blocked.pop(partition, None) is not None:
            self.metrics.dlq_blocked.labels(str(partition)).set(0)

    # --- readiness -------------------------------------------------------------------------

    def readiness(self) -> dict[str, Any]:
        """Ready: joined the group (partitions assigned, or none to assign to this member),
        not stuck — records waiting with no batch finished for ``stuck_after_s``, or
        consumption paused by a fault for longer than that (a batch in flight is not counted
        as waiting, so a pause alone must be enough) — and, with a membership, not out of the
        group for longer than ``stuck_after_s`` either (its state is reported as
        ``group_state``). Not ready at once while a partition waits for dead letters the DLQ
        topic refuses (``reason``: ``dlq_blocked``, details under ``dlq_blocked``)."""
        waiting = self.lag.total()
        now = self._monotonic()
        if waiting == 0 and self._paused_at is None:
            self._progress_at = now
        stalled = now - self._progress_at
        paused_for = now - self._paused_at if self._paused_at is not None else 0.0
        stuck = (waiting > 0 and stalled > self._stuck_after_s) \
            or paused_for > self._stuck_after_s
        report: dict[str, Any] = {
            "ok": self._joined and not stuck, "joined": self._joined,
            "assigned_partitions": len(self._assigned), "paused": self._paused_at is not None,
            "lag_messages": waiting, "seconds_since_progress": round(stalled, 1),
            "stuck": stuck}
        if self._paused_at is not None:
            report["seconds_paused"] = round(paused_for, 1)
            report["paused_by"] = self._paused_reason
        if self._blocked:
            report.update(ok=False, reason="dlq_blocked", dlq_blocked=self._blocked_report(now))
        if self._membership is not None:
            out = self._membership.out_of_group_s()
            report["group_state"] = self._membership.state
            report["seconds_out_of_group"] = round(out, 1)
            if out > self._stuck_after_s:
                report["ok"] = False
        return report

    def _blocked_report(self, now: float) -> dict[str, Any]:
        first = min(self._blocked.values(), key=lambda b: b[2])
        return {"partitions": sorted(self._blocked),
                "dead_letters": sum(n for n, _, _ in self._blocked.values()),
                "refusal": first[1], "seconds": round(now - first[2], 1)}


class BatchWatch:
    """One batch, from taken to finished: its span, its counts, its lag bookkeeping."""

    def __init__(self, watch: WorkerWatch, messages: Sequence[Message]) -> None:
        self._watch = watch
        self._started = time.perf_counter()
        self._start_ns = time.time_ns()
        self._incoming: Sequence[Incoming] = ()
        self._issued_by: Callable[[Sequence[UUID]], list[float]] | None = None
        self.span: trace.Span | None = None
        # One topic per worker (its subscription): key the pass by partition alone.
        first: dict[int | None, Message] = {}
        last: dict[int | None, Message] = {}
        for m in messages:
            partition = m.partition()
            if partition not in first:
                first[partition] = m
            last[partition] = m
        self._size = len(messages)
        self._topic = (messages[0].topic() or "") if messages else ""
        self._last = {(self._topic, p or 0): m for p, m in last.items()}
        watch.lag.taken({(self._topic, p or 0): _stamp(m) for p, m in first.items()})

    def decoded(self, incoming: Sequence[Incoming], traceparents: Sequence[str | None] = (),
                issued: Callable[[Sequence[UUID]], list[float]] | None = None) -> None:
        """The commands of the batch are known: open its span (when tracing) with links.
        The compiled path gives no ``incoming`` but the ``traceparents`` and a function
        ``issued(excluded ids)`` that says when its commands were issued."""
        self._incoming = incoming
        self._issued_by = issued
        if self._watch.tracing.enabled and self.span is None:
            self.span = self._watch.tracing.batch_span(
                [i.traceparent for i in incoming] or list(traceparents), self._start_ns,
                {"messaging.system": "kafka", "messaging.operation.type": "process",
                 "messaging.destination.name": self._topic,
                 "messaging.batch.message_count": self._size})

    def span_of(self, name: str) -> AbstractContextManager[Any]:
        """A child span of the batch's (``apply``, ``dead-letter``); nothing when off."""
        if self.span is None:
            return nullcontext()
        return self._watch.tracing.child(self.span, name)

    def counted(self, report: _Report) -> None:
        """The batch's transaction(s) committed: count outcomes and end-to-end latency."""
        m = self._watch.metrics
        m.batches.inc()
        m.batch_size.observe(self._size)
        m.commands.labels("applied", NO_CODE).inc(report.applied + report.unchanged)
        m.commands.labels("duplicate", NO_CODE).inc(report.duplicates)
        m.count_outcomes("rejected", {c: n for c, n in report.codes.items()
                                      if c.startswith("CMD")})
        m.count_outcomes("parked", {c: n for c, n in report.codes.items()
                                    if not c.startswith("CMD")})
        m.command_latency.observe_ages(self._watch._wall(), self._issued(report))
        if self.span is not None:
            self.span.set_attributes({"phoenix.applied": report.applied + report.unchanged,
                                      "phoenix.rejected": report.rejected,
                                      "phoenix.duplicates": report.duplicates,
                                      "phoenix.parked": report.parked})

    def _issued(self, report: _Report) -> list[float]:
        """When each fresh command was issued (epoch seconds); redeliveries left out."""
        if self._issued_by is not None:
            return self._issued_by(report.duplicate_ids)
        if not report.duplicate_ids:
            return [item.command.issued_at.timestamp() for item in self._incoming]
        duplicates = set(report.duplicate_ids)  # their first delivery was counted
        return [item.command.issued_at.timestamp() for item in self._incoming
                if item.command.command_id not in duplicates]

    def finished(self, dead: _DeadLetters) -> None:
        """Offsets stored: count dead letters, close the span, move the lag on."""
        watch = self._watch
        watch.metrics.count_outcomes("dead_lettered", dead.delivered_reasons)
        watch.metrics.batch_seconds.observe(time.perf_counter() - self._started)
        watch.lag.finished({k: _stamp(m) for k, m in self._last.items()
                            if k in watch._assigned})
        watch.progressed()
        if self.span is not None:
            self.span.end()

    def abandoned(self) -> None:
        """Stopping with the batch unfinished: it will be redelivered."""
        self._watch.lag.abandoned()
        if self.span is not None:
            self.span.set_status(StatusCode.ERROR, "abandoned: stopping; redelivered later")
            self.span.end()
