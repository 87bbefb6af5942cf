"""Waiting for a command's recorded outcome: from the Kafka topics, or from the HTTP API.

Every command ends in exactly one outcome, ``applied`` or ``rejected`` (guarantee 3). The
worker announces an applied change on the events topic and a refusal on the rejections
topic, both keyed by ``resource_id`` and carrying the ``command_id``; the HTTP API serves the
recorded outcome at ``GET /api/v1/commands/{command_id}``.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import httpx
from confluent_kafka import Consumer, KafkaException, TopicPartition

from phoenix_resources.adapters import codecs, kafka
from phoenix_resources.client.settings import AnySettings, client_settings
from phoenix_resources.errors import (
    BrokerUnavailable,
    DecodeError,
    OutcomeTimeout,
    UnexpectedAnswer,
)

log = logging.getLogger(__name__)

DEFAULT_LOOKBACK_S = 300.0
"""How far back the Kafka watcher looks for a command it did not publish itself."""
_SKEW_S = 30.0
"""Margin for clock skew between this host and the relay that stamped the event."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The recorded outcome of one command; field names match the HTTP API's."""

    command_id: UUID
    outcome: Literal["applied", "rejected", "parked"]
    resource_id: UUID | None = None
    resulting_version: int | None = None
    """The resource's version after an applied command (``None`` when not known)."""
    error_code: str | None = None
    """The rule's stable code (``CMD-00x``) of a rejected command."""
    error_message: str | None = None

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"

    @property
    def rejected(self) -> bool:
        return self.outcome == "rejected"

    @property
    def parked(self) -> bool:
        """Not applied yet: it waits in the parking lot (``error_code`` says why) until an
        operator replays or discards it. Only the HTTP API reports this state."""
        return self.outcome == "parked"

    def to_json(self) -> dict[str, Any]:
        return {"command_id": str(self.command_id), "outcome": self.outcome,
                "resource_id": None if self.resource_id is None else str(self.resource_id),
                "resulting_version": self.resulting_version, "error_code": self.error_code,
                "error_message": self.error_message}


def outcome_from_api(body: dict[str, Any]) -> Outcome:
    """Build an :class:`Outcome` from the body of ``GET /api/v1/commands/{id}``."""
    value = body.get("outcome")
    if value not in ("applied", "rejected", "parked"):
        raise UnexpectedAnswer(f"unexpected outcome from the API: {str(value)[:40]!r}")
    rid = body.get("resource_id")
    version = body.get("resulting_version")
    return Outcome(command_id=UUID(str(body["command_id"])), outcome=value,
                   resource_id=None if rid is None else UUID(str(rid)),
                   resulting_version=version if isinstance(version, int) else None,
                   error_code=body.get("error_code"), error_message=body.get("error_message"))


