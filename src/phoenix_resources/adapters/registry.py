"""The schema registry, through ``confluent_kafka.schema_registry`` (any Confluent-compatible
registry: Confluent's, Karapace, Apicurio's ``/apis/ccompat/v7``...).

Only used when ``PHOENIX_SCHEMA_REGISTRY_URL`` is set. Writer schemas are cached by id for the
process's life (registry ids are immutable); ids of our own schemas by subject.

Errors are classified here, once:

* unreachable, timed out, 408/429/5xx → :class:`RegistryUnavailable` (transient: the worker
  waits and retries; a good command is never dead-lettered for an outage);
* an unknown schema id (404, error code 40403), or an id whose schema is not a usable Avro
  record → ``DecodeError("unknown-schema")`` (that record, and only it, is dead-lettered);
* our own schema missing under its subject when registering is off (the worker) — or any
  other refusal (401/403, 409 incompatible, 422 invalid) → :class:`ConfigurationError`.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, NoReturn, Protocol

from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
    record_subject_name_strategy,
    topic_record_subject_name_strategy,
    topic_subject_name_strategy,
)
from confluent_kafka.serialization import MessageField, SerializationContext
from pydantic import SecretStr

from phoenix_resources.errors import ConfigurationError, DecodeError, RegistryUnavailable
from phoenix_resources.wire.framing import AvroSchema, clip, schema_from_json

SubjectStrategy = Literal["topic", "record", "topic-record"]


class RegistrySettings(Protocol):
    """What the registry client is built from (``PHOENIX_SCHEMA_REGISTRY_*``): the server's
    ``config.Settings`` and the client library's ``ClientSettings`` both have it."""

    @property
    def schema_registry_url(self) -> str | None: ...
    @property
    def schema_registry_timeout_s(self) -> float: ...
    @property
    def schema_registry_basic_auth(self) -> SecretStr | None: ...
    @property
    def schema_registry_ca_location(self) -> str | None: ...
    @property
    def schema_registry_certificate_location(self) -> str | None: ...
    @property
    def schema_registry_key_location(self) -> str | None: ...
    @property
    def schema_registry_key_password(self) -> SecretStr | None: ...


_STRATEGIES = {"topic": topic_subject_name_strategy, "record": record_subject_name_strategy,
               "topic-record": topic_record_subject_name_strategy}

def _transport_errors() -> tuple[type[Exception], ...]:
    """``HTTPError`` of httpx2 and of httpx: the client uses httpx2 when it is installed and
    httpx otherwise (``confluent_kafka.schema_registry.common._httpx_compat``)."""
    found: list[type[Exception]] = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


# Transport failures, and answers that are not the registry's (a proxy's HTML page with
# status 200 fails to parse): both mean "the registry cannot answer now".
_UNAVAILABLE: tuple[type[Exception], ...] = (*_transport_errors(), ValueError, KeyError,
                                              TypeError)

SCHEMA_NOT_FOUND = 40403
SUBJECT_NOT_FOUND = 40401
_TRANSIENT_STATUS = frozenset({408, 429})

UNKNOWN_ID_TTL_S = 30.0
"""How long an id the registry does not know is remembered as unknown: a flood of records
naming a bogus id costs one registry call per id and TTL, not one per record."""


def subject_namer(strategy: SubjectStrategy, topics: Mapping[str, str]
                  ) -> Callable[[AvroSchema], str]:
    """The subject of each of our schemas: ``topics`` maps a record's full name to the
    topic its values are written to (what the topic strategies need)."""
    name_for = _STRATEGIES[strategy]

    def subject(schema: AvroSchema) -> str:
        topic = topics.get(schema.name)
        if topic is None and strategy != "record":
            raise ConfigurationError(f"no topic is known for {schema.name}: the "
                                     f"{strategy!r} subject strategy needs one")
        ctx = SerializationContext(topic or "", MessageField.VALUE)
        return str(name_for(ctx, schema.name))

    return subject


def client_config(settings: RegistrySettings) -> dict[str, Any]:
    """``SchemaRegistryClient`` configuration from the settings (URL, basic auth, TLS)."""
    if not settings.schema_registry_url:
        raise ConfigurationError("PHOENIX_SCHEMA_REGISTRY_URL is not set")
    conf: dict[str, Any] = {
        "url": settings.schema_registry_url,
        "timeout": settings.schema_registry_timeout_s,
        # The worker retries transient errors itself, with backoff, while polling Kafka:
        # one quick retry here, not the client's default of 3 with waits of up to 20 s.
        "max.retries": 1, "retries.wait.ms": 100, "retries.max.wait.ms": 500,
    }
    if settings.schema_registry_basic_auth is not None:
        conf["basic.auth.user.info"] = settings.schema_registry_basic_auth.get_secret_value()
    optional = {"ssl.ca.location": settings.schema_registry_ca_location,
                "ssl.certificate.location": settings.schema_registry_certificate_location,
                "ssl.key.location": settings.schema_registry_key_location}
    conf.update({k: v for k, v in optional.items() if v})
    if settings.schema_registry_key_password is not None:
        conf["ssl.key.password"] = settings.schema_registry_key_password.get_secret_value()
    return conf


