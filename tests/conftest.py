"""Session-wide real services and per-test isolation (own database, own topics)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix_resources.config import Settings
from tests.support import databases
from tests.support.kafka import Topics, create_topics
from tests.support.net import free_port
from tests.support.services import kafka_bootstrap, postgres_url


@pytest.fixture(scope="session")
def kafka_servers() -> Iterator[str]:
    with kafka_bootstrap() as servers:
        yield servers


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with postgres_url() as url:
        yield url


@pytest.fixture(scope="session")
def template_database(pg_server: str) -> Iterator[str]:
    name = databases.migrated_template(pg_server)
    yield name
    databases.drop_database(pg_server, name)


@pytest.fixture
def database_url(pg_server: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = databases.create_database(pg_server, template=template_database)
    yield databases.with_database(pg_server, name)
    databases.drop_database(pg_server, name)


@pytest.fixture
def topics(kafka_servers: str) -> Topics:
    t = Topics.unique()
    create_topics(kafka_servers, {t.commands: 3, t.events: 3, t.rejections: 1, t.dlq: 1})
    return t


@pytest.fixture
def settings(database_url: str, kafka_servers: str, topics: Topics) -> Settings:
    # Listening ports are free ones: a process a test starts (``run`` serves HTTP and gRPC)
    # must not collide with another test's on the other xdist worker.
    return Settings(
        database_url=database_url, kafka_bootstrap_servers=kafka_servers,
        commands_topic=topics.commands, events_topic=topics.events,
        rejections_topic=topics.rejections, dlq_topic=topics.dlq,
        consumer_group=f"g-{topics.commands}", create_topics=False,
        batch_max_wait_ms=20, retry_initial_s=0.05, retry_max_s=1.0,
        relay_poll_interval_s=0.2, log_format="console", metrics_port=0,
        http_port=free_port(), grpc_port=free_port(),
    )


SERVICE_FOLDERS = ("integration", "e2e")
"""Folders whose tests all need real services (``tests/unit/test_test_layout.py`` keeps it so)."""


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``pytest -m unit`` does not import the service folders: their modules would all be
    deselected, and importing them costs more than running the unit tests' slowest third."""
    if config.getoption("markexpr") == "unit" and collection_path.name in SERVICE_FOLDERS \
            and collection_path.parent.name == "tests":
        return True
    return None
