"""Settings, read once at start and passed down.

Where values come from, highest first: arguments to ``Settings(...)``; environment variables
with the prefix ``PHOENIX_``; a ``.env`` file (``PHOENIX_ENV_FILE``, default ``.env`` in the
working directory, skipped when absent); files in a secrets directory
(``PHOENIX_SECRETS_DIR``, one file per setting named like its variable, e.g.
``PHOENIX_DATABASE_URL``; unset by default); the defaults below.

Every field's docstring is its documentation: ``docs/configuration.md`` is generated from this
class (``phoenix-resources config docs``, :mod:`phoenix_resources.config_docs`) under the
section of the ``# --- Section ---`` comment above it. Building settings reads the environment
and those files, and nothing else; nothing here opens a connection.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from phoenix_resources import kafka_options
from phoenix_resources.config_limits import ServerLimits
from phoenix_resources.config_worker import WorkerPath
from phoenix_resources.errors import ConfigurationError, InvalidSetting
from phoenix_resources.kafka_options import ClientKind, KafkaValue

LOCAL_POSTGRES_PORT = 55432
"""The local cluster's port: off PostgreSQL's 5432 so a system cluster never collides."""

ConsoleLabel = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")]
"""Who holds a console token, as the audit log names them (no spaces, no markup)."""
TokenDigest = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
"""A SHA-256 hex digest."""

ENV_FILE_VARIABLE = "PHOENIX_ENV_FILE"
SECRETS_DIR_VARIABLE = "PHOENIX_SECRETS_DIR"


class Settings(ServerLimits, WorkerPath):
    """All settings of every process. Instances are immutable once built. The servers' limits
    (``config_limits.ServerLimits``) are fields of it too."""

    model_config = SettingsConfigDict(
        env_prefix="PHOENIX_", env_file=None, frozen=True, extra="ignore",
        use_attribute_docstrings=True, hide_input_in_errors=True,  # no secret in a message
        populate_by_name=True,  # otlp_endpoint also reads the standard OTEL_* variables
    )

    # --- PostgreSQL -------------------------------------------------------------------------
    database_url: str = f"postgresql://phoenix@127.0.0.1:{LOCAL_POSTGRES_PORT}/phoenix"
    """Worker, relay and migrations (the owner role). The local cluster listens on 55432 so a
    system cluster on 5432 never collides."""
    read_database_url: str | None = None
    """The HTTP API's URL: a login role in ``phoenix_reader`` (read-only), optionally on a
    replica. Unset: ``PHOENIX_DATABASE_URL``."""
    db_pool_min: int = Field(default=1, ge=0)
    """Fewest connections of the HTTP API's pool (the worker uses 1-2 connections, the relay
    one session)."""
    db_pool_max: int = Field(default=8, ge=1)
    """Most connections of the HTTP API's pool."""
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    """``statement_timeout`` of every session. It does not bound a commit that waits for a
    synchronous standby (PostgreSQL stops the timer before the commit waits;
    ``docs/operations.md``, PostgreSQL failover)."""
    db_dead_peer_timeout_s: float = Field(default=10.0, ge=1.0)
    """How long a pooled connection (worker, API) waits on a server that stopped answering
    before it is declared dead: TCP keepalives after a third of it idle, and
    ``tcp_user_timeout`` for data left unacknowledged. A primary that vanishes without
    closing its sockets (a host lost, a network partition) is then noticed in seconds, the
    connection is discarded, and the next one finds the new primary (a multi-host URL with
    ``target_session_attrs=read-write``; ``docs/operations.md``, PostgreSQL failover)."""

    # --- Kafka ------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    """Brokers, comma-separated."""
    kafka_options: dict[str, KafkaValue] = Field(default_factory=dict)
    """librdkafka options for every client: ``security.protocol``, ``sasl.*``, ``ssl.*``,
    tuning. Consumer-only keys reach only consumers, producer-only keys only producers."""
    kafka_consumer_options: dict[str, KafkaValue] = Field(default_factory=dict)
    """librdkafka options for consumers only, over the shared ones (Kafka Connect's
    ``consumer.override.*``), e.g. ``{"session.timeout.ms": 45000}``."""
    kafka_producer_options: dict[str, KafkaValue] = Field(default_factory=dict)
    """librdkafka options for producers only, over the shared ones (Kafka Connect's
    ``producer.override.*``), e.g. ``{"linger.ms": 20}``."""
    kafka_admin_options: dict[str, KafkaValue] = Field(default_factory=dict)
    """librdkafka options for admin clients only (topic creation and description at start),
    over the shared ones (Kafka Connect's ``admin.override.*``)."""
    commands_topic: str = "phoenix.resources.commands.v1"
    """Input. Key = ``resource_id``."""
    events_topic: str = "phoenix.resources.events.v1"
    """``ResourceChanged`` events, key = ``resource_id``."""
    rejections_topic: str = "phoenix.resources.rejections.v1"
    """``CommandRejected`` records."""
    dlq_topic: str = "phoenix.resources.commands.v1.dlq"
    """Undecodable input, with ``dlq.*`` reason headers."""
    consumer_group: str = "phoenix-resources-worker"
    """The workers' group; run more workers to scale out (up to the partition count)."""
    group_instance_id: str | None = None
    """Static group membership (``group.instance.id``): a worker restarted under the same id
    within ``session.timeout.ms`` gets its partitions back without a rebalance. Unique per
    worker (Kubernetes: the pod name). Unset: dynamic membership."""
    create_topics: bool = True
    """Create missing topics at start (``PHOENIX_TOPIC_*``); off where others manage them."""
    topic_partitions: int = Field(default=6, ge=1)
    """Partitions of topics created at start (the DLQ gets 1)."""
    topic_replication_factor: int | None = Field(default=None, ge=1)
    """Replication of topics created at start. Unset: ``min(3, brokers registered then)``."""
    topic_min_insync_replicas: int | None = Field(default=None, ge=1)
    """``min.insync.replicas`` of topics created at start. Unset: replication - 1, at least 1."""
    wire_format: Literal["avro", "json"] = "avro"
    """Encoding the client library and CLI publish commands in; the worker accepts both."""

    # --- Schema registry and Avro writer schemas ----------------------------------------------
    schema_registry_url: str | None = None
    """When set, Avro uses the Confluent framing (``00`` + schema id) and this registry (any
    Confluent-compatible API; Apicurio: ``…/apis/ccompat/v7``); otherwise single-object
    encoding (``C3 01`` + fingerprint). Comma-separated URLs are tried in turn."""
    schema_registry_subject_strategy: Literal["topic", "record", "topic-record"] = "topic"
    """Subject of each schema: ``topic`` → ``<topic>-value``; ``record`` → the record's full
    name (``phoenix.resources.v1.ResourceCommand``); ``topic-record`` →
    ``<topic>-<full name>``."""
    schema_registry_basic_auth: SecretStr | None = None
    """``user:password`` for HTTP basic auth (or put ``user:password@`` in the URL, not
    both)."""
    schema_registry_ca_location: str | None = None
    """CA file or directory that verifies the registry's TLS certificate (unset: the system's
    CAs)."""
    schema_registry_certificate_location: str | None = None
    """Client certificate (PEM) for mutual TLS."""
    schema_registry_key_location: str | None = None
    """The client certificate's private key (PEM)."""
    schema_registry_key_password: SecretStr | None = None
    """The password of that key, if it is encrypted."""
    schema_registry_auto_register: bool = True
    """Whether the client library registers the command schema when publishing. The worker
    never registers: it looks its event and rejection schemas up at start and refuses to start
    when the subject lacks them."""
    schema_registry_timeout_s: float = Field(default=10.0, gt=0)
    """Per-request timeout. An unreachable or failing registry pauses the worker (retried with
    backoff); it never dead-letters good commands."""
    avro_writer_schemas_dir: str | None = None
    """A directory of newer writer schemas (``*.avsc``) the worker accepts in single-object
    encoding before it is upgraded. Read at start."""

    # --- Worker -----------------------------------------------------------------------------
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    """Most messages per batch (one PostgreSQL transaction)."""
    batch_max_wait_ms: int = Field(default=5, ge=0)
    """Longest wait to fill a batch: the latency knob. At high rates batches fill before it
    expires; at low rates it bounds the added latency (bench: p50 ~50 ms at 5 ms vs ~90 ms at
    50 ms, 1,000 cmd/s)."""
    max_command_bytes: int = Field(default=256 * 1024, ge=1024)
    """Larger values are dead-lettered (``dlq.reason=too-large``) without decoding."""
    retry_initial_s: float = Field(default=0.2, gt=0)
    """First backoff (full jitter) for transient faults: database or broker down, write races.
    Retries never end while the fault lasts; the partitions stay paused and the group
    membership is kept."""
    retry_max_s: float = Field(default=10.0, gt=0)
    """Longest backoff for transient faults. Also how long a pool (worker, API) retries a
    lost connection before the next checkout starts a new attempt at once: after an outage
    or a failover, the processes connect within about this long of the database's return."""
    consumer_replace_after_s: float = Field(default=120.0, ge=0)
    """A worker whose consumer has not been a settled member of its group for this long
    (joined, holding its assignment: librdkafka's group state ``up/steady``) closes that
    consumer and subscribes a new one, at most once per period; ``0``: never. This recovers a
    consumer that lost its group coordinator in a broker restart and stopped looking for it.
    Nothing is lost: offsets follow database commits, so the new consumer resumes at the last
    one. Keep it well above ``session.timeout.ms`` (45 s by default) so ordinary rebalances
    and short outages end first."""
    processed_retention_hours: float = Field(default=24.0 * 7, gt=0)
    """``processed_commands`` rows older than this are pruned. A redelivery of a command older
    than the window is no longer recognised as a duplicate, so keep it longer than any
    realistic redelivery delay (the commands topic's retention is the bound that matters)."""
    prune_interval_s: float = Field(default=300.0, gt=0)
    """How often the active relay prunes (in chunks of 10,000 rows)."""
    gc_threshold: int = Field(default=50_000, ge=0)
    """Container objects allocated between two collections of the youngest garbage-collector
    generation, in ``worker``, ``relay`` and ``run`` processes (CPython's default is 700;
    ``0`` keeps the interpreter's settings untouched). A batch keeps some 20 objects per command
    alive until it ends: at 700 the collector runs dozens of times per batch, finds them alive
    and traverses them again in older generations. Objects built at start-up are frozen out of
    collections either way (unless ``0``). Reference counting frees almost everything; this
    only delays finding cycles."""

    # --- Relay ------------------------------------------------------------------------------
    relay_batch_size: int = Field(default=2000, ge=1)
    """Outbox rows per publish round (fire all, flush once, then delete)."""
    relay_poll_interval_s: float = Field(default=1.0, gt=0)
    """Fallback poll when no ``NOTIFY`` arrives; also how often a standby tries to take the
    lead."""
    relay_lock_key: int = 0x5048_5258
    """The advisory-lock key ("PHRX") that elects the single active relay. Distinct
    deployments sharing one database need distinct keys."""
    relay_session_timeout_s: float = Field(default=10.0, ge=1.0)
    """Bound on a hung, stopped or cut-off leading relay: PostgreSQL ends its session (and
    so frees the lock) after this long without a statement or a TCP answer
    (``idle_session_timeout``, keepalives both ways, ``tcp_user_timeout``; PostgreSQL 14+); a
    standby leads within this plus ``relay_poll_interval_s``. Raised to 3 times
    ``relay_poll_interval_s`` if lower."""
    event_source: str = "urn:phoenix:resources"
    """CloudEvents ``ce_source`` of published events."""

    # --- HTTP API ---------------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    """Listen address of the API (and of the worker/relay metrics server)."""
    http_port: int = Field(default=8000, ge=0, le=65535)
    """Listen port of ``api`` and ``run``."""
    http_workers: int = Field(default=1, ge=1)
    """Server processes of ``phoenix-resources api``."""
    http_request_timeout_s: float = Field(default=5.0, gt=0)
    """Longer requests answer 408 ``RES-003``."""
    api_token_hashes: list[str] = Field(default_factory=list)
    """SHA-256 hex digests of accepted bearer tokens (``echo -n "$TOKEN" | sha256sum``).
    Empty: no authentication."""

    # --- gRPC API ---------------------------------------------------------------------------
    grpc_host: str = "127.0.0.1"
    """Listen address of ``phoenix-resources grpc`` and of the gRPC server in ``run``
    (docs/interfaces.md)."""
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    """Listen port of the gRPC server, bound exclusively; ``0`` picks a free port."""
    grpc_processes: int = Field(default=1, ge=1)
    """Server processes of ``phoenix-resources grpc`` sharing its port (Linux): connections
    are spread over them, each with its own pool and limits. ``run`` serves from one."""
    grpc_request_timeout_s: float = Field(default=5.0, gt=0)
    """Budget of a call that sent no deadline (a client deadline wins); past it:
    ``DEADLINE_EXCEEDED`` ``RES-003``. Calls in flight get this plus 1 s at shutdown."""
    grpc_outcome_wait_s: float = Field(default=30.0, gt=0)
    """Longest ``wait_for_outcome`` of a call that sent no deadline."""
    grpc_max_watch_streams: int = Field(default=64, ge=1)
    """Concurrent ``WatchResources`` streams per process (each holds a Kafka consumer);
    more: ``UNAVAILABLE`` ``RES-007``."""

    # --- Web console ------------------------------------------------------------------------
    console_host: str = "127.0.0.1"
    """Listen address of ``phoenix-resources console``, the operators' web console
    (docs/operations.md#web-console). It acts with the worker's database role
    (``PHOENIX_DATABASE_URL``): keep it off public networks, behind TLS."""
    console_port: int = Field(default=8010, ge=0, le=65535)
    """Listen port of the console."""
    console_processes: dict[str, str] = Field(
        default_factory=lambda: {"run": "http://127.0.0.1:8000"})
    """Name → base URL of each process the console's pipeline page shows: it reads
    ``<url>/metrics`` and ``<url>/readyz`` (a worker's or relay's metrics port, an API's or a
    ``run`` process's HTTP port), e.g.
    ``{"worker-0": "http://worker-0:9464", "relay-0": "http://relay-0:9465"}``."""
    console_viewer_token_hashes: dict[ConsoleLabel, TokenDigest] = Field(default_factory=dict)
    """Label → SHA-256 hex digest of a bearer token that may view the console
    (``echo -n "$TOKEN" | sha256sum``), e.g. ``{"oncall": "9f86d0…"}``. The label names who
    acted in the audit log. With no token at all (viewer or operator) the console refuses to
    start."""
    console_operator_token_hashes: dict[ConsoleLabel, TokenDigest] = Field(
        default_factory=dict)
    """The same for tokens that may also act: replay and discard parked commands, retry and
    discard parked outbox rows, replay dead letters (docs/security.md#the-web-console)."""

    # --- Observability ----------------------------------------------------------------------
    log_level: str = "INFO"
    """``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``."""
    log_format: Literal["json", "console"] = "json"
    """``json`` (one object per line, with ``trace_id`` and the record's context) or
    ``console`` (for humans)."""
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    """The worker's ``/metrics``, ``/healthz`` and ``/readyz`` (``0``: none; semantics in
    docs/operations.md#observability). ``run`` and ``api`` serve all three on the HTTP port."""
    relay_metrics_port: int = Field(default=9465, ge=0, le=65535)
    """The same for a ``relay`` process: a different default, so a worker and a relay on one
    host both start."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """When set, overrides both of the above (one process per container, e.g. Kubernetes);
    ``0`` turns the endpoint off."""
    stuck_after_s: float = Field(default=120.0, gt=0)
    """Readiness: a worker with records waiting, or a leading relay with outbox rows waiting,
    that made no progress for this long is not ready (``/readyz`` 503, ``phoenix_ready`` 0)."""
    trace_sample_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of new traces sampled, parent-based: a command its publisher sampled is traced
    throughout; the client library samples new traces at this ratio."""
    otlp_endpoint: str | None = Field(default=None, validation_alias=AliasChoices(
        "PHOENIX_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT"))
    """OTLP/HTTP collector, e.g. ``http://otel-collector:4318``; unset: tracing off, nothing
    exported. The standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` and
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` are read too (this one wins)."""
    http_access_log_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of API requests written to the access log (one JSON line each, logger
    ``phoenix_resources.http.access``); 0: off. When on, every 5xx is logged too."""

    def metrics_port_for(self, component: Literal["worker", "relay"]) -> int:
        """The /metrics port of a worker or relay process (0: none)."""
        if self.metrics_port is not None:
            return self.metrics_port
        return self.worker_metrics_port if component == "worker" else self.relay_metrics_port

    # --- validation and derived values ------------------------------------------------------

    @field_validator("kafka_options", "kafka_consumer_options", "kafka_producer_options",
                     "kafka_admin_options", mode="before")
    @classmethod
    def _librdkafka_values(cls, value: Any) -> Any:
        """Any JSON value in, what librdkafka takes out (``kafka_options.librdkafka_value``)."""
        return kafka_options.convert(value) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _no_option_undermines_a_guarantee(self) -> Settings:
        maps: dict[str, tuple[ClientKind | None, dict[str, KafkaValue]]] = {
            "kafka_options": (None, self.kafka_options),
            "kafka_consumer_options": ("consumer", self.kafka_consumer_options),
            "kafka_producer_options": ("producer", self.kafka_producer_options),
            "kafka_admin_options": ("admin", self.kafka_admin_options),
        }
        for name, (kind, options) in maps.items():
            why = kafka_options.refusal(kind, options)
            if why is not None:
                raise InvalidSetting(f"PHOENIX_{name.upper()}: {why}")
        return self

    def kafka_config(self, client: ClientKind) -> dict[str, KafkaValue]:
        """librdkafka settings for one kind of client: ``bootstrap.servers``, the shared options
        that apply to it, then its own map. The adapters add their defaults below these and
        the pinned guarantees above (``adapters/kafka.py``)."""
        own = {"consumer": self.kafka_consumer_options, "producer": self.kafka_producer_options,
               "admin": self.kafka_admin_options}[client]
        return {"bootstrap.servers": self.kafka_bootstrap_servers,
                **kafka_options.for_client(client, self.kafka_options, own)}

    def kafka_common(self) -> dict[str, KafkaValue]:
        """``bootstrap.servers`` plus the shared options every kind of client accepts (neither
        consumer- nor producer-only). Building a client? Use :meth:`kafka_config`."""
        return {"bootstrap.servers": self.kafka_bootstrap_servers,
                **{k: v for k, v in self.kafka_options.items()
                   if k not in kafka_options.CONSUMER_ONLY
                   and k not in kafka_options.PRODUCER_ONLY}}

    def api_database_url(self) -> str:
        return self.read_database_url or self.database_url

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the ``.env`` file, then the secrets dir."""
        sources = [init_settings, env_settings,
                   DotEnvSettingsSource(settings_cls, env_file=env_file())]
        secrets = secrets_dir()
        if secrets is not None:
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets))
        return tuple(sources)


def env_file() -> Path:
    """The ``.env`` file settings read (``PHOENIX_ENV_FILE``; default ``.env`` in the working
    directory). A missing file is no error; it is simply not read."""
    return Path(os.environ.get(ENV_FILE_VARIABLE) or ".env")


def secrets_dir() -> Path | None:
    """The directory of secret files (``PHOENIX_SECRETS_DIR``), or None when unset.

    Raises :class:`ConfigurationError` when it is set but is not a directory: a mount that
    went missing must stop the process, not silently fall back to the defaults."""
    raw = os.environ.get(SECRETS_DIR_VARIABLE)
    if not raw:
        return None
    path = Path(raw)
    if not path.is_dir():
        raise ConfigurationError(f"{SECRETS_DIR_VARIABLE}={raw} is not a directory")
    return path


def redact(url: str) -> str:
    """A URL fit for logs: the password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def revealed(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-able data with the secret values in clear, for handing them to a
    child process through a private channel (a 0600 file) only — never log or print it.
    (``model_dump_json`` masks secrets, so a child rebuilt from it would get ``*****``.)"""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            data[name] = value.get_secret_value()
    return data
