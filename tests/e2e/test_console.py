"""The operators' web console in a real browser (the system's Chromium, driven by
Playwright) against a real ``phoenix-resources run`` and a real ``phoenix-resources
console``: a command PostgreSQL refuses is parked, the console shows it with its error, code,
attempts and source offset, and replaying it from the console (after the cause is fixed, with
a confirmation, by keyboard) applies it; a dead letter is listed and replayed; a parked outbox
row is retried and published; a viewer cannot act, a form without its CSRF token is refused,
and every action is in the console's audit log.

Screenshots go to ``$PHOENIX_ARTIFACTS`` (default: the test's temp dir), never the repo.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from phoenix_resources.config import Settings
from tests.e2e.test_docs_page import (
    CHROMIUM_FLAGS,
    _chromium,
    artifacts,  # noqa: F401 (the fixture, shared)
)
from tests.integration.test_parking import REFUSE_POISON
from tests.support.net import free_port
from tests.support.pipeline import (
    ACTIVE,
    create,
    outcomes,
    publish,
    publish_raw,
    resources,
    update,
    wait_until,
)
from tests.support.processes import Process
from tests.support.services import unavailable

pytestmark = pytest.mark.e2e

VIEWER, OPERATOR = "viewer-token-for-the-test", "operator-token-for-the-test"
ACCESSIBILITY_GAPS = """() => {
  const gaps = [];
  for (const c of document.querySelectorAll('input:not([type=hidden]), button, select, a')) {
    const label = c.id && document.querySelector(`label[for="${c.id}"]`);
    if (!(label || c.getAttribute('aria-label') || c.textContent.trim()))
      gaps.push(c.outerHTML.slice(0, 80));
  }
  for (const t of document.querySelectorAll('table')) {
    if (!t.querySelector('caption')) gaps.push('table without caption');
    for (const th of t.querySelectorAll('th'))
      if (!th.getAttribute('scope')) gaps.push('th without scope: ' + th.textContent);
  }
  if (document.querySelectorAll('h1').length !== 1) gaps.push('not exactly one h1');
  if (!document.querySelector('[role=status][aria-live]')) gaps.push('no status region');
  return gaps;
}"""


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def stack(settings: Settings, database_url: str) -> Iterator[tuple[str, str, Process]]:
    """A ``run`` process (worker, relay, API) and a console watching it and a process that
    is not there; yields the console's and the API's base URLs and the console process."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(REFUSE_POISON)  # type: ignore[arg-type]
    api = f"http://127.0.0.1:{free_port()}"
    run = Process("run", settings, PHOENIX_HTTP_PORT=api.rsplit(":", 1)[1],
                  PHOENIX_READ_DATABASE_URL=database_url)
    console_port = free_port()
    console = Process("console", settings, PHOENIX_CONSOLE_PORT=str(console_port),
                      PHOENIX_CONSOLE_PROCESSES=json.dumps({
                          "run": api, "gone": f"http://127.0.0.1:{free_port()}"}),
                      PHOENIX_CONSOLE_VIEWER_TOKEN_HASHES=json.dumps(
                          {"oncall": _sha256(VIEWER)}),
                      PHOENIX_CONSOLE_OPERATOR_TOKEN_HASHES=json.dumps(
                          {"alice": _sha256(OPERATOR)}))
    base = f"http://127.0.0.1:{console_port}"
    try:
        run.wait_for_log("partitions assigned", timeout=90)
        wait_until(lambda: _answers(f"{base}/healthz"), 60, "the console answers")
        yield base, api, console
    finally:
        for process in (console, run):
            assert process.alive(), f"{process.command} stopped:\n{process.output()[-4000:]}"
            process.terminate()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _database(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, args)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


@dataclass
class Browser:
    page: Any
    base: str
    artifacts: Path

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.artifacts / f"console-{name}.png"), full_page=True)

    def heading(self) -> Any:
        return self.page.get_by_role("heading", level=1)

    def sign_in(self, token: str) -> None:
        """Through the form, from a page that needs it and back to it, by keyboard."""
        from playwright.sync_api import expect

        self.page.goto(f"{self.base}/parked")
        expect(self.page).to_have_url(re.compile(r"/login\?next=%2Fparked$"))
        self.page.get_by_label("Access token").fill(token)
        self.page.keyboard.press("Enter")
        expect(self.heading()).to_have_text("Parked commands")

    def accessible(self) -> None:
        """Labelled controls, captioned tables with scoped headers, one h1, a status
        region; and nothing the page's CSP refused."""
        assert self.page.evaluate(ACCESSIBILITY_GAPS) == []
        assert self.page.evaluate("window.__csp") == []


