"""Wire formats: :mod:`.framing` (Avro framings and schemas), :mod:`.commands` and
:mod:`.events`. The factories below build them from :class:`~phoenix_resources.config.Settings`
for the server (through ``bootstrap``) and the client library alike.
"""

from __future__ import annotations

from phoenix_resources.adapters.codec.commands import CommandCodec
from phoenix_resources.adapters.codec.events import EventCodec
from phoenix_resources.adapters.codec.framing import Framing
from phoenix_resources.config import Settings

__all__ = ["CommandCodec", "EventCodec", "Framing", "command_codec", "event_codec", "framing"]


def framing(settings: Settings) -> Framing:
    """Single-object encoding, or the Confluent framing when a registry URL is set."""
    if settings.schema_registry_url:
        from phoenix_resources.adapters.registry import RegistryClient

        return Framing(RegistryClient(settings.schema_registry_url))
    return Framing()


def command_codec(settings: Settings) -> CommandCodec:
    return CommandCodec(framing(settings), max_bytes=settings.max_command_bytes)


def event_codec(settings: Settings) -> EventCodec:
    return EventCodec(framing(settings))
