"""Publishing commands: validated locally, keyed by ``resource_id``, delivery confirmed.

Guarantees of :class:`CommandPublisher`:

* a command the worker would dead-letter (a value PostgreSQL cannot store, too large) or
  reject for its shape alone raises :class:`CommandInvalid` with that code before anything
  is sent — the one validator every entry and the worker share (``wire/validation.py``);
  rules that need the stored state are the worker's: a ``rejected`` outcome;
* :meth:`~CommandPublisher.publish` (and ``create``/``update``/``delete``) return only after
  the broker acknowledged the record (idempotent producer, ``acks=all``); otherwise they raise
  :class:`DeliveryFailed` — the broker refused it, it was not written — or its subclass
  :class:`DeliveryUncertain` — no acknowledgement: it may have been written. A retry after
  either must reuse the ``command_id`` (a create without a resource id derives it from the
  command id, so the retry is the same command): the worker applies a command id once,
  however often it arrives;
* :meth:`~CommandPublisher.send_many` fires every command, then waits once for all delivery
  reports, and reports per command which failed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from uuid import UUID

from confluent_kafka import KafkaError, KafkaException, Message

from phoenix_resources import kafka_options
from phoenix_resources.adapters import codecs, kafka
from phoenix_resources.adapters.kafka_reach import reach
from phoenix_resources.adapters.produce_errors import never_written
from phoenix_resources.client.commands import (
    as_uuid,
    create_command,
    delete_command,
    encode_checked,
    new_traceparent,
    update_command,
)
from phoenix_resources.client.outcomes import Outcome, OutcomeWatcher
from phoenix_resources.client.settings import AnySettings, ClientSettings, client_settings
from phoenix_resources.domain.commands import (
    AnyCommand,
)
from phoenix_resources.domain.model import Status
from phoenix_resources.errors import (
    ClientClosed,
    DeliveryFailed,
    DeliveryUncertain,
    PhoenixError,
)
from phoenix_resources.wire import validation

TOO_LARGE = validation.TOO_LARGE
"""Code of :class:`CommandInvalid` for a command over the worker's size limit."""

_REMEMBERED = 10_000  # publish times kept for wait_for_outcome (bounded memory)

PUBLISHER_DEFAULTS: dict[str, Any] = {"delivery.timeout.ms": 30_000,
                                      "client.id": "phoenix-resources-client"}
"""The publisher's own producer defaults: any option the user sets in the settings' maps
(``PHOENIX_KAFKA_PRODUCER_OPTIONS`` / ``PHOENIX_KAFKA_OPTIONS``) wins over them."""



