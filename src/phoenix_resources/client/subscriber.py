"""Subscribing to change events: typed events, consumer groups, at-least-once delivery.

Guarantee of :class:`EventSubscriber`: **a record's offset is stored (and later committed) only
after the caller is done with it** — when the next delivery is requested from the iterator,
when :meth:`~EventSubscriber.run`'s handler returns, or on :meth:`~EventSubscriber.ack`. If the
handler raises or the process dies, the record is delivered again (to this group member or
another one). Events are at-least-once; ``dedupe=True`` drops repeats by
``(resource_id, version)`` within this process.

A record that is not an event (it cannot be decoded) is handled by the ``on_error`` policy:
``raise`` (the default) stops there, ``skip`` counts, logs and passes it, ``dead-letter``
copies it to a topic of the caller's choosing and then passes it. Its offset is stored only
once the policy is done with it, so no policy loses a record silently.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, get_args

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from phoenix_resources.adapters import codecs, kafka
from phoenix_resources.adapters.dlq import dead_letter
from phoenix_resources.adapters.records import producer_max_bytes
from phoenix_resources.client.settings import AnySettings, client_settings
from phoenix_resources.domain.events import ResourceChanged
from phoenix_resources.errors import (
    BrokerUnavailable,
    ClientClosed,
    ConfigurationError,
    DecodeError,
    RecordRefused,
    TransientError,
)

log = logging.getLogger(__name__)

_DEDUPE_MAX = 100_000  # resources remembered for dedupe (least recently seen forgotten)

OnError = Literal["raise", "skip", "dead-letter"]
ON_ERROR_POLICIES: tuple[str, ...] = get_args(OnError)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event as read from the events topic, with its CloudEvents attributes."""

    event: ResourceChanged
    ce: dict[str, str]
    """CloudEvents attributes without the ``ce_`` prefix: ``id``, ``type``, ``source``,
    ``subject``, ``time``, ``specversion`` (and ``datacontenttype`` from ``content-type``)."""
    traceparent: str | None
    """W3C trace context of the change, to continue the trace in the subscriber."""
    topic: str
    partition: int
    offset: int
    key: str | None


def parse_headers(headers: Sequence[tuple[str, str | bytes | None]] | None
                  ) -> tuple[dict[str, str], str | None]:
    """CloudEvents attributes (``ce_`` prefix removed) and the ``traceparent``."""
    ce: dict[str, str] = {}
    traceparent = None
    for name, raw in headers or []:
        value = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
        if name.startswith("ce_"):
            ce[name[3:]] = value
        elif name == "content-type":
            ce["datacontenttype"] = value
        elif name == "traceparent":
            traceparent = value
    return ce, traceparent


