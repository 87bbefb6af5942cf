"""The one place that builds pools, producers, consumers and codecs for the server processes.

It hands out *ingredients* (:class:`WorkerParts`, :class:`RelayParts`, pools); the entry points
assemble their processes from them, so nothing here imports ``entrypoints``. Building opens
nothing: pools are created closed and clients connect lazily. The client library builds its own
Kafka clients and codecs from ``adapters`` and never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from phoenix_resources import kafka_options
from phoenix_resources.adapters import codecs, kafka
from phoenix_resources.adapters import native as compiled
from phoenix_resources.adapters.group_membership import STATISTICS_INTERVAL_MS, GroupMembership
from phoenix_resources.adapters.native import NativePath
from phoenix_resources.adapters.postgres import arrays
from phoenix_resources.adapters.postgres.batch_unit import PostgresBatchUnit
from phoenix_resources.adapters.postgres.outbox import PostgresOutboxReader
from phoenix_resources.adapters.postgres.parking import ParkingLot
from phoenix_resources.config import Settings
from phoenix_resources.errors import ConfigurationError, DatabaseUnavailable
from phoenix_resources.services.ports import BatchUnit, OutboxFormat, ReplayUnit
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.events import EventCodec


def command_codec(settings: Settings) -> CommandCodec:
    return codecs.command_codec(settings)


def event_codec(settings: Settings) -> EventCodec:
    return codecs.event_codec(settings)


def _pg_kwargs(settings: Settings, *, batches: bool = False) -> dict[str, Any]:
    options = f"-c statement_timeout={settings.db_statement_timeout_ms}"
    if batches:
        # Batch statements are planned for their own arrays every time: a generic plan made
        # while a table was empty (a new deployment, a fresh database) keeps scanning it
        # whole until autovacuum's next ANALYZE — 8 ms instead of 0.3 ms per claim at 20k
        # rows. Planning a 1,000-row batch's statement costs a fraction of that.
        options += " -c plan_cache_mode=force_custom_plan"
        # Index probes priced for storage that seeks for free (SSDs, a cached working set):
        # at PostgreSQL's default (4, for spinning disks) the claim of a 1,000-id batch
        # scans the whole dedupe table until it holds ~100k rows (7.5 ms instead of 2.4 ms
        # at 40k), and the resources update hashes a scan of the table.
        options += " -c random_page_cost=1.1"
    return {"options": options, **dead_peer_kwargs(settings.db_dead_peer_timeout_s)}


def dead_peer_kwargs(timeout_s: float) -> dict[str, Any]:
    """libpq parameters that declare a silent server dead within about ``timeout_s``."""
    idle = max(1, int(timeout_s / 3))
    interval = max(1, int(timeout_s / 6))
    return {"keepalives": 1, "keepalives_idle": idle, "keepalives_interval": interval,
            "keepalives_count": 3, "tcp_user_timeout": int(timeout_s * 1000)}


def reconnect_window(settings: Settings) -> float:
    """How long a pool keeps retrying one lost connection before it gives up on it, so that
    the next checkout starts a new attempt at once: the longest backoff of the processes'
    own retries (``retry_max_s``).

    psycopg_pool waits 1, 2, 4, 8 … s between attempts for up to ``reconnect_timeout`` (5
    minutes by default), and a checkout cannot start another attempt while every slot is in
    that backoff: a primary read-only for 20 s held the workers 12 s more, and a longer
    outage could hold them up to its own length again. Bounded, a pool that lost its
    connections (a failover, an outage) connects within about ``retry_max_s`` of the
    database's return."""
    return settings.retry_max_s


def db_pool(settings: Settings, url: str | None = None, *, min_size: int | None = None,
            max_size: int | None = None, name: str = "phoenix") -> ConnectionPool:
    """A sync pool; not opened (``open=False``): the caller opens it when its process starts.
    Its connections dump the batch unit's typed arrays (``adapters/postgres/arrays``), plan
    every statement for its parameters (``plan_cache_mode=force_custom_plan``) and price
    index probes for SSDs (``random_page_cost=1.1``); a lost connection is retried for
    :func:`reconnect_window`."""
    return ConnectionPool(url or settings.database_url,
                          min_size=settings.db_pool_min if min_size is None else min_size,
                          max_size=settings.db_pool_max if max_size is None else max_size,
                          kwargs=_pg_kwargs(settings, batches=True), open=False, name=name,
                          configure=arrays.register,
                          reconnect_timeout=reconnect_window(settings))


