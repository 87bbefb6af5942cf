"""Private throwaway clusters for tests that kill, stop, pause or promote nodes: a synchronous
PostgreSQL primary/standby pair and a three-broker Kafka cluster, in temp dirs on free ports.

They are always private (an external cluster from the environment cannot be killed on
purpose). Like :mod:`tests.support.services`: under ``CI=true`` a cluster that cannot start
fails the test, elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from phoenix_resources.devstack.kafka_cluster import KafkaCluster
from phoenix_resources.devstack.postgres_ha import HA_FAST_UNSAFE, PostgresHA
from phoenix_resources.errors import StackError
from tests.support.net import free_port
from tests.support.services import unavailable


@contextlib.contextmanager
def postgres_ha() -> Iterator[PostgresHA]:
    """A started pair (``pg1`` primary, ``pg2`` its synchronous standby), roles and the
    ``phoenix`` database made, no schema; destroyed afterwards."""
    ha = PostgresHA(Path(tempfile.mkdtemp(prefix="phoenix-test-pgha-")),
                    ports=(free_port(), free_port()), settings=HA_FAST_UNSAFE)
    try:
        try:
            ha.start()
        except StackError as e:
            unavailable("a PostgreSQL primary/standby pair", str(e))
        yield ha
    finally:
        if os.environ.get("PHOENIX_KEEP_STACK"):
            ha.stop()
        else:
            ha.destroy()


@contextlib.contextmanager
def kafka_cluster() -> Iterator[KafkaCluster]:
    """A started controller and three brokers, every broker registered; stopped and removed
    afterwards."""
    home = Path(tempfile.mkdtemp(prefix="phoenix-test-kafka-cluster-"))
    cluster = KafkaCluster(home, broker_ports=(free_port(), free_port(), free_port()),
                           controller_port=free_port())
    try:
        try:
            cluster.start()
        except StackError as e:
            unavailable("a three-broker Kafka cluster", str(e))
        yield cluster
    finally:
        cluster.stop(timeout=15)
        if not os.environ.get("PHOENIX_KEEP_STACK"):
            shutil.rmtree(home, ignore_errors=True)
