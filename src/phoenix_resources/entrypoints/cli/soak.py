"""``phoenix-resources soak``: the fault kit (``phoenix_resources.soak``).

By default it brings up a private throwaway Kafka + PostgreSQL (the devstack, on free ports
in a temp dir), starts its own workers, relays and API against them, drives a seeded
stream while injecting faults, checks the result against the reference model, prints the
table and exits 0 (every invariant held, every planned fault injected) or 1.

``--topology cluster`` makes that private stack production's shape (three brokers, a
synchronous PostgreSQL pair: ``soak/cluster.py``) and adds its faults to the plan:
PostgreSQL switchover and crash-promotion, a broker leader killed, in-sync replicas below
``min.insync.replicas``, a hung broker.

``--external`` runs against the deployment the ``PHOENIX_*`` settings name instead: the kit
still starts its own worker / relay / API processes (it must be able to kill them), and
restarts PostgreSQL and Kafka only through the ``--restart-postgres`` / ``--restart-kafka``
shell hooks; without a hook, that fault is not planned. The database must be migrated and
empty, and the topics fresh: the checks read all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from phoenix_resources.entrypoints.cli.common import (
    EXIT_ERROR,
    EXIT_USAGE,
    fail,
    load_settings,
    require_server,
)
from phoenix_resources.entrypoints.cli.stack import Topology

if TYPE_CHECKING:
    from phoenix_resources.config import Settings
    from phoenix_resources.soak.campaign import Plan
    from phoenix_resources.soak.targets import Services


def register(app: typer.Typer) -> None:
    """Add ``soak`` to ``app``."""
    app.command()(soak)


def soak(
    minutes: Annotated[float, typer.Option(
        help="Length of the fault window; 0 runs the bounded campaign of `make test` "
             "(~3 minutes)")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the stream and of the fault "
                                           "schedule (same seed, same plan)")] = 1,
    *,
    external: Annotated[bool, typer.Option(help="Use the deployment of the PHOENIX_* "
                                                "settings, not a private stack")] = False,
    restart_postgres: Annotated[str | None, typer.Option(
        help="--external: shell command that restarts PostgreSQL")] = None,
    restart_kafka: Annotated[str | None, typer.Option(
        help="--external: shell command that restarts the Kafka broker(s)")] = None,
    topology: Annotated[Topology, typer.Option(
        help="The private stack: single (one broker, one PostgreSQL) or cluster (three "
             "brokers, a synchronous PostgreSQL pair, and their faults)")] = Topology.single,
) -> None:
    """Drive a seeded stream through a deployment under faults and check every guarantee.

    Example: phoenix-resources soak --minutes 30 --seed 7
    """
    require_server("soak")
    from phoenix_resources.soak.campaign import Plan

    cluster = topology is Topology.cluster
    if minutes > 0:
        plan = Plan.long(minutes, seed, cluster=cluster)
    else:
        plan = Plan.bounded_cluster(seed) if cluster else Plan.bounded(seed)
    if external and cluster:
        raise fail("--topology cluster starts a private cluster: not with --external",
                   EXIT_USAGE)
    if cluster:
        code = _cluster(plan)
    elif external:
        code = _external(plan, restart_postgres, restart_kafka)
    else:
        if restart_postgres or restart_kafka:
            raise fail("--restart-postgres / --restart-kafka need --external", EXIT_USAGE)
        code = _local(plan)
    raise typer.Exit(code)


def _run(plan: Plan, settings: Settings, services: Services) -> int:
    from phoenix_resources.soak.campaign import Campaign
    from phoenix_resources.soak.report import render

    report = Campaign(plan, settings, services,
                      say=lambda line: typer.echo(line, err=True)).run()
    typer.echo(render(report))
    return 0 if report.ok else EXIT_ERROR


def _local(plan: Plan) -> int:
    from phoenix_resources import bootstrap
    from phoenix_resources.adapters.postgres import schema
    from phoenix_resources.devstack.stack import ephemeral_stack
    from phoenix_resources.soak.targets import LocalServices

    base = load_settings()
    typer.echo("starting a private Kafka + PostgreSQL …", err=True)
    with ephemeral_stack(fast=False) as stack:
        settings = _on_stack(base, stack.postgres.url(), None, stack.broker.bootstrap_servers)
        schema.upgrade(settings.database_url)
        bootstrap.prepare_topics(settings)
        return _run(plan, settings, LocalServices(stack.postgres, stack.broker))


def _on_stack(base: Settings, database_url: str, read_url: str | None,
              bootstrap_servers: str) -> Settings:
    """The settings of the soak's processes on its private stack: small topics, a relay that
    hands over its lead within seconds, JSON logs the checks read."""
    return base.model_copy(update={
        "database_url": database_url, "read_database_url": read_url,
        "kafka_bootstrap_servers": bootstrap_servers, "kafka_options": {},
        "topic_partitions": 3, "create_topics": True, "relay_session_timeout_s": 3.0,
        "relay_poll_interval_s": 0.2, "schema_registry_url": None, "log_format": "json"})


def _cluster(plan: Plan) -> int:
    from phoenix_resources import bootstrap
    from phoenix_resources.adapters.postgres import schema
    from phoenix_resources.devstack.kafka_cluster import BROKER_IDS
    from phoenix_resources.devstack.stack import ephemeral_cluster_stack
    from phoenix_resources.soak.cluster import ClusterServices

    base = load_settings()
    typer.echo("starting a private Kafka cluster + PostgreSQL pair …", err=True)
    with ephemeral_cluster_stack(fast=False) as stack:
        settings = _on_stack(base, stack.postgres.url(), stack.postgres.read_url(),
                             stack.kafka.bootstrap_servers)
        schema.upgrade(settings.database_url)
        bootstrap.prepare_topics(settings)
        services = ClusterServices(stack.kafka, BROKER_IDS, stack.postgres,
                                   bootstrap.topics_to_create(settings), seed=plan.seed)
        return _run(plan, settings, services)


def _external(plan: Plan, restart_postgres: str | None, restart_kafka: str | None) -> int:
    from dataclasses import replace

    import psycopg

    from phoenix_resources.soak.targets import HookServices

    settings = load_settings()
    with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM processed_commands").fetchone()
    if row and row[0]:
        raise fail("the database already holds commands: the checks need an empty, migrated "
                   "database and fresh topics", EXIT_USAGE)
    faults = dict(plan.faults)
    if not restart_postgres:
        faults.pop("postgres-restart", None)
    if not restart_kafka:
        faults.pop("kafka-restart", None)
    return _run(replace(plan, faults=faults), settings,
                HookServices(restart_postgres, restart_kafka))
