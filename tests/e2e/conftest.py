"""Private services for tests that stop or restart them (so other tests never notice)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix_resources.adapters.postgres import schema
from phoenix_resources.devstack import KafkaBroker, PostgresCluster
from phoenix_resources.devstack.postgres import FAST_UNSAFE
from phoenix_resources.errors import StackError
from tests.support.net import free_port
from tests.support.services import unavailable


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where browser tests keep screenshots: ``$PHOENIX_ARTIFACTS`` (default: the test's temp
    dir), never the repository."""
    root = Path(os.environ.get("PHOENIX_ARTIFACTS") or tmp_path)
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    """A migrated cluster of this test's own, on a fixed port across restarts."""
    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="phoenix-e2e-pg-")),
                              port=free_port(), settings=FAST_UNSAFE)
    try:
        cluster.start()
    except StackError as e:
        unavailable("a private PostgreSQL", str(e))
    schema.upgrade(cluster.url())
    yield cluster
    cluster.destroy()


@pytest.fixture
def private_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="phoenix-e2e-kafka-")),
                         port=free_port(), controller_port=free_port())
    try:
        broker.start()
    except StackError as e:
        unavailable("a private Kafka broker", str(e))
    yield broker
    broker.stop()