def _problem(what: str, e: Exception) -> str:
    return f"schema registry: {what}: {type(e).__name__}: {e}"


def _is_transient(e: SchemaRegistryError) -> bool:
    return e.http_status_code >= 500 or e.http_status_code in _TRANSIENT_STATUS


class Registry:
    """The codec's :class:`~phoenix_resources.wire.framing.SchemaRegistry` over a
    ``SchemaRegistryClient``. Thread-safe; one per codec."""

    def __init__(self, client: SchemaRegistryClient, *, auto_register: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._auto_register = auto_register
        self._clock = clock
        self._by_id: dict[int, AvroSchema] = {}
        self._unknown: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: RegistrySettings, *, auto_register: bool) -> Registry:
        """Builds the client (no request is made). A configuration the client refuses (bad
        auth form, unreadable certificate) is a :class:`ConfigurationError`."""
        try:
            client = SchemaRegistryClient(client_config(settings))
        except (ValueError, TypeError, OSError) as e:  # ssl.SSLError is an OSError
            raise ConfigurationError(f"schema registry settings: {e}") from e
        return cls(client, auto_register=auto_register)

    def close(self) -> None:
        self._client.close()

    # --- writing: our schema's id -------------------------------------------------------

    def id_for(self, subject: str, schema: AvroSchema) -> int:
        """Register ``schema`` under ``subject`` (when registering is on) or look it up."""
        wanted = Schema(json.dumps(schema.raw), "AVRO")
        verb = "registering" if self._auto_register else "looking up"
        sid: int | None
        try:
            if self._auto_register:
                sid = self._client.register_schema(subject, wanted)
            else:
                sid = self._client.lookup_schema(subject, wanted).schema_id
        except SchemaRegistryError as e:
            if _is_transient(e):
                raise RegistryUnavailable(_problem(f"{verb} {subject}", e)) from e
            if not self._auto_register and e.error_code in (SUBJECT_NOT_FOUND,
                                                            SCHEMA_NOT_FOUND):
                raise ConfigurationError(
                    f"schema registry: subject {subject!r} has no version equal to "
                    f"{schema.name} ({schema.fingerprint.hex()}) and this process does "
                    "not register schemas: register it first (e.g. with the client "
                    "library, which registers by default), or check "
                    f"PHOENIX_SCHEMA_REGISTRY_SUBJECT_STRATEGY ({e})") from e
            raise ConfigurationError(f"schema registry: {verb} {subject}: {e}") from e
        except _UNAVAILABLE as e:
            raise RegistryUnavailable(_problem(f"{verb} {subject}", e)) from e
        if not isinstance(sid, int):
            raise RegistryUnavailable(f"schema registry: {verb} {subject}: no id answered")
        with self._lock:
            self._by_id.setdefault(sid, schema)
        return sid

    # --- reading: the writer's schema by id ---------------------------------------------

    def writer_for(self, schema_id: int) -> AvroSchema:
        """The schema with ``schema_id``: raises ``DecodeError("unknown-schema")`` or
        :class:`RegistryUnavailable`, nothing else."""
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        with self._lock:
            unknown = self._unknown.get(schema_id)
            if unknown is not None and self._clock() < unknown[0]:
                raise DecodeError("unknown-schema", unknown[1])
        try:
            answer = self._client.get_schema(schema_id)
        except SchemaRegistryError as e:
            if e.error_code == SCHEMA_NOT_FOUND:
                self._forget(schema_id, f"schema id {schema_id} is not in the registry")
            # Transient (5xx, 429, timeouts) or not: a 404 without the registry's own code
            # (a wrong URL path), 401/403 — nothing can be decoded until the registry or an
            # operator acts, and waiting (the worker pauses, logs and retries) beats
            # dead-lettering every good command meanwhile.
            raise RegistryUnavailable(_problem(f"schema id {schema_id}", e)) from e
        except _UNAVAILABLE as e:
            raise RegistryUnavailable(_problem(f"schema id {schema_id}", e)) from e
        schema_type = getattr(answer, "schema_type", None) or "AVRO"
        if schema_type != "AVRO":
            self._forget(schema_id, clip(f"schema id {schema_id} is {schema_type}, not Avro"))
        try:
            writer = schema_from_json(json.loads(answer.schema_str or ""))
        except Exception as e:  # whatever fastavro makes of a schema it cannot parse
            self._forget(schema_id, clip(f"schema id {schema_id} is not a usable Avro "
                                         f"record schema: {type(e).__name__}: {e}"))
        with self._lock:
            return self._by_id.setdefault(schema_id, writer)

    def _forget(self, schema_id: int, detail: str) -> NoReturn:
        """Remember ``schema_id`` as unknown for a while, and raise the dead letter."""
        with self._lock:
            self._unknown[schema_id] = (self._clock() + UNKNOWN_ID_TTL_S, detail)
            if len(self._unknown) > 10_000:  # a flood of bogus ids must not grow memory
                self._unknown.clear()
        raise DecodeError("unknown-schema", detail)
