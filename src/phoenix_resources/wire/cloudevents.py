"""CloudEvents binary-mode Kafka headers (CloudEvents 1.0, Kafka protocol binding).

In binary mode the record's value is the event's data and every attribute travels in a
header named ``ce_<attribute>``; the record's key is the resource id, which is also the
event's ``subject``. The relay writes, in this order: ``ce_specversion``, ``ce_id``,
``ce_type`` (:data:`TYPE_PREFIX` + the event's type name), ``ce_source``, ``ce_subject``,
``ce_time`` (ISO 8601), ``content-type`` and, when there is one, the W3C ``traceparent``.

Standard library only: the client reads what this module writes without any server
dependency.
"""

from __future__ import annotations

from datetime import datetime

SPEC_VERSION = "1.0"
TYPE_PREFIX = "phoenix.resources.v1."
"""``ce_type`` is this prefix and the event's type name (``ResourceCreated`` …)."""
CONTENT_TYPE = "application/avro"

HeaderList = list[tuple[str, str | bytes | None]]


class CloudEventHeaders:
    """Builds the headers of every event of one source. The headers shared by all events,
    and one ``ce_type`` header per event type, are built once and reused (the relay builds
    headers for every event it publishes)."""

    def __init__(self, source: str, content_type: str = CONTENT_TYPE) -> None:
        self._spec = ("ce_specversion", SPEC_VERSION.encode())
        self._source = ("ce_source", source.encode())
        self._content_type = ("content-type", content_type.encode())
        self._types: dict[str, tuple[str, bytes]] = {}

    def _type(self, event_type: str) -> tuple[str, bytes]:
        found = self._types.get(event_type)
        if found is None:  # a handful of types: built once each
            found = self._types[event_type] = ("ce_type", (TYPE_PREFIX + event_type).encode())
        return found

    def headers(self, *, event_id: str, event_type: str, subject: bytes, time: datetime,
                traceparent: str | None = None) -> HeaderList:
        """The headers of one event; ``subject`` is the record's key (the resource id)."""
        headers: HeaderList = [
            self._spec,
            ("ce_id", event_id.encode()),
            self._type(event_type),
            self._source,
            ("ce_subject", subject),
            ("ce_time", time.isoformat().encode()),
            self._content_type,
        ]
        if traceparent:
            headers.append(("traceparent", traceparent.encode()))
        return headers
