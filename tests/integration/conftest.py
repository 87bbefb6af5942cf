"""What the HTTP and gRPC API tests share: a writable connection to seed rows, the
read-only role's URL the APIs serve with, and a real gRPC server over them."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from phoenix_resources.config import Settings
from tests.support.grpc_server import RunningServer, grpc_settings
from tests.support.http_api import Conn, reader_url


@pytest.fixture
def writer(database_url: str) -> Iterator[Conn]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def read_url(pg_server: str, database_url: str) -> str:
    return reader_url(pg_server, database_url)


@pytest.fixture
def api(settings: Settings, read_url: str) -> Iterator[RunningServer]:
    """The gRPC API in a thread of this process, reading through the read-only role."""
    with RunningServer(grpc_settings(settings, read_url)) as running:
        yield running