def api_db_pool(settings: Settings) -> AsyncConnectionPool:
    """The HTTP API's async pool on the read-only URL; opened by the app's lifespan. A lost
    connection is retried for :func:`reconnect_window`."""
    return AsyncConnectionPool(settings.api_database_url(), min_size=settings.db_pool_min,
                               max_size=settings.db_pool_max, kwargs=_pg_kwargs(settings),
                               open=False, name="phoenix-api",
                               reconnect_timeout=reconnect_window(settings))


SERVER_PRODUCER_DEFAULTS: dict[str, Any] = {"delivery.timeout.ms": 30_000}
"""The server's producers (the worker's dead letters, the relay, the console's replays) give
a record 30 s to be acknowledged, retries included, unless the option maps say otherwise;
librdkafka's own 300 s would keep a record queued long after the publish that sent it gave
up and retried (each retry queueing another copy: repeats once the broker is back)."""

PUBLISH_MARGIN_S = 5.0
"""How much longer than the delivery timeout a publish waits for its reports."""


def _server_producer_defaults(settings: Settings) -> dict[str, Any]:
    return kafka_options.unset_by(settings.kafka_config("producer"), SERVER_PRODUCER_DEFAULTS)


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """What a server producer is built from: ``adapters.kafka.producer_config`` with
    :data:`SERVER_PRODUCER_DEFAULTS` where the option maps leave them unset, then
    ``overrides``."""
    return kafka.producer_config(settings, **{**_server_producer_defaults(settings),
                                              **overrides})


def producer(settings: Settings, **overrides: Any) -> Producer:
    """A server producer (:func:`producer_config`)."""
    return kafka.new_producer(settings, **{**_server_producer_defaults(settings), **overrides})


def publish_wait_s(settings: Settings) -> float:
    """How long a publish by a server producer waits for its delivery reports: the
    producer's delivery timeout plus :data:`PUBLISH_MARGIN_S`. By then librdkafka has
    reported on every record (delivered or failed), so a publish retried after a transient
    failure never queues a second copy behind a first one that is still waiting."""
    return kafka_options.delivery_timeout_s(producer_config(settings)) + PUBLISH_MARGIN_S


def consumer(settings: Settings, group_id: str | None = None, **overrides: Any) -> Consumer:
    """Offsets are stored by the owner only after the database commit (manual storage)."""
    return kafka.new_consumer(settings, group_id, **overrides)


# --- process ingredients -------------------------------------------------------------------


def topics_to_create(settings: Settings) -> dict[str, int]:
    n = settings.topic_partitions
    return {settings.commands_topic: n, settings.events_topic: n,
            settings.rejections_topic: n, settings.dlq_topic: 1}


def check_schema(settings: Settings) -> None:
    """Refuse to start on a database that is not migrated to this version's head.

    An unreachable database is not an error here: the processes wait it out."""
    from phoenix_resources.adapters.postgres import schema

    try:
        current = schema.current_revision(settings.database_url)
    except DatabaseUnavailable:
        return
    head = schema.head_revision()
    if current != head:
        raise ConfigurationError(f"the database is at revision {current or 'base'}, this "
                                 f"version needs {head}: run `phoenix-resources migrate`")


def replay_window_warning(settings: Settings) -> str | None:
    """A warning when the commands topic keeps records longer than the dedupe retention
    (see :func:`adapters.topics.replay_window_warning`); None when it does not, or when the
    broker cannot be asked now (the worker waits an outage out anyway)."""
    from phoenix_resources.adapters import topics
    from phoenix_resources.errors import BrokerUnavailable

    try:
        retention = topics.retention_ms(kafka.admin_config(settings),
                                       settings.commands_topic)
    except BrokerUnavailable:
        return None
    return topics.replay_window_warning(settings.commands_topic, retention,
                                        settings.processed_retention_hours)


def database_ping(settings: Settings) -> Callable[[float], float]:
    """``ping(timeout)``: the database's round trip in seconds, or DatabaseUnavailable."""
    from phoenix_resources.adapters.postgres.ping import ping

    return lambda timeout: ping(settings.database_url, timeout)


