"""Slow and abusive HTTP clients against a real uvicorn server: connections that never finish
their request are closed after the header timeout, a flood of them never takes more than
``http_max_connections`` sockets, and a normal request, ``/readyz`` and ``/metrics`` are
answered all the while."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from phoenix_resources.config import Settings
from tests.support.http_api import Conn, api_settings, insert_resource, served_api
from tests.support.net import free_port

pytestmark = pytest.mark.integration

STALLED = 400
HEAD = b"GET /api/v1/resources HTTP/1.1\r\nHost: api\r\nX-Slow: "  # never finished


@pytest.fixture(autouse=True)
def _enough_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4 * STALLED + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2 * STALLED + 256:
        pytest.fail("this test needs more open files than the hard limit allows")


def _settings(database_url: str, read_url: str, **limits: object) -> Settings:
    return api_settings(database_url, read_url, **{"http_port": free_port(),
                                                   "http_header_timeout_s": 2.0, **limits})


@pytest.fixture
def stalled() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


def _open_stalled(port: int, n: int, into: list[socket.socket]) -> None:
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2:
            s.sendall(HEAD)  # half of them send part of a request head, the others nothing
        into.append(s)


def _state(s: socket.socket) -> tuple[bool, bytes]:
    """(closed by the server, what it sent), without waiting."""
    s.setblocking(False)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except BlockingIOError:
        return False, got
    except OSError:
        return True, got
    return True, got


def _answers(base: str) -> dict[str, int]:
    with httpx.Client(base_url=base, timeout=5) as client:
        return {path: client.get(path).status_code
                for path in ("/api/v1/resources", "/readyz", "/metrics")}


def test_stalled_requests_are_closed_after_the_header_timeout_and_others_are_served(
        database_url: str, read_url: str, writer: Conn,
        stalled: list[socket.socket]) -> None:
    insert_resource(writer)
    settings = _settings(database_url, read_url)
    with served_api(settings) as base:
        _open_stalled(settings.http_port, STALLED, stalled)
        assert _answers(base) == {"/api/v1/resources": 200, "/readyz": 200, "/metrics": 200}
        deadline = time.monotonic() + 2.0 + 8.0
        closed, received = [False] * len(stalled), [b""] * len(stalled)
        while not all(closed) and time.monotonic() < deadline:
            time.sleep(0.25)
            for i, s in enumerate(stalled):
                if not closed[i]:
                    closed[i], got = _state(s)
                    received[i] += got
        assert all(closed), "stalled connections left open"
        # Those that had sent part of a request were told why (a problem document).
        told = [got for i, got in enumerate(received) if i % 2]
        assert all(got.startswith(b"HTTP/1.1 408 ") for got in told), told[:1]
        assert all(b"RES-003" in got for got in told)
        assert _answers(base)["/api/v1/resources"] == 200


def test_a_flood_of_stalled_connections_displaces_itself_and_never_locks_others_out(
        database_url: str, read_url: str, writer: Conn,
        stalled: list[socket.socket]) -> None:
    insert_resource(writer)
    settings = _settings(database_url, read_url, http_max_connections=100,
                         http_header_timeout_s=30.0)
    with served_api(settings) as base:
        _open_stalled(settings.http_port, STALLED, stalled)
        for _ in range(3):  # a normal client always gets through, the flood notwithstanding
            assert _answers(base) == {"/api/v1/resources": 200, "/readyz": 200,
                                      "/metrics": 200}
        time.sleep(0.5)
        held = sum(not _state(s)[0] for s in stalled)
        assert held <= 100, f"{held} stalled connections held; the bound is 100"
        assert held >= 90  # the newest ones: the bound holds them, it does not drop all


def test_a_request_head_larger_than_the_bound_is_refused(
        database_url: str, read_url: str) -> None:
    settings = _settings(database_url, read_url)
    with served_api(settings), socket.create_connection(
            ("127.0.0.1", settings.http_port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\n"
                  + b"X-Filler: " + b"x" * 70_000 + b"\r\n")  # no end of the head
        s.settimeout(5)
        assert s.recv(1024).startswith(b"HTTP/1.1 431 ")


def test_a_body_that_never_ends_is_closed_after_the_body_timeout(
        database_url: str, read_url: str) -> None:
    settings = _settings(database_url, read_url, http_body_timeout_s=1.0)
    with served_api(settings), socket.create_connection(
            ("127.0.0.1", settings.http_port), timeout=5) as s:
        s.sendall(b"POST /api/v1/resources HTTP/1.1\r\nHost: api\r\n"
                  b"Content-Length: 100000\r\n\r\n" + b"x" * 10)
        started = time.monotonic()
        received = b""
        closed = False
        while not closed and time.monotonic() < started + 6:
            time.sleep(0.2)
            with contextlib.suppress(OSError):
                s.sendall(b"x")  # a byte now and then: the keep-alive timer never fires
            closed, got = _state(s)
            received += got
        assert closed, "a body that never ends kept its connection"
        assert received.startswith(b"HTTP/1.1 405 ")  # answered; then the wait was bounded
