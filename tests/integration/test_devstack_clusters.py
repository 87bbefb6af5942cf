"""The local clusters behave like production's: a synchronous PostgreSQL pair that fails over
without losing an acknowledged commit, and a three-broker Kafka cluster with RF 3 and
``min.insync.replicas=2`` that survives one dead broker and refuses writes with two."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from phoenix_resources.adapters.postgres import schema
from phoenix_resources.devstack.kafka_cluster import BROKER_IDS, KafkaCluster
from phoenix_resources.devstack.postgres import PostgresCluster
from phoenix_resources.devstack.postgres_ha import PostgresHA
from tests.support.clusters import kafka_cluster, postgres_ha

pytestmark = pytest.mark.integration


def eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        time.sleep(0.05)


# --- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_once() -> Iterator[PostgresHA]:
    with postgres_ha() as ha:
        schema.upgrade(ha.url())  # the migrations, through the multi-host URL
        with psycopg.connect(ha.url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE notes (v text)")
        yield ha


@pytest.fixture
def pair(pair_once: PostgresHA) -> PostgresHA:
    """The module's pair, healthy: both nodes up, the standby synchronous, writes allowed."""
    pair_once.rejoin()
    pair_once.set_read_only(False)
    return pair_once


def note(url: str) -> str:
    value = uuid.uuid4().hex
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO notes VALUES (%s)", (value,))
    return value


def notes_on(node: PostgresCluster) -> set[str]:
    with psycopg.connect(node.url(), autocommit=True) as conn:
        return {v for (v,) in conn.execute("SELECT v FROM notes")}


def test_migrations_ran_and_the_api_role_reads_from_the_standby(pair: PostgresHA) -> None:
    assert schema.current_revision(pair.url()) == schema.head_revision()
    with psycopg.connect(pair.read_url(), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM resources").fetchone() == (0,)


def test_a_commit_on_the_primary_is_on_the_standby(pair: PostgresHA) -> None:
    value = note(pair.url())
    standby = pair.standby()
    eventually(lambda: value in notes_on(standby), "the row replayed on the standby")


def test_a_commit_waits_while_the_standby_is_down(pair: PostgresHA) -> None:
    primary, standby = pair.primary(), pair.standby()
    pair.stop_node(standby)
    outcome: list[BaseException | str] = []

    def commit() -> None:
        try:
            outcome.append(note(pair.url()))
        except BaseException as e:
            outcome.append(e)

    writer = threading.Thread(target=commit)
    writer.start()
    try:
        with psycopg.connect(pair.admin_url(primary), autocommit=True) as conn:
            eventually(lambda: conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep' "
                "AND query LIKE 'INSERT INTO notes%'").fetchone() == (1,),
                "the commit to wait for the synchronous standby")
        assert writer.is_alive()
        assert outcome == []
    finally:
        pair.start_node(standby)
    writer.join(60)
    assert not writer.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], str)
    value = outcome[0]
    eventually(lambda: value in notes_on(standby), "the waiting commit on the standby")


def test_switchover_moves_the_primary_and_a_new_connection_follows(pair: PostgresHA) -> None:
    before = note(pair.url())
    old = pair.primary()
    pair.switchover()
    new = pair.primary()
    assert new is not old
    assert pair.in_recovery(old) is True
    assert pair.replication(new)[pair.name_of(old)] == ("streaming", "sync")
    with psycopg.connect(pair.url(), autocommit=True) as conn:
        assert conn.info.port == new.port
        conn.execute("INSERT INTO notes VALUES ('after switchover')")
        assert before in {v for (v,) in conn.execute("SELECT v FROM notes")}


def test_crash_promote_keeps_acknowledged_commits_and_rejoin_makes_a_standby(
        pair: PostgresHA) -> None:
    acknowledged = note(pair.url())
    dead = pair.primary()
    pair.crash_promote()
    new = pair.primary()
    assert new is not dead
    assert acknowledged in notes_on(new)
    after = note(pair.url())  # does not wait for the dead node
    # Rewound, not cloned again: the crashed node's WAL runs past the fork (its own crash
    # recovery ends with a checkpoint), which only a rewind from the new timeline undoes.
    assert pair.rejoin() == "rewind"
    assert pair.in_recovery(dead) is True
    assert pair.replication(new)[pair.name_of(dead)] == ("streaming", "sync")
    eventually(lambda: {acknowledged, after} <= notes_on(dead), "the rejoined node catches up")


def test_a_read_only_primary_refuses_writes(pair: PostgresHA) -> None:
    with psycopg.connect(pair.url(), autocommit=True) as conn:
        pair.set_read_only(True)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO notes VALUES ('refused')")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pair.url(), connect_timeout=5).close()
    pair.set_read_only(False)
    assert note(pair.url()) in notes_on(pair.primary())


# --- Kafka ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_once() -> Iterator[KafkaCluster]:
    with kafka_cluster() as cluster:
        yield cluster


