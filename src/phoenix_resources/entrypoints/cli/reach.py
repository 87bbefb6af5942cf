"""Reaching what a command talks to — the Kafka brokers, the HTTP API, PostgreSQL — within
``--connect-timeout``, and the one line printed (exit 6, :data:`.common.EXIT_UNREACHABLE`)
when it cannot be reached.

Guarantees:

* every client command checks its service before it does any work: a metadata request to the
  brokers, a request to the API, a connection to PostgreSQL, each bounded by the timeout;
* a failure later on (a delivery, a read, a wait for an outcome) is blamed on the connection
  only when a fresh check fails too; otherwise it is reported as the error it is (exit 1);
* the line names what was tried: the bootstrap list, the API's URL, the database URL
  (without its password), and the timeout.

What the timeout governs: for Kafka clients the settings of
``kafka_options.connection_timeout_options`` (``socket.connection.setup.timeout.ms``, and a
single ``send``'s ``delivery.timeout.ms``) plus the check's own metadata request; for the API
the connect, write and pool timeouts of each request (reading an answer may take
``max(timeout, 10)`` s); for PostgreSQL libpq's ``connect_timeout`` (whole seconds, at least
2) and, for ``parked``, the wait for a pooled connection. Given on the command line it wins
over the ``PHOENIX_KAFKA_*_OPTIONS`` maps; left at its default, what those maps set wins.

Importing this module is cheap: the Kafka, HTTP and PostgreSQL clients are imported by the
functions that use them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from phoenix_resources import kafka_options
from phoenix_resources.entrypoints.cli.common import EXIT_ERROR, EXIT_UNREACHABLE, fail
from phoenix_resources.errors import BrokerUnreachable, DatabaseUnavailable, PhoenixError
from phoenix_resources.kafka_options import ClientKind, KafkaValue

if TYPE_CHECKING:
    import httpx

    from phoenix_resources.adapters.kafka import KafkaSettings
    from phoenix_resources.config import Settings

DEFAULT_CONNECT_TIMEOUT_S = 5.0

ConnectTimeoutOpt = Annotated[float | None, typer.Option(
    "--connect-timeout", min=1.0, show_default=False, metavar="SECONDS",
    help=f"Give up (exit 6) when the broker, API or database does not answer within this "
         f"long (default {DEFAULT_CONNECT_TIMEOUT_S:g}).")]

_HTTP_READ_S = 10.0  # an answer may take the API's own request timeout (5 s) and then some


@dataclass(frozen=True)
class Reach:
    """The connection timeout of one command, and whether the user gave it (then it wins
    over the option maps) or it is the default (then the option maps win)."""

    seconds: float = DEFAULT_CONNECT_TIMEOUT_S
    explicit: bool = False

    @classmethod
    def of(cls, flag: float | None) -> Reach:
        """From ``--connect-timeout`` (``None``: not given)."""
        return cls() if flag is None else cls(flag, explicit=True)

    def kafka_options(self, kind: ClientKind, settings: KafkaSettings, *,
                      delivery: bool = False) -> dict[str, KafkaValue]:
        """The librdkafka settings the timeout governs for a ``kind`` client (with
        ``delivery``, a producer's delivery timeout too), to pass as the client's
        overrides. At the default, those the settings' option maps set are left out."""
        governed = kafka_options.connection_timeout_options(kind, self.seconds,
                                                            delivery=delivery)
        if self.explicit:
            return governed
        return kafka_options.unset_by(settings.kafka_config(kind), governed)

    def http_timeout(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(self.seconds, read=max(self.seconds, _HTTP_READ_S))

    @property
    def pg_connect_timeout(self) -> int:
        """libpq's ``connect_timeout``: whole seconds, and libpq takes less than 2 as 2."""
        return max(2, math.ceil(self.seconds))


# --- Kafka -----------------------------------------------------------------------------------


def check_kafka(settings: Settings, reach: Reach, topic: str) -> None:
    """Return when a broker answers a metadata request for ``topic`` within the timeout;
    exit 6 naming the bootstrap servers otherwise."""
    from confluent_kafka.admin import AdminClient

    from phoenix_resources.adapters import kafka
    from phoenix_resources.adapters.kafka_reach import reach as ask

    admin = AdminClient(kafka.admin_config(settings, **reach.kafka_options("admin", settings)))
    try:
        ask(admin, settings.kafka_bootstrap_servers, reach.seconds, topic)
    except BrokerUnreachable as e:
        raise fail(str(e), EXIT_UNREACHABLE) from e


def kafka_failed(error: PhoenixError, settings: Settings, reach: Reach, topic: str, *,
                 note: str = "") -> NoReturn:
    """Exit for an error met after the check: 6 when the brokers cannot be reached now
    (or ``error`` says so), else 1 with ``error`` (and ``note``)."""
    if not isinstance(error, BrokerUnreachable):
        check_kafka(settings, reach, topic)  # gone: exit 6, one line naming the brokers
        raise fail(f"{error}{note}", EXIT_ERROR) from error
    raise fail(f"{error}{note}", EXIT_UNREACHABLE) from error


# --- the HTTP API ----------------------------------------------------------------------------


def api_unreachable(url: str, reach: Reach, error: Exception) -> NoReturn:
    """Exit 6: one line naming the API's URL and why it did not answer."""
    reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    raise fail(f"cannot reach the API at {url} within {reach.seconds:g}s: {reason}",
               EXIT_UNREACHABLE) from error


def is_unreachable(error: Exception) -> bool:
    """An httpx error that means nobody answered: no connection, or no answer in time."""
    import httpx

    return isinstance(error, httpx.NetworkError | httpx.TimeoutException)


def check_api(url: str, reach: Reach) -> None:
    """Return when the API at ``url`` answers anything (``/healthz``) within the timeout;
    exit 6 otherwise."""
    import httpx

    try:
        with httpx.Client(timeout=reach.http_timeout()) as client:
            client.get(f"{url.rstrip('/')}/healthz")
    except httpx.HTTPError as e:
        if is_unreachable(e):
            api_unreachable(url, reach, e)
        raise fail(f"the API at {url} answers, but not as an HTTP API: {e}") from e


# --- PostgreSQL ------------------------------------------------------------------------------


def database_unreachable(url: str, reach: Reach, error: Exception) -> NoReturn:
    """Exit 6: one line naming the database (password hidden) and libpq's reason."""
    from phoenix_resources.config import redact

    lines = str(error).strip().splitlines() or [type(error).__name__]
    raise fail(f"cannot reach PostgreSQL at {redact(url)} within {reach.seconds:g}s: "
               f"{lines[0].strip()}", EXIT_UNREACHABLE) from error


def check_database(url: str, reach: Reach, ping: Callable[[str, float], float]) -> None:
    """Return when PostgreSQL at ``url`` accepts a connection and answers ``SELECT 1``
    within the timeout (``ping``: ``adapters.postgres.ping.ping``, passed in by the server
    commands so that this module needs no server package); exit 6 otherwise."""
    try:
        ping(url, reach.pg_connect_timeout)
    except DatabaseUnavailable as e:
        database_unreachable(url, reach, e)
