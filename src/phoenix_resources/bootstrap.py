"""The one place that builds pools, producers, consumers and codecs from :class:`Settings`.

Entry points and the client library call these; nothing else constructs a driver object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, Producer
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from phoenix_resources.adapters.codec import CommandCodec, EventCodec, Framing
from phoenix_resources.config import Settings
from phoenix_resources.observability import Metrics

if TYPE_CHECKING:
    from phoenix_resources.entrypoints.relay import Relay
    from phoenix_resources.entrypoints.worker import Worker


def framing(settings: Settings) -> Framing:
    if settings.schema_registry_url:
        from phoenix_resources.adapters.registry import RegistryClient

        return Framing(RegistryClient(settings.schema_registry_url))
    return Framing()


def command_codec(settings: Settings) -> CommandCodec:
    return CommandCodec(framing(settings), max_bytes=settings.max_command_bytes)


def event_codec(settings: Settings) -> EventCodec:
    return EventCodec(framing(settings))


def _pg_kwargs(settings: Settings) -> dict[str, Any]:
    return {"options": f"-c statement_timeout={settings.db_statement_timeout_ms}"}


def db_pool(settings: Settings, url: str | None = None, *, min_size: int | None = None,
            max_size: int | None = None, name: str = "phoenix") -> ConnectionPool:
    """A sync pool; not opened (``open=False``): the caller opens it when its process starts."""
    return ConnectionPool(url or settings.database_url,
                          min_size=settings.db_pool_min if min_size is None else min_size,
                          max_size=settings.db_pool_max if max_size is None else max_size,
                          kwargs=_pg_kwargs(settings), open=False, name=name)


def api_db_pool(settings: Settings) -> AsyncConnectionPool:
    """The HTTP API's async pool on the read-only URL; opened by the app's lifespan."""
    return AsyncConnectionPool(settings.api_database_url(), min_size=settings.db_pool_min,
                               max_size=settings.db_pool_max, kwargs=_pg_kwargs(settings),
                               open=False, name="phoenix-api")


def producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer (acks=all, ordered retries), batching with a short linger."""
    conf: dict[str, Any] = {**settings.kafka_common(), "enable.idempotence": True,
                            "acks": "all", "linger.ms": 5, "compression.type": "lz4",
                            "client.id": "phoenix-resources"}
    conf.update(overrides)
    return Producer(conf)


def consumer(settings: Settings, group_id: str | None = None, **overrides: Any) -> Consumer:
    """Manual offset storage (stored only after the database commit), cooperative-sticky."""
    conf: dict[str, Any] = {**settings.kafka_common(),
                            "group.id": group_id or settings.consumer_group,
                            "enable.auto.commit": True, "auto.commit.interval.ms": 1000,
                            "enable.auto.offset.store": False,
                            "auto.offset.reset": "earliest",
                            "partition.assignment.strategy": "cooperative-sticky",
                            "enable.partition.eof": False,
                            "fetch.wait.max.ms": 50,
                            "client.id": "phoenix-resources"}
    conf.update(overrides)
    return Consumer(conf)


# --- processes ----------------------------------------------------------------------------


def topics_to_create(settings: Settings) -> dict[str, int]:
    n = settings.topic_partitions
    return {settings.commands_topic: n, settings.events_topic: n,
            settings.rejections_topic: n, settings.dlq_topic: 1}


def check_schema(settings: Settings) -> None:
    """Refuse to start on a database that is not migrated to this version's head.

    An unreachable database is not an error here: the processes wait it out."""
    from phoenix_resources.adapters.postgres import schema
    from phoenix_resources.errors import ConfigurationError, DatabaseUnavailable

    try:
        current = schema.current_revision(settings.database_url)
    except DatabaseUnavailable:
        return
    head = schema.head_revision()
    if current != head:
        raise ConfigurationError(f"the database is at revision {current or 'base'}, this "
                                 f"version needs {head}: run `phoenix-resources migrate`")


def prepare_topics(settings: Settings) -> None:
    if settings.create_topics:
        from phoenix_resources.adapters.kafka import ensure_topics

        ensure_topics(settings.kafka_common(), topics_to_create(settings))


def worker(settings: Settings, metrics: Metrics) -> tuple[Worker, ConnectionPool]:
    """The worker and its pool (open it before ``run``; close it after)."""
    from phoenix_resources.adapters.postgres.batch_unit import PostgresBatchUnit
    from phoenix_resources.entrypoints.worker import Worker

    pool = db_pool(settings, min_size=1, max_size=2, name="phoenix-worker")
    codec = event_codec(settings)

    def unit() -> PostgresBatchUnit:
        return PostgresBatchUnit(pool, codec, settings.events_topic, settings.rejections_topic)

    return Worker(settings, consumer=consumer(settings), producer=producer(settings),
                  codec=command_codec(settings), unit_factory=unit, metrics=metrics), pool


def relay(settings: Settings, metrics: Metrics) -> Relay:
    from phoenix_resources.adapters.postgres.outbox import OutboxSession
    from phoenix_resources.entrypoints.relay import Relay

    session = OutboxSession(settings.database_url, settings.relay_lock_key)
    return Relay(settings, session=session, producer=producer(settings, **{"linger.ms": 2}),
                 metrics=metrics)
