"""The console's gate and pages in memory (Starlette's test client, fake operations, fake
processes): who may see, who may act, what a form must carry, what is logged, what is
escaped, and what the pipeline page makes of the processes' answers."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from phoenix_resources.adapters.dlq import DeadLetter
from phoenix_resources.adapters.dlq_topic import ReplayReport as LetterReport
from phoenix_resources.adapters.postgres.parked_outbox import ParkedRow as ParkedEvent
from phoenix_resources.adapters.postgres.parking import ParkedResource, ParkedRow
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.console import create_app
from phoenix_resources.entrypoints.console.glance import Watcher, process_state
from phoenix_resources.entrypoints.console.operations import LetterPage
from phoenix_resources.errors import ConfigurationError, DatabaseUnavailable
from phoenix_resources.observability import Metrics
from phoenix_resources.observability.health import Health
from phoenix_resources.services.replay import ReplayReport

pytestmark = pytest.mark.unit

RID = uuid.UUID("3f1e0000-0000-4000-8000-0000000000c2")
CID = uuid.UUID("9b2d0000-0000-4000-8000-000000000041")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
HOSTILE = '<script>alert("pwned")</script>'


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class FakeOperations:
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    down: bool = False

    def _check(self) -> None:
        if self.down:
            raise DatabaseUnavailable("connection refused to db.internal:5432 as phoenix")

    def parked_resources(self, limit: int) -> list[ParkedResource]:
        self._check()
        return [ParkedResource(RID, 2, NOW, CID, f"DataError: {HOSTILE}")]

    def parked_commands(self, resource_id: uuid.UUID, limit: int) -> list[ParkedRow]:
        self._check()
        return [ParkedRow(7, CID, resource_id, "CREATE", "PRK-001", "DataError: refused", NOW,
                          1, None, None, 2, 41, None)]

    def parked_counts(self) -> tuple[int, int]:
        self._check()
        return 2, 1

    def replay_parked(self, resource_id: uuid.UUID) -> ReplayReport:
        self._check()
        self.calls.append(("replay", resource_id))
        return ReplayReport(resource_id, applied=2)

    def discard_parked(self, resource_id: uuid.UUID, reason: str) -> list[uuid.UUID]:
        self.calls.append(("discard", resource_id, reason))
        return [CID]

    def parked_events(self, limit: int) -> list[ParkedEvent]:
        return [ParkedEvent(1742, "e1", str(RID), "ResourceCreated", "events", 2_000_000, NOW,
                            NOW, "MSG_SIZE_TOO_LARGE: Broker: Message size too large", 3)]

    def parked_event_count(self) -> int:
        return 1

    def parked_event(self, seq: int) -> ParkedEvent | None:
        return self.parked_events(1)[0] if seq == 1742 else None

    def retry_event(self, seq: int) -> list[int]:
        self.calls.append(("retry", seq))
        return [seq]

    def discard_event(self, seq: int) -> list[ParkedEvent]:
        self.calls.append(("discard-event", seq))
        return self.parked_events(1)

    def dead_letters(self, partition: int, start: int, limit: int) -> LetterPage:
        return LetterPage(partition, start, [self._letter()], None)

    def dead_letter(self, partition: int, offset: int) -> DeadLetter | None:
        return self._letter() if (partition, offset) == (0, 5) else None

    def replay_dead_letter(self, partition: int, offset: int, *, force: bool) -> LetterReport:
        self.calls.append(("replay-letter", partition, offset, force))
        return LetterReport(replayed=[(partition, offset)])

    @staticmethod
    def _letter() -> DeadLetter:
        return DeadLetter(0, 5, NOW, b"key", b"{not json", [
            ("dlq.reason", b"malformed-json"), ("dlq.detail", HOSTILE.encode()),
            ("dlq.source.topic", b"commands"), ("dlq.source.partition", b"2"),
            ("dlq.source.offset", b"99")])


def metrics_text() -> str:
    metrics = Metrics(component="all")
    metrics.count_outcomes("applied", {"none": 10})
    metrics.count_outcomes("parked", {"PRK-001": 1, "PRK-002": 1})
    metrics.relay_active.set(1)
    metrics.outbox_backlog.set(4)
    metrics.outbox_parked.set(1)
    return metrics.exposition().decode()


def processes(request: httpx.Request) -> httpx.Response:
    if request.url.host == "gone":
        raise httpx.ConnectError("connection refused")
    if request.url.path == "/metrics":
        return httpx.Response(200, text=metrics_text())
    return httpx.Response(503, json={"status": "not ready", "checks": {
        "database": {"ok": True}, "worker": {"ok": False, "why": "stuck"}}})


@pytest.fixture
def ops() -> FakeOperations:
    return FakeOperations()


@pytest.fixture
def client(ops: FakeOperations) -> TestClient:
    settings = Settings(console_viewer_token_hashes={"oncall": digest("look")},
                        console_operator_token_hashes={"alice": digest("act")},
                        console_processes={"run": "http://run:8000", "gone": "http://gone:1"})
    ticks = iter(range(0, 10_000, 5))  # each look 5 s after the one before
    watcher = Watcher(settings.console_processes, transport=httpx.MockTransport(processes),
                      clock=lambda: float(next(ticks)))
    return TestClient(create_app(settings, ops, watcher=watcher), base_url="http://console",
                      follow_redirects=False)


def sign_in(client: TestClient, token: str) -> str:
    """Sign in; returns the page's CSRF token."""
    answer = client.post("/login", data={"token": token, "next": "/parked"})
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/parked").text)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def test_the_console_does_not_start_without_a_token(ops: FakeOperations) -> None:
    with pytest.raises(ConfigurationError, match="at least one token"):
        create_app(Settings(console_viewer_token_hashes={}, console_operator_token_hashes={}),
                   ops)


