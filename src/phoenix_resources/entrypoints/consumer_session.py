"""The worker's Kafka consumer, from subscription to close.

A :class:`ConsumerSession` owns the ``Consumer`` and everything that follows the group rather
than the batch: the assignment, the paused state, the rebalance callbacks, polling while a
fault is waited out, storing and committing offsets, and replacing a consumer that stays out
of its group. The worker (``entrypoints/worker.py``) owns the batch and decides *when*: it
stores offsets only after the database commit, pauses on a fault, replaces between batches.

Guarantees this module enforces:

* offsets are stored only for partitions still assigned — a record the worker finished after
  losing its partition is left to the partition's next owner;
* on revoke, the worker hears of it (``on_gone``) before anything else, so its in-flight batch
  drops those records, then the offsets stored so far are committed (each follows a database
  commit): the next owner starts right after them. On lost, the same minus the commit: the
  partitions already belong to another member, and nothing of them is committed;
* while paused, every partition assigned meanwhile is paused too; :meth:`ConsumerSession.wait`
  polls (rebalances and heartbeats are served, the group membership is kept) and rewinds a
  record that slips through the pause, so it is fetched again after :meth:`resume`;
* a partition that leaves the assignment paused or held is resumed as it leaves (librdkafka
  keeps the pause, and one assigned again later would never be fetched);
* a *held* partition (:meth:`ConsumerSession.hold`: its dead letters wait for the DLQ) stays
  paused — through a fault's pause and resume — until :meth:`ConsumerSession.release`, while
  the others are consumed; a record of it that slips through is rewound, never handed out;
  it stops being held when it leaves the assignment;
* a replaced consumer's callbacks are ignored from the moment it starts closing; what it held
  is reported lost once; it commits what it stored as it closes, if it still can;
* a consumer that failed for good (librdkafka's fatal error: a static member fenced after a
  broker outage) is replaced at the next batch; a second failure within ``replace_after_s``,
  or no way to replace it, raises :class:`BrokerFatal` (the process exits, is restarted).

Lives with the entry points rather than the adapters: it is the worker process's policy for a
consumer (when to commit, what to pause, when to give up on one) and reports to the worker's
observability (``WorkerWatch``, ``Metrics``), which adapters never import.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from phoenix_resources.adapters.group_membership import GroupMembership
from phoenix_resources.adapters.kafka import partition_key
from phoenix_resources.errors import BrokerFatal
from phoenix_resources.observability import Metrics
from phoenix_resources.observability.worker_watch import WorkerWatch

PARTITIONS_REFRESH_S = 60.0
"""How often the commands topic's partition count is read again between assignments."""
METADATA_TIMEOUT_S = 5.0

log = logging.getLogger("phoenix_resources.worker")

Key = tuple[str, int]
"""A partition: (topic, partition)."""

POLL_SLICE_S = 0.2
"""While waiting out a fault, poll at least this often (keeps rebalances and heartbeats
served; far below max.poll.interval.ms)."""

CLOSE_WAIT_S = 10.0
"""How long a replaced consumer gets to leave its group before the new one subscribes; its
close goes on in the background after that."""


