"""The compiled hot path (the optional ``phoenix_resources_native`` extension, ``native/``):
loading it as ``PHOENIX_NATIVE`` says, and decoding a consumed batch with it.

The extension decodes what it is built for (Avro written with the command schema itself) and
hands every other record back to the Python codec (JSON, other writer schemas, registry ids
it was not told about), so a batch decodes exactly as ``Worker._decode`` decodes it: the same
commands, the same dead letters with the same reasons, the same invalid-header counts
(``tests/native``). The commands stay inside the extension; the isolation gets one
:class:`NativeItem` per command, which names its record.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from uuid import UUID

from confluent_kafka import Message

from phoenix_resources.errors import ConfigurationError, DecodeError, MessageTooLarge
from phoenix_resources.services.ports_encoded import Prefixes
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.events import EventCodec

log = logging.getLogger("phoenix_resources.native")

MODULE = "phoenix_resources_native"


@dataclass(frozen=True)
class NativePath:
    """The extension, and the event codec whose framing its outbox payloads follow."""

    module: ModuleType
    events: EventCodec

    def prefixes(self) -> Prefixes:
        """The framing headers of events and rejections (with a registry: its ids, looked up
        at start by ``EventCodec.prepare``)."""
        framing = self.events.framing
        return Prefixes(framing.prefix(self.events.event_schema),
                        framing.prefix(self.events.rejection_schema))


def load(mode: str, codec: CommandCodec, events: EventCodec) -> NativePath | None:
    """The extension when ``mode`` (``PHOENIX_NATIVE``) and the environment allow it, else
    None (the Python reference). ``on`` raises :class:`ConfigurationError` where ``auto``
    falls back: the module cannot be imported, or it follows other schemas than these
    codecs (it mirrors one version of each)."""
    if mode == "off":
        return None
    try:
        module = importlib.import_module(MODULE)
    except ImportError as e:
        if mode == "on":
            raise ConfigurationError(f"PHOENIX_NATIVE=on but the compiled hot path cannot be "
                                     f"imported ({e}): build it with `make deps` "
                                     "(needs cargo) or pip install ./native") from e
        return None
    problem = mismatch(module, codec, events)
    if problem is not None:
        if mode == "on":
            raise ConfigurationError(f"PHOENIX_NATIVE=on but {problem}")
        log.warning("the compiled hot path is not used", extra={"reason": problem})
        return None
    return NativePath(module, events)


def mismatch(module: Any, codec: CommandCodec, events: EventCodec) -> str | None:
    """Why ``module`` cannot stand in for the Python code with these codecs, or None."""
    pairs = (("command", module.COMMAND_FINGERPRINT, codec.schema.fingerprint),
             ("event", module.EVENT_FINGERPRINT, events.event_schema.fingerprint),
             ("rejection", module.REJECTION_FINGERPRINT, events.rejection_schema.fingerprint))
    for name, built, used in pairs:
        if built != used:
            return (f"{MODULE} {getattr(module, '__version__', '?')} was built for another "
                    f"{name} schema (fingerprint {built.hex()}, this version uses "
                    f"{used.hex()}): rebuild it")
    return None


class _Ids:
    """A command's ids, read from the extension when first asked for."""

    __slots__ = ("command_id", "resource_id")

    def __init__(self, command_id: UUID, resource_id: UUID) -> None:
        self.command_id = command_id
        self.resource_id = resource_id


class NativeItem:
    """One command of a natively decoded batch, as the isolation and the worker see it: its
    record's ``index``, its ``partition``; ``command`` (ids only) and ``traceparent`` are read
    from the batch when first asked for (the isolation needs them only when a part fails)."""

    __slots__ = ("_batch", "_ids", "index", "partition")

    def __init__(self, batch: Any, index: int, partition: int) -> None:
        self._batch = batch
        self._ids: _Ids | None = None
        self.index = index
        self.partition = partition

    @property
    def command(self) -> _Ids:
        if self._ids is None:
            c = self._batch.command(self.index)
            self._ids = _Ids(UUID(bytes=c["command_id"]), UUID(bytes=c["resource_id"]))
        return self._ids

    @property
    def traceparent(self) -> str | None:
        return self._batch.headers(self.index)[1]  # type: ignore[no-any-return]


@dataclass
class NativeDecoding:
    """A consumed batch decoded natively."""

    batch: Any
    """The extension's ``Batch``."""
    items: list[NativeItem]
    """Its commands, in record order."""
    dead: list[tuple[int, DecodeError]]
    """Record index and error of each record that is not a command, in record order."""
    invalid_headers: dict[str, int]
    """Invalid header values dropped, by header name."""

    def issued_seconds(self, exclude: Sequence[UUID]) -> list[float]:
        """When each command but ``exclude`` was issued (epoch seconds)."""
        return self.batch.issued_seconds(exclude)  # type: ignore[no-any-return]


def decode(module: ModuleType, messages: Sequence[Message],
           codec: CommandCodec) -> NativeDecoding:
    """``Worker._decode`` of ``messages`` by the extension, the Python codec decoding what
    the extension hands back. A :class:`~phoenix_resources.errors.RegistryUnavailable`
    propagates, as it does from the codec."""
    framing = codec.framing
    known = framing.known_fingerprints()
    known.discard(codec.schema.fingerprint)
    batch = module.decode_messages(messages, max_bytes=codec.max_bytes,
                                   known_fingerprints=sorted(known),
                                   registry=framing.registry is not None)
    for i in batch.fallbacks():
        try:
            batch.supply(i, codec.decode(messages[i].value(), batch.headers(i)[0]))
        except DecodeError as e:
            batch.refuse(i, e.reason, e.detail)
    dead: list[tuple[int, DecodeError]] = [
        (i, (MessageTooLarge if reason == "too-large" else DecodeError)(reason, detail))
        for i, reason, detail in batch.dead_letters()]
    items = [NativeItem(batch, i, messages[i].partition() or 0) for i in batch.commands()]
    return NativeDecoding(batch, items, dead, batch.invalid_header_counts())
