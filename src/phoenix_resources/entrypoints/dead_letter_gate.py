"""The dead-letter gate: a dead letter the DLQ topic refuses stops its own partition, no more.

The worker sends a batch's dead letters after the batch's database commit
(``adapters/dlq_delivery.py``: each sized to fit the DLQ topic as configured). What the
topic still refuses for good — a limit smaller than a dead letter's own headers, a topic that
is missing or not writable — comes here. Guarantees:

* **Only the partitions concerned wait.** A partition with a refused dead letter is held
  (paused; ``ConsumerSession.hold``); every other partition of the batch has its offsets
  stored and goes on being consumed.
* **No offset past an undelivered dead letter.** A held partition's offsets are stored up to
  its first refused dead letter's record, not past it. The batch's later records of that
  partition are in PostgreSQL already: redelivered after a restart or a rebalance, they are
  absorbed as duplicates, and the poison is dead-lettered again.
* **Retried until delivered.** The refused dead letters are sent again with exponential
  backoff and full jitter (``retry_initial_s`` .. ``retry_max_s``). When they were refused
  for their size, the topic's limit is read first (an operator may have raised it) and they
  are sent again only once it reads differently, rebuilt for it — so a raised limit takes
  them whole rather than cut to the old one. Once a
  partition's dead letters are all delivered, its offsets are stored to the end of the batch
  that held it, and it is consumed again.
* **Seen.** While a partition is held the worker is not ready (``reason: dlq_blocked``),
  ``phoenix_dlq_blocked{partition}`` counts its waiting dead letters, and the refusal is
  logged at error level.
* **Forgotten with the partition.** A revoked or lost partition stops being held; its next
  owner starts at the committed offset (at the latest, the refused dead letter's record).

Not thread-safe: the worker's thread calls everything.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Message

from phoenix_resources.adapters.dlq_delivery import (
    DeadLetterLimit,
    DeadLetters,
    PendingDeadLetter,
    too_large,
)
from phoenix_resources.adapters.kafka import partition_key
from phoenix_resources.adapters.publish import Producing
from phoenix_resources.entrypoints.consumer_session import ConsumerSession, Key
from phoenix_resources.errors import BrokerUnavailable
from phoenix_resources.observability import Metrics
from phoenix_resources.observability.worker_watch import WorkerWatch

log = logging.getLogger("phoenix_resources.worker")


@dataclass
class _Held:
    """A partition waiting for its refused dead letters."""

    letters: list[PendingDeadLetter]
    resume_at: int
    """The offset to store once they are delivered: right after the batch that held it."""
    refusals: int = 1
    since: float = field(default=0.0)


class DeadLetterGate:
    """Holds the partitions whose dead letters the DLQ topic refuses (see the module)."""

    def __init__(self, topic: str, limit: DeadLetterLimit, *, session: ConsumerSession,
                 watch: WorkerWatch, metrics: Metrics, retry_initial_s: float,
                 retry_max_s: float, wait_s: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random) -> None:
        self.topic = topic
        self.limit = limit
        self.wait_s = wait_s
        """How long one send of dead letters waits for its delivery reports."""
        self._session = session
        self._watch = watch
        self._metrics = metrics
        self._initial = retry_initial_s
        self._max = retry_max_s
        self._monotonic = monotonic
        self._jitter = jitter
        self._held: dict[Key, _Held] = {}
        self._attempt = 0
        self._retry_at = 0.0

    @property
    def held(self) -> frozenset[Key]:
        """The partitions waiting for refused dead letters."""
        return frozenset(self._held)

    def letters(self) -> DeadLetters:
        """A batch's dead letters, sized to the DLQ topic's limit."""
        return DeadLetters(self.topic, self.limit, self.wait_s)

    # --- after a batch -------------------------------------------------------------------------

    def settle(self, messages: Sequence[Message], dead: DeadLetters) -> list[Message]:
        """``dead`` was sent (every dead letter delivered or refused): hold the partitions
        with refused ones, and return the records whose offsets may be stored."""
        refused: dict[Key, list[PendingDeadLetter]] = {}
        for letter in dead.refused:
            refused.setdefault(partition_key(letter.message), []).append(letter)
        if not refused:
            return list(messages)
        first = {key: min(letter.offset for letter in letters)
                 for key, letters in refused.items()}
        last: dict[Key, int] = {}
        storable: list[Message] = []
        for m in messages:
            key, offset = partition_key(m), m.offset() or 0
            last[key] = max(offset, last.get(key, -1))
            if key not in first or offset < first[key]:
                storable.append(m)
        for key, letters in refused.items():
            self._hold(key, letters, last.get(key, first[key]) + 1)
        self._schedule(again=False)
        return storable

    def _hold(self, key: Key, letters: list[PendingDeadLetter], resume_at: int) -> None:
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _Held([], resume_at, since=self._monotonic())
        held.letters.extend(letters)
        held.resume_at = max(held.resume_at, resume_at)
        self._session.hold({key})
        self._watch.dlq_blocked(key[1], len(held.letters), letters[0].refusal or "")
        log.error("dead letters refused by the DLQ topic; their partition waits for them", extra={
            "dlq_topic": self.topic, "topic": key[0], "partition": key[1],
            "offsets": sorted(letter.offset for letter in letters)[:10],
            "refusal": letters[0].refusal, "limit_bytes": self.limit.bytes(),
            "kind": "dlq_blocked"})

    # --- between batches -----------------------------------------------------------------------

    def retry(self, producer: Producing) -> None:
        """Send the refused dead letters again when the backoff allows; release each
        partition whose dead letters were all delivered."""
        if not self._held or self._monotonic() < self._retry_at:
            return
        letters = self.letters()
        for held in self._held.values():
            letters.take(held.letters)
        refusals = [letter.refusal for h in self._held.values() for letter in h.letters]
        if any(too_large(r) for r in refusals):
            known = self.limit.topic_max
            self.limit.refresh()  # an operator may have raised the topic's limit
            if all(too_large(r) for r in refusals) and known is not None \
                    and self.limit.topic_max == known:
                # The limit that refused them stands: a send could only be refused again, or
                # be taken cut to that limit by a topic raised between the read and the send.
                self._schedule(again=True)
                return
        try:
            still = letters.send(producer)
        except BrokerUnavailable as e:
            self._metrics.transient_errors.labels("worker", type(e).__name__).inc()
            log.warning("dead letters not sent; retrying", extra={"error": str(e)[:300]})
            self._schedule(again=True)
            return
        self._metrics.count_outcomes("dead_lettered", letters.delivered_reasons)
        waiting: dict[Key, list[PendingDeadLetter]] = {}
        for letter in still:
            waiting.setdefault(partition_key(letter.message), []).append(letter)
        for key in list(self._held):
            if key in waiting:
                self._still_held(key, waiting[key])
            else:
                self._release(key)
        self._schedule(again=bool(self._held))

    def _still_held(self, key: Key, letters: list[PendingDeadLetter]) -> None:
        held = self._held[key]
        held.letters = letters
        held.refusals += 1
        self._watch.dlq_blocked(key[1], len(letters), letters[0].refusal or "")
        if held.refusals in (2, 10) or held.refusals % 100 == 0:  # a reminder, not a flood
            log.error("dead letters still refused by the DLQ topic", extra={
                "dlq_topic": self.topic, "partition": key[1], "dead_letters": len(letters),
                "refusal": letters[0].refusal, "attempts": held.refusals,
                "limit_bytes": self.limit.bytes(), "kind": "dlq_blocked"})

    def _release(self, key: Key) -> None:
        held = self._held.pop(key)
        self._session.store_positions({key: held.resume_at})
        self._session.release({key})
        self._watch.dlq_released(key[1])
        log.info("dead letters delivered; partition resumed", extra={
            "topic": key[0], "partition": key[1], "offset": held.resume_at,
            "waited_s": round(self._monotonic() - held.since, 1)})

    def _schedule(self, *, again: bool) -> None:
        """Full jitter: a random wait up to ``initial * 2^attempt``, capped."""
        self._attempt = self._attempt + 1 if again else 0
        ceiling = min(self._max, self._initial * 2 ** min(self._attempt, 30))
        self._retry_at = self._monotonic() + self._jitter() * ceiling

    # --- rebalances ----------------------------------------------------------------------------

    def drop_partitions(self, partitions: set[int]) -> None:
        """Revoked or lost: their next owner starts from the committed offset."""
        for key in [k for k in self._held if k[1] in partitions]:
            del self._held[key]
            self._watch.dlq_released(key[1])
