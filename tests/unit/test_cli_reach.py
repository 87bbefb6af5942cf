"""The CLI's connection checks without a service: every command that talks to one takes
``--connect-timeout``; exit 6 is its own code; a bulk send notices a lost broker from
librdkafka's "all brokers down" or from deliveries that stopped, and then asks a broker."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError
from typer.testing import CliRunner

from phoenix_resources.entrypoints.cli import app, common
from phoenix_resources.entrypoints.cli.bulk import BrokerLink, line_ranges
from phoenix_resources.errors import BrokerUnreachable

pytestmark = pytest.mark.unit

COMMANDS = [["send"], ["send", "create"], ["send", "update"], ["send", "delete"], ["watch"],
            ["get"], ["list"], ["dlq", "list"], ["dlq", "show"], ["dlq", "replay"],
            ["parked", "list"], ["parked", "show"], ["parked", "replay"],
            ["parked", "discard"], ["outbox", "list"], ["outbox", "retry"],
            ["outbox", "discard"]]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_every_command_that_needs_a_service_takes_a_connect_timeout(args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--connect-timeout" in result.output


def test_cannot_reach_has_an_exit_code_of_its_own() -> None:
    codes = {name: value for name, value in vars(common).items()
             if name.startswith("EXIT_") and name not in ("EXIT_UNREACHABLE", "EXIT_NOT_FOUND")}
    assert common.EXIT_UNREACHABLE == 6
    assert common.EXIT_UNREACHABLE not in codes.values()
    assert codes["EXIT_ERROR"] == 1
    assert codes["EXIT_PARKED"] == 5


def test_a_connect_timeout_below_librdkafkas_floor_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["watch", "--connect-timeout", "0.5"])
    assert result.exit_code == 2


def test_line_ranges() -> None:
    assert line_ranges([3, 4, 5, 7, 9, 10]) == "3-5, 7, 9-10"
    assert line_ranges(list(range(1, 40, 2)), most=3) == "1, 3, 5, … (17 more ranges)"


class Publisher:
    """The part of ``CommandPublisher`` the link uses; brokers up or gone."""

    def __init__(self, up: bool) -> None:
        self.up = up
        self.checks = 0

    def check_connection(self, timeout: float) -> None:
        self.checks += 1
        if not self.up:
            raise BrokerUnreachable(f"cannot reach Kafka at k:9092 within {timeout:g}s")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _link() -> tuple[BrokerLink, Clock]:
    clock = Clock()
    return BrokerLink(3.0, clock=clock), clock


def test_all_brokers_down_is_checked_once_and_raises_only_when_none_answers() -> None:
    link, _ = _link()
    up, gone = Publisher(up=True), Publisher(up=False)
    link.check(up)  # type: ignore[arg-type]
    assert up.checks == 0, "nothing suspicious: no check"
    link.on_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    link.check(up)  # type: ignore[arg-type]
    link.check(up)  # type: ignore[arg-type]
    assert up.checks == 1, "a broker answered: back to normal"
    link.on_client_error(KafkaError(KafkaError._TRANSPORT))
    link.check(gone)  # type: ignore[arg-type]
    assert gone.checks == 0, "one connection lost is librdkafka's to retry"
    link.on_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    with pytest.raises(BrokerUnreachable, match="k:9092"):
        link.check(gone)  # type: ignore[arg-type]


def test_deliveries_that_stop_for_the_timeout_are_checked() -> None:
    link, clock = _link()
    gone = Publisher(up=False)
    clock.now = 100.0
    link.sent(1)
    link.sent(2)
    clock.now += 2.0
    assert link.settled(1, delivered=True)
    clock.now += 2.5
    link.check(gone)  # type: ignore[arg-type]
    assert gone.checks == 0, "a report 2.5 s ago: still moving"
    clock.now += 1.0
    with pytest.raises(BrokerUnreachable):
        link.check(gone)  # type: ignore[arg-type]
    assert link.pending == {2}


def test_nothing_in_flight_is_never_stalled() -> None:
    link, clock = _link()
    gone = Publisher(up=False)
    link.sent(1)
    link.settled(1, delivered=True)
    clock.now += 60
    link.check(gone)  # type: ignore[arg-type]
    assert gone.checks == 0


def test_once_lost_undelivered_reports_stay_unconfirmed_and_unprinted() -> None:
    link, _ = _link()
    for n in (1, 2, 3):
        link.sent(n)
    summary: Any = type("S", (), {"lines": 3, "sent": 0, "failed": 0, "unconfirmed": 0,
                                   "unreachable": None})()

    class Closing(Publisher):
        def close(self, timeout: float | None = None) -> None:
            assert link.settled(1, delivered=True), "a late acknowledgement still counts"
            assert not link.settled(2, delivered=False), "dropped: not reported as failed"

    link.stop(Closing(up=False), BrokerUnreachable("cannot reach Kafka at k:9092"),  # type: ignore[arg-type]
              summary)
    assert link.pending == {2, 3}
    assert (summary.unconfirmed, summary.failed) == (2, 2)
    assert "lines 2-3" in summary.unreachable
    assert summary.unreachable.startswith("cannot reach Kafka at k:9092")
