"""The local stack as a whole: the persistent one (``make run``) and throwaway ones (tests)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from phoenix_resources.devstack._proc import free_port
from phoenix_resources.devstack.kafka import KafkaBroker, ensure_jars, local_broker
from phoenix_resources.devstack.kafka_cluster import KafkaCluster, local_kafka_cluster
from phoenix_resources.devstack.postgres import FAST_UNSAFE, PostgresCluster, local_cluster
from phoenix_resources.devstack.postgres_ha import HA_FAST_UNSAFE, PostgresHA, local_postgres_ha

TOPOLOGIES = ("single", "cluster")
"""``single``: one broker, one PostgreSQL. ``cluster``: production's shape, three brokers and
a controller, a synchronous PostgreSQL primary/standby pair."""


@dataclass
class Stack:
    broker: KafkaBroker
    postgres: PostgresCluster

    def env(self) -> dict[str, str]:
        """Environment variables that point every process and test at this stack."""
        return {"PHOENIX_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
                "PHOENIX_DATABASE_URL": self.postgres.url()}

    def up(self, progress: bool = True) -> dict[str, float]:
        """Start both services (idempotent); return how long each took, in seconds."""
        timings: dict[str, float] = {}
        t = time.monotonic()
        ensure_jars(quiet=not progress)
        timings["jars"] = time.monotonic() - t
        t = time.monotonic()
        self.postgres.start()
        timings["postgres"] = time.monotonic() - t
        t = time.monotonic()
        self.broker.start()
        timings["kafka"] = time.monotonic() - t
        return timings

    def down(self) -> None:
        self.broker.stop()
        self.postgres.stop()


def local_stack() -> Stack:
    return Stack(local_broker(), local_cluster())


@contextlib.contextmanager
def ephemeral_stack(fast: bool = True) -> Iterator[Stack]:
    """A stack on free ports in a temp dir, removed afterwards. ``fast`` turns fsync off."""
    home = Path(tempfile.mkdtemp(prefix="phoenix-stack-"))
    stack = Stack(
        KafkaBroker(home / "kafka", port=free_port(), controller_port=free_port()),
        PostgresCluster(home / "postgres", port=free_port(),
                        settings=FAST_UNSAFE if fast else None),
    )
    try:
        stack.up(progress=False)
        yield stack
    finally:
        with contextlib.suppress(Exception):
            stack.broker.stop(timeout=15)
        with contextlib.suppress(Exception):
            stack.postgres.stop("immediate")
        if not os.environ.get("PHOENIX_KEEP_STACK"):
            shutil.rmtree(home, ignore_errors=True)


@dataclass
class ClusterStack:
    """Production's shape: :class:`KafkaCluster` and :class:`PostgresHA`."""

    kafka: KafkaCluster
    postgres: PostgresHA

    def env(self) -> dict[str, str]:
        """Multi-host URLs (read-write for the worker and relay, prefer-standby for the API)
        and all three brokers."""
        return {"PHOENIX_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
                "PHOENIX_DATABASE_URL": self.postgres.url(),
                "PHOENIX_READ_DATABASE_URL": self.postgres.read_url()}

    def up(self, progress: bool = True) -> dict[str, float]:
        """Start everything (idempotent); return how long each took, in seconds. PostgreSQL
        goes first: on two cores, four booting JVMs would slow ``initdb`` down tenfold."""
        timings: dict[str, float] = {}
        t = time.monotonic()
        ensure_jars(quiet=not progress)
        timings["jars"] = time.monotonic() - t
        t = time.monotonic()
        self.postgres.start()
        timings["postgres"] = time.monotonic() - t
        t = time.monotonic()
        self.kafka.start()
        timings["kafka"] = time.monotonic() - t
        return timings

    def down(self) -> None:
        self.kafka.stop()
        self.postgres.stop()


def local_cluster_stack() -> ClusterStack:
    return ClusterStack(local_kafka_cluster(), local_postgres_ha())


@contextlib.contextmanager
def ephemeral_cluster_stack(fast: bool = True) -> Iterator[ClusterStack]:
    """A cluster stack on free ports in a temp dir, removed afterwards. ``fast`` turns fsync
    off (replication stays synchronous)."""
    home = Path(tempfile.mkdtemp(prefix="phoenix-cluster-"))
    stack = ClusterStack(
        KafkaCluster(home / "kafka", broker_ports=(free_port(), free_port(), free_port()),
                     controller_port=free_port()),
        PostgresHA(home / "postgres", ports=(free_port(), free_port()),
                   settings=HA_FAST_UNSAFE if fast else None),
    )
    try:
        stack.up(progress=False)
        yield stack
    finally:
        keep = bool(os.environ.get("PHOENIX_KEEP_STACK"))
        with contextlib.suppress(Exception):
            stack.kafka.stop(timeout=15)
        with contextlib.suppress(Exception):
            if keep:
                stack.postgres.stop()
            else:
                stack.postgres.destroy()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