class ConsumerSession:
    """One subscription to the commands topic, kept alive across consumer replacements.

    Not thread-safe: every method, and the rebalance callbacks (librdkafka runs them inside
    ``consume``/``poll``/``close``), run on the worker's thread."""

    def __init__(self, consumer: Consumer, *, topic: str, watch: WorkerWatch, metrics: Metrics,
                 on_gone: Callable[[set[int]], None], stopping: Callable[[], bool],
                 monotonic: Callable[[], float] = time.monotonic,
                 membership: GroupMembership | None = None,
                 new_consumer: Callable[[], Consumer] | None = None,
                 replace_after_s: float = 0.0) -> None:
        """``on_gone(partitions)`` runs first thing when partitions are revoked or lost.
        ``stopping()`` ends :meth:`wait` early. With ``membership`` and ``new_consumer``, a
        consumer out of its group for ``replace_after_s`` (``0``: never) can be replaced."""
        self._consumer = consumer
        self._topic = topic
        self._count: tuple[int, float] | None = None
        """The topic's partition count from metadata, and when it was read."""
        self._watch = watch
        self._metrics = metrics
        self._on_gone = on_gone
        self._stopping = stopping
        self._monotonic = monotonic
        self._membership = membership
        self._new_consumer = new_consumer
        self._replace_after_s = replace_after_s
        self._assignment: set[Key] = set()
        self._held: set[Key] = set()
        self._paused = False
        self._subscribed = False
        self._replaced_at = -float("inf")
        self._failed = False  # a fatal error: the consumer is replaced at the next chance
        self._retired: Consumer | None = None
        """The consumer being replaced (see :meth:`_replaced`)."""

    @property
    def consumer(self) -> Consumer:
        """The current consumer (a new one after each replacement)."""
        return self._consumer

    @property
    def assignment(self) -> frozenset[Key]:
        """The partitions held now."""
        return frozenset(self._assignment)

    @property
    def paused(self) -> bool:
        """Whether the assignment is paused (see :meth:`pause`)."""
        return self._paused

    @property
    def held(self) -> frozenset[Key]:
        """The partitions held (see :meth:`hold`)."""
        return frozenset(self._held)

    # --- subscription ------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe for the first time: the wait for the group starts now (not when the
        membership was built: start-up may have waited for the registry meanwhile)."""
        if self._membership is not None:
            self._membership.joining()
        self._subscribe()

    def _subscribe(self) -> None:
        self._consumer.subscribe([self._topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._subscribed = True

    def close(self) -> None:
        """Commit the offsets stored so far (if it ever subscribed) and leave the group."""
        if self._subscribed:
            try:
                self._consumer.commit(asynchronous=False)
            except Exception as e:
                log.debug("final commit skipped", extra={"reason": str(e)})
        self._consumer.close()

    # --- consuming ---------------------------------------------------------------------------

    def consume(self, limit: int, timeout_s: float) -> list[Message]:
        """Up to ``limit`` records within ``timeout_s``; error events are logged and left out
        (a fatal one raises :class:`BrokerFatal`)."""
        messages = self._consumer.consume(limit, timeout=timeout_s)
        good = [m for m in messages if not self._is_error(m)]
        if self._held:
            good = self._without_held(good)
        self._watch.polled()
        return good

    def _without_held(self, messages: list[Message]) -> list[Message]:
        """Leave out records of held partitions (prefetched before the hold), each partition
        rewound to the first one left out, so nothing of it is skipped."""
        kept: list[Message] = []
        rewind: dict[Key, int] = {}
        for m in messages:
            key = partition_key(m)
            if key in self._held:
                rewind.setdefault(key, m.offset() or 0)
            else:
                kept.append(m)
        for (topic, partition), offset in rewind.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))
        return kept

    def store_offsets(self, messages: Sequence[Message]) -> None:
        """Store, per partition still assigned, the offset after the last of ``messages``.
        The caller stores only what it is done with (for the worker: after the database
        commit and the dead letters' acknowledgement)."""
        highest: dict[Key, int] = {}
        for m in messages:
            key = partition_key(m)
            offset = m.offset() or 0
            if offset >= highest.get(key, -1):
                highest[key] = offset
        self.store_positions({key: offset + 1 for key, offset in highest.items()})

    def store_positions(self, positions: dict[Key, int]) -> None:
        """Store each partition's next offset to consume, for partitions still assigned."""
        mine = [TopicPartition(t, p, o) for (t, p), o in positions.items()
                if (t, p) in self._assignment]
        if mine:
            self._consumer.store_offsets(offsets=mine)

    # --- pausing while a fault is waited out ---------------------------------------------------

    def pause(self, reason: str | None = None) -> None:
        """Stop fetching from the assignment, and from every partition assigned until
        :meth:`resume`. Nothing to pause (no assignment) leaves the session unpaused.
        ``reason`` (the fault's kind) is what readiness reports while paused."""
        if not self._paused and self._assignment:
            self._consumer.pause(self._partitions())
            self._paused = True
        if self._paused:
            self._watch.paused(reason)

    def resume(self) -> None:
        """Fetch from the assignment again, held partitions excepted (no-op unless paused)."""
        if self._paused:
            free = self._assignment - self._held
            if free:
                self._consumer.resume(_partitions(free))
            self._paused = False
            self._watch.resumed()
            log.info("resumed after fault")

    # --- holding partitions whose dead letters wait -------------------------------------------

    def hold(self, partitions: set[Key]) -> None:
        """Stop fetching from ``partitions`` (those assigned) until :meth:`release`, whatever
        a fault's pause and resume do meanwhile."""
        added = (partitions & self._assignment) - self._held
        if added:
            self._consumer.pause(_partitions(added))
            self._held |= added

    def release(self, partitions: set[Key]) -> None:
        """Fetch from ``partitions`` again (unless the whole assignment is paused: then they
        resume with it)."""
        freed = partitions & self._held
        self._held -= freed
        if freed and not self._paused:
            self._consumer.resume(_partitions(freed & self._assignment))

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass (less once ``stopping()``) by polling: rebalance callbacks run
        and the membership is kept. Meant while paused: a record that slips through the pause
        is rewound, never consumed."""
        deadline = self._monotonic() + seconds
        while not self._stopping() and self._monotonic() < deadline:
            message = self._consumer.poll(
                min(POLL_SLICE_S, max(0.0, deadline - self._monotonic())))
            if message is not None and not self._is_error(message):
                # Paused partitions should yield nothing; if one slips through (prefetched
                # before the pause), rewind so it is fetched again after resume.
                topic, partition = partition_key(message)
                self._consumer.seek(TopicPartition(topic, partition, message.offset() or 0))

    def _partitions(self) -> list[TopicPartition]:
        return _partitions(self._assignment)

    def _is_error(self, message: Message) -> bool:
        err = message.error()
        if err is None:
            return False
        # An error event's fatal() is False even for _FATAL (the client builds it from the
        # bare code): the code says it.
        if err.fatal() or err.code() == KafkaError._FATAL:
            self._fail(err)
            return True
        level = logging.DEBUG if err.code() == KafkaError._PARTITION_EOF else logging.WARNING
        log.log(level, "consumer error", extra={"error": str(err)})
        return True

    # --- a consumer out of its group -----------------------------------------------------------

    def _fail(self, err: KafkaError) -> None:
        """Have the unusable consumer replaced (:meth:`replace_if_out_of_group`); raise
        :class:`BrokerFatal` if it cannot be, or a replacement failed within the limit."""
        replaceable = self._new_consumer is not None and self._replace_after_s > 0
        if not replaceable or self._monotonic() - self._replaced_at <= self._replace_after_s:
            raise BrokerFatal(f"fatal consumer error: {err}")
        if not self._failed:
            log.error("the consumer failed for good; replacing it", extra={"error": str(err)})
        self._failed = True

    def replace_if_out_of_group(self) -> bool:
        """Replace the consumer if it failed for good, or was out of its group for
        ``replace_after_s`` and not replaced within that period; True if it was. Call it with
        nothing in flight. The old one commits what it stored as it closes, if it still can;
        the rest is redelivered to the new one (from the committed offsets). Its rebalance
        callbacks are ignored from now on."""
        if not (self._failed or self._replacement_due()):
            return False
        self._replace()
        return True

    def _replacement_due(self) -> bool:
        limit = self._replace_after_s
        if self._membership is None or self._new_consumer is None or not limit:
            return False
        return (self._membership.out_of_group_s() > limit
                and self._monotonic() - self._replaced_at > limit)

    def _replace(self) -> None:
        assert self._new_consumer is not None
        if not self._failed and self._membership is not None:
            log.warning("consumer out of its group for too long; replacing it", extra={
                "seconds_out_of_group": round(self._membership.out_of_group_s(), 1),
                "group_state": self._membership.state, "limit_s": self._replace_after_s})
        self._failed = False
        self._replaced_at = self._monotonic()
        self._retired = self._consumer
        closing = threading.Thread(target=_close_quietly, args=(self._retired,), daemon=True,
                                   name="replaced-consumer-close")
        closing.start()
        closing.join(CLOSE_WAIT_S)
        held, self._assignment = self._assignment, set()
        self._held = set()
        self._consumer = self._new_consumer()
        if held:
            # The new consumer starts from the committed offsets: whatever waited on the
            # old one's partitions (dead letters) is redone from there.
            self._on_gone({p for _, p in held})
            self._watch.rebalanced("lost", held, self._assignment)
        self._watch.use(self._consumer)
        self._metrics.consumer_replacements.inc()
        self._subscribe()

    # --- rebalance callbacks (run inside consume/poll/close, on the worker's thread) ----------

    def _replaced(self, consumer: Consumer) -> bool:
        """A consumer replaced earlier, or the one being replaced now (it may still be
        closing in the background): its rebalances are no longer this session's."""
        return consumer is not self._consumer or consumer is self._retired

    def partition_count(self) -> int | None:
        """The commands topic's partition count, read from the broker's metadata at each
        assignment and every :data:`PARTITIONS_REFRESH_S` (a topic's count can be raised);
        None while metadata cannot be had (the partition check waits for it)."""
        now = self._monotonic()
        if self._count is None or now - self._count[1] > PARTITIONS_REFRESH_S:
            try:
                topic = self._consumer.list_topics(self._topic, timeout=METADATA_TIMEOUT_S)
                count = len(topic.topics[self._topic].partitions)
            except (KafkaException, KeyError) as e:
                log.warning("no partition count for the commands topic yet",
                            extra={"error": str(e)[:300]})
                return None if self._count is None else self._count[0]
            self._count = (count, now) if count else None
        return None if self._count is None else self._count[0]

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._replaced(consumer):
            return
        self._count = None  # read again: the assignment follows the topic's metadata
        added = {(tp.topic, tp.partition) for tp in partitions}
        self._assignment |= added
        self._watch.rebalanced("assigned", added, self._assignment)
        if self._paused and partitions:
            # Only assigned partitions can be paused, and inside on_assign they are assigned
            # when the callback returns: assign them now, or the pause is lost and the
            # partitions are fetched in the middle of a fault.
            consumer.incremental_assign(partitions)
            consumer.pause(partitions)
        log.info("partitions assigned", extra={"partitions": sorted(p for _, p in added)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._leave(consumer, partitions, "revoked")

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._leave(consumer, partitions, "lost")

    def _leave(self, consumer: Consumer, partitions: list[TopicPartition],
               how: Literal["revoked", "lost"]) -> None:
        """Partitions leave the assignment. The one difference: revoked partitions are still
        ours during the callback, so the offsets stored so far are committed (the next owner
        starts right after them); lost ones are someone else's already — no commit."""
        if self._replaced(consumer):
            return
        gone = {(tp.topic, tp.partition) for tp in partitions}
        # librdkafka keeps a pause on a partition that leaves: assigned here again later, it
        # would stay paused, unfetched, with nothing to resume it.
        if paused := [tp for tp in partitions
                      if self._paused or (tp.topic, tp.partition) in self._held]:
            consumer.resume(paused)
        self._on_gone({p for _, p in gone})
        if how == "revoked":
            try:
                consumer.commit(asynchronous=False)
            except Exception as e:
                log.debug("commit on revoke skipped", extra={"reason": str(e)})
        self._assignment -= gone
        self._held -= gone
        self._watch.rebalanced(how, gone, self._assignment)
        level = logging.INFO if how == "revoked" else logging.WARNING
        log.log(level, "partitions revoked" if how == "revoked" else "partitions lost",
                extra={"partitions": sorted(p for _, p in gone)})


def _partitions(keys: set[Key]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in sorted(keys)]


def _close_quietly(consumer: Consumer) -> None:
    try:
        consumer.close()
    except Exception as e:  # a consumer out of its group may fail to leave it: that is fine
        log.info("replaced consumer closed with an error", extra={"error": str(e)[:300]})