def prepare_topics(settings: Settings) -> None:
    """Create the missing topics (``PHOENIX_CREATE_TOPICS``) with the replication and
    ``min.insync.replicas`` of the settings (``adapters.kafka.ensure_topics``)."""
    if settings.create_topics:
        kafka.ensure_topics(kafka.admin_config(settings), topics_to_create(settings),
                            replication=settings.topic_replication_factor,
                            min_insync=settings.topic_min_insync_replicas)


@dataclass(frozen=True)
class WorkerParts:
    """What a worker process is made of. Open ``pool`` before running; close it after."""

    consumer: Consumer
    producer: Producer
    codec: CommandCodec
    events: EventCodec
    """The codec of the outbox rows; ``events.prepare()`` checks the registry at start."""
    pool: ConnectionPool
    unit_factory: Callable[[], BatchUnit]
    membership: GroupMembership
    """Fed by the statistics of ``consumer`` and of every consumer ``new_consumer`` builds."""
    new_consumer: Callable[[], Consumer]
    """Another consumer like ``consumer``, for a worker that rebuilds its own; from then on
    only the newest one's statistics feed ``membership``."""
    dlq_topic_max_bytes: Callable[[], int | None]
    """Reads the DLQ topic's ``max.message.bytes`` (an admin call; None: no such topic)."""
    native: NativePath | None = None
    """The compiled hot path, when ``PHOENIX_NATIVE`` chose it (else the Python code)."""


def _units(settings: Settings, name: str,
           ) -> tuple[ConnectionPool, EventCodec, Callable[[], PostgresBatchUnit]]:
    """A small pool and a factory of units of work on it (one transaction each)."""
    pool = db_pool(settings, min_size=1, max_size=2, name=name)
    events = event_codec(settings)
    outbox = OutboxFormat(events, settings.events_topic, settings.rejections_topic)

    def unit() -> PostgresBatchUnit:
        return PostgresBatchUnit(pool, outbox)

    return pool, events, unit


def worker_parts(settings: Settings) -> WorkerParts:
    pool, events, unit = _units(settings, "phoenix-worker")
    membership = GroupMembership()

    def watched_consumer() -> Consumer:
        statistics: dict[str, Any] = {"statistics.interval.ms": STATISTICS_INTERVAL_MS,
                                      "stats_cb": membership.stats_callback()}
        return consumer(settings, **statistics)

    codec = command_codec(settings)
    return WorkerParts(consumer=watched_consumer(), producer=producer(settings), codec=codec,
                       events=events, pool=pool, unit_factory=unit, membership=membership,
                       new_consumer=watched_consumer,
                       dlq_topic_max_bytes=dlq_topic_max_bytes(settings),
                       native=compiled.load(settings.native, codec, events))


def dlq_topic_max_bytes(settings: Settings) -> Callable[[], int | None]:
    """``read()``: the DLQ topic's ``max.message.bytes`` now (BrokerUnavailable when the
    broker does not answer or will not describe it)."""
    from phoenix_resources.adapters import topics

    common = kafka.admin_config(settings)
    return lambda: topics.max_message_bytes(common, settings.dlq_topic)


@dataclass(frozen=True)
class ParkingParts:
    """What the parking-lot tools need: a reader, and units of work for replay/discard.
    Open ``pool`` before use; close it after."""

    lot: ParkingLot
    pool: ConnectionPool
    unit_factory: Callable[[], ReplayUnit]


def parking_parts(settings: Settings) -> ParkingParts:
    pool, _, unit = _units(settings, "phoenix-parking")
    return ParkingParts(ParkingLot(settings.database_url), pool, unit)


@dataclass(frozen=True)
class RelayParts:
    """What a relay process is made of: its own database session and producer."""

    reader: PostgresOutboxReader
    producer: Producer
    publish_wait_s: float
    """How long one publish waits for its delivery reports (:func:`publish_wait_s`)."""


def relay_parts(settings: Settings) -> RelayParts:
    # The leader issues a statement at least every poll interval; the session timeout must
    # leave room for that (and for a publish in between).
    session_timeout = max(settings.relay_session_timeout_s, 3 * settings.relay_poll_interval_s)
    return RelayParts(reader=PostgresOutboxReader(
                          settings.database_url, settings.relay_lock_key,
                          session_timeout=session_timeout,
                          statement_timeout_ms=settings.db_statement_timeout_ms),
                      producer=producer(settings, **{"linger.ms": 2,
                                                     # no Python call per delivered
                                                     # record (see publish_all)
                                                     "delivery.report.only.error": True}),
                      publish_wait_s=publish_wait_s(settings))
