"""librdkafka options from the settings: values converted, keys routed to the right client.

Guarantees:

* Every value reaching librdkafka is a ``str``, ``int`` or ``bool`` (:func:`librdkafka_value`):
  JSON numbers that are whole become ``int`` (``45000.0`` → ``45000``), other floats their
  decimal text, lists of scalars a comma-separated string (librdkafka's list syntax); ``null``,
  objects and nested lists are refused with the key named.
* A key that librdkafka knows as consumer-only never reaches a producer or an admin client,
  and a producer-only key never reaches a consumer (:func:`for_client`), so librdkafka logs
  no ``CONFWARN`` for options given in the shared map. The tables below are librdkafka's own
  ``C``/``P`` columns (CONFIGURATION.md); ``tests/unit/test_kafka_options.py`` checks each
  entry against the real library.
* Keys the service relies on (:data:`PINNED`) or that other settings own (:data:`OWNED`)
  cannot be changed through the option maps: the settings refuse them at start.
* Layers of options are merged by :func:`layered`, later layers winning, with librdkafka's
  aliases (:data:`ALIASES`, e.g. ``message.timeout.ms`` for ``delivery.timeout.ms``) counted
  as one key, so a lower layer's alias can never outlive a higher layer's setting. A library
  default yields to any option the user set (:func:`unset_by`); what a connection timeout
  governs is one function (:func:`connection_timeout_options`).

No I/O and no Kafka import: the settings model uses this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from phoenix_resources.errors import InvalidSetting

KafkaValue = str | int | bool
ClientKind = Literal["consumer", "producer", "admin"]

CONSUMER_ONLY = frozenset({
    "group.id", "group.instance.id", "partition.assignment.strategy", "session.timeout.ms",
    "heartbeat.interval.ms", "group.protocol.type", "group.protocol", "group.remote.assignor",
    "coordinator.query.interval.ms", "max.poll.interval.ms", "enable.auto.commit",
    "auto.commit.interval.ms", "enable.auto.offset.store", "queued.min.messages",
    "queued.max.messages.kbytes", "fetch.wait.max.ms", "fetch.queue.backoff.ms",
    "fetch.message.max.bytes", "max.partition.fetch.bytes", "fetch.max.bytes",
    "fetch.min.bytes", "fetch.error.backoff.ms", "isolation.level", "enable.partition.eof",
    "check.crcs", "auto.offset.reset", "consume.callback.max.messages",
})
"""librdkafka properties marked ``C``: meaningless (and warned about) on a producer."""

PRODUCER_ONLY = frozenset({
    "transactional.id", "transaction.timeout.ms", "enable.idempotence",
    "enable.gapless.guarantee", "queue.buffering.max.messages", "queue.buffering.max.kbytes",
    "queue.buffering.max.ms", "linger.ms", "message.send.max.retries", "retries",
    "queue.buffering.backpressure.threshold", "compression.codec", "compression.type",
    "compression.level", "batch.num.messages", "batch.size", "delivery.report.only.error",
    "sticky.partitioning.linger.ms", "request.required.acks", "acks", "request.timeout.ms",
    "message.timeout.ms", "delivery.timeout.ms", "partitioner",
})
"""librdkafka properties marked ``P``: meaningless (and warned about) on a consumer. An admin
client is a producer handle inside librdkafka; it gets none of these either (they would only
be ignored)."""

PINNED: dict[ClientKind, dict[str, KafkaValue]] = {
    "producer": {"enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random"},
    "consumer": {"enable.auto.offset.store": False},
    "admin": {},
}
"""What the service's guarantees rest on: no duplicates or reordering on retry, the Java
client's partitioning (one resource, one partition, whoever publishes), and offsets stored
only after the database commit."""

OWNED: dict[str, str] = {
    "bootstrap.servers": "PHOENIX_KAFKA_BOOTSTRAP_SERVERS",
    "metadata.broker.list": "PHOENIX_KAFKA_BOOTSTRAP_SERVERS",
    "group.id": "PHOENIX_CONSUMER_GROUP",
    "group.instance.id": "PHOENIX_GROUP_INSTANCE_ID",
}
"""Keys set from their own settings: an option map may not set them behind their back."""

ALIASES: dict[str, str] = {
    "message.timeout.ms": "delivery.timeout.ms",
    "queue.buffering.max.ms": "linger.ms",
    "compression.codec": "compression.type",
    "request.required.acks": "acks",
    "message.send.max.retries": "retries",
    "fetch.message.max.bytes": "max.partition.fetch.bytes",
    "metadata.broker.list": "bootstrap.servers",
}
"""librdkafka's alias → the name it stands for (CONFIGURATION.md: "Alias for …"): two names,
one setting."""

MIN_CONNECTION_SETUP_MS = 1000
"""librdkafka's lower bound of ``socket.connection.setup.timeout.ms``."""

_SAME: dict[str, set[str]] = {"all": {"all", "-1"}, "true": {"true", "1"},
                              "false": {"false", "0"}}


