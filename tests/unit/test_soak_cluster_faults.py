"""The fault kit's cluster faults, on fakes of the devstack's cluster and pair: what each
does to which node, and where the plans put them (on a real cluster:
tests/e2e/test_soak_cluster.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from phoenix_resources.soak import cluster as cluster_module
from phoenix_resources.soak.campaign import Plan
from phoenix_resources.soak.cluster import CLUSTER_KINDS, ClusterServices

pytestmark = pytest.mark.unit

BROKERS = (1, 2, 3)
TOPICS = {"commands": 3, "events": 3, "dlq": 1}


class FakeBrokers:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []
        self.leaders = {("commands", p): BROKERS[p] for p in range(3)}
        self.in_sync_asked: list[tuple[str, list[int], int]] = []

    def start(self, node: int | None = None) -> None:
        self.calls.append(("start", node))

    def stop(self, node: int | None = None) -> None:
        self.calls.append(("stop", node))

    def kill(self, node: int) -> None:
        self.calls.append(("kill", node))

    def pause(self, node: int) -> None:
        self.calls.append(("pause", node))

    def resume(self, node: int) -> None:
        self.calls.append(("resume", node))

    def leader_of(self, topic: str, partition: int) -> int:
        return self.leaders[(topic, partition)]

    def wait_until_leader(self, topic: str, partition: int, among: set[int]) -> int:
        self.calls.append(("wait_leader", min(among)))
        return min(among)

    def wait_until_isr(self, topic: str, partitions: Iterable[int], size: int,
                       timeout: float = 60.0) -> None:
        self.in_sync_asked.append((topic, list(partitions), size))

    def faults(self) -> list[tuple[str, int | None]]:
        """The calls after the checks that the cluster was whole (resume all, start all)."""
        whole = [("resume", b) for b in BROKERS] + [("start", None)]
        assert self.calls[:len(whole)] == whole
        return self.calls[len(whole):]


class FakePair:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")

    def wait_synchronous(self) -> None:
        self.calls.append("wait_synchronous")

    def switchover(self) -> None:
        self.calls.append("switchover")

    def crash_promote(self) -> None:
        self.calls.append("crash_promote")

    def rejoin(self) -> str:
        self.calls.append("rejoin")
        return "rewind"


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> ClusterServices:
    monkeypatch.setattr(cluster_module.time, "sleep", lambda _s: None)
    return ClusterServices(FakeBrokers(), BROKERS, FakePair(), TOPICS, seed=4)


def _brokers(s: ClusterServices) -> FakeBrokers:
    assert isinstance(s.kafka, FakeBrokers)
    return s.kafka


def test_a_kafka_fault_starts_from_every_replica_in_sync(services: ClusterServices) -> None:
    assert services.inject("hung-broker")
    assert _brokers(services).in_sync_asked == [("commands", [0, 1, 2], 3),
                                                ("events", [0, 1, 2], 3), ("dlq", [0], 3)]


def test_isr_loss_stops_two_distinct_brokers_then_starts_them(
        services: ClusterServices) -> None:
    assert services.inject("isr-loss")
    calls = _brokers(services).faults()
    stopped = [node for what, node in calls if what == "stop"]
    assert len(set(stopped)) == 2
    assert set(stopped) < set(BROKERS)
    assert calls[-1] == ("start", None)


def test_leader_kill_kills_a_commands_leader_and_restarts_it_after_a_new_one_leads(
        services: ClusterServices) -> None:
    assert services.inject("broker-leader-kill")
    (kill, victim), wait, (start, restarted) = _brokers(services).faults()
    assert (kill, start, restarted) == ("kill", "start", victim)
    assert victim in BROKERS
    assert wait[0] == "wait_leader"


def test_a_hung_broker_is_resumed(services: ClusterServices) -> None:
    assert services.inject("hung-broker")
    (pause, victim), (resume, resumed) = _brokers(services).faults()
    assert (pause, resume, resumed) == ("pause", "resume", victim)


def test_postgres_faults_start_from_a_synchronous_pair(services: ClusterServices) -> None:
    assert services.inject("postgres-switchover")
    assert services.inject("postgres-crash-promotion")
    assert isinstance(services.postgres, FakePair)
    assert services.postgres.calls == ["wait_synchronous", "switchover", "wait_synchronous",
                                       "crash_promote", "rejoin"]


def test_another_kind_is_not_a_cluster_fault(services: ClusterServices) -> None:
    assert not services.inject("sigkill")
    assert services.durations == {}


def test_the_bounded_cluster_plan_gives_every_cluster_fault_a_slot_of_its_own() -> None:
    plan = Plan.bounded_cluster(seed=3)
    cluster = [at for at, kind in plan.schedule() if kind in CLUSTER_KINDS]
    assert sorted(kind for _, kind in plan.schedule() if kind in CLUSTER_KINDS) \
        == sorted(CLUSTER_KINDS)
    slot = 0.85 * plan.window_s / len(CLUSTER_KINDS)
    assert all(b - a > slot / 2 for a, b in itertools.pairwise(cluster))
    assert all(0 < at < 0.85 * plan.window_s for at in cluster)


def test_only_cluster_plans_hold_cluster_faults() -> None:
    plan = Plan.bounded(seed=5)
    assert not any(kind in CLUSTER_KINDS for _, kind in plan.schedule())
    assert Plan.long(10, seed=2, cluster=True).faults.keys() >= set(CLUSTER_KINDS)
    assert not set(Plan.long(10, seed=2).faults) & set(CLUSTER_KINDS)