def test_an_operator_replays_a_parked_command_from_the_console(
        settings: Settings, database_url: str, stack: tuple[str, str, Process],
        artifacts: Path, tmp_path: Path) -> None:  # noqa: F811 (the fixture)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        unavailable("Playwright", f"{e} (it is in the dev extra)")
    base, api, console = stack
    bad = uuid.uuid4()
    parked = [create(bad, "poison"), update(bad, status=ACTIVE)]
    publish(settings, [*parked, create(uuid.uuid4(), "fine")])
    publish_raw(settings, [(str(uuid.uuid4()).encode(), b'{"not": json',
                            [("content-type", b"application/json")])])
    wait_until(lambda: {c.command_id for c in parked} <= set(outcomes(database_url)), 60,
               "the poisoned commands parked")
    assert {outcomes(database_url)[c.command_id][:2] for c in parked} == {
        ("parked", "PRK-001"), ("parked", "PRK-002")}
    seq = _park_an_outbox_row(database_url, settings.events_topic)
    foreign: list[str] = []

    def only_the_console(route: Any) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=_chromium(), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 1000})
        try:
            page = context.new_page()
            page.add_init_script(
                "window.__csp = []; document.addEventListener('securitypolicyviolation',"
                " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")
            page.route("**/*", only_the_console)
            browser = Browser(page, base, artifacts)
            stale = _a_viewer_cannot_act(browser, bad)
            _an_action_without_this_session_s_csrf_token_is_refused(browser, bad, stale)
            _the_pipeline_at_a_glance(browser)
            _the_parked_commands_of_the_resource(browser, bad, parked)
            _database(database_url, "DROP TRIGGER refuse_poison ON resources")  # the fix
            _replay_by_keyboard_after_confirming(browser, bad)
            _a_dead_letter_is_listed_and_replayed(browser, settings.commands_topic)
            _a_parked_outbox_row_is_retried(browser, seq)
        finally:
            context.close()

    # Applied: the database and the API say so; the retried row was published.
    state = resources(database_url)[bad]
    assert (state["name"], state["status"], state["version"]) == ("poison", "active", 2)
    assert {outcomes(database_url)[c.command_id][0] for c in parked} == {"applied"}
    answer = httpx.get(f"{api}/api/v1/resources/{bad}", timeout=5).json()
    assert (answer["status"], answer["version"]) == ("active", 2)
    wait_until(lambda: _database(database_url, "SELECT 1 FROM outbox WHERE seq = %s",
                                 seq) == [], 30, "the retried outbox row published")
    assert foreign == [], "the console loaded something from elsewhere"
    _every_action_and_refusal_is_audited(console.output())
    assert (artifacts / "console-replayed.png").stat().st_size > 10_000


def _park_an_outbox_row(database_url: str, topic: str) -> int:
    """An outbox row as the relay parks one the broker refused for good."""
    (seq,), = _database(database_url, """
        INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload, occurred_at,
                            parked_reason, parked_at)
        VALUES (gen_random_uuid(), 'resource', %s, 'ResourceUpdated', %s, '\\x00'::bytea,
                now(), 'UNKNOWN_TOPIC_OR_PART: Broker: Unknown topic or partition', now())
        RETURNING seq""", str(uuid.uuid4()), topic)
    return int(seq)


def _a_viewer_cannot_act(b: Browser, bad: uuid.UUID) -> str:
    """A viewer sees the lot, is offered no action, and is refused one (403) even with its
    session's CSRF token; returns that token."""
    from playwright.sync_api import expect

    b.sign_in(VIEWER)
    b.accessible()
    expect(b.page.get_by_role("row").filter(has_text=str(bad))).to_contain_text(
        "refusing a poison row")
    expect(b.page.get_by_role("link", name=re.compile("^Replay"))).to_have_count(0)
    csrf = b.page.locator("input[name=csrf]").first.get_attribute("value") or ""
    assert csrf
    assert b.page.request.post(f"{b.base}/parked/{bad}/replay", form={"csrf": csrf}
                               ).status == 403
    b.page.get_by_role("button", name="Sign out").click()
    expect(b.heading()).to_have_text("Sign in")
    return csrf


def _an_action_without_this_session_s_csrf_token_is_refused(b: Browser, bad: uuid.UUID,
                                                            stale: str) -> None:
    b.sign_in(OPERATOR)
    assert b.page.request.post(f"{b.base}/parked/{bad}/replay", form={}).status == 403
    assert b.page.request.post(f"{b.base}/parked/{bad}/replay", form={"csrf": stale}
                               ).status == 403


