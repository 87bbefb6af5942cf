"""Sending dead letters so that they fit the DLQ topic as it is configured.

Two parts:

* :class:`DeadLetterLimit` — the largest dead letter the DLQ accepts: the smaller of the
  producer's ``message.max.bytes`` and the topic's ``max.message.bytes``. The topic's limit
  is read from the broker (``describe_configs``) at the first dead letter, cached, and read
  again after every refusal for size — an operator may have changed it either way.
* :class:`DeadLetters` — a set of dead letters sent together: each is built (``dlq.py``'s
  truncation rules, ``dlq.truncated`` headers) to fit the limit as known when it is sent;
  one refused for its size makes the limit be read again and, when that lowers it, is
  rebuilt and sent once more in the same call. What the broker still refuses is returned,
  each with the broker's reason, never dropped and never raised: the caller decides what
  waits for it (the worker holds only the partitions those dead letters came from).

Ordering: a call sends its dead letters together, in the order they were added; one rebuilt
smaller is sent after the others (``dlq.source.partition`` / ``dlq.source.offset`` give the
original order).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import Message

from phoenix_resources.adapters.dlq import RECORD_BATCH_OVERHEAD, dead_letter
from phoenix_resources.adapters.publish import Producing, publish_all
from phoenix_resources.adapters.records import PRODUCER_MAX_BYTES, OutgoingRecord, wire_size
from phoenix_resources.errors import BrokerUnavailable, RecordRefused

log = logging.getLogger(__name__)

TOO_LARGE = ("MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE")
"""How a refusal for size starts (``produce_errors.describe``: ``CODE: text``)."""

REREAD_S = 60.0
"""While the topic's limit cannot be read, how often reading it is tried again (besides
after every refusal for size)."""


def too_large(refusal: str | None) -> bool:
    return refusal is not None and refusal.startswith(TOO_LARGE)


class DeadLetterLimit:
    """The largest dead letter (in bytes, before :func:`~.dlq.headroom`) the DLQ takes.

    ``read_topic_max()`` returns the topic's ``max.message.bytes`` (None when the topic does
    not exist) or raises :class:`BrokerUnavailable`. Until it has answered with a number the
    producer's limit is used, and a refusal for size lowers the assumed limit below the
    refused record (halving it), so dead letters get through even where the worker may not
    describe the topic.
    """

    def __init__(self, producer_max: int,
                 read_topic_max: Callable[[], int | None] | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.producer_max = producer_max
        self._read = read_topic_max
        self._monotonic = monotonic
        self.topic_max: int | None = None
        """The topic's ``max.message.bytes`` as last read; None while unknown."""
        self._guess: int | None = None
        self._read_at = -float("inf")

    def bytes(self) -> int:
        """The limit now (reads the topic's at the first call, and while it is unknown at
        most every :data:`REREAD_S`)."""
        if self.topic_max is None and self._monotonic() - self._read_at >= REREAD_S:
            self.refresh()
        topic = self.topic_max if self.topic_max is not None else self._guess
        return self.producer_max if topic is None else min(self.producer_max, topic)

    def refresh(self) -> None:
        """Read the topic's limit again now."""
        self._read_at = self._monotonic()
        if self._read is None:
            return
        try:
            found = self._read()
        except BrokerUnavailable as e:
            log.warning("cannot read the DLQ topic's max.message.bytes; dead letters are "
                        "sized for the producer's limit until it can be read",
                        extra={"error": str(e)[:300], "producer_max_bytes": self.producer_max})
            return
        if found is not None:
            if found != self.topic_max:
                log.info("DLQ topic limit", extra={"max_message_bytes": found})
            self.topic_max, self._guess = found, None

    def refused(self, size: int) -> None:
        """A dead letter of ``size`` bytes on the wire was refused for its size: read the
        topic's limit again; when it cannot be read, assume half that size."""
        self.refresh()
        if self.topic_max is None or self.topic_max >= size + RECORD_BATCH_OVERHEAD:
            # Unknown, or the topic says it would fit (the limit moved meanwhile, or the
            # broker counts differently): assume less than what was refused.
            self.topic_max = None
            self._guess = max(1, min(size, self._guess or size) // 2)


@dataclass
class PendingDeadLetter:
    """One dead letter not yet acknowledged: the record it came from, why, and the broker's
    last refusal (``CODE: text``; None before it was refused)."""

    partition: int
    message: Message
    reason: str
    detail: str
    error: BaseException | None
    refusal: str | None = None
    record: OutgoingRecord | None = None
    built_for: int = 0
    """The limit :attr:`record` was built to fit."""

    @property
    def offset(self) -> int:
        return self.message.offset() or 0

    def build(self, topic: str, limit: int) -> OutgoingRecord:
        """The dead letter, built again only when the limit changed."""
        if self.record is None or self.built_for != limit:
            self.record = dead_letter(self.message, topic, self.reason, self.detail,
                                      error=self.error, max_bytes=limit)
            self.built_for = limit
        return self.record

    def size(self) -> int:
        record = self.record
        return 0 if record is None else wire_size(record.key, record.value, record.headers)


class DeadLetters:
    """Dead letters sent together (a batch's, or those retried after a refusal).

    Guarantees: :meth:`send` returns once every dead letter was acknowledged or refused for
    good; the refused ones are returned (and kept in :attr:`refused`) with their reason. A
    transient broker failure raises :class:`BrokerUnavailable`: what was delivered is not
    sent again by the next call.
    """

    def __init__(self, topic: str, limit: DeadLetterLimit | None = None,
                 wait_s: float = 30.0) -> None:
        """``wait_s``: how long one send waits for the delivery reports (longer than the
        producer's delivery timeout, so a retried send never queues a second copy)."""
        self.topic = topic
        self.limit = limit or DeadLetterLimit(PRODUCER_MAX_BYTES)
        self.wait_s = wait_s
        self._pending: list[PendingDeadLetter] = []
        self.refused: list[PendingDeadLetter] = []
        self.delivered = 0
        self.delivered_reasons: dict[str, int] = {}
        """Delivered dead letters by ``dlq.reason``."""

    def __len__(self) -> int:
        return len(self._pending) + len(self.refused) + self.delivered

    @property
    def done(self) -> bool:
        """Nothing left to send (every dead letter delivered or refused)."""
        return not self._pending

    def add(self, partition: int, message: Message, reason: str, detail: str,
            error: BaseException | None = None) -> None:
        self._pending.append(PendingDeadLetter(partition, message, reason, detail, error))

    def take(self, letters: Iterable[PendingDeadLetter]) -> None:
        """Send these (refused earlier) again with the next :meth:`send`."""
        self._pending.extend(letters)

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget the dead letters of revoked partitions (their next owner redoes them)."""
        self._pending = [p for p in self._pending if p.partition not in partitions]
        self.refused = [p for p in self.refused if p.partition not in partitions]

    def send(self, producer: Producing) -> list[PendingDeadLetter]:
        """Send what is pending; return the dead letters the topic refused for good."""
        for _ in range(2):  # a second round only for dead letters rebuilt smaller
            if not self._pending:
                break
            limit = self.limit.bytes()
            try:
                publish_all(producer, [p.build(self.topic, limit) for p in self._pending],
                            self.wait_s)
            except RecordRefused as refused:
                self._settle(refused)
            else:
                self._count(self._pending)
                self._pending = []
        self.refused.extend(self._pending)  # still too large after being rebuilt smaller
        self._pending = []
        return list(self.refused)

    def _count(self, delivered: list[PendingDeadLetter]) -> None:
        self.delivered += len(delivered)
        for p in delivered:
            self.delivered_reasons[p.reason] = self.delivered_reasons.get(p.reason, 0) + 1

    def _settle(self, refused: RecordRefused) -> None:
        sent, again = self._pending, []
        for index, why in refused.refused.items():
            sent[index].refusal = why
        oversize = [sent[i].size() for i, why in refused.refused.items() if too_large(why)]
        if oversize:
            self.limit.refused(max(oversize))
        limit = self.limit.bytes()
        for index in sorted(refused.refused):
            pending = sent[index]
            if too_large(pending.refusal) and limit < pending.built_for:
                again.append(pending)  # the limit it was built for is known wrong now
            else:
                self.refused.append(pending)
        self._count([p for i, p in enumerate(sent) if i in refused.delivered])
        self._pending = again
