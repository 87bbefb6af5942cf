"""One partition per resource, whoever publishes: our producers agree with the Java client."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from phoenix_resources.adapters import kafka
from phoenix_resources.config import Settings
from phoenix_resources.devstack.kafka import libs_dir
from tests.support.java import JAVA_DIR
from tests.support.kafka import create_topics, read_all

pytestmark = pytest.mark.integration


def test_python_and_java_publishers_choose_the_same_partition_for_a_key(
        kafka_servers: str) -> None:
    topic = f"t.{uuid.uuid4().hex[:10]}.partitions"
    create_topics(kafka_servers, {topic: 12})
    keys = [str(uuid.uuid4()) for _ in range(40)]
    java = subprocess.run(
        ["java", "-cp", f"{libs_dir()}/*", str(JAVA_DIR / "PublishKeys.java"),
         kafka_servers, topic, *keys],
        check=True, capture_output=True, text=True, timeout=120)
    by_java = dict(line.split() for line in java.stdout.splitlines())

    producer = kafka.new_producer(Settings(kafka_bootstrap_servers=kafka_servers))
    for key in keys:
        producer.produce(topic, key=key.encode(), value=b"python")
    assert producer.flush(30) == 0

    by_python = {}
    for message in read_all(kafka_servers, topic, expected=2 * len(keys)):
        if message.value() == b"python":
            by_python[(message.key() or b"").decode()] = str(message.partition())
    assert len(set(by_java.values())) > 1, "the keys spread over several partitions"
    assert by_python == by_java
