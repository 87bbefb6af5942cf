"""A Kafka cluster losing brokers under a live stream (promises 6 and 11), with real processes.

A three-broker cluster of this module's own (replication 3, ``min.insync.replicas=2``, unclean
leader election off) with topics of each test's own, a fresh migrated database, two workers
and two relays as ``phoenix-resources`` processes, and a publisher of the client library
(idempotent, ``acks=all``) sending creates and updates over many resources throughout. Mid
stream, one fault per test:

* the leader of a commands partition SIGKILLed, then restarted; the same for an events
  partition;
* two brokers stopped, so every partition's in-sync replicas fall below
  ``min.insync.replicas``: every ``acks=all`` producer — the publisher, the relay, the worker's
  dead letters — must wait, not fail; the workers apply the backlog they had not read yet
  (commands and poison) meanwhile, and their events and dead letters wait; then the brokers
  start and everything resumes;
* a broker hung (SIGSTOP) for longer than the brokers' session timeout, then SIGCONT.

Each test checks the fault kit's invariants (``soak/check.py``): every command applied once,
the state as the reference fold says, events contiguous per resource with stable ids, no
good command dead-lettered, nothing parked, the outbox drained, no process died. It prints
and writes as JSON (``$PHOENIX_ARTIFACTS`` or the test's temp dir) what the fault did: from
the fault to the first command applied again on the partitions it hit, the commands that
waited, lost / applied twice / parked / dead-lettered.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource  # not re-exported for mypy
from confluent_kafka.admin._resource import ResourceType

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings
from phoenix_resources.devstack.kafka_cluster import BROKER_IDS, KafkaCluster
from phoenix_resources.errors import ConfigurationError, StackError
from phoenix_resources.soak import check as soak_check
from tests.support.clusters import kafka_cluster
from tests.support.kafka import Topics
from tests.support.kafka_failover import (
    PARTITIONS,
    ClientStream,
    Deployment,
    Measured,
    all_in_sync,
    appended,
    applied,
    count,
    measure,
    on_cluster,
    publish_poison,
    replicated_topics,
)
from tests.support.pipeline import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

ISR_LOSS_S = 30.0
"""How long two brokers stay down: longer than the service's wait for one publish
(:data:`SHORT_TIMEOUTS`: 12 s of delivery timeout + 5 s), so the relay and the worker's dead
letters give up on a round and retry it, and longer than the consumers' session timeout
(12 s), which the group coordinator cannot renew meanwhile (it cannot write either)."""
SHORT_TIMEOUTS = {"kafka_producer_options": {"delivery.timeout.ms": 12_000},
                  "kafka_consumer_options": {"session.timeout.ms": 12_000}}
"""The processes' timeouts in the ISR test, shorter than the defaults (30 s, 45 s) so the
outage outlasts both in half a minute: what is tested is what happens past them."""
HANG_S = 15.0
"""How long a broker stays SIGSTOPped: longer than the clients' ``socket.timeout.ms``
(10 s) and almost four times the cluster's broker session timeout (4 s)."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[KafkaCluster]:
    with kafka_cluster() as c:
        yield c


@pytest.fixture
def healthy(cluster: KafkaCluster) -> KafkaCluster:
    """The module's cluster with every broker running and none paused."""
    for node in BROKER_IDS:
        with contextlib.suppress(StackError, ProcessLookupError):
            cluster.resume(node)
    cluster.start()
    return cluster


