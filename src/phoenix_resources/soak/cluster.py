"""The faults of production's shape: a three-broker Kafka cluster and a synchronous
PostgreSQL primary/standby pair (``devstack --topology cluster``), acted on through objects
shaped like the devstack's ``KafkaCluster`` and ``PostgresHA`` (:class:`Brokers`,
:class:`Pair`; the CLI hands them in).

* ``postgres-switchover`` — planned: the standby promoted, the old primary its standby again;
* ``postgres-crash-promotion`` — the primary SIGKILLed, the standby promoted, the old primary
  rewound and made the synchronous standby again;
* ``broker-leader-kill`` — the broker leading a commands partition SIGKILLed, started again
  once another broker leads it;
* ``isr-loss`` — two of three brokers stopped: every partition's in-sync replicas fall below
  ``min.insync.replicas`` (2), so no ``acks=all`` write succeeds until they are back;
* ``hung-broker`` — a broker SIGSTOPped for longer than ``socket.timeout.ms`` and the
  brokers' session timeout, then SIGCONT.

Each fault starts from a whole cluster (every broker running, every replica in sync, the pair
synchronous) and returns once it is healed; what the service does meanwhile is the
campaign's business. ``postgres-restart`` and ``kafka-restart`` restart the whole pair or
cluster, like :class:`~phoenix_resources.soak.targets.LocalServices`.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from phoenix_resources.errors import StackError

CLUSTER_KINDS = ("postgres-switchover", "postgres-crash-promotion", "broker-leader-kill",
                 "isr-loss", "hung-broker")


class Brokers(Protocol):
    """What the faults need of a Kafka cluster (the devstack's ``KafkaCluster``)."""

    def start(self, node: int | None = None) -> None: ...
    def stop(self, node: int | None = None) -> None: ...
    def kill(self, node: int) -> None: ...
    def pause(self, node: int) -> None: ...
    def resume(self, node: int) -> None: ...
    def leader_of(self, topic: str, partition: int) -> int: ...
    def wait_until_leader(self, topic: str, partition: int, among: set[int]) -> int: ...
    def wait_until_isr(self, topic: str, partitions: Iterable[int], size: int,
                       timeout: float = ...) -> None: ...


class Pair(Protocol):
    """What the faults need of a PostgreSQL primary/standby pair (``PostgresHA``)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def wait_synchronous(self) -> None: ...
    def switchover(self) -> None: ...
    def crash_promote(self) -> None: ...
    def rejoin(self) -> str: ...


@dataclass
class ClusterServices:
    kafka: Brokers
    brokers: tuple[int, ...]
    """The brokers' node ids."""
    postgres: Pair
    topics: Mapping[str, int]
    """Topic → partitions: the replicas that must be in sync before a Kafka fault; the first
    is the commands topic, whose leaders the faults pick."""
    seed: int = 1
    down_s: float = 12.0
    """How long brokers stay down (``isr-loss``) or hung (``hung-broker``): longer than
    ``socket.timeout.ms`` (10 s) and the brokers' session timeout."""
    durations: dict[str, list[float]] = field(default_factory=dict)
    """Per fault kind: seconds from injecting it to healing it."""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    # --- the Services protocol --------------------------------------------------------------

    def restart_postgres(self) -> bool:
        self.postgres.stop()
        self.postgres.start()
        return True

    def restart_kafka(self) -> bool:
        self.kafka.stop()
        self.kafka.start()
        self.in_sync()
        return True

    # --- cluster faults ---------------------------------------------------------------------

    def inject(self, kind: str) -> bool:
        """Inject ``kind`` (one of :data:`CLUSTER_KINDS`) and heal it; False for another kind."""
        fault = {"postgres-switchover": self.postgres.switchover,
                 "postgres-crash-promotion": self._crash_promotion,
                 "broker-leader-kill": self._leader_kill, "isr-loss": self._isr_loss,
                 "hung-broker": self._hung_broker}.get(kind)
        if fault is None:
            return False
        if kind.startswith("postgres"):
            self.postgres.wait_synchronous()
        else:
            self.in_sync()
        started = time.monotonic()
        fault()
        self.durations.setdefault(kind, []).append(time.monotonic() - started)
        return True

    def in_sync(self, timeout: float = 120.0) -> None:
        """Every broker running and every replica of the campaign's topics in sync."""
        for node in self.brokers:
            with contextlib.suppress(StackError, ProcessLookupError):
                self.kafka.resume(node)
        self.kafka.start()
        for topic, partitions in self.topics.items():
            self.kafka.wait_until_isr(topic, range(partitions), len(self.brokers), timeout)

    def _crash_promotion(self) -> None:
        self.postgres.crash_promote()
        self.postgres.rejoin()

    def _commands_leader(self) -> tuple[str, int, int]:
        """(the commands topic, one of its partitions, the broker leading it), seeded."""
        topic, partitions = next(iter(self.topics.items()))
        partition = self._rng.randrange(partitions)
        return topic, partition, self.kafka.leader_of(topic, partition)

    def _leader_kill(self) -> None:
        topic, partition, victim = self._commands_leader()
        self.kafka.kill(victim)
        self.kafka.wait_until_leader(topic, partition, set(self.brokers) - {victim})
        self.kafka.start(victim)

    def _isr_loss(self) -> None:
        victims = self._rng.sample(self.brokers, 2)
        # One after the other: the broker that stays learns the high watermark from the
        # fetches of the last one to go (records it holds beyond it could not be read).
        self.kafka.stop(victims[0])
        time.sleep(2.0)
        self.kafka.stop(victims[1])
        time.sleep(self.down_s)
        self.kafka.start()

    def _hung_broker(self) -> None:
        victim = self._commands_leader()[2]
        self.kafka.pause(victim)
        try:
            time.sleep(self.down_s)
        finally:
            self.kafka.resume(victim)
