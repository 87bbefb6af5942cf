"""Records as this package produces them, their headers, and their size on the wire.

``OutgoingRecord`` is what :func:`~phoenix_resources.adapters.kafka.publish_all` sends; the
size estimate is librdkafka's own admission check (``rd_kafka_msg_max_wire_size``), so a
record whose :func:`wire_size` is within ``message.max.bytes`` is never refused by
``produce()`` for its size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import Message

Headers = list[tuple[str, str | bytes | None]]

PRODUCER_MAX_BYTES = 1_000_000
"""librdkafka's default ``message.max.bytes``: the largest record ``produce()`` accepts."""

RECORD_OVERHEAD = 36
"""librdkafka's worst-case per-record framing (``RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD``): length,
attributes, timestamp and offset deltas, key/value lengths and header count as varints."""

_HEADER_OVERHEAD = 10  # two varints (name length, value length), at most 5 bytes each


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


def header_bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else value.encode()


def headers_size(headers: Headers) -> int:
    """Serialized size of ``headers`` as librdkafka counts it (names + values + varints)."""
    return sum(len(name.encode()) + len(header_bytes(value)) + _HEADER_OVERHEAD
               for name, value in headers)


def wire_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """Upper bound of the record's size as checked against ``message.max.bytes``."""
    return RECORD_OVERHEAD + len(key or b"") + len(value or b"") + headers_size(headers)


def producer_max_bytes(conf: Mapping[str, object]) -> int:
    """The ``message.max.bytes`` a producer built from ``conf`` enforces."""
    raw = conf.get("message.max.bytes")
    return PRODUCER_MAX_BYTES if raw is None else int(str(raw))


def header_pairs(message: Message) -> Headers:
    raw = message.headers()
    if raw is None:
        return []
    return list(raw.items()) if isinstance(raw, dict) else list(raw)


def text_headers(message: Message, names: frozenset[str]) -> dict[str, str]:
    """The named headers as text, in one pass (the last value of a repeated name wins;
    values that are not UTF-8 are left out)."""
    found: dict[str, str] = {}
    for key, value in header_pairs(message):
        if key in names and value is not None:
            try:
                found[key] = value.decode() if isinstance(value, bytes) else str(value)
            except UnicodeDecodeError:
                found.pop(key, None)
    return found
