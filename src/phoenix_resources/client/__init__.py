"""Client library: publish commands, wait for their outcome, subscribe to change events.

Nobody using this package has to build keys, Avro payloads, framing or headers by hand::

    from phoenix_resources.client import ClientSettings, CommandPublisher, EventSubscriber

    settings = ClientSettings()   # PHOENIX_* variables, as the server reads them
    with CommandPublisher(settings) as publisher:
        sent = publisher.create(name="db-1", config={"size": "m"})
        outcome = publisher.wait_for_outcome(sent, timeout=30)   # Applied(version=1)

    with EventSubscriber(settings, group_id="billing") as events:
        for delivery in events:
            handle(delivery.event)   # the offset is stored when the next one is requested

The classes also take the server's settings (``phoenix_resources.config.Settings``) and read
the fields both share. See ``docs/client.md`` for the guarantees of each call.
"""

from __future__ import annotations

from phoenix_resources.client.commands import create_command, delete_command, update_command
from phoenix_resources.client.outcomes import Outcome, OutcomeWatcher
from phoenix_resources.client.publisher import (
    BulkResult,
    CommandPublisher,
    Failure,
    Sent,
)
from phoenix_resources.client.settings import ClientSettings
from phoenix_resources.client.subscriber import Delivery, EventSubscriber, OnError

__all__ = [
    "BulkResult",
    "ClientSettings",
    "CommandPublisher",
    "Delivery",
    "EventSubscriber",
    "Failure",
    "OnError",
    "Outcome",
    "OutcomeWatcher",
    "Sent",
    "create_command",
    "delete_command",
    "update_command",
]