class EventSubscriber:
    """Reads ``settings.events_topic`` in consumer group ``group_id`` (``settings``:
    :class:`~phoenix_resources.client.settings.ClientSettings`, or the server's).

    ``from_beginning`` applies where the group has no committed offset yet (a new group):
    start at the oldest event instead of the newest. ``dedupe`` drops an event whose
    ``version`` is not above the last one seen for its resource (a relay repeat); its offset
    is still stored.

    ``on_error`` says what happens to a record that cannot be decoded:

    * ``"raise"`` (default) — :class:`DecodeError` naming topic, partition and offset; the
      offset is not stored and the consumer is rewound to the record, so iterating again
      raises again: nothing is passed over without a decision;
    * ``"skip"`` — counted in :attr:`skipped`, logged at warning level, offset stored;
    * ``"dead-letter"`` — the original key, value and headers plus ``dlq.*`` and Kafka
      Connect ``__connect.errors.*`` reason headers are published to
      ``dead_letter_topic``; once the broker acknowledged it, the offset is stored and it is
      counted in :attr:`dead_lettered`. If that publish fails, the consumer is rewound to the
      record and the error raised (:class:`BrokerUnavailable` while the broker is away,
      :class:`ConfigurationError` when the topic is refused for good).
    """

    def __init__(self, settings: AnySettings, group_id: str | None = None, *,
                 from_beginning: bool = False, dedupe: bool = False,
                 on_error: OnError = "raise", dead_letter_topic: str | None = None,
                 consumer_options: dict[str, Any] | None = None) -> None:
        if on_error not in ON_ERROR_POLICIES:
            raise ConfigurationError(f"on_error must be one of {', '.join(ON_ERROR_POLICIES)}"
                                     f", not {on_error!r}")
        if on_error == "dead-letter" and not dead_letter_topic:
            raise ConfigurationError("on_error='dead-letter' needs a dead_letter_topic")
        self._settings = settings = client_settings(settings)
        self.on_error: OnError = on_error
        self.dead_letter_topic = dead_letter_topic
        self._producer: Producer | None = None  # made on the first dead letter
        self.group_id = group_id or f"phoenix-subscriber-{uuid.uuid4()}"
        options: dict[str, Any] = {"auto.offset.reset": "earliest" if from_beginning
                                   else "latest", "client.id": "phoenix-resources-subscriber"}
        options.update(consumer_options or {})
        self._consumer = kafka.new_consumer(settings, self.group_id, **options)
        self._codec = codecs.event_codec(settings)
        self._dedupe = dedupe
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._pending: Message | None = None  # handed out, not yet stored
        self._subscribed = False
        self._closed = False
        self.dropped_repeats = 0
        self.skipped = 0
        """Undecodable records passed over by ``on_error="skip"``."""
        self.dead_lettered = 0
        """Undecodable records copied to ``dead_letter_topic``."""

    # --- the iterator -------------------------------------------------------------------

    def __iter__(self) -> Iterator[Delivery]:
        return self.deliveries()

    def deliveries(self, *, timeout: float | None = None) -> Iterator[Delivery]:
        """Yield deliveries until ``timeout`` seconds have passed (forever when ``None``).

        Asking for the next delivery stores the previous one's offset: finish handling
        a delivery before advancing."""
        self._subscribe()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            msg = self._consumer.poll(0.2 if remaining is None else min(remaining, 0.2))
            if msg is None:
                continue
            delivery = self._accept(msg)
            if delivery is not None:
                self._pending = msg
                yield delivery
                # Resumed: the caller asked for the next one, so it is done with this one.
                # (Closed or broken out of instead, the generator never gets here.)
                self.ack()
                if self._closed:
                    return

    def run(self, handler: Callable[[Delivery], None], *, timeout: float | None = None) -> None:
        """Call ``handler`` for each delivery; its offset is stored right after it returns.
        An exception from ``handler`` propagates, and that delivery's offset is not stored."""
        for delivery in self.deliveries(timeout=timeout):
            handler(delivery)
            self.ack()

    def ack(self) -> None:
        """Store the offset of the delivery last handed out (it is committed within a second,
        and on close). Called implicitly when the next delivery is requested."""
        msg, self._pending = self._pending, None
        if msg is not None and not self._closed:
            self._store(msg)

    def _accept(self, msg: Message) -> Delivery | None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise BrokerUnavailable(f"consumer failed: {err.str()}")
            log.warning("consumer error (retried by the client): %s", err.str())
            return None
        value = msg.value()
        if value is None:
            self._store(msg)  # a tombstone is not an event
            return None
        try:
            event = self._codec.decode_event(value)
        except DecodeError as e:
            self._undecodable(msg, e)
            return None
        if self._dedupe and self._repeat(event):
            self.dropped_repeats += 1
            self._store(msg)
            return None
        headers = msg.headers()
        ce, traceparent = parse_headers(headers if isinstance(headers, list) else None)
        key = msg.key()
        return Delivery(event=event, ce=ce, traceparent=traceparent, topic=msg.topic() or "",
                        partition=msg.partition() or 0, offset=msg.offset() or 0,
                        key=None if key is None else key.decode("utf-8", "replace"))

    def _undecodable(self, msg: Message, error: DecodeError) -> None:
        """Apply the ``on_error`` policy; returns only when the record is done with."""
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        if self.on_error == "raise":
            self._rewind(msg)
            raise DecodeError(error.reason, f"{where}: {error.detail}") from error
        if self.on_error == "dead-letter":
            self._dead_letter(msg, error, where)
            self.dead_lettered += 1
            log.warning("undecodable event dead-lettered", extra={
                "where": where, "reason": error.reason, "dead_letter_topic":
                self.dead_letter_topic})
        else:
            self.skipped += 1
            log.warning("undecodable event skipped", extra={
                "where": where, "reason": error.reason, "detail": error.detail[:300]})
        self._store(msg)

    def _dead_letter(self, msg: Message, error: DecodeError, where: str) -> None:
        assert self.dead_letter_topic is not None, "checked in __init__"
        if self._producer is None:
            self._producer = kafka.new_producer(self._settings,
                                                **{"client.id": "phoenix-resources-subscriber"})
        record = dead_letter(msg, self.dead_letter_topic, error.reason, error.detail,
                             error=error, connector=f"subscriber:{self.group_id}",
                             max_bytes=producer_max_bytes(self._settings.kafka_options))
        try:
            kafka.publish_all(self._producer, [record], timeout=10.0)
        except TransientError:
            self._rewind(msg)
            raise
        except RecordRefused as e:
            self._rewind(msg)
            raise ConfigurationError(f"the dead-letter topic {self.dead_letter_topic!r} "
                                     f"refused the record from {where}: {e}") from e

    def _rewind(self, msg: Message) -> None:
        """Fetch ``msg`` again next time, so it is not passed over by the next store."""
        try:
            topic, partition = kafka.partition_key(msg)
            self._consumer.seek(TopicPartition(topic, partition, msg.offset() or 0))
        except KafkaException as e:
            # Revoked meanwhile: its next owner starts at the last stored offset anyway.
            log.info("cannot rewind to an undecodable record: %s", e)

    def _repeat(self, event: ResourceChanged) -> bool:
        rid = str(event.resource_id)
        last = self._seen.get(rid)
        if last is not None and event.version <= last:
            return True
        self._seen[rid] = event.version
        self._seen.move_to_end(rid)
        if len(self._seen) > _DEDUPE_MAX:
            self._seen.popitem(last=False)
        return False

    def _store(self, msg: Message) -> None:
        try:
            self._consumer.store_offsets(message=msg)
        except KafkaException as e:
            # The partition was revoked meanwhile: its new owner gets the record again.
            if e.args and isinstance(e.args[0], KafkaError) and e.args[0].code() in (
                    KafkaError._STATE, KafkaError._UNKNOWN_PARTITION):
                log.info("offset not stored, partition revoked: %s", e)
                return
            raise BrokerUnavailable(f"cannot store the offset: {e}") from e

    def _subscribe(self) -> None:
        if self._closed:
            raise ClientClosed("the subscriber is closed")
        if not self._subscribed:
            self._consumer.subscribe([self._settings.events_topic])
            self._subscribed = True

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Commit the stored offsets and leave the group. The delivery handed out last is
        *not* stored unless :meth:`ack` was called (or its handler in :meth:`run` returned)."""
        if not self._closed:
            self._closed = True
            self._consumer.close()
            if self._producer is not None:
                self._producer.flush(5)

    def __enter__(self) -> EventSubscriber:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