def _the_pipeline_at_a_glance(b: Browser) -> None:
    """Outcomes, the leader, the database's counts, a rate once the page refreshed itself,
    and the process that does not answer said to be unreachable."""
    from playwright.sync_api import expect

    b.page.goto(b.base)
    processes = b.page.get_by_role("table", name=re.compile("Configured processes"))
    expect(processes.get_by_role("row").filter(has_text="gone")).to_contain_text(
        "unreachable")
    summary = b.page.locator("#summary + dl")
    expect(summary.locator("dt:text('Relay leader') + dd")).to_have_text("run",
                                                                         timeout=30_000)
    expect(summary).to_contain_text("parked 2", timeout=30_000)
    expect(summary).to_contain_text("dead-lettered 1")
    expect(summary).to_contain_text("2 commands of 1 resources")
    expect(summary.locator("dt:text('Throughput') + dd")).to_contain_text(
        "/s commands", timeout=20_000)
    b.accessible()
    b.shot("pipeline")


def _the_parked_commands_of_the_resource(b: Browser, bad: uuid.UUID,
                                         parked: list[Any]) -> None:
    """Each with its error, code, attempts and source partition / offset, in order."""
    from playwright.sync_api import expect

    b.page.get_by_role("link", name="Parked commands", exact=True).click()
    b.page.get_by_role("link", name=str(bad), exact=True).click()
    rows = b.page.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(3)
    for text in (str(parked[0].command_id), "PRK-001", "refusing a poison row"):
        expect(rows.nth(1)).to_contain_text(text)
    cells = rows.nth(1).get_by_role("cell").all_inner_texts()
    assert cells[4] == "0"  # attempts
    assert re.fullmatch(r"\d+ / \d+", cells[6]), cells  # source partition / offset
    expect(rows.nth(2)).to_contain_text(str(parked[1].command_id))
    expect(rows.nth(2)).to_contain_text("PRK-002")
    b.accessible()
    b.shot("parked")


def _replay_by_keyboard_after_confirming(b: Browser, bad: uuid.UUID) -> None:
    from playwright.sync_api import expect

    b.page.get_by_role("link", name=f"Replay the commands of resource {bad}").focus()
    b.page.keyboard.press("Enter")
    expect(b.heading()).to_have_text(f"Replay resource {bad}?")
    b.accessible()
    confirm = b.page.get_by_role("button", name="Replay 2 command(s)")
    for _ in range(30):
        if confirm.evaluate("button => button === document.activeElement"):
            break
        b.page.keyboard.press("Tab")
    assert confirm.evaluate("button => button === document.activeElement"), "Tab never got there"
    assert confirm.evaluate("button => getComputedStyle(button).outlineStyle") != "none"
    b.shot("confirm")
    b.page.keyboard.press("Enter")
    expect(b.page.get_by_role("status")).to_have_text(
        f"Resource {bad} replayed: 2 applied, 0 rejected.")
    expect(b.page.get_by_role("row").filter(has_text=str(bad))).to_have_count(0)
    b.shot("replayed")


def _a_dead_letter_is_listed_and_replayed(b: Browser, commands_topic: str) -> None:
    """Listed with its reason and source; replayed, it fails again and comes back flagged."""
    from playwright.sync_api import expect

    b.page.get_by_role("link", name="Dead letters").click()
    first = b.page.get_by_role("table").get_by_role("row").nth(1)
    expect(first).to_contain_text("malformed-json")
    expect(first).to_contain_text(f"{commands_topic} [")
    where = first.get_by_role("rowheader").inner_text()
    b.accessible()
    b.shot("dead-letters")
    first.get_by_role("link", name=f"Replay dead letter {where}").click()
    b.page.get_by_role("button", name=f"Replay dead letter {where}").click()
    expect(b.page.get_by_role("status")).to_have_text(
        f"Dead letter {where} replayed to the commands topic.")

    def flagged_again() -> bool:
        b.page.goto(f"{b.base}/dlq")
        return "replayed" in b.page.get_by_role("table").inner_text()

    wait_until(flagged_again, 60, "the replayed dead letter dead-lettered again")


def _a_parked_outbox_row_is_retried(b: Browser, seq: int) -> None:
    from playwright.sync_api import expect

    b.page.get_by_role("link", name="Parked events").click()
    expect(b.page.get_by_role("row").filter(has_text=f"{seq}")).to_contain_text(
        "UNKNOWN_TOPIC_OR_PART")
    b.accessible()
    b.page.get_by_role("link", name=f"Retry row {seq}").click()
    b.page.get_by_role("button", name=f"Retry row {seq}").click()
    expect(b.page.get_by_role("status")).to_contain_text(f"Row {seq} released")
    b.shot("outbox-retried")


def _every_action_and_refusal_is_audited(output: str) -> None:
    audit = [line for line in output.splitlines() if "phoenix_resources.console.audit" in line]
    assert any("console request refused" in line and "who=oncall" in line
               and "status=403" in line for line in audit), audit
    assert any("console request refused" in line and "who=alice" in line for line in audit)
    for action in ("parked.replay", "dlq.replay", "outbox.retry"):
        assert any("console action" in line and "who=alice" in line
                   and f"action={action}" in line and "ok=True" in line
                   for line in audit), (action, audit)
