"""The one validator of a command, shared by every entry and by the worker's decoder.

Whoever publishes a command — the client library, the CLI (``send``, ``send --file``), the
gRPC API, any future entry — checks it with :func:`validate` before anything is sent; the
worker's decoder (``wire/commands.py``) reads a record into a command and checks it with
:func:`check_command`, the very function :func:`validate` starts with. So what an entry
accepts, the worker decodes: it is then applied or rejected with a code, never
dead-lettered (DESIGN promise 10; ``tests/unit/test_validation_agrees.py`` feeds generated,
hostile input to every entry and to the worker and compares their verdicts).

Two layers, with the codes of ``docs/errors.md``:

* :func:`check_command` — *storable*: PostgreSQL takes every value as it is. Ids are UUIDs;
  text has no NUL and is valid Unicode (no lone surrogates); ``correlation_id`` and
  ``issued_by`` have at most :data:`TEXT_MAX` characters; ``config`` maps text to text;
  ``expected_version`` is an ``int`` within 0..2^63-1 (BIGINT); ``issued_at`` is an aware
  (or naive = UTC) time within :data:`ISSUED_AT_MIN` .. :data:`ISSUED_AT_MAX`. Failing
  raises :class:`~phoenix_resources.errors.DecodeError` — ``invalid-field``, or
  ``issued-at-unit`` for an epoch integer in the wrong unit — which the worker dead-letters.
* the stateless rules of ``domain/rules.py`` (name ``CMD-001``, config ``CMD-002``, a create
  with an ``expected_version`` above 0 ``CMD-006``), which the worker would reject with.

:func:`validate` raises :class:`~phoenix_resources.errors.CommandInvalid` carrying either
code; :func:`check_encoded` adds the size limit the worker applies to the encoded bytes
(``too-large``). Rules that need the stored state stay the worker's.

Why here and not in ``domain/rules.py``: what most often separates "decoded" from
"dead-lettered" is the wire and storage contract (NUL, Unicode, column sizes, integer and
time ranges, units), which is this package's subject; the domain rules are applied from here,
not copied (``docs/decisions/0013-one-command-validator.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from phoenix_resources.domain.commands import (
    AnyCommand,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.model import Status
from phoenix_resources.domain.rules import (
    RejectionCode,
    RuleViolation,
    check_config,
    check_name,
)
from phoenix_resources.errors import CommandInvalid, DecodeError

INVALID_FIELD = "invalid-field"
ISSUED_AT_UNIT = "issued-at-unit"
TOO_LARGE = "too-large"

TEXT_MAX = 255
"""Longest correlation_id / issued_by (they are stored in VARCHAR(255) columns)."""
VERSION_MAX = 2**63 - 1
"""Largest expected_version: PostgreSQL's BIGINT (and Avro's long) cannot hold more."""
MICROS_MIN = 10**14
"""The smallest epoch-microseconds ``issued_at`` (1973-03-03T09:46:40Z). Smaller positive
integers are epoch milliseconds or seconds given for microseconds (``Date.now()``,
``System.currentTimeMillis()``, ``time()``): refused ``issued-at-unit``, never guessed."""
_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ISSUED_AT_MIN = _EPOCH + MICROS_MIN * _MICROSECOND
ISSUED_AT_MAX = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
"""``issued_at`` range. No command of this service was issued before 1973; after 9999
Python's datetime ends (PostgreSQL's goes further, so everything in range is storable)."""
MICROS_MAX = (ISSUED_AT_MAX - _EPOCH) // _MICROSECOND
_SECONDS_BELOW = 10**11
"""Below this, an epoch integer reads as seconds (years 1970..5138); from it up to
:data:`MICROS_MIN`, as milliseconds (1973..5138)."""


def show(value: Any) -> str:
    """A short, ASCII-only picture of a value for ``dlq.detail`` (never ``str()`` of an
    arbitrary value: a 5,000-digit int cannot even be turned into text)."""
    if isinstance(value, str):
        return ascii(value[:48])
    return type(value).__name__


# --- one value at a time (the decoder parses with these) -------------------------------------

def issued_at_from(value: Any) -> datetime:
    """Epoch microseconds (Avro's timestamp-micros; JSON integers), ISO-8601 text (naive
    means UTC) or a datetime, as an aware UTC time within the range; anything else — floats,
    booleans, other units — is refused."""
    if type(value) is int:  # not bool, and the common case first
        if MICROS_MIN <= value <= MICROS_MAX:
            return _EPOCH + value * _MICROSECOND
        if 0 <= value < MICROS_MIN:
            unit, factor = (("seconds", "1,000,000") if value < _SECONDS_BELOW
                            else ("milliseconds", "1,000"))
            raise DecodeError("issued-at-unit", f"'issued_at' must be epoch microseconds (at "
                              f"least {MICROS_MIN}); {value} reads as epoch {unit}: "
                              f"multiply by {factor}, or send ISO-8601 text")
        raise DecodeError("invalid-field", f"'issued_at' epoch micros out of range "
                          f"({MICROS_MIN}..{MICROS_MAX}: years 1973..9999; nanoseconds?)")
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value) if len(value) <= 64 else None
        except ValueError:  # UnicodeEncodeError (lone surrogates) is a ValueError too
            at = None
        if at is None:
            raise DecodeError("invalid-field", "'issued_at' is not an ISO-8601 time: "
                              f"{show(value)}")
        value = at
    if isinstance(value, datetime):
        at = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        # Compare before converting: astimezone(UTC) overflows for 9999-12-31T23:00-05:00.
        if not ISSUED_AT_MIN <= at <= ISSUED_AT_MAX:
            raise DecodeError("invalid-field", "'issued_at' is out of range "
                              "(1973-03-03T09:46:40Z .. 9999-12-31T23:59:59.999999Z)")
        return at if at.tzinfo is UTC else at.astimezone(UTC)
    raise DecodeError("invalid-field", "'issued_at' must be ISO-8601 text or epoch micros, "
                      f"not {show(value)}")


def storable_text(text: str) -> bool:
    """Whether PostgreSQL can take ``text`` as it is: no NUL, valid Unicode. For values that
    are not commands' (the read API's filters and cursors): refuse them before any query."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str, field: str) -> str:
    """Text PostgreSQL can store: no NUL (text and jsonb refuse it) and valid Unicode (JSON
    escapes, argv bytes and careless callers can produce lone surrogates)."""
    if "\x00" in text:
        raise DecodeError("invalid-field", f"'{field}' contains a NUL character")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as e:
            raise DecodeError("invalid-field", f"'{field}' is not valid Unicode (a lone "
                              "surrogate)") from e
    return text


