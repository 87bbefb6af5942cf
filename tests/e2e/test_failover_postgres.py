"""PostgreSQL failovers under a live stream (promises 6 and 11), with real processes.

A synchronous primary/standby pair of the test's own, the session's broker with topics of the
test's own; two workers, two relays (one leads) and the API (reading through the standby-first
URL) as ``phoenix-resources`` processes; creates and updates over many resources published
continuously. Mid-stream, one failover per test: the primary read-only for 20 s, a planned
switchover, a crash of the primary with the standby promoted (then the old primary rejoins).

Each test checks that nothing was lost or applied twice, that no good command was parked or
dead-lettered, that events stayed contiguous per resource, that two relays never led at once
and one leads afterwards, and that the API answered lookups; and it measures what the fault
did to the stream (printed, and written as JSON beside the test's temporary files).

The relays prune recorded outcomes every second here (5 minutes by default), so a leader
writes through every fault.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from phoenix_resources.adapters.postgres import schema
from phoenix_resources.config import Settings
from phoenix_resources.devstack.postgres_ha import PostgresHA
from phoenix_resources.soak import check as soak_check
from tests.support.clusters import postgres_ha
from tests.support.failover import (
    Deployment,
    Sampler,
    Samples,
    Stream,
    event_times,
    measure,
)
from tests.support.faults import lock_holders
from tests.support.kafka import Topics
from tests.support.net import free_port
from tests.support.pipeline import wait_until
from tests.support.workload import stream

pytestmark = pytest.mark.e2e

RATE = 60.0
"""Commands per second, published continuously."""
READ_ONLY_S = 20.0


@pytest.fixture
def pair() -> Iterator[PostgresHA]:
    """A migrated primary/standby pair of this test's own (migrated through the multi-host
    URL, as a deployment would be)."""
    with postgres_ha() as ha:
        schema.upgrade(ha.url())
        yield ha


@pytest.fixture
def on_pair(pair: PostgresHA, kafka_servers: str, topics: Topics) -> Settings:
    return Settings(
        database_url=pair.url(), read_database_url=pair.read_url(),
        kafka_bootstrap_servers=kafka_servers, commands_topic=topics.commands,
        events_topic=topics.events, rejections_topic=topics.rejections, dlq_topic=topics.dlq,
        consumer_group=f"g-{topics.commands}", create_topics=False, log_format="console",
        prune_interval_s=1.0, http_port=free_port(), grpc_port=free_port())


def _scalar(url: str, sql: str, *args: object) -> object:
    """One value, or None while the database cannot be reached."""
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            row = conn.execute(sql, args).fetchone()
            return row[0] if row else None
    except psycopg.Error:
        return None


def _applied_since(url: str, since: float) -> bool:
    return bool(_scalar(url, "SELECT EXISTS (SELECT 1 FROM processed_commands "
                             "WHERE processed_at > to_timestamp(%s))", since))


def _count(url: str, table: str) -> int:
    value = _scalar(url, f"SELECT count(*) FROM {table}")
    return int(value) if isinstance(value, int) else -1


def test_read_only_primary_is_waited_out(pair: PostgresHA, on_pair: Settings,
                                         tmp_path: Path) -> None:
    def fault() -> None:
        pair.set_read_only(True)
        time.sleep(READ_ONLY_S)
        pair.set_read_only(False)

    result = _failover("read-only", pair, on_pair, fault, tmp_path)
    # The fault is named for what it is (metrics, readiness, the alert on a database that
    # refuses work), not taken for an outage or for the commands' own failure.
    transient = result["transient_errors"]
    assert isinstance(transient, dict)
    assert transient.get("worker/DatabaseReadOnly", 0) >= 1, result


def test_planned_switchover(pair: PostgresHA, on_pair: Settings, tmp_path: Path) -> None:
    old = pair.primary()
    _failover("switchover", pair, on_pair, pair.switchover, tmp_path)
    assert pair.primary() is pair.peer(old)


def test_primary_killed_and_standby_promoted(pair: PostgresHA, on_pair: Settings,
                                             tmp_path: Path) -> None:
    old = pair.primary()
    _failover("crash-promote", pair, on_pair, pair.crash_promote, tmp_path,
              after=pair.rejoin)
    assert pair.primary() is pair.peer(old)
    assert pair.standby() is old


def _failover(kind: str, ha: PostgresHA, settings: Settings, fault: Callable[[], object],
              tmp_path: Path, *, after: Callable[[], object] | None = None,
              ) -> dict[str, object]:
    """Run the deployment through ``fault`` (then ``after``, once commands apply again),
    check every invariant, and write what was measured; returns it."""
    url = ha.url()
    commands = stream(resources=150, updates_each=40)
    deployment = Deployment.start(settings)
    publisher: Stream | None = None
    sampler: Sampler | None = None
    try:
        with httpx.Client(timeout=3.0) as client:
            wait_until(lambda: deployment.ready(client), 180,
                       "workers and API ready, one relay leading")
            publisher = Stream(settings, commands, rate=RATE).start()
            wait_until(lambda: _count(url, "processed_commands") >= 300, 120,
                       "the stream flowing")
            sampler = Sampler(deployment, commands[0].resource_id,
                              count_url=ha.read_url()).start()
            time.sleep(2)
            started = time.time()
            fault()
            ended = time.time()
            wait_until(lambda: _applied_since(url, ended), 180,
                       "commands applied again after the fault")
            if after is not None:
                after()
            time.sleep(5)
            publisher.stop()
            sent = publisher.sent
            wait_until(lambda: _count(url, "processed_commands") >= sent, 180,
                       "every command sent recorded")
            wait_until(lambda: _count(url, "outbox") == 0, 120, "the outbox drained")
            wait_until(lambda: deployment.leaders(client).count(1) == 1, 60,
                       "one relay leading")
            last = commands[sent - 1]
            wait_until(lambda: _looked_up_version(client, deployment, last.resource_id)
                       == publisher.workload().final[last.resource_id].version, 60,
                       "the API answering with the final state")
            samples = sampler.stop()
            transient = deployment.transient_errors(client)
            leaders = deployment.leaders(client)
        result = _check_and_measure(kind, ha, settings, publisher, samples=samples,
                                    fault=(started, ended), transient=transient)
        dead = [p.log_path.name for p in deployment.processes() if not p.alive()]
        assert dead == [], f"processes died: {dead}"
        assert leaders.count(1) == 1
        assert len(lock_holders(url, settings.relay_lock_key)) == 1
        _write(tmp_path, kind, result)
        return result
    except BaseException:
        print(deployment.logs())
        raise
    finally:
        if sampler is not None:
            sampler.stop()
        if publisher is not None:
            publisher.stop()
        deployment.stop()


def _looked_up_version(client: httpx.Client, d: Deployment, resource_id: object) -> int | None:
    try:
        r = client.get(f"{d.api_url}/api/v1/resources/{resource_id}")
    except httpx.HTTPError:
        return None
    return int(r.json()["version"]) if r.status_code == 200 else None


def _check_and_measure(kind: str, ha: PostgresHA, settings: Settings, publisher: Stream, *,
                       samples: Samples, fault: tuple[float, float],
                       transient: dict[str, int]) -> dict[str, object]:
    url = ha.url()
    workload = publisher.workload()
    parked = _count(url, "parked_commands") + _count(url, "parked_resources")
    seen = soak_check.observe(settings, url)
    checks = {c.name: c for c in soak_check.check(workload, seen)}
    dead_letters = len(seen.dead_letter_keys)
    measured = measure(kind, fault, recorded=samples.recorded,
                       published=publisher.published_at, events=event_times(settings),
                       counts={"lost": checks["nothing lost"].violations,
                        "applied_twice": checks["nothing applied twice"].violations,
                        "parked": parked, "dead_lettered": dead_letters})
    result: dict[str, object] = {**measured.row(), "commands": len(workload.commands),
                                 "api": _api_summary(samples, fault, measured.resumed_at),
                                 "workers_not_ready": _readiness_summary(samples),
                                 "transient_errors": transient}
    print(f"\n{kind}: " + json.dumps(result))
    # No good command parked or dead-lettered: the environment is never charged to one.
    assert (parked, dead_letters) == (0, 0), result
    failed = [f"{c.name}: {c.violations} ({'; '.join(c.examples)})"
              for c in checks.values() if not c.ok]
    assert failed == [], failed
    assert {o for o, _, _ in seen.outcomes.values()} == {"applied"}
    assert samples.overlaps == [], f"two relays led at once: {samples.overlaps[:5]}"
    assert samples.leaders, "the relays were never sampled"
    lookups = result["api"]
    assert isinstance(lookups, dict)
    assert lookups["after_failed"] == 0, lookups
    # The read URL kept a node throughout (the standby, promoted or not): lookups answered.
    assert lookups["during_ok"] > 0, lookups
    assert lookups["during_failed"] == 0, lookups
    return result


def _api_summary(samples: Samples, fault: tuple[float, float],
                 resumed_at: float) -> dict[str, int]:
    during = [s for t, s in samples.lookups if fault[0] <= t <= max(fault[1], resumed_at)]
    after = [s for t, s in samples.lookups if t > max(fault[1], resumed_at) + 5]
    return {"during_ok": sum(s == 200 for s in during),
            "during_failed": sum(s != 200 for s in during),
            "after_ok": sum(s == 200 for s in after),
            "after_failed": sum(s != 200 for s in after)}


def _readiness_summary(samples: Samples) -> dict[str, object]:
    """Per worker: how many readiness samples said no, and the faults named meanwhile."""
    out: dict[str, object] = {}
    for _, worker, status, paused_by in samples.readiness:
        entry = out.setdefault(worker, {"not_ready": 0, "paused_by": []})
        assert isinstance(entry, dict)
        entry["not_ready"] += status != 200
        if paused_by and paused_by not in entry["paused_by"]:
            entry["paused_by"].append(paused_by)
    return out


def _write(tmp_path: Path, kind: str, result: dict[str, object]) -> None:
    path = tmp_path / f"failover-{kind}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"{kind}: measurements written to {path}")
