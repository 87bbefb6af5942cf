"""The dead-letter record: what it carries, how it always fits, and how to read it back.

A dead letter keeps the original key, value and headers and adds two sets of headers that say
why and where from: this project's ``dlq.*`` ones and Kafka Connect's ``__connect.errors.*``
ones (so tools written for Connect's DLQs read ours). It is built to fit the producer's
``message.max.bytes``: when the original would not, its value is truncated (a prefix is
kept), then its original headers are dropped, and ``dlq.truncated: true`` says so —
``dlq.original.value.size`` always gives the original value's size. A truncated dead letter
cannot be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Message, Producer

from phoenix_resources.adapters.publish import publish_all
from phoenix_resources.adapters.records import (
    PRODUCER_MAX_BYTES,
    Headers,
    OutgoingRecord,
    header_bytes,
    header_pairs,
    wire_size,
)
from phoenix_resources.errors import DeadLetterBlocked, RecordRefused

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
"""Bytes kept free below ``max_bytes``: the record batch header (61 bytes) and slack, so a
dead letter also fits a broker whose topic limit equals the producer's."""

_DETAIL_MAX = 1000


def dead_letter(message: Message, dlq_topic: str, reason: str, detail: str, *,
                error: BaseException | None = None, max_bytes: int = PRODUCER_MAX_BYTES,
                connector: str = "phoenix-resources-worker") -> OutgoingRecord:
    """The dead letter of ``message``, guaranteed to fit ``max_bytes`` (the producer's
    ``message.max.bytes``; pass a smaller one to fit a DLQ topic with a lower limit)."""
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
    budget = max_bytes - HEADROOM
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


SHRUNK_MAX_BYTES = 64 * 1024
"""A dead letter the DLQ topic refused for its size is rebuilt to fit this (a topic's
``max.message.bytes`` may be far below the producer's limit)."""


@dataclass
class _Pending:
    partition: int
    message: Message
    reason: str
    detail: str
    error: BaseException | None
    record: OutgoingRecord
    shrunk: bool = False


class DeadLetters:
    """The dead letters of one batch, published together before the batch's offsets are
    stored.

    Guarantees: :meth:`send` returns only when every dead letter was acknowledged; one the
    topic refused for its size is rebuilt to :data:`SHRUNK_MAX_BYTES` and sent once more; one
    refused for any other reason (the topic is missing or not authorised) raises
    :class:`DeadLetterBlocked` — a transient error: the worker pauses and retries until an
    operator fixes the topic, and the record is never dropped. A transient broker failure
    raises :class:`BrokerUnavailable`; what was delivered is not sent again.
    """

    def __init__(self, topic: str, max_bytes: int = PRODUCER_MAX_BYTES,
                 wait_s: float = 30.0) -> None:
        """``wait_s``: how long one send waits for the delivery reports (longer than the
        producer's delivery timeout, so a retried send never queues a second copy)."""
        self.topic = topic
        self.max_bytes = max_bytes
        self.wait_s = wait_s
        self._pending: list[_Pending] = []
        self.delivered = 0
        self.delivered_reasons: dict[str, int] = {}
        """Delivered dead letters by ``dlq.reason``."""

    def __len__(self) -> int:
        return len(self._pending) + self.delivered

    @property
    def done(self) -> bool:
        return not self._pending

    def add(self, partition: int, message: Message, reason: str, detail: str,
            error: BaseException | None = None) -> None:
        record = dead_letter(message, self.topic, reason, detail, error=error,
                             max_bytes=self.max_bytes)
        self._pending.append(_Pending(partition, message, reason, detail, error, record))

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget the dead letters of revoked partitions (their next owner redoes them)."""
        self._pending = [p for p in self._pending if p.partition not in partitions]

    def send(self, producer: Producer) -> None:
        for _ in range(2):  # a second round only for dead letters rebuilt smaller
            if not self._pending:
                return
            try:
                publish_all(producer, [p.record for p in self._pending], self.wait_s)
            except RecordRefused as refused:
                self._settle(refused)
            else:
                self._count(self._pending)
                self._pending = []
        if self._pending:
            raise DeadLetterBlocked(f"{len(self._pending)} dead letter(s) still refused by "
                                    f"{self.topic} after being shrunk")

    def _count(self, delivered: list[_Pending]) -> None:
        self.delivered += len(delivered)
        for p in delivered:
            self.delivered_reasons[p.reason] = self.delivered_reasons.get(p.reason, 0) + 1

    def _settle(self, refused: RecordRefused) -> None:
        blocked: list[str] = []
        for index in sorted(refused.refused):
            pending, why = self._pending[index], refused.refused[index]
            if why.startswith(("MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE")) \
                    and not pending.shrunk:
                pending.record = dead_letter(pending.message, self.topic, pending.reason,
                                             pending.detail, error=pending.error,
                                             max_bytes=SHRUNK_MAX_BYTES)
                pending.shrunk = True
            else:
                blocked.append(why)
        self._count([p for i, p in enumerate(self._pending) if i in refused.delivered])
        self._pending = [p for i, p in enumerate(self._pending) if i not in refused.delivered]
        if blocked:
            raise DeadLetterBlocked(f"the DLQ topic {self.topic} refuses dead letters "
                                    f"({blocked[0]}); fix the topic (create it, grant the "
                                    "worker Write) — the worker waits, nothing is dropped")
