"""Wire formats: :mod:`.framing` (Avro framings and schemas), :mod:`.commands`,
:mod:`.events` and :mod:`.headers`. The factories below build them from
:class:`~phoenix_resources.config.Settings` for the server (through ``bootstrap``) and the
client library alike. Building reads schema files but makes no network request.
"""

from __future__ import annotations

from phoenix_resources.adapters.codec.commands import CommandCodec
from phoenix_resources.adapters.codec.events import EventCodec
from phoenix_resources.adapters.codec.framing import (
    COMMAND_SCHEMA,
    EVENT_SCHEMA,
    REJECTION_SCHEMA,
    Framing,
    load_schema,
    writer_schemas,
)
from phoenix_resources.adapters.codec.headers import CommandHeaders, command_headers
from phoenix_resources.config import Settings

__all__ = ["CommandCodec", "CommandHeaders", "EventCodec", "Framing", "command_codec",
           "command_headers", "event_codec", "framing"]


def framing(settings: Settings, *, auto_register: bool = False) -> Framing:
    """Single-object encoding, or the Confluent framing when a registry URL is set.
    ``auto_register``: register our schemas when writing (else look them up)."""
    if not settings.schema_registry_url:
        return Framing()
    from phoenix_resources.adapters.registry import Registry, subject_namer

    topics = {load_schema(COMMAND_SCHEMA).name: settings.commands_topic,
              load_schema(EVENT_SCHEMA).name: settings.events_topic,
              load_schema(REJECTION_SCHEMA).name: settings.rejections_topic}
    return Framing(Registry.from_settings(settings, auto_register=auto_register),
                   subject_namer(settings.schema_registry_subject_strategy, topics))


def command_codec(settings: Settings) -> CommandCodec:
    """Commands: the worker decodes them; the client library encodes them, registering the
    schema unless ``PHOENIX_SCHEMA_REGISTRY_AUTO_REGISTER=false``."""
    return CommandCodec(framing(settings, auto_register=settings.schema_registry_auto_register),
                        max_bytes=settings.max_command_bytes,
                        writers=tuple(writer_schemas(settings.avro_writer_schemas_dir)))


def event_codec(settings: Settings) -> EventCodec:
    """Events and rejections: only the worker writes them, and it never registers schemas
    (call :meth:`EventCodec.prepare` at start)."""
    return EventCodec(framing(settings, auto_register=False))
