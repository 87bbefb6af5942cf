"""What "decoded" must mean, written independently of the codec: a storable command, or a
DecodeError whose reason is documented in docs/errors.md."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from phoenix_resources.domain.commands import CreateResource, DeleteResource, UpdateResource
from phoenix_resources.domain.model import Status
from phoenix_resources.errors import DecodeError

ERRORS_DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def documented_reasons() -> frozenset[str]:
    text = ERRORS_DOC.read_text()
    section = text[text.index("## Dead-letter reasons"):text.index("## HTTP")]
    return frozenset(re.findall(r"^\| `([a-z-]+)` \|", section, re.MULTILINE))


REASONS = documented_reasons()
LOWEST = datetime(1970, 1, 1, tzinfo=UTC)
HIGHEST = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def _text_ok(value: object, max_len: int | None = None) -> bool:
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return max_len is None or len(value) <= max_len


def assert_storable(command: object) -> None:
    assert type(command) in (CreateResource, UpdateResource, DeleteResource), command
    assert isinstance(command, CreateResource | UpdateResource | DeleteResource)
    assert isinstance(command.command_id, UUID)
    assert isinstance(command.resource_id, UUID)
    at = command.issued_at
    assert isinstance(at, datetime)
    assert at.utcoffset() == timedelta(0), at
    assert LOWEST <= at <= HIGHEST
    version = command.expected_version
    assert version is None or (type(version) is int and 0 <= version <= 2**63 - 1)
    for text in (command.correlation_id, command.issued_by):
        assert text is None or _text_ok(text, 255), text
    if isinstance(command, CreateResource | UpdateResource):
        assert command.name is None or _text_ok(command.name)
        assert command.config is None or all(
            _text_ok(k) and _text_ok(v) for k, v in command.config.items())
        assert command.status is None or isinstance(command.status, Status)


def assert_documented(error: DecodeError) -> None:
    assert error.reason in REASONS, error.reason
    # dlq.detail travels as a Kafka header: UTF-8, and short.
    error.detail.encode("utf-8")
    assert len(error.detail) <= 1000
