"""Codecs built from settings: the framing (single-object, or the Confluent framing with the
schema registry), the command codec and the event codec.

The codecs themselves are the wire package's (``wire/``); building them needs the registry
client, which is an adapter, so the factories live here. They read a
:class:`CodecSettings` — the server's ``config.Settings`` (through ``bootstrap``) and the
client library's ``ClientSettings`` both are one — so the two sides build the same codecs
from the same variables. Building reads schema files but makes no network request.
"""

from __future__ import annotations

from typing import Protocol

from phoenix_resources.adapters.registry import (
    Registry,
    RegistrySettings,
    SubjectStrategy,
    subject_namer,
)
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import (
    COMMAND_SCHEMA,
    EVENT_SCHEMA,
    REJECTION_SCHEMA,
    Framing,
    load_schema,
    writer_schemas,
)

__all__ = ["CodecSettings", "command_codec", "event_codec", "framing"]


class CodecSettings(RegistrySettings, Protocol):
    """The settings the codecs are built from (``PHOENIX_`` variables of the same names)."""

    @property
    def commands_topic(self) -> str: ...
    @property
    def events_topic(self) -> str: ...
    @property
    def rejections_topic(self) -> str: ...
    @property
    def schema_registry_subject_strategy(self) -> SubjectStrategy: ...
    @property
    def schema_registry_auto_register(self) -> bool: ...
    @property
    def max_command_bytes(self) -> int: ...
    @property
    def avro_writer_schemas_dir(self) -> str | None: ...


def framing(settings: CodecSettings, *, auto_register: bool = False) -> Framing:
    """Single-object encoding, or the Confluent framing when a registry URL is set.
    ``auto_register``: register our schemas when writing (else look them up)."""
    if not settings.schema_registry_url:
        return Framing()
    topics = {load_schema(COMMAND_SCHEMA).name: settings.commands_topic,
              load_schema(EVENT_SCHEMA).name: settings.events_topic,
              load_schema(REJECTION_SCHEMA).name: settings.rejections_topic}
    return Framing(Registry.from_settings(settings, auto_register=auto_register),
                   subject_namer(settings.schema_registry_subject_strategy, topics))


def command_codec(settings: CodecSettings) -> CommandCodec:
    """Commands: the worker decodes them; the client library encodes them, registering the
    schema unless ``PHOENIX_SCHEMA_REGISTRY_AUTO_REGISTER=false``."""
    return CommandCodec(framing(settings, auto_register=settings.schema_registry_auto_register),
                        max_bytes=settings.max_command_bytes,
                        writers=tuple(writer_schemas(settings.avro_writer_schemas_dir)))


def event_codec(settings: CodecSettings) -> EventCodec:
    """Events and rejections: only the worker writes them, and it never registers schemas
    (call :meth:`EventCodec.prepare` at start)."""
    return EventCodec(framing(settings, auto_register=False))
