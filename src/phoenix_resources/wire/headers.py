"""The headers of a command record the worker reads: ``content-type`` and ``traceparent``.

:func:`command_headers` is pure and total: any header list (names may repeat — the last one
wins, as in HTTP; values may be any bytes or missing) gives a :class:`CommandHeaders`. A
header that is present but unusable is dropped and its name listed in ``invalid`` (the
worker counts it and still processes the command: a bad trace header is no reason to lose
a command). It runs once per record on the hot path: one pass, no allocation per header
beyond the two values kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

JSON_CONTENT_TYPE = "application/json"

CONTENT_TYPE = "content-type"
TRACEPARENT = "traceparent"

TRACEPARENT_LENGTH = 55
"""A version-00 traceparent's length, and the column width that stores it."""

# W3C Trace Context: version-traceid-parentid-flags, lower-case hex only; version ff and
# all-zero ids are invalid. One regex, so that the common case is one C call.
_TRACEPARENT = re.compile(
    rb"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
# The values every publisher of ours sends: no decoding, no regex.
_COMMON_TYPES = {b"application/avro": "application/avro",
                 b"application/json": "application/json"}
_BARE_TYPES = frozenset(_COMMON_TYPES.values())
# RFC 9110 media type: type "/" subtype, both tokens; parameters after ";" are ignored.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"[ \t]*({_TOKEN}/{_TOKEN})[ \t]*(?:;.*)?", re.DOTALL)


@dataclass(frozen=True, slots=True)
class CommandHeaders:
    content_type: str | None
    """Lower-case ``type/subtype`` without parameters, e.g. ``application/json``."""
    traceparent: str | None
    """A valid W3C ``traceparent`` of exactly 55 characters (fits ``VARCHAR(55)``)."""
    invalid: tuple[str, ...] = ()
    """Names of headers that were present but unusable, and so dropped."""


NO_HEADERS = CommandHeaders(None, None)


def media_type(value: str) -> str | None:
    """``"Application/JSON; charset=utf-8"`` → ``"application/json"``; ``None`` when the
    value is not a media type."""
    m = _MEDIA_TYPE.fullmatch(value)
    return m.group(1).lower() if m else None


def is_json(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type, parameters and case aside."""
    if content_type in _BARE_TYPES:  # already a bare type: no parsing
        return content_type == JSON_CONTENT_TYPE
    kind = media_type(content_type)
    return kind is not None and (kind == JSON_CONTENT_TYPE or kind.endswith("+json"))


def traceparent(value: bytes) -> str | None:
    """The W3C trace context header, or ``None`` when it is not valid: a version other than
    ``ff``, trace-id and parent-id not all zeros; version 00 has exactly 55 characters. A
    later version may append fields (``-...``); only the first 55 characters — the part
    this version of the spec defines, and what the 55-character column holds — are kept."""
    if len(value) == TRACEPARENT_LENGTH:
        return value.decode("ascii") if _TRACEPARENT.fullmatch(value) else None
    head = value[:TRACEPARENT_LENGTH]
    if (len(value) < TRACEPARENT_LENGTH or head[:2] == b"00"
            or value[TRACEPARENT_LENGTH:TRACEPARENT_LENGTH + 1] != b"-"
            or not _TRACEPARENT.fullmatch(head)):
        return None
    return head.decode("ascii")


def _content_type(value: bytes) -> str | None:
    common = _COMMON_TYPES.get(value)
    if common is not None:
        return common
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return None
    return media_type(text)


def command_headers(pairs: Iterable[tuple[str, bytes | str | None]] | None) -> CommandHeaders:
    """Read ``content-type`` and ``traceparent`` from a record's header list (e.g.
    ``message.headers()``). Header names match case-insensitively."""
    if not pairs:
        return NO_HEADERS
    raw_type: bytes | str | None = None
    raw_trace: bytes | str | None = None
    seen_type = seen_trace = False
    for name, value in pairs:
        if name == CONTENT_TYPE or (len(name) == 12 and name.lower() == CONTENT_TYPE):
            raw_type, seen_type = value, True
        elif name == TRACEPARENT or (len(name) == 11 and name.lower() == TRACEPARENT):
            raw_trace, seen_trace = value, True
    if not (seen_type or seen_trace):
        return NO_HEADERS
    content_type = trace = None
    invalid: tuple[str, ...] = ()
    if seen_type:
        content_type = None if raw_type is None else _content_type(_as_bytes(raw_type))
        if content_type is None:
            invalid = (CONTENT_TYPE,)
    if seen_trace:
        trace = None if raw_trace is None else traceparent(_as_bytes(raw_trace))
        if trace is None:
            invalid = (*invalid, TRACEPARENT)
    return CommandHeaders(content_type, trace, invalid)


def _as_bytes(value: bytes | str) -> bytes:
    if type(value) is bytes:  # what confluent_kafka gives: the common case first
        return value
    if isinstance(value, str):  # tests, other clients: it stands for its UTF-8 bytes
        try:
            return value.encode()
        except UnicodeEncodeError:  # lone surrogates: not UTF-8, so the header is invalid
            return b"\xff"
    try:
        return bytes(value)  # bytearray, memoryview, a bytes subclass
    except (TypeError, ValueError):
        return b"\xff"
