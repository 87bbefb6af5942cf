"""What the relay reports about itself: outbox metrics, readiness and publish spans.

The relay calls :meth:`RelayWatch.fetched`, :meth:`RelayWatch.publishing` (a context manager
that hands out each row's outgoing ``traceparent``; :meth:`RelayWatch.refused` marks its spans
failed), :meth:`RelayWatch.published`, :meth:`RelayWatch.backlog` and
:meth:`RelayWatch.leading`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from opentelemetry.trace import Span, StatusCode

from phoenix_resources.observability.metrics import Metrics
from phoenix_resources.observability.tracing import Tracing, traceparent_of


class _Row(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def occurred_at(self) -> datetime: ...

    @property
    def traceparent(self) -> str | None: ...


class RelayWatch:
    """The observability side of one relay (``entrypoints/relay.py``)."""

    def __init__(self, metrics: Metrics, *, tracing: Tracing | None = None,
                 topics: Sequence[str] = (), stuck_after_s: float = 120.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.tracing = tracing or Tracing()
        self._stuck_after_s = stuck_after_s
        self._monotonic = monotonic
        self._wall = wall
        self._leading = False
        self._waiting = 0
        self._parked = 0
        self._progress_at = monotonic()
        self._spans: list[Span] = []
        metrics.init_topics(*topics)

    def leading(self, leading: bool) -> None:
        """Took (True) or lost (False) the lead; a standby reports an empty outbox — the
        leader counts it — so that ``max()`` over relays is the leader's count, and a count
        a relay made before it lost the lead never outlives the rows it counted."""
        self._leading = leading
        self.metrics.relay_active.set(1 if leading else 0)
        self._progress_at = self._monotonic()
        if not leading:
            self.backlog(0, 0)
            self.metrics.outbox_lag.set(0)

    def fetched(self, rows: Sequence[_Row]) -> None:
        """The age of the oldest row of this fetch (0 when the outbox is empty)."""
        if not rows:
            self.metrics.outbox_lag.set(0)
            self._progress_at = self._monotonic()
            return
        self.metrics.outbox_lag.set(max(0.0, self._wall() - rows[0].occurred_at.timestamp()))

    @contextmanager
    def publishing(self, rows: Sequence[_Row]) -> Iterator[list[str | None]]:
        """Each row's outgoing ``traceparent``: a ``send`` span's for sampled rows (when
        tracing), else the row's own. The spans end when the block does."""
        batch, sends = self.tracing.publish_spans([(r.traceparent, r.topic) for r in rows])
        if batch is None:
            yield [r.traceparent for r in rows]
            return
        parents = [r.traceparent if s is None else traceparent_of(s)
                   for r, s in zip(rows, sends, strict=True)]
        self._spans = [batch, *(s for s in sends if s is not None)]
        try:
            yield parents
        except BaseException as e:
            self.refused(f"{type(e).__name__}: {e}")
            raise
        finally:
            self._spans = []
            for span in sends:
                if span is not None:
                    span.end()
            batch.end()

    def refused(self, description: str) -> None:
        """Mark the spans of the publish in progress failed (no-op outside one)."""
        for span in self._spans:
            span.set_status(StatusCode.ERROR, description[:300])

    def published(self, rows: Sequence[_Row]) -> None:
        """``rows`` were acknowledged by the broker (and deleted)."""
        for topic, count in Counter(r.topic for r in rows).items():
            self.metrics.events_published.labels(topic).inc(count)
        self.metrics.publish_latency.observe_ages(self._wall(),
                                                  [r.occurred_at.timestamp() for r in rows])
        if rows:
            self._progress_at = self._monotonic()

    def backlog(self, waiting: int, parked: int) -> None:
        """The leader's periodic count of outbox rows: ``waiting`` to be published (those
        held behind a parked row included), ``parked`` by a refusal for good."""
        self._waiting, self._parked = waiting, parked
        self.metrics.outbox_backlog.set(waiting)
        self.metrics.outbox_parked.set(parked)

    def readiness(self) -> dict[str, Any]:
        """Ready unless leading with rows waiting and nothing published for
        ``stuck_after_s`` (a standby is ready: it is there to take over). ``backlog_rows``
        is every unpublished row — ``waiting_rows`` plus ``parked_rows``: a parked row is
        backlog, not "nothing to do". Parked rows do not make the relay unready (it
        publishes everything else; an operator must retry or discard them, and
        PhoenixOutboxRowsParked says so), nor do the rows waiting behind them."""
        stalled = self._monotonic() - self._progress_at
        stuck = self._leading and self._waiting > 0 and stalled > self._stuck_after_s
        return {"ok": not stuck, "leading": self._leading,
                "backlog_rows": self._waiting + self._parked, "waiting_rows": self._waiting,
                "parked_rows": self._parked, "seconds_since_progress": round(stalled, 1),
                "stuck": stuck}