def producer_options_for(settings: ClientSettings, delivery_timeout_s: float | None,
                         producer_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The publisher's overrides of the producer configuration, in the documented order
    (docs/configuration.md): :data:`PUBLISHER_DEFAULTS` only where the settings' option maps
    leave a key unset, then ``delivery_timeout_s`` when given, then ``producer_options``
    (the caller's explicit choices, e.g. the CLI's ``--connect-timeout``)."""
    defaults = kafka_options.unset_by(settings.kafka_config("producer"), PUBLISHER_DEFAULTS)
    explicit = ({} if delivery_timeout_s is None
                else {"delivery.timeout.ms": max(1, round(delivery_timeout_s * 1000))})
    return kafka_options.layered(defaults, explicit, producer_options or {})


def delivery_timeout(config: Mapping[str, Any]) -> float:
    """Seconds a record of a producer built with ``config`` may take to be acknowledged:
    its ``delivery.timeout.ms`` (or the alias), librdkafka's 300 s when unset."""
    return kafka_options.delivery_timeout_s(config)


class Sent(UUID):
    """What ``create``/``update``/``delete``/``publish`` return: the **command id** (it *is*
    that UUID: compare it, print it, pass it to ``wait_for_outcome``), plus
    :attr:`resource_id`, which matters when ``create`` generated the resource id."""

    __slots__ = ("resource_id",)
    resource_id: UUID

    def __init__(self, command_id: UUID, resource_id: UUID) -> None:
        super().__init__(int=command_id.int)
        object.__setattr__(self, "resource_id", resource_id)  # UUID forbids setattr

    @property
    def command_id(self) -> UUID:
        return UUID(int=self.int)

    def __repr__(self) -> str:
        return f"Sent(command_id={UUID(int=self.int)}, resource_id={self.resource_id})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Sent, (UUID(int=self.int), self.resource_id))


@dataclass(frozen=True, slots=True)
class Failure:
    """One command of a bulk send that was not delivered (or not even sent)."""

    index: int
    """Position of the command in the iterable given to ``send_many``."""
    command_id: UUID | None
    error: str
    unknown: bool = False
    """May have been written (no acknowledgement): resend with the same ``command_id``."""


@dataclass(frozen=True, slots=True)
class BulkResult:
    sent: tuple[Sent, ...]
    failed: tuple[Failure, ...]
    seconds: float

    @property
    def rate(self) -> float:
        """Delivered commands per second."""
        return len(self.sent) / self.seconds if self.seconds > 0 else float(len(self.sent))


DeliveryCallback = Callable[[Sent, "DeliveryFailed | None"], None]

def delivery_error(sent: Sent, topic: str, err: KafkaError) -> DeliveryFailed:
    """A failed delivery report: :class:`DeliveryFailed` when the record was not written,
    :class:`DeliveryUncertain` when it may have been (``produce_errors.never_written``)."""
    text = f"command {sent} not delivered to {topic}: {err.str()} ({err.name()})"
    if never_written(err):
        return DeliveryFailed(f"{text}; refused, not written")
    return DeliveryUncertain(f"{text}; it may have been written: retry with the same "
                             "command_id")


class CommandPublisher:
    """Publishes commands to ``settings.commands_topic``. Thread-safe; use as a context
    manager or call :meth:`close` (which waits for records still in flight).

    ``settings``: :class:`~phoenix_resources.client.settings.ClientSettings`, or the
    server's settings (their shared fields are read)."""

    def __init__(self, settings: AnySettings, *,
                 wire_format: Literal["avro", "json"] | None = None,
                 delivery_timeout_s: float | None = None,
                 api_url: str | None = None, api_token: str | None = None,
                 producer_options: Mapping[str, Any] | None = None) -> None:
        """``delivery_timeout_s`` bounds each record's delivery (librdkafka retries within
        it); unset, it is the ``delivery.timeout.ms`` of the settings' producer options, else
        30 s. ``producer_options`` win over the settings' options (:func:`producer_options_for`).
        ``api_url`` (default: the settings' ``api_url``) makes :meth:`wait_for_outcome`
        ask the HTTP API instead of Kafka."""
        self._settings = settings = client_settings(settings)
        self._format = wire_format or settings.wire_format
        self._codec = codecs.command_codec(settings)
        options = producer_options_for(settings, delivery_timeout_s, producer_options)
        self._timeout = delivery_timeout(kafka.producer_config(settings, **options))
        self._producer = kafka.new_producer(settings, **options)
        self._watcher = OutcomeWatcher(settings, api_url=api_url, api_token=api_token)
        self._sent_at: OrderedDict[UUID, tuple[UUID, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    # --- one command, delivery confirmed ---------------------------------------------

    def create(self, name: str, *, resource_id: UUID | str | None = None,
               config: Mapping[str, str] | None = None, status: Status | str | None = None,
               command_id: UUID | str | None = None, correlation_id: str | None = None,
               issued_by: str | None = None, expected_version: int | None = None,
               traceparent: str | None = None) -> Sent:
        """Create a resource; a new ``resource_id`` is generated when none is given (read it
        from the result's ``resource_id``). Returns once the broker has the record."""
        return self.publish(create_command(
            name, resource_id=resource_id, config=config, status=status, command_id=command_id,
            correlation_id=correlation_id, issued_by=issued_by,
            expected_version=expected_version), traceparent=traceparent)

    def update(self, resource_id: UUID | str, *, name: str | None = None,
               config: Mapping[str, str] | None = None, status: Status | str | None = None,
               command_id: UUID | str | None = None, correlation_id: str | None = None,
               issued_by: str | None = None, expected_version: int | None = None,
               traceparent: str | None = None) -> Sent:
        """Change the given fields (``None`` = unchanged; ``config`` replaces the whole map)."""
        return self.publish(update_command(
            resource_id, name=name, config=config, status=status, command_id=command_id,
            correlation_id=correlation_id, issued_by=issued_by,
            expected_version=expected_version), traceparent=traceparent)

    def delete(self, resource_id: UUID | str, *, command_id: UUID | str | None = None,
               correlation_id: str | None = None, issued_by: str | None = None,
               expected_version: int | None = None, traceparent: str | None = None) -> Sent:
        """Delete a resource (it becomes a tombstone: its id can never be reused)."""
        return self.publish(delete_command(
            resource_id, command_id=command_id, correlation_id=correlation_id,
            issued_by=issued_by, expected_version=expected_version), traceparent=traceparent)

    # --- sending ------------------------------------------------------------------------

    def publish(self, command: AnyCommand, *, traceparent: str | None = None) -> Sent:
        """Validate, send and wait for the broker's acknowledgement.

        Raises :class:`CommandInvalid` (nothing sent) or :class:`DeliveryFailed` (the record
        may or may not have been written: retry with the same command, it is idempotent)."""
        result: list[DeliveryFailed | None] = []
        sent = self.submit(command, lambda _s, err: result.append(err), traceparent=traceparent)
        deadline = time.monotonic() + self._timeout + 5.0
        # Callbacks run in whichever thread polls; this loop also sees one served elsewhere.
        while not result:
            if time.monotonic() > deadline:
                raise DeliveryUncertain(f"no delivery report for command {sent} within "
                                        f"{self._timeout:g}s; it may have been written: "
                                        "retry with the same command_id")
            self._producer.poll(0.05)
        if result[0] is not None:
            raise result[0]
        return sent

    def submit(self, command: AnyCommand, on_delivery: DeliveryCallback | None = None, *,
               traceparent: str | None = None) -> Sent:
        """Validate and enqueue without waiting; ``on_delivery(sent, error_or_None)`` runs
        later, from :meth:`poll` / :meth:`flush` (or any thread polling this publisher).
        Without ``traceparent`` a new trace is started (header ``traceparent``).

        Raises :class:`CommandInvalid`, or :class:`DeliveryFailed` when the record cannot
        even be enqueued (e.g. larger than the broker accepts)."""
        self._check_open()
        # The one validator, then the worker's size limit: nothing is sent that the worker
        # would dead-letter.
        value, content_type = encode_checked(self._codec, command, self._format,
                                             self._settings.max_command_bytes)
        headers: list[tuple[str, str | bytes | None]] = [
            ("content-type", content_type.encode())]
        if command.correlation_id:
            headers.append(("correlation_id", command.correlation_id.encode()))
        # Every command starts (or continues) a trace: the worker and relay carry it to the
        # event, so a subscriber can join the publisher's trace.
        headers.append(("traceparent", (traceparent or new_traceparent(
            self._settings.trace_sample_ratio)).encode()))
        sent = Sent(command.command_id, command.resource_id)

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if on_delivery is not None:
                on_delivery(sent, None if err is None else delivery_error(
                    sent, self._settings.commands_topic, err))

        self._remember(sent)
        self._produce(str(command.resource_id).encode(), value, headers, delivered)
        return sent

    def _produce(self, key: bytes, value: bytes,
                 headers: list[tuple[str, str | bytes | None]],
                 callback: Callable[[KafkaError | None, Message], None]) -> None:
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                self._producer.produce(self._settings.commands_topic, value=value, key=key,
                                       headers=headers, on_delivery=callback)
                return
            except BufferError as e:  # local queue full: serve callbacks, then retry
                if time.monotonic() > deadline:
                    raise DeliveryFailed(f"the producer queue stayed full for "
                                         f"{self._timeout:g}s") from e
                self._producer.poll(0.05)
            except KafkaException as e:
                raise DeliveryFailed(f"cannot enqueue a command: {e}") from e

    @property
    def delivery_timeout_s(self) -> float:
        """How long a record may take to be acknowledged, as configured (the argument, else
        the settings' ``delivery.timeout.ms``, else 30 s)."""
        return self._timeout

    def check_connection(self, timeout: float = 10.0) -> None:
        """Fail fast: :class:`BrokerUnreachable` (naming the bootstrap servers) unless a
        broker answers a metadata request within ``timeout`` seconds."""
        reach(self._producer, self._settings.kafka_bootstrap_servers, timeout,
              self._settings.commands_topic)

    def check_topic(self, timeout: float = 10.0) -> None:
        """Fail fast, instead of one delivery error per command much later:
        :class:`BrokerUnreachable` as :meth:`check_connection` when no broker answers within
        ``timeout``, :class:`DeliveryFailed` when the commands topic does not exist."""
        topic = self._settings.commands_topic
        meta = reach(self._producer, self._settings.kafka_bootstrap_servers, timeout,
                     topic).topics.get(topic)
        if meta is None or meta.error is not None:
            reason = "missing" if meta is None else meta.error.str()
            raise DeliveryFailed(f"the commands topic {topic!r} is not available: {reason}")

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks of :meth:`submit`ted commands."""
        self._producer.poll(timeout)

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every enqueued record has its delivery report (all callbacks have run);
        returns how many are still in flight after ``timeout`` (0 = all done)."""
        remaining: int = self._producer.flush(self._timeout + 5.0 if timeout is None
                                              else timeout)
        return remaining

    def send_many(self, commands: Iterable[AnyCommand], *,
                  traceparent: str | None = None) -> BulkResult:
        """Send all ``commands`` without waiting between them, then wait once for every
        delivery report. Invalid commands are reported in ``failed`` (not raised) and the
        rest are still sent; order per resource is kept (one key, one partition, in order)."""
        started = time.monotonic()
        sent: dict[int, Sent] = {}
        failed: list[Failure] = []

        def on_delivery_for(index: int) -> DeliveryCallback:
            def done(s: Sent, err: DeliveryFailed | None) -> None:
                if err is None:
                    sent[index] = s
                else:
                    failed.append(Failure(index, s.command_id, str(err),
                                          isinstance(err, DeliveryUncertain)))
            return done

        submitted: dict[int, UUID] = {}
        for index, command in enumerate(commands):
            try:
                self.submit(command, on_delivery_for(index), traceparent=traceparent)
                submitted[index] = command.command_id
            except PhoenixError as e:
                failed.append(Failure(index, command.command_id, str(e)))
        if self.flush() > 0:
            reported = set(sent) | {f.index for f in failed}
            failed += [Failure(i, cid, "no delivery report in time", unknown=True)
                       for i, cid in submitted.items() if i not in reported]
        return BulkResult(tuple(sent[i] for i in sorted(sent)),
                          tuple(sorted(failed, key=lambda f: f.index)),
                          time.monotonic() - started)

    # --- outcomes -----------------------------------------------------------------------

    def wait_for_outcome(self, command_id: UUID | str, timeout: float = 30.0) -> Outcome:
        """Block until ``command_id``'s outcome (applied with the resulting version, or
        rejected with code and message) is known; :class:`OutcomeTimeout` otherwise.

        Reads the events/rejections topics from just before the command was published by
        this publisher (or the last five minutes for other commands), or polls the HTTP API
        when the publisher was built with ``api_url``."""
        cid = as_uuid(command_id, "command_id")
        with self._lock:
            known = self._sent_at.get(cid)
        resource_id, since = known if known else (None, None)
        return self._watcher.wait(cid, timeout, resource_id=resource_id, since=since)

    def _remember(self, sent: Sent) -> None:
        with self._lock:
            self._sent_at[sent.command_id] = (sent.resource_id, time.time())
            while len(self._sent_at) > _REMEMBERED:
                self._sent_at.popitem(last=False)

    # --- lifecycle ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed("the publisher is closed")

    def close(self, timeout: float | None = None) -> None:
        """Wait for records in flight (up to ``timeout``, default the delivery timeout),
        then stop. Records still undelivered then are purged: their callbacks report
        :class:`DeliveryFailed`."""
        if self._closed:
            return
        self._closed = True
        if self.flush(timeout) > 0:
            self._producer.purge()
            self._producer.flush(0)  # serves the purged records' delivery callbacks
        close = getattr(self._producer, "close", None)  # confluent-kafka >= 2.13 only
        if close is not None:
            close()  # stops librdkafka's threads now rather than at garbage collection

    def __enter__(self) -> CommandPublisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
