"""Run real Apache Kafka (KRaft, from Maven Central jars) and PostgreSQL (Debian packages)
without Docker: a persistent stack under ``.local/`` for ``make run`` and throwaway ones
(free ports, temp dirs) for tests. Two shapes: one broker and one PostgreSQL (``single``),
or production's (``cluster``): three brokers and a controller, a synchronous PostgreSQL
primary/standby pair.

This is developer tooling, not part of the service's layers: nothing in ``domain``,
``adapters`` or ``entrypoints`` imports it, except the CLI's ``stack`` command.
"""

from __future__ import annotations

from phoenix_resources.devstack.kafka import KafkaBroker
from phoenix_resources.devstack.kafka_cluster import KafkaCluster
from phoenix_resources.devstack.postgres import PostgresCluster
from phoenix_resources.devstack.postgres_ha import PostgresHA

__all__ = ["KafkaBroker", "KafkaCluster", "PostgresCluster", "PostgresHA"]
