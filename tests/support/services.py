"""Where the tests' Kafka and PostgreSQL come from, in this order:

1. explicit environment (``PHOENIX_KAFKA_BOOTSTRAP_SERVERS``, ``PHOENIX_DATABASE_URL``) —
   ``make test`` starts one throwaway stack and exports these;
2. local processes started here (the project's devstack: Kafka jars + Debian PostgreSQL);
3. testcontainers, only when a Docker engine actually answers.

Under ``CI=true`` a service that cannot be had fails the run; elsewhere the test is skipped
with the reason.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix_resources.devstack import KafkaBroker, PostgresCluster
from phoenix_resources.devstack.postgres import FAST_UNSAFE
from phoenix_resources.errors import StackError
from tests.support.net import free_port


def unavailable(what: str, why: str) -> None:
    message = f"{what} is not available: {why}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(message)


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def kafka_bootstrap() -> Iterator[str]:
    env = os.environ.get("PHOENIX_KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    errors = []
    home = Path(tempfile.mkdtemp(prefix="phoenix-test-kafka-"))
    broker = KafkaBroker(home, port=free_port(), controller_port=free_port())
    try:
        broker.start()
    except StackError as e:
        errors.append(f"local broker: {e}")
    else:
        try:
            yield broker.bootstrap_servers
        finally:
            broker.stop()
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    unavailable("Kafka", "; ".join(errors) + "; no Docker engine answers")


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """A URL of a role that may CREATE DATABASE and CREATE ROLE."""
    env = os.environ.get("PHOENIX_DATABASE_URL")
    if env:
        yield env
        return
    errors = []
    home = Path(tempfile.mkdtemp(prefix="phoenix-test-pg-"))
    cluster = PostgresCluster(home, port=free_port(), settings=FAST_UNSAFE)
    try:
        cluster.start()
    except StackError as e:
        errors.append(f"local cluster: {e}")
    else:
        try:
            yield cluster.url()
        finally:
            cluster.destroy()
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as pg:
            yield pg.get_connection_url()
        return
    unavailable("PostgreSQL", "; ".join(errors) + "; no Docker engine answers")
