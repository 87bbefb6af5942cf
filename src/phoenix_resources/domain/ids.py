"""Making UUIDs cheaply: the worker turns two ids of text into UUIDs per command and derives
an event id per change, and ``uuid.UUID``'s constructor spends most of its time on checks and
conversions these paths do not need.

Values are :class:`uuid.UUID` objects: equal to, hashing like and ordering with any other
``UUID`` of the same value. Ids parsed from canonical text are of a subclass that keeps that
text, because the worker writes each command's ids back out as text several times (event
body, outbox key, the record-key check) and ``UUID.__str__`` formats them anew every time.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from uuid import UUID, SafeUUID

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_new = object.__new__
_set = object.__setattr__
_VERSION_5 = 5 << 76
_VARIANT_RFC4122 = 0x8000 << 48
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UNKNOWN = SafeUUID.unknown  # an enum member read once: each lookup runs a descriptor


class TextUUID(UUID):
    """A UUID that remembers its canonical text: ``str()`` costs a lookup, not a format.

    Copies and pickles come back as plain :class:`uuid.UUID` (the text is a cache, not
    state), and ``repr`` reads as a plain UUID's."""

    __slots__ = ("_text",)
    _text: str

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"UUID('{self._text}')"

    def __reduce__(self) -> tuple[Any, ...]:
        return UUID, (self._text,)


def _from_int(value: int) -> UUID:
    # UUID stores exactly these two slots; its __init__ would only validate and set them.
    u: UUID = _new(UUID)
    _set(u, "int", value)
    _set(u, "is_safe", _UNKNOWN)
    return u


def parse_uuid(text: str) -> UUID:
    """``UUID(text)``, faster for the canonical lower-case form (which it keeps, see
    :class:`TextUUID`); raises ``ValueError`` for what is not a UUID (every form ``UUID()``
    accepts is accepted)."""
    if len(text) == 36 and _CANONICAL.fullmatch(text):
        u: TextUUID = _new(TextUUID)
        _set(u, "int", int(text.replace("-", ""), 16))
        _set(u, "is_safe", _UNKNOWN)
        _set(u, "_text", text)
        return u
    return UUID(text)


def name_based_uuid(namespace: UUID, name: str) -> UUID:
    """``uuid.uuid5(namespace, name)`` (RFC 4122 version 5: SHA-1 of namespace and name)."""
    digest = hashlib.sha1(namespace.bytes + name.encode()).digest()
    value = int.from_bytes(digest[:16], "big")
    return _from_int((value & _CLEAR) | _VARIANT_RFC4122 | _VERSION_5)
