"""Command streams for fault tests, and the pure reference model they are checked against."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.domain.decide import Applied, decide
from phoenix_resources.domain.model import Resource, Status
from tests.support.pipeline import create, publish, update


def stream(resources: int, updates_each: int, seed: int = 7) -> list[AnyCommand]:
    """Creates, then updates interleaved across resources (per-resource order preserved)."""
    rng = random.Random(seed)
    rids = [UUID(int=rng.getrandbits(128)) for _ in range(resources)]
    commands: list[AnyCommand] = [create(rid, f"r{i}") for i, rid in enumerate(rids)]
    statuses = [Status.ACTIVE, Status.INACTIVE]
    for round_ in range(updates_each):
        for rid in rids:
            commands.append(update(rid, name=f"n{round_}", status=statuses[round_ % 2],
                                   config={"round": str(round_)}))
    return commands


def reference(commands: Sequence[AnyCommand]) -> tuple[dict[UUID, Resource], int]:
    """Final states and the number of events, applying each command_id once, in order."""
    state: dict[UUID, Resource] = {}
    seen: set[UUID] = set()
    events = 0
    now = datetime.now(UTC)
    for c in commands:
        if c.command_id in seen:
            continue
        seen.add(c.command_id)
        d = decide(state.get(c.resource_id), c, now)
        if isinstance(d, Applied):
            state[c.resource_id] = d.state
            events += d.event is not None
    return state, events


class BackgroundPublisher:
    """Publishes ``commands`` in chunks at roughly ``rate`` per second from a thread."""

    def __init__(self, settings: Settings, commands: Sequence[AnyCommand],
                 rate: float, chunk: int = 100) -> None:
        self.settings = settings
        self.commands = list(commands)
        self.rate = rate
        self.chunk = chunk
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in range(0, len(self.commands), self.chunk):
            part = self.commands[i:i + self.chunk]
            publish(self.settings, part)
            self.sent += len(part)
            time.sleep(len(part) / self.rate)

    def start(self) -> BackgroundPublisher:
        self._thread.start()
        return self

    def join(self, timeout: float = 120) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher did not finish"


def unique_id() -> UUID:
    return uuid.uuid4()
