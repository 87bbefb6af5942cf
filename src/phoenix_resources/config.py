"""Settings, read once from the environment (prefix ``PHOENIX_``) and passed down.

Every field is documented in ``docs/configuration.md``. Nothing here opens a connection.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_POSTGRES_PORT = 55432
"""The local cluster's port: off PostgreSQL's 5432 so a system cluster never collides."""


class Settings(BaseSettings):
    """All settings of every process. Instances are immutable once built."""

    model_config = SettingsConfigDict(
        env_prefix="PHOENIX_", env_file=None, frozen=True, extra="ignore"
    )

    # --- PostgreSQL -------------------------------------------------------------------------
    database_url: str = f"postgresql://phoenix@127.0.0.1:{LOCAL_POSTGRES_PORT}/phoenix"
    read_database_url: str | None = None
    """The HTTP API's URL (a read-only role, optionally a replica); defaults to database_url."""
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=8, ge=1)
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)

    # --- Kafka ------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_options: dict[str, str] = Field(default_factory=dict)
    """Passed through to every librdkafka client (security.protocol, sasl.*, ssl.*, ...)."""
    commands_topic: str = "phoenix.resources.commands.v1"
    events_topic: str = "phoenix.resources.events.v1"
    rejections_topic: str = "phoenix.resources.rejections.v1"
    dlq_topic: str = "phoenix.resources.commands.v1.dlq"
    consumer_group: str = "phoenix-resources-worker"
    create_topics: bool = True
    """Create missing topics at start (partitions below, replication = min(3, brokers))."""
    topic_partitions: int = Field(default=6, ge=1)
    wire_format: Literal["avro", "json"] = "avro"
    """Encoding the client library uses to publish commands (the worker accepts both)."""

    # --- Schema registry and Avro writer schemas (adapters/registry.py, docs/wire-format.md)
    schema_registry_url: str | None = None
    """When set, Avro uses the Confluent framing (magic 0 + schema id) instead of single-object.
    Comma-separated URLs are tried in turn; ``user:password@`` in the URL is basic auth too."""
    schema_registry_subject_strategy: Literal["topic", "record", "topic-record"] = "topic"
    """Subject of a schema: ``<topic>-value``, the record's full name, or ``<topic>-<name>``."""
    schema_registry_basic_auth: SecretStr | None = None
    """``user:password`` for HTTP basic auth."""
    schema_registry_ca_location: str | None = None
    """CA file (or directory) that verifies the registry's TLS certificate."""
    schema_registry_certificate_location: str | None = None
    """Client certificate (PEM) for mutual TLS."""
    schema_registry_key_location: str | None = None
    """The client certificate's private key (PEM)."""
    schema_registry_key_password: SecretStr | None = None
    schema_registry_auto_register: bool = True
    """Whether the client library registers the command schema when publishing. The worker
    never registers: it looks its event schemas up and refuses to start without them."""
    schema_registry_timeout_s: float = Field(default=10.0, gt=0)
    avro_writer_schemas_dir: str | None = None
    """A directory of newer writer schemas (``*.avsc``) to accept in single-object encoding."""

    # --- Worker -----------------------------------------------------------------------------
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    batch_max_wait_ms: int = Field(default=5, ge=0)
    """Longest wait to fill a batch. At high rates batches fill anyway; at low rates this
    bounds the added latency (bench: p50 ~50 ms at 5 ms vs ~90 ms at 50 ms, 1,000 cmd/s)."""
    max_command_bytes: int = Field(default=256 * 1024, ge=1024)
    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)
    processed_retention_hours: float = Field(default=24.0 * 7, gt=0)
    """processed_commands rows older than this are pruned; redeliveries older are not deduped."""
    prune_interval_s: float = Field(default=300.0, gt=0)

    # --- Relay ------------------------------------------------------------------------------
    relay_batch_size: int = Field(default=2000, ge=1)
    relay_poll_interval_s: float = Field(default=1.0, gt=0)
    relay_lock_key: int = 0x5048_5258  # "PHRX": the advisory lock of the single active relay
    relay_session_timeout_s: float = Field(default=10.0, ge=1.0)
    """Bound on a hung, stopped or cut-off leader: PostgreSQL ends its session (and so frees
    the lock) after this long without a statement or an answer (``idle_session_timeout``,
    TCP keepalives and ``tcp_user_timeout`` both ways); a standby leads within this plus
    ``relay_poll_interval_s``. Raised to 3 times ``relay_poll_interval_s`` if lower."""
    event_source: str = "urn:phoenix:resources"

    # --- HTTP API ---------------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    http_workers: int = Field(default=1, ge=1)
    http_request_timeout_s: float = Field(default=5.0, gt=0)
    api_token_hashes: list[str] = Field(default_factory=list)
    """SHA-256 hex digests of accepted bearer tokens; empty disables auth."""

    # --- Observability ----------------------------------------------------------------------
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    """Prometheus port of the worker and relay processes (the API serves /metrics itself)."""

    def kafka_common(self) -> dict[str, str]:
        """librdkafka options shared by every client: servers plus the pass-through options."""
        return {"bootstrap.servers": self.kafka_bootstrap_servers, **self.kafka_options}

    def api_database_url(self) -> str:
        return self.read_database_url or self.database_url


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
