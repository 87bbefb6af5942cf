"""Dead letters always fit the producer's limit, say why and where from in both our and Kafka
Connect's header names, and read back into what a replay needs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from phoenix_resources.adapters import dlq
from phoenix_resources.adapters.dlq import DeadLetter, build_dead_letter
from phoenix_resources.adapters.dlq_topic import replay_record, skip_reason
from phoenix_resources.adapters.records import Headers, wire_size
from phoenix_resources.errors import MessageTooLarge

pytestmark = pytest.mark.unit

SOURCE = ("t.commands", 2, 41)
KEY = b"3f0c9a9e-5d0b-4a8e-9a51-2f1f8c1d2e3a"


def letter(value: bytes | None, headers: Headers | None = None, **kw: object
           ) -> tuple[bytes | None, Headers]:
    record = build_dead_letter("t.dlq", source=SOURCE, key=KEY, value=value,
                               headers=headers if headers is not None
                               else [("content-type", b"application/json")],
                               reason="malformed-json", detail="line 1", **kw)  # type: ignore[arg-type]
    assert record.topic == "t.dlq"
    assert record.key == KEY
    return record.value, record.headers


def names(headers: Headers) -> dict[str, bytes]:
    return {k: v for k, v in headers if isinstance(v, bytes)}


def test_a_small_dead_letter_keeps_everything_and_adds_both_header_sets() -> None:
    value, headers = letter(b"{not json")
    h = names(headers)
    assert value == b"{not json"
    assert headers[0] == ("content-type", b"application/json")  # originals first
    assert h["dlq.reason"] == b"malformed-json"
    assert h["dlq.source.topic"] == h["__connect.errors.topic"] == b"t.commands"
    assert h["dlq.source.partition"] == h["__connect.errors.partition"] == b"2"
    assert h["dlq.source.offset"] == h["__connect.errors.offset"] == b"41"
    assert h["dlq.original.value.size"] == b"9"
    assert h["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert h["__connect.errors.exception.class.name"] == b"phoenix_resources.errors.DecodeError"
    assert h["__connect.errors.exception.message"] == b"malformed-json: line 1"
    assert "dlq.truncated" not in h


def test_the_exception_headers_name_the_error_given() -> None:
    _, headers = letter(b"x", error=MessageTooLarge("too-large", "1048000 bytes"))
    h = names(headers)
    assert h["__connect.errors.exception.class.name"] == \
        b"phoenix_resources.errors.MessageTooLarge"
    assert h["__connect.errors.exception.message"] == b"too-large: 1048000 bytes"


def test_a_value_near_one_mib_is_truncated_to_fit_and_says_so() -> None:
    original = bytes(range(256)) * 4096  # 1 MiB
    value, headers = letter(original)
    h = names(headers)
    assert value is not None
    assert wire_size(KEY, value, headers) <= 1_000_000 - dlq.HEADROOM
    assert original.startswith(value)
    assert len(value) > 990_000  # as much as fits is kept
    assert h["dlq.truncated"] == b"true"
    assert h["dlq.original.value.size"] == str(len(original)).encode()
    assert headers[0] == ("content-type", b"application/json")


def test_original_headers_are_dropped_only_when_an_empty_value_would_not_fit() -> None:
    huge = [(f"h{i}", b"v" * 10_000) for i in range(120)]  # 1.2 MB of headers
    value, headers = letter(b"payload", huge)
    h = names(headers)
    assert value == b"payload"[:len(value or b"")]
    assert not any(k.startswith("h") for k, _ in headers)
    assert h["dlq.original.headers.dropped"] == b"120"
    assert h["dlq.truncated"] == b"true"
    assert wire_size(KEY, value, headers) <= 1_000_000 - dlq.HEADROOM


def test_a_smaller_limit_is_honoured() -> None:
    value, headers = letter(b"v" * 50_000, max_bytes=20_000)
    assert wire_size(KEY, value, headers) <= 20_000 - dlq.headroom(20_000)


@pytest.mark.parametrize("limit", [16 * 1024, 4 * 1024, 2 * 1024])
def test_a_small_topic_limit_leaves_room_for_the_value_and_the_batch_header(limit: int) -> None:
    """A topic's max.message.bytes bounds the record batch: the dead letter plus the batch
    header fits, and a headroom made for a 1 MB limit does not eat a small limit whole."""
    value, headers = letter(b"v" * 50_000, max_bytes=limit)
    assert wire_size(KEY, value, headers) + dlq.RECORD_BATCH_OVERHEAD <= limit
    assert len(value or b"") > 0
    assert names(headers)["dlq.truncated"] == b"true"


def test_a_limit_smaller_than_the_dead_letters_own_headers_is_not_met() -> None:
    record = build_dead_letter("t.dlq", source=SOURCE, key=KEY, value=b"v" * 50_000,
                               headers=[("h", b"x" * 100)], reason="malformed-json",
                               detail="line 1", max_bytes=300)
    h = names(record.headers)
    assert (record.key, record.value) == (b"", b"")  # everything else gave way
    assert h["dlq.original.headers.dropped"] == b"1"
    assert h["dlq.reason"] == b"malformed-json"  # our own headers are never cut
    # Still over the limit: the broker refuses it, and the caller holds the partition.
    assert wire_size(record.key, record.value, record.headers) > 300


def dead(headers: Headers, value: bytes | None = b"v") -> DeadLetter:
    return DeadLetter(partition=0, offset=7, timestamp=datetime.now(UTC), key=KEY,
                      value=value, headers=headers)


def test_a_dead_letter_reads_back_its_reason_source_and_original_headers() -> None:
    _, headers = letter(b"{not json")
    d = dead(headers)
    assert d.reason == "malformed-json"
    assert d.source == ("t.commands", 2, 41)
    assert d.original_size == 9
    assert not d.truncated
    assert not d.replayed
    assert d.original_headers() == [("content-type", b"application/json")]


def test_a_replay_carries_the_original_key_and_headers_and_the_replayed_mark() -> None:
    _, headers = letter(b"{not json")
    record = replay_record(dead(headers, b"{not json"), "t.commands",
                           datetime(2026, 1, 1, tzinfo=UTC))
    assert record.topic == "t.commands"
    assert record.key == KEY
    assert record.value == b"{not json"
    assert record.headers == [("content-type", b"application/json"),
                              ("dlq.replayed", b"0:7@2026-01-01T00:00:00+00:00")]


def test_replay_skips_truncated_and_already_replayed_dead_letters_unless_forced() -> None:
    _, fresh = letter(b"x")
    _, again = letter(b"x", [("dlq.replayed", b"0:3@...")])
    _, cut = letter(b"v" * 50_000, max_bytes=20_000)
    assert skip_reason(dead(fresh), force=False) is None
    assert "already replayed" in (skip_reason(dead(again), force=False) or "")
    assert dead(again).replayed
    assert skip_reason(dead(again), force=True) is None
    assert "truncated" in (skip_reason(dead(cut), force=True) or "")
