"""librdkafka's log lines, one per problem: the repeats of a broker's connection failures
are held back, counted, and passed again once a window has gone by."""

from __future__ import annotations

import logging

import pytest

from phoenix_resources.adapters import kafka
from phoenix_resources.adapters.kafka_logs import RepeatFilter, librdkafka_logger, problem_key

pytestmark = pytest.mark.unit


def _line(client: str, thread: str, text: str, facility: str = "FAIL") -> logging.LogRecord:
    """A record as confluent-kafka's ``logger=`` makes it from a librdkafka line."""
    return logging.LogRecord("phoenix_resources.librdkafka", logging.ERROR, "", 0,
                             "%s [%s] %s", (facility, client, f"[thrd:{thread}]: {text}"),
                             None)


def _refused(port: int, name: str, client: str = "app#producer-1", after: int = 0
             ) -> logging.LogRecord:
    """``name``: how librdkafka names the broker (``host:port/id``, or the coordinator)."""
    thread, role = (("GroupCoordinator", f"GroupCoordinator: 127.0.0.1:{port}")
                    if name == "GroupCoordinator" else (name, name))
    return _line(client, thread, f"{role}: Connect to ipv4#127.0.0.1:{port} failed: "
                 f"Connection refused (after {after}ms in state CONNECT)")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_broker_and_problem_however_often_it_is_retried() -> None:
    clock = Clock()
    keep = RepeatFilter(window_s=60, clock=clock)
    first = [_refused(9092, "127.0.0.1:9092/bootstrap"), _refused(9093, "127.0.0.1:9093/1")]
    assert [keep.filter(r) for r in first] == [True, True], "two brokers, two problems"
    repeats = [_refused(9092, name, client, after)
               for name in ("127.0.0.1:9092/bootstrap", "127.0.0.1:9092/1", "GroupCoordinator")
               for client in ("app#producer-1", "app#consumer-2") for after in (0, 5, 12)]
    assert not any(keep.filter(r) for r in repeats), "same broker, same problem: held back"
    disconnected = _line("app#consumer-2", "127.0.0.1:9092/1", "127.0.0.1:9092/1: "
                         "Disconnected (after 12345ms in state UP)")
    assert keep.filter(disconnected), "another problem of the same broker is a new line"


def test_after_the_window_a_repeat_passes_with_the_count_held_back() -> None:
    clock = Clock()
    keep = RepeatFilter(window_s=60, clock=clock)
    assert keep.filter(_refused(9092, "127.0.0.1:9092/bootstrap"))
    for _ in range(163):
        clock.now += 0.1
        assert not keep.filter(_refused(9092, "127.0.0.1:9092/bootstrap"))
    clock.now += 60
    again = _refused(9092, "127.0.0.1:9092/bootstrap")
    assert keep.filter(again)
    assert again.getMessage().endswith("(repeated 163 more times since last logged)")
    assert "Connection refused" in again.getMessage()
    clock.now += 1
    assert not keep.filter(_refused(9092, "127.0.0.1:9092/bootstrap")), "a new window"


def test_it_remembers_a_bounded_number_of_problems() -> None:
    keep = RepeatFilter(window_s=60, max_problems=2, clock=Clock())
    lines = [_refused(port, f"127.0.0.1:{port}/bootstrap") for port in (1, 2, 3)]
    assert all(keep.filter(r) for r in lines)
    assert keep.filter(_refused(1, "127.0.0.1:1/bootstrap")), "the oldest was forgotten"
    assert not keep.filter(_refused(3, "127.0.0.1:3/bootstrap"))


def test_the_key_keeps_facility_broker_address_and_text_only() -> None:
    key = problem_key(_line("phoenix#producer-7", "127.0.0.1:9092/bootstrap",
                            "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: "
                            "Connection refused (after 3ms in state CONNECT, 4 identical "
                            "error(s) suppressed)"))
    assert key == ("FAIL 127.0.0.1:9092: Connect to ipv4#127.0.0.1:9092 failed: "
                   "Connection refused")


def test_every_client_logs_through_the_filtered_logger() -> None:
    logger = librdkafka_logger()
    assert librdkafka_logger() is logger is kafka.LIBRDKAFKA_LOG
    assert [type(f) for f in logger.filters].count(RepeatFilter) == 1
    assert logger.name == "phoenix_resources.librdkafka"
