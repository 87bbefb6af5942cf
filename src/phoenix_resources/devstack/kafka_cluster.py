"""A KRaft cluster like production's: one dedicated controller JVM and three broker JVMs.

Every topic defaults to replication factor 3 with ``min.insync.replicas=2`` and unclean
leader election off, the internal topics (offsets, transaction state) too, so one broker may
die without losing an acknowledged (``acks=all``) record and two dead brokers stop writes
instead of risking them. Failure detection is tuned short for tests (``broker.session.timeout``
and ``replica.lag.time.max.ms`` of a few seconds) so fault tests see leaders move and ISRs
shrink within seconds; everything else is Kafka's default.

The jars are the single broker's (:func:`~phoenix_resources.devstack.kafka.ensure_jars`). The
storage tool runs once per Kafka version to make a ``bootstrap.checkpoint``; each node's
directory gets that file and its own ``meta.properties`` (what ``StorageTool format`` writes),
which saves four JVM launches per cluster.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from phoenix_resources.devstack._proc import port_open, read_pid, state_dir, tail
from phoenix_resources.devstack.kafka import LOG4J2, KafkaBroker, ensure_jars
from phoenix_resources.errors import StackError

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._metadata import ClusterMetadata

CONTROLLER_ID = 0
"""The controller's ``node.id``; the brokers are 1, 2 and 3."""
BROKER_IDS = (1, 2, 3)

COMMON_PROPERTIES = """\
node.id={node_id}
controller.quorum.voters={controller_id}@127.0.0.1:{controller_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={home}/data
num.partitions=1
auto.create.topics.enable=false
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
log.retention.hours=24
num.network.threads=2
num.io.threads=2
background.threads=2
replica.lag.time.max.ms={replica_lag_ms}
broker.heartbeat.interval.ms={heartbeat_ms}
broker.session.timeout.ms={session_ms}
"""
"""Shared by the controller and the brokers: KRaft creates topics on the controller (so the
defaults matter there) and enforces ``min.insync.replicas`` on the leaders."""

CONTROLLER_PROPERTIES = """\
process.roles=controller
listeners=CONTROLLER://127.0.0.1:{port}
"""

BROKER_PROPERTIES = """\
process.roles=broker
listeners=PLAINTEXT://127.0.0.1:{port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=PLAINTEXT
"""


def _b64_uuid() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def bootstrap_checkpoint() -> Path:
    """The ``bootstrap.checkpoint`` (initial metadata version) of this Kafka version, made
    once by ``StorageTool format`` into the shared state dir and copied into every node."""
    libs = ensure_jars(quiet=True)
    version = next(libs.glob("kafka_2.13-*.jar")).stem.removeprefix("kafka_2.13-")
    cached = state_dir() / "kafka" / f"bootstrap-{version}.checkpoint"
    if cached.exists():
        return cached
    scratch = state_dir() / "kafka" / f"format-{uuid.uuid4().hex[:8]}"
    node = ClusterNode(scratch, port=0, node_id=CONTROLLER_ID, properties=(
        f"process.roles=controller\nnode.id={CONTROLLER_ID}\n"
        f"controller.quorum.voters={CONTROLLER_ID}@127.0.0.1:1\n"
        "controller.listener.names=CONTROLLER\nlisteners=CONTROLLER://127.0.0.1:1\n"
        f"log.dirs={scratch}/data\n"))
    try:
        scratch.mkdir(parents=True)
        props = scratch / "server.properties"
        props.write_text(node.properties)
        fmt = subprocess.run(
            [*node._java(), "kafka.tools.StorageTool", "format", f"--cluster-id={_b64_uuid()}",
             "-c", str(props)], capture_output=True, text=True, check=False)
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
        # Another process may be doing the same: the rename is atomic, either copy is good.
        (scratch / "data" / "bootstrap.checkpoint").replace(cached)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return cached


