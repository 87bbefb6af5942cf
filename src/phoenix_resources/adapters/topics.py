"""What the broker says about a topic's configuration (read-only admin calls)."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource  # not re-exported for mypy
from confluent_kafka.admin._resource import ResourceType

from phoenix_resources.errors import BrokerUnavailable


def retention_ms(common: dict[str, Any], topic: str, timeout: float = 10.0) -> int | None:
    """The topic's ``retention.ms`` (-1: kept forever), or None if the topic does not exist."""
    return _int_config(common, topic, "retention.ms", timeout)


def max_message_bytes(common: dict[str, Any], topic: str, timeout: float = 10.0) -> int | None:
    """The topic's ``max.message.bytes`` — the largest record batch the broker appends to it,
    after compression — or None if the topic does not exist. Raises
    :class:`BrokerUnavailable` when the broker does not answer or refuses to describe it."""
    return _int_config(common, topic, "max.message.bytes", timeout)


def _int_config(common: dict[str, Any], topic: str, name: str, timeout: float) -> int | None:
    admin = AdminClient(common)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        future = admin.describe_configs([resource], request_timeout=timeout)[resource]
        entries = future.result(timeout=timeout)
    except KafkaException as e:
        if "UNKNOWN_TOPIC" in str(e):
            return None
        raise BrokerUnavailable(f"describing topic {topic}: {e}") from e
    except concurrent.futures.TimeoutError as e:  # the broker did not answer in time
        raise BrokerUnavailable(f"describing topic {topic}: no answer in {timeout:g} s") from e
    entry = entries.get(name)
    return None if entry is None or entry.value is None else int(entry.value)


def replay_window_warning(topic: str, topic_retention_ms: int | None,
                          dedupe_retention_hours: float) -> str | None:
    """What to tell the operator when the topic can hold commands older than the dedupe
    window (a replay of them is refused with CMD-008 rather than deduped), else None."""
    if topic_retention_ms is None:
        return None
    dedupe_ms = dedupe_retention_hours * 3_600_000
    if 0 <= topic_retention_ms <= dedupe_ms:
        return None
    kept = "forever" if topic_retention_ms < 0 else f"{topic_retention_ms / 3_600_000:g} h"
    return (f"topic {topic} keeps records {kept} (retention.ms={topic_retention_ms}), longer "
            f"than the dedupe retention of {dedupe_retention_hours:g} h "
            "(PHOENIX_PROCESSED_RETENTION_HOURS): if old offsets are replayed (a reset to "
            "earliest, expired group offsets), commands older than the dedupe retention are "
            "refused with CMD-008, never applied twice. To dedupe them instead, raise "
            "PHOENIX_PROCESSED_RETENTION_HOURS to the topic's retention.")