@dataclass
class Run:
    cluster: KafkaCluster
    topics: Topics
    settings: Settings
    deployment: Deployment
    stream: ClientStream
    artifacts: Path

    def warm_up(self, commands: int = 150) -> None:
        """Until the stream flows end to end (``commands`` applied) and the group is settled
        (a rebalance in flight is a fault of its own)."""
        wait_until(lambda: len(applied(self.settings.database_url)) >= commands, 120,
                   f"{commands} commands applied before the fault")
        wait_until(self.deployment.settled, 120, "every worker settled in the group")

    def leaders(self, topic: str, of: int) -> list[int]:
        """The partitions of ``topic`` that broker ``of`` leads."""
        return [p for p in range(PARTITIONS) if self.cluster.leader_of(topic, p) == of]

    def finish(self, fault: str, window: tuple[float, float], *,
               partitions: Collection[int] = range(PARTITIONS),
               event_partitions: Collection[int] = range(PARTITIONS),
               poison: Collection[bytes] = ()) -> Measured:
        """After the fault: every replica in sync, the stream on for a while, then stopped;
        wait until everything sent has an outcome and the outbox is drained; check, measure,
        report."""
        url = self.settings.database_url
        all_in_sync(self.cluster, self.topics)
        in_sync = time.time()
        healed = window[1]
        wait_until(lambda: sum(1 for t in self.stream.acked_at.values() if t > healed + 2)
                   >= 50, 120, "the stream flowing again after the fault")
        self.stream.stop()
        assert not self.stream.failures, f"the publisher failed: {self.stream.failures[:3]}"
        workload = self.stream.workload(poison)
        wait_until(lambda: len(applied(url)) >= len(workload.commands)
                   and count(url, "SELECT count(*) FROM outbox") == 0, 240,
                   "every command recorded and every event published")
        seen = soak_check.observe(self.settings)
        checks = soak_check.check(workload, seen)
        measured = measure(fault, window, in_sync, stream=self.stream, outcomes=applied(url),
                           events=appended(self.settings), seen=seen, checks=checks,
                           workload=workload,
                           transient_errors=self.deployment.transient_errors(),
                           partitions=partitions, event_partitions=event_partitions)
        report = json.dumps(measured.row(), indent=1)
        print(f"\n{fault}: {len(workload.commands)} commands\n{report}")
        (self.artifacts / f"kafka-failover-{fault}.json").write_text(report + "\n")
        failed = [c for c in checks if not c.ok]
        assert not failed, f"{failed}\n{self.deployment.logs()}"
        assert not self.deployment.dead(), self.deployment.logs()
        return measured


@pytest.fixture
def service_options() -> dict[str, Any]:
    """Settings of the workers and relays over :func:`on_cluster`'s (a test may parametrize
    this)."""
    return {}


@pytest.fixture
def run(healthy: KafkaCluster, database_url: str, artifacts: Path,
        service_options: dict[str, Any]) -> Iterator[Run]:
    topics = replicated_topics(healthy)
    settings = on_cluster(database_url, healthy, topics)
    deployment = Deployment.start(settings.model_copy(update=service_options))
    stream = ClientStream(settings).start()
    try:
        yield Run(healthy, topics, settings, deployment, stream, artifacts)
    finally:
        deployment.signal("worker", signal.SIGCONT)
        with contextlib.suppress(StackError):
            for node in BROKER_IDS:  # a test that failed mid-fault: let the stream end
                with contextlib.suppress(ProcessLookupError):
                    healthy.resume(node)
            healthy.start()
        with contextlib.suppress(AssertionError):
            stream.stop()
        deployment.stop()


def _kill_leader_and_restart(run: Run, topic: str) -> tuple[int, tuple[float, float]]:
    victim = run.cluster.leader_of(topic, 0)
    started = time.time()
    run.cluster.kill(victim)
    run.cluster.wait_until_leader(topic, 0, set(BROKER_IDS) - {victim}, timeout=60)
    time.sleep(5.0)  # the stream runs on the new leaders for a while
    run.cluster.start(victim)
    return victim, (started, time.time())


def test_the_leader_of_a_commands_partition_killed(run: Run) -> None:
    run.warm_up()
    victim = run.cluster.leader_of(run.topics.commands, 0)
    hit = run.leaders(run.topics.commands, victim)
    hit_events = run.leaders(run.topics.events, victim) or range(PARTITIONS)
    _, window = _kill_leader_and_restart(run, run.topics.commands)
    m = run.finish("commands-leader-kill", window, partitions=hit, event_partitions=hit_events)
    assert (m.lost, m.applied_twice, m.parked, m.dead_lettered) == (0, 0, 0, 0)


def test_the_leader_of_an_events_partition_killed(run: Run) -> None:
    run.warm_up()
    victim = run.cluster.leader_of(run.topics.events, 0)
    hit = run.leaders(run.topics.commands, victim) or range(PARTITIONS)
    hit_events = run.leaders(run.topics.events, victim)
    _, window = _kill_leader_and_restart(run, run.topics.events)
    m = run.finish("events-leader-kill", window, partitions=hit, event_partitions=hit_events)
    assert (m.lost, m.applied_twice, m.parked, m.dead_lettered) == (0, 0, 0, 0)


