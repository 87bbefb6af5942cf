"""Whether a consumer is a settled member of its group, read from librdkafka's statistics.

librdkafka emits a statistics document every ``statistics.interval.ms`` from inside
``consume``/``poll``; its ``cgrp`` object holds the group handler's ``state`` (``up`` once it
knows its coordinator) and ``join_state`` (``steady`` once it holds an assignment, empty or
not). A consumer in any other state for a long time is not consuming: the broker restarted
under it, or the group is rebalancing without end, or — a known librdkafka failure — it lost
its coordinator and stopped looking for it. The worker uses :meth:`GroupMembership.out_of_group_s`
to decide to replace its consumer (``Settings.consumer_replace_after_s``) and to report
readiness.

One :class:`GroupMembership` outlives the consumers it watches: each consumer gets its own
:meth:`GroupMembership.stats_callback`, and only the newest one counts, so the statistics of a
consumer being closed in the background cannot make the new one look settled.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

STATISTICS_INTERVAL_MS = 5000
"""How often a watched consumer reports (``statistics.interval.ms``)."""

SETTLED = "up/steady"
"""``<cgrp.state>/<cgrp.join_state>`` of a member that has joined and holds its
assignment."""


class GroupMembership:
    """The last time a consumer was a settled member of its group, and its state now.

    Thread-safe: statistics arrive on the consuming thread, readiness is asked from the health
    server's."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._generation = 0
        self._settled_at = monotonic()
        """Start counts as settled: a consumer joining for the first time is given the same
        grace as one that fell out of its group."""
        self.state = "starting"
        """``<state>/<join_state>`` of the last statistics, e.g. ``up/steady``."""
        self._settled = False

    def stats_callback(self) -> Callable[[str], None]:
        """The ``stats_cb`` of a new consumer; from now on only its statistics count."""
        with self._lock:
            self._generation += 1
            generation = self._generation

        def on_stats(document: str) -> None:
            if generation == self._generation:
                self.observe(document)

        return on_stats

    def joining(self) -> None:
        """The first subscription: the wait for the group starts now, not when the
        membership was built (start-up may have waited for the registry meanwhile)."""
        with self._lock:
            self._settled_at = self._monotonic()

    def observe(self, document: str) -> None:
        """Take one statistics document (JSON). A document without a group (a consumer
        without ``group.id``) or that does not parse changes nothing."""
        try:
            group = json.loads(document).get("cgrp")
            state = f"{group['state']}/{group['join_state']}"
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            log.debug("consumer statistics without a group state", extra={"reason": str(e)})
            return
        with self._lock:
            self.state = state
            self._settled = state == SETTLED
            if self._settled:
                self._settled_at = self._monotonic()

    def out_of_group_s(self) -> float:
        """Seconds since the consumer was last seen settled in its group (0 while it is)."""
        if self._settled:
            return 0.0
        return max(0.0, self._monotonic() - self._settled_at)