@dataclass
class ClusterNode(KafkaBroker):
    """One JVM of a :class:`KafkaCluster` (controller or broker); ``port`` is its listener."""

    node_id: int = 0
    properties: str = ""
    """Its whole ``server.properties`` (the cluster writes it)."""

    @property
    def role(self) -> str:
        return "controller" if self.node_id == CONTROLLER_ID else "broker"

    def _prepare(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(self.properties)
        (self.home / "log4j2.properties").write_text(LOG4J2.format(home=self.home))
        return props

    def format(self, cluster_id: str, checkpoint: Path) -> None:
        """Write what ``StorageTool format`` would: ``meta.properties`` and the bootstrap
        checkpoint. A formatted directory is left alone."""
        data = self.home / "data"
        if (data / "meta.properties").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint, data / "bootstrap.checkpoint")
        (data / "meta.properties").write_text(
            f"node.id={self.node_id}\ndirectory.id={_b64_uuid()}\nversion=1\n"
            f"cluster.id={cluster_id}\n")

    def spawn(self) -> None:
        """Start the JVM and return at once (:meth:`KafkaCluster.wait_ready` waits)."""
        if self.is_running():
            return
        if port_open(self.port):
            raise StackError(f"port {self.port} is taken by another process; "
                             "stop it or set other ports")
        props = self._prepare()
        with (self.home / "console.log").open("ab") as console:
            self._process = subprocess.Popen(
                [*self._java(), "kafka.Kafka", str(props)],
                stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.pid_file.write_text(str(self._process.pid))

    def signal(self, sig: int) -> None:
        pid = self.pid()
        if pid is None:
            raise StackError(f"Kafka node {self.node_id} is not running")
        os.killpg(pid, sig)

    def log_tail(self) -> str:
        return f"{tail(self.home / 'console.log', 10)}\n{tail(self.log_file)}"


@dataclass
class KafkaCluster:
    """A controller (node 0) and brokers 1, 2, 3, each under ``home/<node>``, on 127.0.0.1.

    ``start`` is idempotent: running nodes are left as they are. Node numbers in every method
    are Kafka's ``node.id`` (what :meth:`leader_of` and :meth:`isr_of` return).
    """

    home: Path
    broker_ports: tuple[int, int, int] = (19092, 19093, 19094)
    controller_port: int = 19095
    heap: tuple[str, ...] = ("-Xms128m", "-Xmx384m")
    jvm_options: tuple[str, ...] = ("-XX:TieredStopAtLevel=1",)
    """C1 only: four JVMs start quicker on a small machine (C2 compiling the brokers' start
    competes for the same cores) and a test cluster never runs long enough to need C2.
    ``()`` for peak throughput."""
    replica_lag_ms: int = 4000
    """A follower this long behind leaves the ISR (Kafka's default: 30 s)."""
    session_ms: int = 4000
    """The controller fences a broker it has not heard from for this long, and moves its
    leaderships (Kafka's default: 9 s)."""
    heartbeat_ms: int = 500
    nodes: dict[int, ClusterNode] = field(init=False, repr=False)
    _admin_client: AdminClient | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        ports = {CONTROLLER_ID: self.controller_port,
                 **dict(zip(BROKER_IDS, self.broker_ports, strict=True))}
        self.nodes = {}
        for node_id, port in ports.items():
            home = self.home / ("controller" if node_id == CONTROLLER_ID else f"broker-{node_id}")
            template = CONTROLLER_PROPERTIES if node_id == CONTROLLER_ID else BROKER_PROPERTIES
            properties = COMMON_PROPERTIES.format(
                node_id=node_id, controller_id=CONTROLLER_ID, controller_port=self.controller_port,
                home=home, replica_lag_ms=self.replica_lag_ms, heartbeat_ms=self.heartbeat_ms,
                session_ms=self.session_ms) + template.format(port=port)
            self.nodes[node_id] = ClusterNode(
                home, port=port, heap=(*self.heap, *self.jvm_options), node_id=node_id,
                properties=properties)

    @property
    def bootstrap_servers(self) -> str:
        """All three brokers, comma-separated (what clients get)."""
        return ",".join(f"127.0.0.1:{p}" for p in self.broker_ports)

    def node(self, node_id: int) -> ClusterNode:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise StackError(f"no Kafka node {node_id} (nodes: {sorted(self.nodes)})") from None

    def is_running(self) -> bool:
        return all(n.is_running() for n in self.nodes.values())

    def _cluster_id(self) -> str:
        path = self.home / "cluster.id"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(_b64_uuid())
        return path.read_text().strip()

    # --- whole cluster ----------------------------------------------------------------------

    def start(self, node: int | None = None, timeout: float = 120.0, wait: bool = True) -> None:
        """Start every node that is not running (or only ``node``), all JVMs at once, and
        return once every running broker is registered and unfenced (it answers in the
        cluster's metadata). Waits at most ``timeout`` seconds, else StackError with the log
        tails; ``wait=False`` returns at once (then call :meth:`wait_ready`). A restarted
        broker may still be catching up: see :meth:`wait_until_isr`."""
        targets = list(self.nodes.values()) if node is None else [self.node(node)]
        checkpoint = bootstrap_checkpoint()
        cluster_id = self._cluster_id()
        for n in targets:
            n.format(cluster_id, checkpoint)
        for n in targets:
            n.spawn()
        if wait:
            self.wait_ready(timeout)

    def stop(self, node: int | None = None, timeout: float = 30.0) -> None:
        """SIGTERM (controlled shutdown: leaderships move first) and wait for the exit; after
        ``timeout`` seconds SIGKILL. Without ``node``: the brokers together, then the
        controller. A paused node is resumed first so it can shut down."""
        targets = [self.node(node)] if node is not None else [
            self.nodes[b] for b in BROKER_IDS]
        for n in targets:
            with contextlib.suppress(StackError, ProcessLookupError):
                n.signal(signal.SIGCONT)
                n.signal(signal.SIGTERM)
        for n in targets:
            n.stop(timeout)
        if node is None:
            self.nodes[CONTROLLER_ID].stop(timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every broker whose process runs is in the metadata (registered, unfenced)."""
        deadline = time.monotonic() + timeout
        admin: AdminClient | None = None
        while True:
            dead = [n for n in self.nodes.values()
                    if read_pid(n.pid_file) is not None and n.pid() is None]
            if dead:
                raise StackError(f"Kafka node {dead[0].node_id} exited during start; log tail:"
                                 f"\n{dead[0].log_tail()}")
            want = {b for b in BROKER_IDS if self.nodes[b].pid() is not None}
            if admin is None and all(port_open(self.nodes[b].port) for b in want):
                admin = self._admin()
            if admin is not None:
                with contextlib.suppress(Exception):
                    if want <= set(admin.list_topics(timeout=2).brokers):
                        return
            if time.monotonic() > deadline:
                waiting = [self.nodes[CONTROLLER_ID], *(self.nodes[b] for b in sorted(want))]
                raise StackError(
                    f"the Kafka cluster was not ready within {timeout:.0f}s; log tails:\n"
                    + "\n".join(f"--- node {n.node_id}\n{n.log_tail()}" for n in waiting))
            time.sleep(0.2)

    # --- faults -----------------------------------------------------------------------------

    def kill(self, node: int) -> None:
        """SIGKILL ``node``: no controlled shutdown. Returns once the process is gone; the
        controller notices after ``session_ms`` and only then moves its leaderships."""
        self.node(node).kill()

    def pause(self, node: int) -> None:
        """SIGSTOP: a hung node (its sockets stay open, nothing answers). The controller
        fences a paused broker after ``session_ms``. Returns at once."""
        self.node(node).signal(signal.SIGSTOP)

    def resume(self, node: int) -> None:
        """SIGCONT a paused node; it notices it was fenced and registers again on its own."""
        self.node(node).signal(signal.SIGCONT)

    # --- what the cluster says --------------------------------------------------------------

    def _admin(self) -> AdminClient:
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0,
                            "reconnect.backoff.max.ms": 500, "socket.timeout.ms": 5000})

    def metadata(self, topic: str | None = None, timeout: float = 15.0) -> ClusterMetadata:
        """The cluster's metadata (of ``topic`` only, if given), retried for up to ``timeout``
        seconds while brokers are down or the topic is not known yet. Every call asks a
        broker (no cache); the answer is that broker's view, which trails the controller's
        by a metadata round (milliseconds)."""
        if self._admin_client is None:
            self._admin_client = self._admin()
        admin = self._admin_client
        deadline = time.monotonic() + timeout
        while True:
            try:
                meta = admin.list_topics(topic, timeout=3)
                if topic is None or (topic in meta.topics and meta.topics[topic].error is None):
                    return meta
                error: object = meta.topics[topic].error if topic in meta.topics else "absent"
            except Exception as e:
                error = e
            if time.monotonic() > deadline:
                raise StackError(f"no metadata from the Kafka cluster within {timeout:.0f}s: "
                                 f"{error}")
            time.sleep(0.2)

    def leader_of(self, topic: str, partition: int) -> int:
        """The leader's node id of ``topic``/``partition`` (-1: no leader right now)."""
        leader: int = self.metadata(topic).topics[topic].partitions[partition].leader
        return leader

    def isr_of(self, topic: str, partition: int) -> list[int]:
        """The in-sync replicas of ``topic``/``partition``, sorted."""
        return sorted(self.metadata(topic).topics[topic].partitions[partition].isrs)

    def replicas_of(self, topic: str, partition: int) -> list[int]:
        return sorted(self.metadata(topic).topics[topic].partitions[partition].replicas)

    def wait_until_isr(self, topic: str, partitions: Iterable[int],
                       size: int, timeout: float = 60.0) -> None:
        """Until every one of ``partitions`` has exactly ``size`` in-sync replicas. A shrink
        takes up to ``replica_lag_ms`` (plus the controller's round trip) after a follower
        stops; a growth, the time the follower takes to catch up."""
        wanted = list(partitions)
        self._wait(lambda: all(len(self.isr_of(topic, p)) == size for p in wanted),
                   timeout, f"ISR of {topic} {wanted} to be {size}")

    def wait_until_leader(self, topic: str, partition: int, among: set[int],
                          timeout: float = 60.0) -> int:
        """Until the leader of ``topic``/``partition`` is one of ``among``; return it."""
        self._wait(lambda: self.leader_of(topic, partition) in among, timeout,
                   f"the leader of {topic}/{partition} to be one of {sorted(among)}")
        return self.leader_of(topic, partition)

    @staticmethod
    def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise StackError(f"waited {timeout:.0f}s for {what}")
            time.sleep(0.2)


def local_kafka_cluster() -> KafkaCluster:
    """The persistent cluster of ``up --topology cluster``: brokers on
    PHOENIX_LOCAL_CLUSTER_KAFKA_PORT (19092) and the two ports after it, the controller on the
    third after it."""
    base = int(os.environ.get("PHOENIX_LOCAL_CLUSTER_KAFKA_PORT", "19092"))
    return KafkaCluster(state_dir() / "cluster" / "kafka", broker_ports=(base, base + 1, base + 2),
                        controller_port=base + 3)
