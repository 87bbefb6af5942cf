"""The client library's settings: what publishers, subscribers and outcome watchers read.

Every field but the last two mirrors the server's setting of the same name — the same
``PHOENIX_`` variable, type, limits and default (``tests/unit/test_client_settings.py``
compares them) — so one environment configures both sides alike. ``api_url`` and
``api_token`` are the client's own (``PHOENIX_API_URL`` / ``PHOENIX_API_TOKEN``, which the
CLI reads too).

Values come from the same places, in the same order, as the server's: arguments, the
environment, the ``.env`` file (``PHOENIX_ENV_FILE``), the secrets directory
(``PHOENIX_SECRETS_DIR``), the defaults. Building them reads nothing else.

The client's classes also take the server's ``config.Settings`` (any :class:`SharedSettings`):
:func:`client_settings` copies the fields mirrored here from it, and reads no environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from phoenix_resources import kafka_options
from phoenix_resources.adapters.codecs import CodecSettings
from phoenix_resources.adapters.kafka import KafkaSettings
from phoenix_resources.adapters.registry import SubjectStrategy
from phoenix_resources.errors import ConfigurationError, InvalidSetting
from phoenix_resources.kafka_options import ClientKind, KafkaValue

ENV_FILE_VARIABLE = "PHOENIX_ENV_FILE"
SECRETS_DIR_VARIABLE = "PHOENIX_SECRETS_DIR"


class SharedSettings(CodecSettings, KafkaSettings, Protocol):
    """The settings client and server share: what the client reads of the server's
    ``config.Settings`` when given one."""

    @property
    def kafka_bootstrap_servers(self) -> str: ...
    @property
    def kafka_options(self) -> dict[str, KafkaValue]: ...
    @property
    def wire_format(self) -> Literal["avro", "json"]: ...
    @property
    def trace_sample_ratio(self) -> float: ...


class ClientSettings(BaseSettings):
    """Settings of the client library. Instances are immutable once built."""

    model_config = SettingsConfigDict(
        env_prefix="PHOENIX_", env_file=None, frozen=True, extra="ignore",
        use_attribute_docstrings=True, hide_input_in_errors=True,  # no secret in a message
    )

    # --- Kafka ------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    """Brokers, comma-separated."""
    kafka_options: dict[str, KafkaValue] = Field(default_factory=dict)
    """librdkafka options for every client: ``security.protocol``, ``sasl.*``, ``ssl.*``,
    tuning. Consumer-only keys reach only consumers, producer-only keys only producers."""
    kafka_consumer_options: dict[str, KafkaValue] = Field(default_factory=dict)
    """librdkafka options for consumers only, over the shared ones."""
    kafka_producer_options: dict[str, KafkaValue] = Field(default_factory=dict)
    """librdkafka options for producers only, over the shared ones."""
    commands_topic: str = "phoenix.resources.commands.v1"
    """Where commands are published. Key = ``resource_id``."""
    events_topic: str = "phoenix.resources.events.v1"
    """``ResourceChanged`` events, key = ``resource_id``."""
    rejections_topic: str = "phoenix.resources.rejections.v1"
    """``CommandRejected`` records."""
    wire_format: Literal["avro", "json"] = "avro"
    """Encoding commands are published in (``avro`` or ``json``); the worker accepts both."""

    # --- Schema registry and Avro writer schemas ----------------------------------------------
    schema_registry_url: str | None = None
    """When set, Avro uses the Confluent framing (``00`` + schema id) and this registry;
    otherwise single-object encoding (``C3 01`` + fingerprint)."""
    schema_registry_subject_strategy: SubjectStrategy = "topic"
    """Subject of each schema: ``topic``, ``record`` or ``topic-record``."""
    schema_registry_basic_auth: SecretStr | None = None
    """``user:password`` for HTTP basic auth."""
    schema_registry_ca_location: str | None = None
    """CA file or directory that verifies the registry's TLS certificate."""
    schema_registry_certificate_location: str | None = None
    """Client certificate (PEM) for mutual TLS."""
    schema_registry_key_location: str | None = None
    """The client certificate's private key (PEM)."""
    schema_registry_key_password: SecretStr | None = None
    """The password of that key, if it is encrypted."""
    schema_registry_auto_register: bool = True
    """Whether publishing registers the command schema (else it is looked up)."""
    schema_registry_timeout_s: float = Field(default=10.0, gt=0)
    """Per-request timeout."""
    avro_writer_schemas_dir: str | None = None
    """A directory of newer writer schemas (``*.avsc``) accepted in single-object encoding."""

    # --- Limits and tracing -------------------------------------------------------------------
    max_command_bytes: int = Field(default=256 * 1024, ge=1024)
    """A command encoding to more is refused before it is sent (the worker would
    dead-letter it)."""
    trace_sample_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of new traces (commands published outside an active span) sampled."""

    # --- The client's own ---------------------------------------------------------------------
    api_url: str | None = None
    """Base URL of the HTTP API: when set, ``wait_for_outcome`` asks it instead of reading the
    events and rejections topics (an argument given to the publisher wins)."""
    api_token: SecretStr | None = None
    """Bearer token sent to the HTTP API, when it requires one."""

    @field_validator("kafka_options", "kafka_consumer_options", "kafka_producer_options",
                     mode="before")
    @classmethod
    def _librdkafka_values(cls, value: Any) -> Any:
        """Any JSON value in, what librdkafka takes out (``kafka_options.librdkafka_value``)."""
        return kafka_options.convert(value) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _no_option_undermines_a_guarantee(self) -> ClientSettings:
        maps: dict[str, tuple[ClientKind | None, dict[str, KafkaValue]]] = {
            "kafka_options": (None, self.kafka_options),
            "kafka_consumer_options": ("consumer", self.kafka_consumer_options),
            "kafka_producer_options": ("producer", self.kafka_producer_options),
        }
        for name, (kind, options) in maps.items():
            why = kafka_options.refusal(kind, options)
            if why is not None:
                raise InvalidSetting(f"PHOENIX_{name.upper()}: {why}")
        return self

    def kafka_config(self, client: ClientKind) -> dict[str, KafkaValue]:
        """librdkafka settings for one kind of client, as the server computes them:
        ``bootstrap.servers``, the shared options that apply to it, then its own map."""
        own: dict[str, KafkaValue] = {"consumer": self.kafka_consumer_options,
                                      "producer": self.kafka_producer_options}.get(client, {})
        return {"bootstrap.servers": self.kafka_bootstrap_servers,
                **kafka_options.for_client(client, self.kafka_options, own)}

    def api_token_value(self) -> str | None:
        return None if self.api_token is None else self.api_token.get_secret_value()

    @classmethod
    def from_settings(cls, settings: SharedSettings) -> ClientSettings:
        """The mirrored fields of ``settings`` (e.g. the server's ``config.Settings``); the
        client's own fields keep their defaults. Reads no environment."""
        return cls.model_validate(settings, from_attributes=True)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the ``.env`` file, then the secrets dir."""
        env_file = Path(os.environ.get(ENV_FILE_VARIABLE) or ".env")
        sources = [init_settings, env_settings,
                   DotEnvSettingsSource(settings_cls, env_file=env_file)]
        secrets = _secrets_dir()
        if secrets is not None:
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets))
        return tuple(sources)


def _secrets_dir() -> Path | None:
    """``PHOENIX_SECRETS_DIR``, or None when unset; set but not a directory (a mount that
    went missing) is a :class:`ConfigurationError`, as for the server."""
    raw = os.environ.get(SECRETS_DIR_VARIABLE)
    if not raw:
        return None
    path = Path(raw)
    if not path.is_dir():
        raise ConfigurationError(f"{SECRETS_DIR_VARIABLE}={raw} is not a directory")
    return path


AnySettings = ClientSettings | SharedSettings
"""What the client's classes take: its own settings, or the server's."""


def client_settings(settings: AnySettings) -> ClientSettings:
    """``settings`` as :class:`ClientSettings` (copied from the server's, when given those)."""
    if isinstance(settings, ClientSettings):
        return settings
    return ClientSettings.from_settings(settings)
