"""A campaign: the seeded workload published over a window while faults land at seeded
moments, then a convergence wait and the checks.

Faults (each counted when injected):

* ``sigkill`` — SIGKILL of a worker, relay or the API (chosen by the seed), restarted in its
  slot at once, as a supervisor would;
* ``postgres-restart`` / ``kafka-restart`` — the service stopped and started again;
* ``rebalance-storm`` — three extra workers join the group, then leave one by one;
* ``hung-relay`` — SIGSTOP of the leading relay until a standby leads, then SIGCONT (the
  woken one must publish nothing more: the event checks would see a repeat out of order);
* on a cluster (:mod:`.cluster`): ``postgres-switchover``, ``postgres-crash-promotion``,
  ``broker-leader-kill``, ``isr-loss``, ``hung-broker``.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from phoenix_resources.config import Settings
from phoenix_resources.errors import BrokerUnavailable
from phoenix_resources.soak import check as checks
from phoenix_resources.soak.cluster import CLUSTER_KINDS
from phoenix_resources.soak.publish import Publisher
from phoenix_resources.soak.targets import ClusterFaults, Fleet, Services
from phoenix_resources.soak.workload import Workload, generate

KINDS = ("sigkill", "postgres-restart", "kafka-restart", "rebalance-storm", "hung-relay",
         *CLUSTER_KINDS)
STORM_SIZE = 3


@dataclass(frozen=True)
class Plan:
    seed: int
    window_s: float
    """Publishing and faults happen within this window."""
    resources: int
    commands_each: int
    faults: dict[str, int]
    """How many of each kind to inject within the window."""
    workers: int = 2
    relays: int = 2
    api: bool = True
    settle_s: float = 240.0
    """Longest wait for the deployment to converge after the window."""

    @classmethod
    def bounded(cls, seed: int = 1) -> Plan:
        """The campaign ``make test`` runs: about three minutes on two cores."""
        return cls(seed, window_s=70.0, resources=120, commands_each=10, faults={
            "sigkill": 22, "postgres-restart": 2, "kafka-restart": 2, "rebalance-storm": 1,
            "hung-relay": 1})

    @classmethod
    def bounded_cluster(cls, seed: int = 1) -> Plan:
        """A short campaign on a cluster (``--topology cluster``): each cluster fault once,
        with kills and a hung relay around them (about two minutes on two cores)."""
        return cls(seed, window_s=75.0, resources=80, commands_each=8, faults={
            "sigkill": 6, "hung-relay": 1, **dict.fromkeys(CLUSTER_KINDS, 1)})

    @classmethod
    def long(cls, minutes: float, seed: int = 1, *, cluster: bool = False) -> Plan:
        """``make soak SOAK_MINUTES=…``: the same mix, scaled to the time; on a cluster, its
        faults too (each about every three minutes)."""
        m = max(1.0, minutes)
        faults = {"sigkill": int(20 * m), "postgres-restart": max(1, int(m)),
                  "kafka-restart": max(1, int(m / 2)), "rebalance-storm": max(1, int(m / 3)),
                  "hung-relay": max(1, int(m / 3))}
        if cluster:
            faults |= dict.fromkeys(CLUSTER_KINDS, max(1, int(m / 3)))
        return cls(seed, window_s=60.0 * m, resources=int(200 * m), commands_each=12,
                   faults=faults)

    def schedule(self) -> list[tuple[float, str]]:
        """(seconds into the window, kind), seeded; restarts and storms spread evenly so
        they do not pile up, kills anywhere."""
        rng = random.Random(self.seed * 7919)
        out: list[tuple[float, str]] = []
        for kind, n in self.faults.items():
            for i in range(n):
                if kind in CLUSTER_KINDS:
                    continue
                if kind == "sigkill":
                    at = rng.uniform(0.05, 0.9) * self.window_s
                else:
                    at = (i + rng.uniform(0.2, 0.8)) / n * 0.85 * self.window_s
                out.append((at, kind))
        # A cluster fault lasts a while (brokers down, a pair rebuilt): one slot each, in a
        # seeded order, so none waits behind another.
        cluster = [k for k, n in self.faults.items() if k in CLUSTER_KINDS for _ in range(n)]
        rng.shuffle(cluster)
        out += [((j + rng.uniform(0.1, 0.4)) / len(cluster) * 0.85 * self.window_s, kind)
                for j, kind in enumerate(cluster)]
        return sorted(out)


@dataclass
class Report:
    plan: Plan
    workload: Workload
    injected: Counter[str] = field(default_factory=Counter)
    not_injected: Counter[str] = field(default_factory=Counter)
    killed: Counter[str] = field(default_factory=Counter)
    """SIGKILLs per process kind."""
    exits: Counter[str] = field(default_factory=Counter)
    """Processes that exited by themselves (restarted in their slot, as a supervisor
    would); a finding worth a look, not a broken guarantee."""
    takeovers_s: list[float] = field(default_factory=list)
    """Per hung relay: seconds until a standby led."""
    fault_s: dict[str, list[float]] = field(default_factory=dict)
    """Per kind: seconds each injected fault took, from injecting it to healing it."""
    checks: list[checks.Check] = field(default_factory=list)
    converged: bool = False
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.converged and bool(self.checks) and all(c.ok for c in self.checks)
                and not self.not_injected)

    def violations(self, name: str) -> int:
        return sum(c.violations for c in self.checks if c.name == name)


class Campaign:
    def __init__(self, plan: Plan, settings: Settings, services: Services, *,
                 say: Callable[[str], None] = lambda _: None) -> None:
        self.plan = plan
        self.settings = settings
        self.services = services
        self.say = say
        self.rng = random.Random(plan.seed)
        self.fleet = Fleet(settings)
        self.workload = generate(plan.seed, resources=plan.resources,
                                 commands_each=plan.commands_each)
        self.report = Report(plan, self.workload)

    def run(self) -> Report:
        started = time.monotonic()
        self.say(f"workload: {self.workload.summary()}")
        for slot in range(self.plan.workers):
            self.fleet.start("worker", slot)
        for slot in range(self.plan.relays):
            self.fleet.start("relay", slot)
        if self.plan.api:
            self.fleet.start("api", 0)
        publisher = threading.Thread(target=self._publish, args=(started,), daemon=True)
        publisher.start()
        try:
            for at, kind in self.plan.schedule():
                delay = started + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._inject(kind)
            publisher.join(self.plan.settle_s)
            self._heal()
            self.report.converged = self._converge(self.plan.settle_s)
            self.report.checks = checks.check(self.workload, checks.observe(self.settings))
        finally:
            self.fleet.stop_all()
            self.report.elapsed_s = time.monotonic() - started
        return self.report

    # --- the stream ------------------------------------------------------------------------

    def _publish(self, started: float) -> None:
        total = len(self.workload.records)
        window = self.plan.window_s * 0.9

        def pace(sent: int) -> None:
            ahead = started + window * sent / total - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

        Publisher(self.settings, chunk=50).send(self.workload.records, pace=pace)

    # --- faults ----------------------------------------------------------------------------

    def _inject(self, kind: str) -> None:
        self._heal()
        began = time.monotonic()
        if kind in CLUSTER_KINDS:
            done = isinstance(self.services, ClusterFaults) and self.services.inject(kind)
        else:
            done = {"sigkill": self._sigkill, "postgres-restart": self.services.restart_postgres,
                    "kafka-restart": self.services.restart_kafka,
                    "rebalance-storm": self._storm, "hung-relay": self._hang_leader}[kind]()
        (self.report.injected if done else self.report.not_injected)[kind] += 1
        if done:
            self.report.fault_s.setdefault(kind, []).append(time.monotonic() - began)
        self.say(f"{'injected' if done else 'NOT injected'}: {kind}")

    def _sigkill(self) -> bool:
        kinds = ["worker"] * 6 + ["relay"] * 3 + (["api"] if self.plan.api else [])
        kind = self.rng.choice(kinds)
        members = [m for m in self.fleet.live(kind) if not m.stopped]
        if not members:
            return False
        self.fleet.kill(self.rng.choice(members))
        self.report.killed[kind] += 1
        return True

    def _storm(self) -> bool:
        extra = [self.fleet.start("worker", 100 + i) for i in range(STORM_SIZE)]
        time.sleep(4.0)
        for m in extra:
            m.signal(signal.SIGTERM)
            m.proc.wait(60)
            time.sleep(1.0)
        return True

    def _hang_leader(self) -> bool:
        # Right after a restart or a kill there may be no leader yet: wait for one.
        deadline = time.monotonic() + 60.0
        leader = self.fleet.leader()
        while leader is None and time.monotonic() < deadline:
            time.sleep(0.5)
            self._heal()
            leader = self.fleet.leader()
        if leader is None:
            return False
        leader.signal(signal.SIGSTOP)
        leader.stopped = True
        stopped_at = time.monotonic()
        bound = 6 * max(self.settings.relay_session_timeout_s,
                        3 * self.settings.relay_poll_interval_s) + 30
        try:
            while time.monotonic() - stopped_at < bound:
                others = [m for m in self.fleet.live("relay") if m is not leader and m.leading()]
                if others:
                    self.report.takeovers_s.append(time.monotonic() - stopped_at)
                    return True
                time.sleep(0.2)
            return False
        finally:
            leader.signal(signal.SIGCONT)
            leader.stopped = False

    def _heal(self) -> None:
        """Every slot running again (a process that died of a fault is restarted)."""
        slots = {"worker": self.plan.workers, "relay": self.plan.relays,
                 "api": 1 if self.plan.api else 0}
        for kind, n in slots.items():
            running = {m.slot for m in self.fleet.live(kind)}
            for slot in range(n):
                if slot not in running:
                    self.report.exits[kind] += 1
                    self.fleet.start(kind, slot)

    # --- convergence -----------------------------------------------------------------------

    def _converge(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._settled():
                    return True
            except (psycopg.Error, BrokerUnavailable):
                pass  # a service still coming back
            self._heal()
            time.sleep(1.0)
        return False

    def _settled(self) -> bool:
        with psycopg.connect(self.settings.database_url, autocommit=True,
                             connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM processed_commands WHERE outcome <> 'pending'),"
                " (SELECT count(*) FROM outbox)").fetchone()
        assert row is not None
        if row[0] < len(self.workload.commands) or row[1] > 0:
            return False
        dead = checks.read_to_end(self.settings.kafka_common(), self.settings.dlq_topic, 10)
        return len({m.key() for m in dead} & self.workload.poison_keys) \
            == len(self.workload.poison_keys)
