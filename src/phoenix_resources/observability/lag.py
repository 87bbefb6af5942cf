"""Consumer lag per partition, in records and in seconds, read at scrape time.

The worker thread feeds it (cheaply: the first and last record of each partition in a batch,
librdkafka's *cached* high watermarks — no broker round trip); a scrape reads it from another
thread. Per assigned partition:

* **messages** = high watermark - the oldest unfinished offset (the first offset of the batch
  in hand, else the next offset to consume);
* **seconds** = now - the record timestamp of the oldest unfinished record: the first record
  of the batch in hand (so it keeps growing while a fault pauses the worker), else — when
  records wait that are not consumed yet — the last finished record's (the next one is no
  older, so this errs high by at most the gap between two records);
* both are **0** once every record up to the high watermark is finished (an idle worker).

Every assigned partition has both figures from its assignment until its revocation (or loss),
so a dashboard or an ``absent()`` alert sees an idle worker's partitions. Until the worker
knows where a partition stands — it has taken none of its records since the assignment, and
librdkafka gives no position before it hands out a record — both are 0: an idle partition
stays there, and one with records waiting shows them as soon as its first record is taken
(the next consume, unless the worker is paused by a fault since before the assignment).

A paused partition is not fetched, so its high watermark (and the message count) is as of the
pause; the seconds keep counting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

Key = tuple[str, int]
"""(topic, partition)"""


@dataclass
class _Partition:
    high: int | None = None
    done: int | None = None
    """The next offset to process when no batch of this partition is in hand."""
    in_hand: tuple[int, float | None] | None = None
    """(offset, timestamp) of the first record of the batch in hand."""
    last_ts: float | None = None


class ConsumerLag:
    """Thread-safe lag state of one consumer's assigned partitions."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._parts: dict[Key, _Partition] = {}

    def assign(self, keys: Iterable[Key]) -> None:
        with self._lock:
            for key in keys:
                self._parts.setdefault(key, _Partition())

    def remove(self, keys: Iterable[Key]) -> None:
        with self._lock:
            for key in keys:
                self._parts.pop(key, None)

    def unknown_position(self) -> list[Key]:
        """Partitions whose next offset is not known yet (nothing finished or in hand)."""
        with self._lock:
            return [k for k, p in self._parts.items() if p.done is None and p.in_hand is None]

    def update(self, highs: Mapping[Key, int], positions: Mapping[Key, int]) -> None:
        """Cached high watermarks, and the consumer's position of partitions from
        :meth:`unknown_position` (negative values — librdkafka's "unknown" — are ignored)."""
        with self._lock:
            for key, high in highs.items():
                part = self._parts.get(key)
                if part is not None and high >= 0:
                    part.high = high
            for key, offset in positions.items():
                known = self._parts.get(key)
                if known is not None and offset >= 0 and known.done is None:
                    known.done = offset

    def taken(self, first: Mapping[Key, tuple[int, float | None]]) -> None:
        """A batch is in hand: ``{key: (offset, timestamp)}`` of its first record per
        partition."""
        with self._lock:
            for key, head in first.items():
                part = self._parts.get(key)
                if part is not None:
                    part.in_hand = head

    def finished(self, last: Mapping[Key, tuple[int, float | None]]) -> None:
        """The batch is done (committed, offsets stored): ``{key: (offset, timestamp)}`` of
        its last record per partition. Partitions of the batch not listed (revoked) are
        simply no longer in hand."""
        with self._lock:
            for part in self._parts.values():
                part.in_hand = None
            for key, (offset, ts) in last.items():
                known = self._parts.get(key)
                if known is not None:
                    known.done = offset + 1
                    known.last_ts = ts

    def abandoned(self) -> None:
        """The batch in hand will be redelivered (stopping): nothing is in hand any more."""
        with self._lock:
            for part in self._parts.values():
                part.in_hand = None

    def total(self) -> int:
        """Records waiting over every assigned partition (those whose position is not known
        yet count 0)."""
        return sum(messages for _, _, messages, _ in self.snapshot())

    def snapshot(self) -> list[tuple[str, int, int, float]]:
        """``(topic, partition, messages, seconds)`` of every assigned partition; what is not
        known yet counts 0 (see the module's docstring)."""
        now = self._wall()
        with self._lock:
            return [(topic, partition, *_lag(p, now))
                    for (topic, partition), p in sorted(self._parts.items())]


def _lag(p: _Partition, now: float) -> tuple[int, float]:
    """(messages, seconds) of one partition."""
    head = p.in_hand[0] if p.in_hand is not None else p.done
    messages = max(0, p.high - head) if p.high is not None and head is not None else 0
    ts: float | None = None
    if p.in_hand is not None:
        ts = p.in_hand[1]
    elif messages:
        ts = p.last_ts
    return messages, max(0.0, now - ts) if ts is not None else 0.0