@pytest.fixture
def cluster(cluster_once: KafkaCluster) -> KafkaCluster:
    """The module's cluster with every node running and none paused."""
    for node_id in cluster_once.nodes:
        if cluster_once.node(node_id).pid() is not None:
            cluster_once.resume(node_id)
    cluster_once.start()
    return cluster_once


def new_topic(cluster: KafkaCluster, partitions: int = 1) -> str:
    """A topic with the cluster's default replication factor, fully in sync."""
    name = f"clusters.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    for future in admin.create_topics([NewTopic(name, num_partitions=partitions)],
                                      operation_timeout=30).values():
        future.result(timeout=60)
    cluster.wait_until_isr(name, range(partitions), 3)
    return name


def producer(cluster: KafkaCluster, **conf: str | int | bool) -> Producer:
    return Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all",
                     "enable.idempotence": True, "message.timeout.ms": 90_000,
                     "socket.timeout.ms": 5_000, **conf})


def produce(p: Producer, topic: str) -> list[KafkaError | None]:
    """Produce one record to partition 0; the list gets its delivery error (None: acked)."""
    outcome: list[KafkaError | None] = []

    def delivered(err: KafkaError | None, _: Message) -> None:
        outcome.append(err)

    p.produce(topic, value=b"v", partition=0, on_delivery=delivered)
    return outcome


def test_a_topic_gets_three_replicas_in_sync_and_min_isr_two(cluster: KafkaCluster) -> None:
    topic = new_topic(cluster, partitions=3)
    for partition in range(3):
        assert cluster.replicas_of(topic, partition) == [1, 2, 3]
        assert cluster.isr_of(topic, partition) == [1, 2, 3]
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["min.insync.replicas"].value == "2"
    assert configs["unclean.leader.election.enable"].value == "false"


def test_killing_the_leader_moves_leadership_and_acks_all_still_succeeds(
        cluster: KafkaCluster) -> None:
    topic = new_topic(cluster)
    leader = cluster.leader_of(topic, 0)
    cluster.kill(leader)
    cluster.wait_until_leader(topic, 0, among=set(BROKER_IDS) - {leader})
    p = producer(cluster)
    outcome = produce(p, topic)
    assert p.flush(120) == 0
    assert outcome == [None]
    cluster.start(leader)
    cluster.wait_until_isr(topic, [0], 3)


def test_two_brokers_down_refuse_acks_all_until_they_return(cluster: KafkaCluster) -> None:
    topic = new_topic(cluster)
    followers = [b for b in BROKER_IDS if b != cluster.leader_of(topic, 0)]
    for follower in followers:
        cluster.stop(follower)
    cluster.wait_until_isr(topic, [0], 1)

    no_retries = producer(cluster, **{"enable.idempotence": False, "retries": 0})
    refused = produce(no_retries, topic)
    assert no_retries.flush(60) == 0
    assert refused[0] is not None
    assert refused[0].code() == KafkaError.NOT_ENOUGH_REPLICAS

    patient = producer(cluster)
    held = produce(patient, topic)
    patient.poll(2)
    assert held == []
    assert len(patient) == 1
    cluster.start(followers[0], wait=False)
    cluster.start(followers[1])
    assert patient.flush(120) == 0
    assert held == [None]
    cluster.wait_until_isr(topic, [0], 3)


def test_a_paused_broker_loses_its_leadership_and_returns_after_resume(
        cluster: KafkaCluster) -> None:
    topic = new_topic(cluster)
    leader = cluster.leader_of(topic, 0)
    cluster.pause(leader)
    try:
        cluster.wait_until_leader(topic, 0, among=set(BROKER_IDS) - {leader})
        p = producer(cluster)
        outcome = produce(p, topic)
        assert p.flush(120) == 0
        assert outcome == [None]
    finally:
        cluster.resume(leader)
    cluster.wait_until_isr(topic, [0], 3)
    assert leader in cluster.isr_of(topic, 0)


# --- the command line -----------------------------------------------------------------------


def test_ephemeral_cluster_topology_exports_multi_host_addresses() -> None:
    show = ("import os; print(os.environ['PHOENIX_KAFKA_BOOTSTRAP_SERVERS']); "
            "print(os.environ['PHOENIX_DATABASE_URL']); "
            "print(os.environ['PHOENIX_READ_DATABASE_URL'])")
    run = subprocess.run([sys.executable, "-m", "phoenix_resources.devstack", "ephemeral",
                          "--topology", "cluster", "--", sys.executable, "-c", show],
                         capture_output=True, text=True, timeout=240, env=os.environ.copy(),
                         check=False)
    assert run.returncode == 0, run.stderr
    brokers, url, read_url = run.stdout.strip().splitlines()[-3:]
    assert len(brokers.split(",")) == 3
    assert "target_session_attrs=read-write" in url
    assert url.count(",") == 2
    assert "target_session_attrs=prefer-standby" in read_url