def test_pages_send_a_browser_without_a_session_to_the_sign_in(client: TestClient) -> None:
    answer = client.get("/parked?x=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fparked%3Fx%3D1"
    form = client.get("/login?next=%2Fparked").text
    assert 'name="next" value="/parked"' in form
    assert '<label for="token">Access token</label>' in form


def test_signing_in_sets_a_strict_http_only_cookie(client: TestClient,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "phoenix_resources.console.audit")
    refused = client.post("/login", data={"token": "nope"})
    assert refused.status_code == 401
    assert "That token is not accepted." in refused.text
    answer = client.post("/login", data={"token": "look", "next": "//evil.example/"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(cookie.split("; "))
    assert "look" not in cookie
    assert [(r.getMessage(), getattr(r, "who", None)) for r in _audit(caplog)] == [
        ("console sign-in refused", "anonymous"), ("console sign-in", "oncall")]


def test_a_viewer_sees_but_cannot_act(client: TestClient, ops: FakeOperations,
                                      caplog: pytest.LogCaptureFixture) -> None:
    csrf = sign_in(client, "look")
    page = client.get("/parked").text
    assert str(RID) in page
    assert "Signed in as <strong>oncall</strong> (viewer)" in page
    assert "/replay" not in page
    assert "/discard" not in page
    assert client.get(f"/parked/{RID}/replay").status_code == 403
    caplog.set_level(logging.INFO, "phoenix_resources.console.audit")
    answer = client.post(f"/parked/{RID}/replay", data={"csrf": csrf})
    assert answer.status_code == 403
    assert "may view the console, not act" in answer.text
    assert ops.calls == []
    refusal = _audit(caplog)[-1]
    assert (refusal.getMessage(), refusal.who, refusal.status) == (  # type: ignore[attr-defined]
        "console request refused", "oncall", 403)


def test_an_action_needs_the_session_s_csrf_token(client: TestClient,
                                                  ops: FakeOperations) -> None:
    csrf = sign_in(client, "act")
    for data in ({}, {"csrf": ""}, {"csrf": csrf[:-2] + "xx"}):
        answer = client.post(f"/parked/{RID}/replay", data=data)
        assert answer.status_code == 403
        assert "CSRF token is missing or stale" in answer.text
    cross_site = client.post(f"/parked/{RID}/replay", data={"csrf": csrf},
                             headers={"sec-fetch-site": "cross-site"})
    assert cross_site.status_code == 403
    assert ops.calls == []


def test_an_operator_replays_after_confirming_and_it_is_audited(
        client: TestClient, ops: FakeOperations, caplog: pytest.LogCaptureFixture) -> None:
    csrf = sign_in(client, "act")
    confirm = client.get(f"/parked/{RID}/replay")
    assert confirm.status_code == 200
    assert f'action="/parked/{RID}/replay"' in confirm.text
    assert ops.calls == []  # the confirmation page changes nothing
    caplog.set_level(logging.INFO, "phoenix_resources.console.audit")
    done = client.post(f"/parked/{RID}/replay", data={"csrf": csrf_of(confirm.text)})
    assert csrf_of(confirm.text) == csrf
    assert done.status_code == 200
    assert ops.calls == [("replay", RID)]
    assert f"Resource {RID} replayed: 2 applied, 0 rejected." in done.text
    line = _audit(caplog)[-1]
    assert line.getMessage() == "console action"
    assert {k: getattr(line, k) for k in ("who", "role", "action", "target", "ok")} == {
        "who": "alice", "role": "operator", "action": "parked.replay", "target": str(RID),
        "ok": True}


def test_the_other_actions_reach_their_operations(client: TestClient,
                                                  ops: FakeOperations) -> None:
    csrf = sign_in(client, "act")
    assert client.post(f"/parked/{RID}/discard", data={"csrf": csrf, "reason": "bad  data"}
                       ).status_code == 200
    assert client.post("/outbox/1742/retry", data={"csrf": csrf}).status_code == 200
    assert client.post("/outbox/1742/discard", data={"csrf": csrf}).status_code == 200
    assert client.post("/dlq/0/5/replay", data={"csrf": csrf, "force": "yes"}).status_code == 200
    assert ops.calls == [("discard", RID, "bad data (by alice)"), ("retry", 1742),
                         ("discard-event", 1742), ("replay-letter", 0, 5, True)]
    for page in (f"/parked/{RID}/discard", "/outbox/1742/retry", "/outbox/1742/discard",
                 "/dlq/0/5/replay"):
        assert 'name="csrf"' in client.get(page).text
    assert client.get("/outbox/1/retry").status_code == 404
    assert client.get("/dlq/0/6/replay").status_code == 404


def test_a_bearer_header_acts_without_a_cookie_or_csrf(client: TestClient,
                                                       ops: FakeOperations) -> None:
    answer = client.post(f"/parked/{RID}/replay", headers={"authorization": "Bearer act"},
                         data={})
    assert answer.status_code == 200
    assert ops.calls == [("replay", RID)]
    assert client.post(f"/parked/{RID}/replay", headers={"authorization": "Bearer look"},
                       data={}).status_code == 403
    assert client.get("/parked", headers={"authorization": "Bearer wrong"}).status_code == 401


def test_a_form_must_be_a_small_urlencoded_form(client: TestClient) -> None:
    headers = {"authorization": "Bearer act"}
    assert client.post(f"/parked/{RID}/replay", headers=headers, json={}).status_code == 415
    assert client.post(f"/parked/{RID}/replay", headers=headers,
                       data={"x": "y" * 20_000}).status_code == 413


def test_what_the_database_or_broker_said_is_escaped(client: TestClient) -> None:
    sign_in(client, "act")
    for page in ("/parked", "/dlq"):
        text = client.get(page).text
        assert HOSTILE not in text
        assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in text


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    sign_in(client, "look")
    for path in ("/parked", "/login", "/static/console.css", "/healthz"):
        headers = client.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
    assert client.get("/parked").headers["cache-control"] == "no-store"


def test_a_database_outage_is_said_without_its_details(client: TestClient,
                                                       ops: FakeOperations) -> None:
    sign_in(client, "look")
    ops.down = True
    answer = client.get("/parked")
    assert answer.status_code == 503
    assert "DatabaseUnavailable" in answer.text
    assert "db.internal" not in answer.text
    overview = client.get("/")
    assert overview.status_code == 200
    assert "unknown: the database did not answer" in overview.text


def test_the_pipeline_page_says_what_each_process_answered(client: TestClient) -> None:
    sign_in(client, "look")
    page = client.get("/").text
    assert "unreachable (ConnectError: connection refused)" in page
    assert "not ready: worker" in page
    assert "applied 10, rejected 0, parked 2" in page
    assert "none reported: no partition is assigned" in page
    assert "4 waiting, 1 parked" in page
    assert "<dt>Relay leader</dt><dd>run</dd>" in page
    assert "2 commands of 1 resources" in page
    assert "measured between two refreshes" in page  # one look: no rate yet
    assert "/s commands" in client.get("/").text  # the second look has one


def test_process_state_reads_a_real_exposition() -> None:
    state = process_state("w", "http://w", metrics_text(),
                          (200, {"status": "ready", "checks": {"database": {"ok": True}}}),
                          None)
    assert state.ready is True
    assert state.component == "all"
    assert state.outcomes["applied"] == 10
    assert state.outcomes["parked"] == 2
    assert state.relay_active
    assert (state.outbox_waiting, state.outbox_parked) == (4, 1)
    gone = process_state("g", "http://g", None, None, "ConnectError: refused")
    assert (gone.reachable, gone.ready, gone.error) == (False, None, "ConnectError: refused")


def test_the_console_reports_its_readiness_and_metrics_without_a_token(
        ops: FakeOperations) -> None:
    """Like every process: /readyz (the database it acts on) and /metrics, open as
    /healthz; phoenix_ready{component="console"} mirrors /readyz."""
    settings = Settings(console_operator_token_hashes={"alice": digest("act")})
    database = {"ok": True}
    health = Health(checks={"database": lambda: dict(database)})
    client = TestClient(create_app(settings, ops, health=health), base_url="http://console",
                        follow_redirects=False)
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "checks": {
        "database": {"ok": True}}})
    text = client.get("/metrics").text
    assert 'phoenix_ready{component="console"} 1.0' in text
    assert 'phoenix_build_info{component="console"' in text
    assert "process_cpu_seconds_total" in text
    database["ok"] = False
    assert client.get("/readyz").status_code == 503
    assert 'phoenix_ready{component="console"} 0.0' in client.get("/metrics").text


def _audit(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The audit lines alone: other loggers (httpx's requests) may be on at INFO too, as
    whatever ran before in this process left the root logger."""
    return [r for r in caplog.records if r.name == "phoenix_resources.console.audit"]
