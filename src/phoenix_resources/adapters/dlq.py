"""The dead-letter record: what it carries, how it is made to fit, and how to read it back.

A dead letter keeps the original key, value and headers and adds two sets of headers that say
why and where from: this project's ``dlq.*`` ones and Kafka Connect's ``__connect.errors.*``
ones (so tools written for Connect's DLQs read ours). It is built to fit the producer's
``message.max.bytes`` — or any smaller limit given, such as the DLQ topic's
``max.message.bytes`` (``adapters/dlq_delivery.py`` sends a batch's dead letters within the
smaller of the two): when the original would not fit, its value is truncated (a prefix is
kept), then its original headers are dropped, and ``dlq.truncated: true`` says so —
``dlq.original.value.size`` always gives the original value's size. A truncated dead letter
cannot be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Message

from phoenix_resources.adapters.records import (
    PRODUCER_MAX_BYTES,
    Headers,
    OutgoingRecord,
    header_bytes,
    header_pairs,
    wire_size,
)

REASON = "dlq.reason"
DETAIL = "dlq.detail"
SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
VALUE_SIZE = "dlq.original.value.size"
TRUNCATED = "dlq.truncated"
HEADERS_DROPPED = "dlq.original.headers.dropped"
REPLAYED = "dlq.replayed"
"""Set on a command re-published from the DLQ; ``replay`` skips dead letters that carry it
(the command failed again after a replay) unless forced, so nothing loops."""

DLQ_PREFIX = "dlq."
CONNECT_PREFIX = "__connect.errors."
CONNECT_TOPIC = "__connect.errors.topic"
CONNECT_PARTITION = "__connect.errors.partition"
CONNECT_OFFSET = "__connect.errors.offset"
CONNECT_CONNECTOR = "__connect.errors.connector.name"
CONNECT_STAGE = "__connect.errors.stage"
CONNECT_EXCEPTION = "__connect.errors.exception.class.name"
CONNECT_MESSAGE = "__connect.errors.exception.message"

STAGE_DECODE = "VALUE_CONVERTER"
"""Connect's stage for a value that could not be deserialized — what every dead letter of
this project is."""

HEADROOM = 1024
"""The most bytes kept free below ``max_bytes`` (see :func:`headroom`)."""

RECORD_BATCH_OVERHEAD = 61
"""A record batch's own header (v2: base offset, length, epoch, magic, CRC, attributes, offset
delta, timestamps, producer id and epoch, base sequence, count). A topic's
``max.message.bytes`` bounds the whole batch, header included."""


def headroom(max_bytes: int) -> int:
    """Bytes kept free below ``max_bytes``: the record batch header plus slack — 1 KiB for
    limits from about 60 KB up (a producer's 1,000,000), proportionally less below, so a
    topic limited to a few KiB still leaves room for a dead letter. ``wire_size`` is already
    an upper bound of the record, and librdkafka sends a batch uncompressed when compression
    would make it larger, so the header is all a single dead letter adds."""
    return min(HEADROOM, RECORD_BATCH_OVERHEAD + max_bytes // 64)

_DETAIL_MAX = 1000


def dead_letter(message: Message, dlq_topic: str, reason: str, detail: str, *,
                error: BaseException | None = None, max_bytes: int = PRODUCER_MAX_BYTES,
                connector: str = "phoenix-resources-worker") -> OutgoingRecord:
    """The dead letter of ``message``, made to fit ``max_bytes`` (the producer's
    ``message.max.bytes``; pass a smaller one to fit a DLQ topic with a lower limit). Only
    this package's own headers are never cut: a limit smaller than they are is not met."""
    return build_dead_letter(
        dlq_topic, source=(message.topic() or "", message.partition(), message.offset()),
        key=message.key(), value=message.value(), headers=header_pairs(message),
        reason=reason, detail=detail, error=error, max_bytes=max_bytes, connector=connector)


def build_dead_letter(dlq_topic: str, *, source: tuple[str, int | None, int | None],
                      key: bytes | None, value: bytes | None, headers: Headers, reason: str,
                      detail: str, error: BaseException | None = None,
                      max_bytes: int = PRODUCER_MAX_BYTES,
                      connector: str = "phoenix-resources-worker") -> OutgoingRecord:
    topic, partition, offset = source
    # An original header under one of our names would make the reason ambiguous (readers
    # take the first or the last): ours are the only ones. dlq.replayed stays: it is what
    # keeps a replayed command that failed again from being replayed in a loop.
    headers = [(k, v) for k, v in headers if k == REPLAYED or not is_dlq_header(k)]
    detail = detail[:_DETAIL_MAX]
    exception = (f"{type(error).__module__}.{type(error).__qualname__}" if error is not None
                 else "phoenix_resources.errors.DecodeError")
    message = (str(error) if error is not None else f"{reason}: {detail}")[:_DETAIL_MAX]
    ours: Headers = [
        (REASON, reason.encode()),
        (DETAIL, detail.encode(errors="replace")),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (VALUE_SIZE, str(len(value or b"")).encode()),
        (CONNECT_TOPIC, topic.encode()),
        (CONNECT_PARTITION, str(partition).encode()),
        (CONNECT_OFFSET, str(offset).encode()),
        (CONNECT_CONNECTOR, connector.encode()),
        (CONNECT_STAGE, STAGE_DECODE.encode()),
        (CONNECT_EXCEPTION, exception.encode()),
        (CONNECT_MESSAGE, message.encode(errors="replace")),
    ]
    budget = max_bytes - headroom(max_bytes)
    if wire_size(key, value, headers + ours) <= budget:
        return OutgoingRecord(dlq_topic, key, value, headers + ours)
    # Too large: keep as much of the value as fits beside everything else, and drop the
    # original headers only when even an empty value does not make room.
    truncated: Headers = [(TRUNCATED, b"true")]
    room = budget - wire_size(key, b"", headers + ours + truncated)
    if room < 0:
        truncated.append((HEADERS_DROPPED, str(len(headers)).encode()))
        headers = []
        room = budget - wire_size(key, b"", ours + truncated)
    if room < 0 and key is not None:  # a key this large is itself the poison
        key = key[:max(0, len(key) + room)]
        room = 0
    return OutgoingRecord(dlq_topic, key, (value or b"")[:max(0, room)],
                          headers + ours + truncated)


def is_dlq_header(name: str) -> bool:
    return name.startswith((DLQ_PREFIX, CONNECT_PREFIX))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record read back from a DLQ topic."""

    partition: int
    offset: int
    timestamp: datetime | None
    key: bytes | None
    value: bytes | None
    headers: Headers

    @classmethod
    def from_message(cls, message: Message) -> DeadLetter:
        kind, ms = message.timestamp()
        stamp = datetime.fromtimestamp(ms / 1000, UTC) if kind and ms >= 0 else None
        return cls(partition=message.partition() or 0, offset=message.offset() or 0,
                   timestamp=stamp, key=message.key(), value=message.value(),
                   headers=header_pairs(message))

    def header(self, name: str) -> str | None:
        """The last value of ``name`` as text (``None`` if absent)."""
        found = None
        for key, value in self.headers:
            if key == name and value is not None:
                found = header_bytes(value).decode("utf-8", "replace")
        return found

    @property
    def reason(self) -> str:
        return self.header(REASON) or self.header(CONNECT_EXCEPTION) or "unknown"

    @property
    def detail(self) -> str:
        return self.header(DETAIL) or self.header(CONNECT_MESSAGE) or ""

    @property
    def source(self) -> tuple[str | None, int | None, int | None]:
        """Topic, partition and offset of the original record, as far as the headers say."""
        topic = self.header(SOURCE_TOPIC) or self.header(CONNECT_TOPIC)
        return (topic, _int(self.header(SOURCE_PARTITION) or self.header(CONNECT_PARTITION)),
                _int(self.header(SOURCE_OFFSET) or self.header(CONNECT_OFFSET)))

    @property
    def original_size(self) -> int:
        return _int(self.header(VALUE_SIZE)) or len(self.value or b"")

    @property
    def truncated(self) -> bool:
        return self.header(TRUNCATED) == "true"

    @property
    def replayed(self) -> bool:
        """The original command had itself been replayed from the DLQ."""
        return self.header(REPLAYED) is not None

    def original_headers(self) -> Headers:
        """The original record's headers: everything but the ``dlq.*`` and Connect ones."""
        return [(k, v) for k, v in self.headers if not is_dlq_header(k)]

    def key_text(self) -> str | None:
        if self.key is None:
            return None
        try:
            return self.key.decode()
        except UnicodeDecodeError:
            return "0x" + self.key.hex()


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None