def text_of(value: Any, field: str, max_len: int | None = None) -> str | None:
    """``value`` when it is None or storable text of at most ``max_len`` characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise DecodeError("invalid-field", f"'{field}' must be text, not {show(value)}")
    if max_len is not None and len(value) > max_len:
        raise DecodeError("invalid-field", f"'{field}' is longer than {max_len} characters")
    return storable(value, field)


def version_of(value: Any) -> int | None:
    if value is None:
        return None
    # JSON integers past 64 bits arrive as floats (orjson): refused here with the rest.
    if type(value) is not int:
        raise DecodeError("invalid-field", "'expected_version' must be an integer, not "
                          f"{show(value)}")
    if not 0 <= value <= VERSION_MAX:
        raise DecodeError("invalid-field", f"'expected_version' must be within "
                          f"0..{VERSION_MAX}")
    return value


def config_of(value: Any) -> Mapping[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise DecodeError("invalid-field", "'config' must map strings to strings")
    for k, v in value.items():
        storable(k, "config")
        storable(v, "config")
    return value


_STATUSES = {s.value: s for s in Status}


def status_of(value: Any) -> Status | None:
    if value is None or isinstance(value, Status):
        return value
    status = _STATUSES.get(value) if isinstance(value, str) else None
    if status is None:
        raise DecodeError("invalid-field", f"'status' must be one of {list(_STATUSES)}, "
                          f"not {show(value)}")
    return status


# --- a whole command ---------------------------------------------------------------------------

def check_command(command: AnyCommand) -> None:
    """Raise :class:`DecodeError` (``invalid-field``, ``issued-at-unit``) unless every value
    of ``command`` is storable; see the module's first layer. The worker's decoder ends
    with this, and :func:`validate` starts with it."""
    if type(command) not in _KINDS:
        raise DecodeError("invalid-field", f"not a command: {show(command)}")
    for field in ("command_id", "resource_id"):
        value = getattr(command, field)
        if not isinstance(value, UUID):
            raise DecodeError("invalid-field", f"'{field}' is not a UUID: {show(value)}")
    if not isinstance(command.issued_at, datetime):
        raise DecodeError("invalid-field", "'issued_at' must be a datetime, not "
                          f"{show(command.issued_at)}")
    issued_at_from(command.issued_at)
    version_of(command.expected_version)
    text_of(command.correlation_id, "correlation_id", TEXT_MAX)
    text_of(command.issued_by, "issued_by", TEXT_MAX)
    if isinstance(command, CreateResource | UpdateResource):
        if isinstance(command, CreateResource) and (command.name is None
                                                    or command.config is None):
            raise DecodeError("invalid-field", "a create needs a name and a config")
        text_of(command.name, "name")
        config_of(command.config)
        if not (isinstance(command.status, Status) or (
                command.status is None and isinstance(command, UpdateResource))):
            raise DecodeError("invalid-field", "'status' must be a Status, not "
                              f"{show(command.status)}")


_KINDS = (CreateResource, UpdateResource, DeleteResource)


def check_rules(command: AnyCommand) -> None:
    """The stateless rules: :class:`RuleViolation` with the code the worker rejects with."""
    if isinstance(command, CreateResource):
        # In decide's order: the target first, then the values.
        if command.expected_version not in (None, 0):
            raise RuleViolation(RejectionCode.VERSION_CONFLICT,
                                f"expected version {command.expected_version}, but a create "
                                "targets a resource that does not exist yet")
        check_name(command.name)
        check_config(command.config)
    elif isinstance(command, UpdateResource):
        if command.name is not None:
            check_name(command.name)
        if command.config is not None:
            check_config(command.config)


def validate(command: AnyCommand) -> None:
    """Every entry's check before publishing: :class:`CommandInvalid` with the code the
    worker would dead-letter (``invalid-field``, ``issued-at-unit``) or reject
    (``CMD-…``) the command with; nothing raised means the worker decodes it and no
    stateless rule refuses it."""
    try:
        check_command(command)
        check_rules(command)
    except DecodeError as e:
        raise CommandInvalid(e.reason, e.detail) from e
    except RuleViolation as v:
        raise CommandInvalid(v.code.value, v.message) from v


def check_encoded(value: bytes, max_bytes: int) -> bytes:
    """``value`` (a command as encoded for the wire) unless the worker would dead-letter it
    for its size (``too-large``, ``PHOENIX_MAX_COMMAND_BYTES``): then
    :class:`CommandInvalid`."""
    if len(value) > max_bytes:
        raise CommandInvalid(TOO_LARGE, f"the command encodes to {len(value)} bytes; the "
                             f"limit is {max_bytes} (PHOENIX_MAX_COMMAND_BYTES)")
    return value
