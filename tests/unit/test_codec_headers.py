"""command_headers: the worker's one pass over a record's headers."""

from __future__ import annotations

import pytest

from phoenix_resources.wire.headers import (
    CommandHeaders,
    command_headers,
    is_json,
    media_type,
    traceparent,
)

pytestmark = pytest.mark.unit

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_valid_headers_are_kept() -> None:
    got = command_headers([("content-type", b"application/json"), ("traceparent",
                                                                    TRACE.encode())])
    assert got == CommandHeaders("application/json", TRACE, ())


def test_no_headers() -> None:
    assert command_headers(None) == CommandHeaders(None, None, ())
    assert command_headers([]) == CommandHeaders(None, None, ())
    assert command_headers([("x-other", b"1")]) == CommandHeaders(None, None, ())


@pytest.mark.parametrize("value", [
    TRACE.encode() + b"0",                       # 56 characters: crashed VARCHAR(55)
    TRACE.encode() * 2,
    TRACE.upper().encode(),                      # upper-case hex is not allowed
    b"ff" + TRACE.encode()[2:],                  # version ff is invalid
    b"00-" + b"0" * 32 + TRACE.encode()[35:],    # all-zero trace-id
    TRACE.encode()[:36] + b"0" * 16 + b"-01",    # all-zero parent-id
    TRACE.encode()[:54],
    b"\xff" + TRACE.encode()[1:],
    b"",
    None,
])
def test_invalid_traceparents_are_dropped_and_named(value: bytes | None) -> None:
    got = command_headers([("traceparent", value), ("content-type", b"application/avro")])
    assert got == CommandHeaders("application/avro", None, ("traceparent",))


def test_a_later_version_keeps_the_part_this_version_defines() -> None:
    later = "01" + TRACE[2:]
    assert traceparent(later.encode()) == later
    assert traceparent((later + "-what-comes-later").encode()) == later
    assert traceparent((later + "x").encode()) is None


def test_the_last_of_repeated_headers_wins() -> None:
    got = command_headers([("traceparent", b"garbage"), ("traceparent", TRACE.encode()),
                           ("content-type", b"application/json"),
                           ("content-type", b"application/avro")])
    assert got == CommandHeaders("application/avro", TRACE, ())
    got = command_headers([("traceparent", TRACE.encode()), ("traceparent", b"garbage")])
    assert got == CommandHeaders(None, None, ("traceparent",))


@pytest.mark.parametrize(("value", "expected"), [
    (b"application/json", "application/json"),
    (b"Application/JSON; charset=utf-8", "application/json"),
    (b" application/json ;charset=UTF-8", "application/json"),
    (b"application/vnd.phoenix+json", "application/vnd.phoenix+json"),
])
def test_content_types_are_parsed_with_parameters(value: bytes, expected: str) -> None:
    assert command_headers([("Content-Type", value)]) == CommandHeaders(expected, None, ())


@pytest.mark.parametrize("value", [b"json", b"", b"application/json\xff", b"/", b"a/b/c",
                                   None, b"\xc3\x28"])
def test_unusable_content_types_are_dropped_and_named(value: bytes | None) -> None:
    assert command_headers([("content-type", value)]) == CommandHeaders(
        None, None, ("content-type",))


def test_str_values_are_accepted_but_must_be_utf8() -> None:
    assert command_headers([("traceparent", TRACE)]).traceparent == TRACE
    assert command_headers([("content-type", "application/json\ud800")]).invalid == (
        "content-type",)


def test_json_detection() -> None:
    assert is_json("application/json")
    assert is_json("application/json; charset=utf-8")
    assert is_json("application/cloudevents+json")
    assert not is_json("application/avro")
    assert not is_json("garbage")
    assert media_type("text/plain;x") == "text/plain"