def librdkafka_value(key: str, value: Any) -> KafkaValue:
    """One JSON value as librdkafka takes it; ``InvalidSetting`` naming ``key`` otherwise."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidSetting(f"{key}: {value!r} is not a usable number")
        return int(value) if value.is_integer() else repr(value)
    if isinstance(value, list | tuple):
        if any(isinstance(v, list | tuple | dict) or v is None for v in value):
            raise InvalidSetting(f"{key}: a list may hold only strings, numbers and booleans")
        items = [librdkafka_value(key, v) for v in value]
        return ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in items)
    if value is None:
        raise InvalidSetting(f"{key}: null is not a value; leave the key out to keep the default")
    raise InvalidSetting(f"{key}: {type(value).__name__} values are not librdkafka options "
                     "(use a string, a number, a boolean or a list of those)")


def convert(options: Mapping[str, Any]) -> dict[str, KafkaValue]:
    """Every value of a map converted by :func:`librdkafka_value`; keys must be non-empty."""
    converted: dict[str, KafkaValue] = {}
    for key, value in options.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidSetting(f"{key!r} is not a librdkafka property name")
        converted[key.strip()] = librdkafka_value(key, value)
    return converted


def _text(value: KafkaValue) -> str:
    return str(value).lower()


def refusal(kind: ClientKind | None, options: Mapping[str, KafkaValue]) -> str | None:
    """Why ``options`` (the shared map when ``kind`` is None) may not be used, or None."""
    for key, value in options.items():
        if key in OWNED:
            return f"{key} is set by {OWNED[key]}, not by an option map"
        kinds: tuple[ClientKind, ...] = (kind,) if kind else ("producer", "consumer", "admin")
        for k in kinds:
            pinned = PINNED[k].get(key)
            if pinned is None or not _applies(k, key):
                continue
            want = _text(pinned)
            if _text(value) not in _SAME.get(want, {want}):
                return (f"{key}={value} would break a guarantee: phoenix-resources runs its "
                        f"{k}s with {key}={want}")
    return None


def _applies(kind: ClientKind, key: str) -> bool:
    if kind == "consumer":
        return key not in PRODUCER_ONLY
    return key not in CONSUMER_ONLY and (kind == "producer" or key not in PRODUCER_ONLY)


def for_client(kind: ClientKind, shared: Mapping[str, KafkaValue],
               own: Mapping[str, KafkaValue]) -> dict[str, KafkaValue]:
    """The shared options that apply to ``kind``, then ``own`` (the client's map) on top.

    Client-specific keys in the shared map go only to the clients they are for; the
    client's own map is passed as given (it is meant for that client)."""
    return {**{k: v for k, v in shared.items() if _applies(kind, k)}, **own}


def canonical(key: str) -> str:
    """The name librdkafka documents ``key`` under (itself unless it is an alias)."""
    return ALIASES.get(key, key)


def layered(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """The layers merged in order, a later layer winning; an alias and the name it stands
    for are one key, so the value a later layer gives under either name is the one left
    (under that layer's spelling)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            name = canonical(key)
            for old in [k for k in merged if canonical(k) == name]:
                del merged[old]
            merged[key] = value
    return merged


def unset_by(options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``defaults`` that ``options`` (the user's maps) leave unset, by name or
    alias: a library's defaults, which an option the user set explicitly always beats."""
    given = {canonical(k) for k in options}
    return {k: v for k, v in defaults.items() if canonical(k) not in given}


LIBRDKAFKA_DELIVERY_TIMEOUT_MS = 300_000
"""librdkafka's own ``delivery.timeout.ms`` when none is set."""
NO_TIMEOUT_S = 86_400.0
"""``delivery.timeout.ms=0`` (no timeout) as a wait a process can do: a day."""


def delivery_timeout_s(config: Mapping[str, Any]) -> float:
    """Seconds a record of a producer built with ``config`` may wait for its acknowledgement,
    retries included: its ``delivery.timeout.ms`` (or the alias), librdkafka's 300 s when
    unset, :data:`NO_TIMEOUT_S` for 0. By then librdkafka has reported on the record."""
    raw = next((v for k, v in config.items() if canonical(k) == "delivery.timeout.ms"),
               LIBRDKAFKA_DELIVERY_TIMEOUT_MS)
    ms = int(float(raw))
    return NO_TIMEOUT_S if ms <= 0 else ms / 1000


def connection_timeout_options(kind: ClientKind, seconds: float, *,
                               delivery: bool = False) -> dict[str, KafkaValue]:
    """The librdkafka settings a connection timeout of ``seconds`` governs for one client:

    * ``socket.connection.setup.timeout.ms`` (every client): the TCP connect plus the TLS
      and SASL handshakes of one broker connection (librdkafka's floor: 1 s);
    * ``delivery.timeout.ms`` (alias ``message.timeout.ms``; a producer, with ``delivery``):
      how long one record may wait for the broker's acknowledgement, retries included.

    Nothing else: ``socket.timeout.ms`` (a request on an open connection) and the metadata
    request of a connection check (the ``timeout`` argument of ``list_topics``) are not
    options here; the caller passes ``seconds`` to the check itself."""
    ms = max(MIN_CONNECTION_SETUP_MS, math.ceil(seconds * 1000))
    options: dict[str, KafkaValue] = {"socket.connection.setup.timeout.ms": ms}
    if delivery and kind == "producer":
        options["delivery.timeout.ms"] = ms
    return options