@pytest.mark.parametrize("service_options", [SHORT_TIMEOUTS], ids=["short-timeouts"])
def test_in_sync_replicas_below_min_insync_make_every_producer_wait(run: Run) -> None:
    run.warm_up()
    url = run.settings.database_url
    keep, *victims = BROKER_IDS
    # A backlog the workers meet in the fault: commands and poison they have not read yet,
    # written before the fault. (Kafka does not advance a partition's high watermark while
    # its in-sync replicas are fewer than min.insync.replicas (KIP-966): records written
    # meanwhile, even with acks=1, cannot be read until the replicas are back. The remaining
    # broker learns the high watermark from its fetch responses, hence one broker stopped
    # first and the other a while later.)
    first, second = victims
    run.deployment.signal("worker", signal.SIGSTOP)
    try:
        time.sleep(1.0)  # commands ahead of the poison on every partition
        poison = [f"poison-isr-{n}".encode() for n in range(3)]
        publish_poison(run.settings, poison)
        started = time.time()
        run.cluster.stop(first)
        time.sleep(3.0)
        run.cluster.stop(second)
        run.cluster.wait_until_isr(run.topics.commands, range(PARTITIONS), 1)
    finally:
        run.deployment.signal("worker", signal.SIGCONT)
    # The database is up: the workers apply what they can read; the events and the dead
    # letters of what they applied wait (a worker holds its batch until its dead letters
    # are written, and reads no further meanwhile).
    wait_until(lambda: count(url, "SELECT count(*) FROM processed_commands WHERE "
                                  f"processed_at > to_timestamp({started})") > 0, 60,
               "commands applied while the replicas are out")
    time.sleep(max(0.0, started + ISR_LOSS_S - time.time()))
    during = {"outbox": count(url, "SELECT count(*) FROM outbox"),
              "dead_letters": len(soak_check.read_to_end(run.settings.kafka_common(),
                                                         run.settings.dlq_topic)),
              "parked": count(url, "SELECT count(*) FROM parked_commands")
              + count(url, "SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL")}
    run.cluster.start()
    window = (started, time.time())
    print(f"\nwhile {len(victims)} brokers were down: {during}")
    assert during["outbox"] > 0, "the relay should have been unable to publish"
    assert during["dead_letters"] == 0, "no dead letter can be written below min.insync"
    assert during["parked"] == 0
    m = run.finish("isr-below-min-insync", window, poison=poison)
    assert (m.lost, m.applied_twice, m.parked, m.dead_lettered) == (0, 0, 0, 0)
    # Both waited the fault out as a transient one and retried, nothing else.
    assert m.transient_errors.get("relay/BrokerUnavailable", 0) >= 1, m.transient_errors
    assert m.transient_errors.get("worker/BrokerUnavailable", 0) >= 1, m.transient_errors
    assert keep in run.cluster.isr_of(run.topics.commands, 0)


def test_a_hung_broker(run: Run) -> None:
    run.warm_up()
    victim = run.cluster.leader_of(run.topics.commands, 0)
    hit = run.leaders(run.topics.commands, victim)
    hit_events = run.leaders(run.topics.events, victim) or range(PARTITIONS)
    started = time.time()
    run.cluster.pause(victim)
    try:
        time.sleep(HANG_S)
    finally:
        run.cluster.resume(victim)
    m = run.finish("hung-broker", (started, time.time()), partitions=hit,
                   event_partitions=hit_events)
    assert (m.lost, m.applied_twice, m.parked, m.dead_lettered) == (0, 0, 0, 0)


def test_topics_the_service_creates_on_a_cluster_are_replicated(healthy: KafkaCluster) -> None:
    """Created at start (``PHOENIX_CREATE_TOPICS``): three replicas and
    ``min.insync.replicas=2`` set on each topic, not left to the cluster's default."""
    topics = Topics.unique()
    settings = Settings(kafka_bootstrap_servers=healthy.bootstrap_servers,
                        commands_topic=topics.commands, events_topic=topics.events,
                        rejections_topic=topics.rejections, dlq_topic=topics.dlq,
                        topic_partitions=2)
    bootstrap.prepare_topics(settings)
    admin = AdminClient({"bootstrap.servers": healthy.bootstrap_servers})
    for topic in (topics.commands, topics.events, topics.rejections, topics.dlq):
        assert sorted(healthy.replicas_of(topic, 0)) == list(BROKER_IDS)
        resource = ConfigResource(ResourceType.TOPIC, topic)
        entries = admin.describe_configs([resource])[resource].result(timeout=30)
        assert entries["min.insync.replicas"].value == "2"
    refused = settings.model_copy(update={"commands_topic": f"{topics.commands}.x",
                                          "topic_replication_factor": 2,
                                          "topic_min_insync_replicas": 3})
    with pytest.raises(ConfigurationError, match="above the replication factor"):
        bootstrap.prepare_topics(refused)