class OutcomeWatcher:
    """Finds the outcome of a command by its id. Stateless between calls; thread-safe.

    With ``api_url`` it polls the HTTP API (exact: it also knows updates that changed
    nothing, which publish no event). Without, it reads the events and rejections topics
    from a point in time with a throw-away, never-committing consumer.
    """

    def __init__(self, settings: AnySettings, *, api_url: str | None = None,
                 api_token: str | None = None, http_client: httpx.Client | None = None) -> None:
        """``api_url`` / ``api_token`` default to the settings' (unset in the server's)."""
        self._settings = settings = client_settings(settings)
        api_url = settings.api_url if api_url is None else api_url
        self._api_url = api_url.rstrip("/") if api_url else None
        self._api_token = settings.api_token_value() if api_token is None else api_token
        self._http_client = http_client
        self._codec = codecs.event_codec(settings)

    def wait(self, command_id: UUID, timeout: float = 30.0, *,
             resource_id: UUID | None = None, since: float | None = None) -> Outcome:
        """Block until the outcome of ``command_id`` is known; :class:`OutcomeTimeout` if not
        within ``timeout`` seconds.

        ``since`` (epoch seconds) is when the command was published; the Kafka path reads
        from a little before it (default: ``DEFAULT_LOOKBACK_S`` ago). ``resource_id`` lets
        it skip other resources' records without decoding them.
        """
        if self._api_url is not None:
            return self._wait_http(command_id, timeout)
        start = (time.time() - DEFAULT_LOOKBACK_S) if since is None else since - _SKEW_S
        return self._wait_kafka(command_id, timeout, resource_id, int(start * 1000))

    # --- HTTP ----------------------------------------------------------------------------

    def _wait_http(self, command_id: UUID, timeout: float) -> Outcome:
        assert self._api_url is not None
        url = f"{self._api_url}/api/v1/commands/{command_id}"
        headers = {"accept": "application/json"}
        if self._api_token:
            headers["authorization"] = f"Bearer {self._api_token}"
        client = self._http_client or httpx.Client(timeout=5.0)
        deadline = time.monotonic() + timeout
        delay, last = 0.05, "no answer yet"
        try:
            while True:
                try:
                    response = client.get(url, headers=headers)
                except httpx.HTTPError as e:  # API restarting: keep trying until the deadline
                    last = f"{type(e).__name__}: {e}"
                else:
                    body = response.json() if response.status_code == 200 else None
                    if isinstance(body, dict) and body.get("outcome") != "pending":
                        return outcome_from_api(body)
                    if response.status_code not in (200, 404):  # 404: not processed yet
                        raise UnexpectedAnswer(f"GET {url} answered {response.status_code}: "
                                           f"{response.text[:200]}")
                    last = "not processed yet"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise OutcomeTimeout(f"no outcome for command {command_id} within "
                                         f"{timeout:g}s ({last})")
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.5)
        finally:
            if self._http_client is None:
                client.close()

    # --- Kafka ---------------------------------------------------------------------------

    def _wait_kafka(self, command_id: UUID, timeout: float, resource_id: UUID | None,
                    since_ms: int) -> Outcome:
        s = self._settings
        # A private group that never commits: this consumer only assigns partitions.
        consumer = kafka.new_consumer(s, f"phoenix-outcome-{uuid.uuid4()}",
                                      **{"enable.auto.commit": False})
        deadline = time.monotonic() + timeout
        key = None if resource_id is None else str(resource_id).encode()
        try:
            consumer.assign(_positions(consumer, [s.events_topic, s.rejections_topic],
                                       since_ms, timeout=max(timeout, 1.0)))
            while (remaining := deadline - time.monotonic()) > 0:
                for msg in consumer.consume(500, timeout=min(remaining, 0.2)):
                    if msg.error() is not None or (key is not None and msg.key() != key):
                        continue
                    found = self._match(msg.topic() or "", msg.value(), command_id)
                    if found is not None:
                        return found
        finally:
            consumer.close()
        raise OutcomeTimeout(
            f"no outcome for command {command_id} within {timeout:g}s on "
            f"{s.events_topic} / {s.rejections_topic} (an update that changes nothing "
            "publishes no event: ask the HTTP API for its outcome)")

    def _match(self, topic: str, value: bytes | None, command_id: UUID) -> Outcome | None:
        if value is None:
            return None
        try:
            if topic == self._settings.events_topic:
                event = self._codec.decode_event(value)
                if event.command_id == command_id:
                    return Outcome(command_id, "applied", resource_id=event.resource_id,
                                   resulting_version=event.version)
            else:
                rejection = self._codec.decode_rejection(value)
                if rejection.command_id == command_id:
                    return Outcome(command_id, "rejected", resource_id=rejection.resource_id,
                                   error_code=rejection.code, error_message=rejection.message)
        except DecodeError as e:  # someone else's record; not ours to judge
            log.debug("skipping an undecodable record on %s: %s", topic, e)
        return None


def _positions(consumer: Consumer, topics: list[str], since_ms: int,
               timeout: float) -> list[TopicPartition]:
    """The first offset at or after ``since_ms`` in every partition of ``topics``.

    Where no record is that recent, the high watermark read *before* the time lookup: a
    record produced in between is still read (assigning the logical end could skip it).
    """
    try:
        wanted: list[TopicPartition] = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
            if meta.error is not None:
                raise BrokerUnavailable(f"topic {topic}: {meta.error}")
            wanted += [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        highs = [consumer.get_watermark_offsets(tp, timeout=timeout)[1] for tp in wanted]
        found = consumer.offsets_for_times(
            [TopicPartition(tp.topic, tp.partition, since_ms) for tp in wanted], timeout=timeout)
    except KafkaException as e:
        raise BrokerUnavailable(f"cannot position the outcome reader: {e}") from e
    return [TopicPartition(f.topic, f.partition, f.offset if f.offset >= 0 else high)
            for f, high in zip(found, highs, strict=True)]
