"""Is a Kafka broker there? One metadata request, bounded in time, through a client in hand.

Used by the client library (``CommandPublisher.check_connection``,
``EventSubscriber.check_connection``) and the CLI before any work starts, and again when a
client reports that every broker is down: a tool fails in seconds, naming the bootstrap
servers, instead of retrying for the length of a delivery timeout.
"""

from __future__ import annotations

from typing import Any, Protocol

from confluent_kafka import KafkaException

from phoenix_resources.errors import BrokerUnreachable


class MetadataClient(Protocol):
    """A producer, consumer or admin client: each can ask for the cluster's metadata."""

    def list_topics(self, topic: str | None = ..., timeout: float = ...) -> Any: ...


def unreachable_message(servers: str, timeout: float, reason: str) -> str:
    """The one line that says which brokers did not answer, and how long they were given."""
    return (f"cannot reach Kafka at {servers} within {timeout:g}s: no broker answered "
            f"({reason})")


def reach(client: MetadataClient, servers: str, timeout: float,
          topic: str | None = None) -> Any:
    """The cluster's metadata (``ClusterMetadata``; for ``topic`` only, when given) if a
    broker answers within ``timeout`` seconds; :class:`BrokerUnreachable` naming
    ``servers`` otherwise.

    librdkafka waits for any broker connection to come up, then asks it; it does not answer
    from its cache, so a success means a broker answered just now."""
    try:
        return client.list_topics(topic, timeout=timeout)
    except KafkaException as e:
        reason = e.args[0].str() if e.args and hasattr(e.args[0], "str") else str(e)
        raise BrokerUnreachable(unreachable_message(servers, timeout, reason)) from e
