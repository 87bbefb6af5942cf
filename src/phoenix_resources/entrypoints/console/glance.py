"""The pipeline at a glance: what each configured process's ``/metrics`` and ``/readyz`` say.

Each look asks every process at once, with a short timeout; a process that does not answer
is *unreachable* (said plainly, never guessed). Rates are the difference of the cumulative
counters between two looks at one process (a restarted process's counters start again: no
rate until its next look), so the first look shows totals only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

TIMEOUT_S = 2.0
OUTCOMES = ("applied", "rejected", "parked", "duplicate", "dead_lettered")


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse(exposition: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition."""
    return [Sample(s.name, s.labels, s.value)
            for family in text_string_to_metric_families(exposition) for s in family.samples]


def _total(samples: Iterable[Sample], name: str, **labels: str) -> float | None:
    values = [s.value for s in samples if s.name == name
              and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(values) if values else None


def _max(samples: Iterable[Sample], name: str) -> float | None:
    values = [s.value for s in samples if s.name == name]
    return max(values) if values else None


@dataclass(frozen=True, slots=True)
class ProcessState:
    """One process as its endpoints answered (or did not)."""

    name: str
    url: str
    reachable: bool
    ready: bool | None = None
    """``None`` when ``/readyz`` did not answer."""
    failing: tuple[str, ...] = ()
    """The readiness checks that did not pass."""
    error: str | None = None
    component: str | None = None
    """``phoenix_build_info{component}``: worker, relay, api or all."""
    outcomes: Mapping[str, float] = field(default_factory=dict)
    published: float | None = None
    lag_seconds: float | None = None
    lag_messages: float | None = None
    relay_active: bool = False
    outbox_waiting: float | None = None
    outbox_parked: float | None = None
    outbox_lag_seconds: float | None = None
    commands_per_s: float | None = None
    events_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class Glance:
    """Every configured process, and the pipeline's figures summed or taken from the
    leading relay."""

    processes: tuple[ProcessState, ...]
    at: float

    @property
    def leader(self) -> ProcessState | None:
        return next((p for p in self.processes if p.relay_active), None)

    def outcome(self, name: str) -> float | None:
        values = [p.outcomes[name] for p in self.processes if name in p.outcomes]
        return sum(values) if values else None

    def _sum(self, values: Iterable[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    @property
    def commands_per_s(self) -> float | None:
        return self._sum(p.commands_per_s for p in self.processes)

    @property
    def events_per_s(self) -> float | None:
        return self._sum(p.events_per_s for p in self.processes)

    @property
    def lag_seconds(self) -> float | None:
        known = [p.lag_seconds for p in self.processes if p.lag_seconds is not None]
        return max(known) if known else None

    @property
    def lag_messages(self) -> float | None:
        return self._sum(p.lag_messages for p in self.processes)


def process_state(name: str, url: str, metrics: str | None, readyz: tuple[int, Any] | None,
                  error: str | None) -> ProcessState:
    """A process from its answers: the ``/metrics`` text and the ``/readyz`` status and body
    (each ``None`` when that endpoint did not answer)."""
    if metrics is None and readyz is None:
        return ProcessState(name, url, reachable=False, error=error)
    ready, failing = None, ()
    if readyz is not None:
        status, body = readyz
        ready = status == 200
        checks = body.get("checks", {}) if isinstance(body, dict) else {}
        failing = tuple(sorted(k for k, v in checks.items()
                               if not (isinstance(v, dict) and v.get("ok") is True)))
    if metrics is None:
        return ProcessState(name, url, reachable=True, ready=ready, failing=failing,
                            error=error)
    samples = parse(metrics)
    build = next((s for s in samples if s.name == "phoenix_build_info"), None)
    active = _total(samples, "phoenix_relay_active")
    return ProcessState(
        name, url, reachable=True, ready=ready, failing=failing, error=error,
        component=build.labels.get("component") if build else None,
        outcomes={o: v for o in OUTCOMES
                  if (v := _total(samples, "phoenix_commands_total", outcome=o)) is not None},
        published=_total(samples, "phoenix_events_published_total"),
        lag_seconds=_max(samples, "phoenix_consumer_lag_seconds"),
        lag_messages=_total(samples, "phoenix_consumer_lag_messages"),
        relay_active=bool(active),
        outbox_waiting=_total(samples, "phoenix_outbox_backlog_rows"),
        outbox_parked=_total(samples, "phoenix_outbox_parked_rows"),
        outbox_lag_seconds=_total(samples, "phoenix_outbox_lag_seconds"))


class Watcher:
    """Looks at the configured processes; remembers each one's last counters for rates."""

    def __init__(self, processes: Mapping[str, str], *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.processes = {name: url.rstrip("/") for name, url in processes.items()}
        self._transport = transport
        self._clock = clock
        self._last: dict[str, tuple[float, float, float]] = {}

    async def look(self) -> Glance:
        async with httpx.AsyncClient(timeout=TIMEOUT_S, transport=self._transport,
                                     follow_redirects=False) as client:
            states = await asyncio.gather(*(self._one(client, name, url)
                                            for name, url in self.processes.items()))
        return Glance(tuple(self._with_rates(s) for s in states), time.time())

    async def _one(self, client: httpx.AsyncClient, name: str, url: str) -> ProcessState:
        metrics, readyz = await asyncio.gather(client.get(f"{url}/metrics"),
                                               client.get(f"{url}/readyz"),
                                               return_exceptions=True)
        errors = [f"{type(r).__name__}: {r}" for r in (metrics, readyz)
                  if isinstance(r, BaseException)]
        text = (metrics.text if isinstance(metrics, httpx.Response)
                and metrics.status_code == 200 else None)
        ready = None
        if isinstance(readyz, httpx.Response) and readyz.status_code in (200, 503):
            try:
                ready = (readyz.status_code, orjson.loads(readyz.content))
            except orjson.JSONDecodeError:
                ready = (readyz.status_code, {})
        try:
            return process_state(name, url, text, ready, errors[0] if errors else None)
        except ValueError as e:  # not a Prometheus exposition: whatever answers is not ours
            return ProcessState(name, url, reachable=True, ready=None, error=f"metrics: {e}")

    def _with_rates(self, state: ProcessState) -> ProcessState:
        if not state.outcomes and state.published is None:
            return state
        now = self._clock()
        commands, events = sum(state.outcomes.values()), state.published or 0.0
        before = self._last.get(state.name)
        self._last[state.name] = (now, commands, events)
        if before is None or now - before[0] < 0.5 or commands < before[1] or events < before[2]:
            return state
        elapsed = now - before[0]
        return replace(state, commands_per_s=(commands - before[1]) / elapsed,
                       events_per_s=(events - before[2]) / elapsed)
