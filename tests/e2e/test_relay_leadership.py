"""One active relay, and a hung leader replaced without publishing again (real relay
processes, broker and PostgreSQL)."""

from __future__ import annotations

import os
import signal

import pytest

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings
from phoenix_resources.soak import check as soak_check
from phoenix_resources.soak.publish import Publisher
from phoenix_resources.soak.workload import Workload, generate
from tests.support.faults import lock_holders
from tests.support.pipeline import Pipeline, outcomes, scalar, wait_until
from tests.support.processes import Process

pytestmark = pytest.mark.e2e


def _drained(url: str, workload: Workload) -> None:
    wait_until(lambda: len(outcomes(url)) >= len(workload.commands), 90,
               "every command has an outcome")
    wait_until(lambda: scalar(url, "SELECT count(*) FROM outbox") == 0, 60,
               "the outbox drained")


def _exactly_once(settings: Settings, url: str, workload: Workload) -> None:
    seen = soak_check.observe(settings, url)
    failed = [c for c in soak_check.check(workload, seen) if not c.ok]
    assert failed == []
    assert len(seen.events) == len(workload.events), "an event was published twice"
    assert len(seen.rejections) == len(workload.rejections), "a rejection was published twice"


def test_two_relays_one_active_and_each_row_published_once(settings: Settings,
                                                          database_url: str) -> None:
    workload = generate(31, resources=60, commands_each=8, poison=1)
    relays = [Process("relay", settings), Process("relay", settings)]
    try:
        wait_until(lambda: sum("relay is the leader" in r.output() for r in relays) >= 1, 60,
                   "a leader elected")
        with Pipeline(settings, relay=False):
            Publisher(settings, chunk=50).send(workload.records)
            _drained(database_url, workload)
        assert len(lock_holders(database_url, settings.relay_lock_key)) == 1
        assert sum("relay is the leader" in r.output() for r in relays) == 1
    finally:
        for r in relays:
            r.terminate()
    _exactly_once(settings, database_url, workload)


def test_a_stopped_leader_is_replaced_and_publishes_nothing_when_it_wakes(
        settings: Settings, database_url: str) -> None:
    fast = settings.model_copy(update={"relay_session_timeout_s": 3.0})
    workload = generate(32, resources=60, commands_each=6, poison=1)
    third = len(workload.records) // 3
    old = Process("relay", fast)
    old.wait_for_log("relay is the leader")
    new = Process("relay", fast)
    try:
        with Pipeline(fast, relay=False):
            Publisher(fast).send(workload.records[:third])
            first = {r.command_id for r in workload.records[:third] if r.command_id}
            # Nothing in flight when it stops: every event of the first third published and
            # its row deleted (a row in flight would be published again, rightly, by the
            # next leader — at least once — which is not what this test is about).
            wait_until(lambda: len(outcomes(database_url)) == len(first)
                       and scalar(database_url, "SELECT count(*) FROM outbox") == 0, 60,
                       "the first third published")
            os.killpg(old.pid, signal.SIGSTOP)  # hung: its socket stays open, it says nothing
            try:
                Publisher(fast).send(workload.records[third:2 * third])
                new.wait_for_log("relay is the leader", timeout=60)
                wait_until(lambda: scalar(database_url, "SELECT count(*) FROM outbox") == 0,
                           60, "the standby published the second third")
            finally:
                os.killpg(old.pid, signal.SIGCONT)
            old.wait_for_log("relay lost the lead", timeout=60)
            Publisher(fast).send(workload.records[2 * third:])
            _drained(database_url, workload)
        assert len(lock_holders(database_url, fast.relay_lock_key)) == 1
        assert old.output().count("relay is the leader") == 1, "the woken relay led again"
        assert new.alive()
        assert old.alive()
    finally:
        old.terminate()
        new.terminate()
    _exactly_once(fast, database_url, workload)


def test_the_relay_session_ends_itself_when_its_owner_stops_answering(
        settings: Settings) -> None:
    session = bootstrap.relay_parts(settings.model_copy(
        update={"relay_session_timeout_s": 4.0, "db_statement_timeout_ms": 1234})).reader
    try:
        conn = session.conn
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                 for name in ("idle_session_timeout", "idle_in_transaction_session_timeout",
                              "statement_timeout", "tcp_keepalives_idle",
                              "tcp_keepalives_interval", "tcp_keepalives_count",
                              "tcp_user_timeout", "plan_cache_mode")}
        assert shown == {"idle_session_timeout": "4s",
                         "idle_in_transaction_session_timeout": "4s",
                         "statement_timeout": "1234ms", "tcp_keepalives_idle": "1",
                         "tcp_keepalives_interval": "1", "tcp_keepalives_count": "3",
                         "tcp_user_timeout": "4000",
                         "plan_cache_mode": "force_custom_plan"}
        assert session.try_lead()
        assert session.holds_lead()
        conn.close()  # the session is gone: the lock with it; never re-led unknowingly
        with pytest.raises(Exception, match="lock went with it"):
            session.fetch(1)
    finally:
        session.close()
