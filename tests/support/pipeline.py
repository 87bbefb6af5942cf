"""Run the real worker and relay (as threads) against the test's broker and database, and
helpers to publish commands and read back what happened."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from confluent_kafka import Message

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import (
    AnyCommand,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.events import CommandRejected, ResourceChanged
from phoenix_resources.domain.model import Status
from phoenix_resources.entrypoints.relay import build_relay
from phoenix_resources.entrypoints.worker import build_worker
from phoenix_resources.observability import Metrics
from phoenix_resources.observability.tracing import Tracing
from tests.support.kafka import read_all


class Pipeline:
    """Worker + relay threads; ``with Pipeline(settings) as p:`` starts and stops them."""

    def __init__(self, settings: Settings, *, worker: bool = True, relay: bool = True,
                 tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.worker, self.pool = build_worker(settings, self.metrics, tracing)
        self.relay = build_relay(settings, self.metrics, tracing)
        self._run_worker = worker
        self._run_relay = relay
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                fn()
            except BaseException as e:
                self.errors.append(e)
                raise
        return body

    def __enter__(self) -> Pipeline:
        self.pool.open(wait=False)
        targets = ([self.worker.run] if self._run_worker else []) + (
            [self.relay.run] if self._run_relay else [])
        for fn in targets:
            t = threading.Thread(target=self._guard(fn), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.relay.stop()
        for t in self._threads:
            t.join(30)
        self.pool.close()
        assert not any(t.is_alive() for t in self._threads), "pipeline did not stop"
        assert not self.errors, self.errors


def now() -> datetime:
    return datetime.now(UTC)


def create(rid: UUID | None = None, name: str = "r", **kw: Any) -> CreateResource:
    return CreateResource(command_id=kw.pop("command_id", uuid.uuid4()),
                          resource_id=rid or uuid.uuid4(), issued_at=now(), name=name,
                          config=kw.pop("config", {}), **kw)


def update(rid: UUID, **kw: Any) -> UpdateResource:
    return UpdateResource(command_id=kw.pop("command_id", uuid.uuid4()), resource_id=rid,
                          issued_at=now(), **kw)


def delete(rid: UUID, **kw: Any) -> DeleteResource:
    return DeleteResource(command_id=kw.pop("command_id", uuid.uuid4()), resource_id=rid,
                          issued_at=now(), **kw)


def publish(settings: Settings, commands: Iterable[AnyCommand], fmt: str = "avro") -> int:
    codec = bootstrap.command_codec(settings)
    producer = bootstrap.producer(settings)
    n = 0
    for c in commands:
        value, content_type = codec.encode(c, fmt)
        producer.produce(settings.commands_topic, key=str(c.resource_id).encode(), value=value,
                         headers=[("content-type", content_type.encode())])
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return n


def publish_raw(settings: Settings, records: Sequence[tuple[bytes | None, bytes | None,
                                                             list[tuple[str, bytes]]]]) -> None:
    producer = bootstrap.producer(settings)
    for key, value, headers in records:
        producer.produce(settings.commands_topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0,
               what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def scalar(url: str, sql: str, *args: Any) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, args).fetchone()
        return row[0] if row else None


def outcomes(url: str) -> dict[UUID, tuple[str, str | None, int]]:
    with psycopg.connect(url) as conn:
        return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
            "SELECT command_id, outcome, error_code, duplicate_deliveries "
            "FROM processed_commands")}


def resources(url: str) -> dict[UUID, dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cols = ["id", "name", "config", "status", "version", "deleted_at", "last_command_id"]
        return {r[0]: dict(zip(cols, r, strict=True)) for r in conn.execute(
            f"SELECT {', '.join(cols)} FROM resources")}


@dataclass(frozen=True)
class Received:
    message: Message
    event: ResourceChanged


def events(settings: Settings, expected: int | None = None, timeout: float = 60,
           idle: float = 1.5) -> list[Received]:
    codec = bootstrap.event_codec(settings)
    msgs = read_all(settings.kafka_bootstrap_servers, settings.events_topic, expected,
                    timeout=timeout, idle=idle)
    return [Received(m, codec.decode_event(m.value() or b"")) for m in msgs]


def rejections(settings: Settings, expected: int | None = None,
               timeout: float = 60) -> list[CommandRejected]:
    codec = bootstrap.event_codec(settings)
    msgs = read_all(settings.kafka_bootstrap_servers, settings.rejections_topic, expected,
                    timeout=timeout, idle=1.0)
    return [codec.decode_rejection(m.value() or b"") for m in msgs]


ACTIVE = Status.ACTIVE
INACTIVE = Status.INACTIVE
