"""Generated records through a live worker: ≥ 2,000 inputs (arbitrary bytes, hostile JSON and
Avro commands, well-formed commands, arbitrary header sets and keys) on the real broker and
PostgreSQL. Every input ends applied, rejected, parked or dead-lettered; the worker never
crashes and never stalls."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings
from phoenix_resources.errors import DecodeError
from phoenix_resources.wire.headers import command_headers
from tests.fuzz.test_codec_fuzz import (
    HEADER_NAMES,
    HEADER_VALUES,
    avro_values,
    json_documents,
)
from tests.support.kafka import header, read_all
from tests.support.pipeline import Pipeline, create, outcomes, update, wait_until

pytestmark = pytest.mark.e2e

GENERATED = 1_800
WELLFORMED = 360  # a fixed share on the success path, whatever the generators draw
MAX_VALUE = 300_000  # well under the producer's 1 MB; the codec limit is 256 KiB
GENERATE = settings(max_examples=GENERATED // 3, database=None, deadline=None,
                    derandomize=True, suppress_health_check=list(HealthCheck))


@dataclass(frozen=True)
class Input:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _wellformed(settings_: Settings) -> st.SearchStrategy[bytes]:
    codec = bootstrap.command_codec(settings_)

    def encode(kind: int) -> bytes:
        rid = uuid.uuid4()
        command = create(rid, "fuzz") if kind else update(rid, name="x")
        return codec.encode(command)[0]

    return st.integers(0, 1).map(encode)


def generate(settings_: Settings) -> list[Input]:
    found: list[Input] = []
    values = st.one_of(st.none(), st.binary(max_size=256), json_documents(), avro_values(),
                       _wellformed(settings_)).filter(
        lambda v: v is None or len(v) < MAX_VALUE)
    headers = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES.map(
        lambda v: v.encode() if isinstance(v, str) else (v or b""))), max_size=3)
    keys = st.one_of(st.none(), st.binary(max_size=40), st.uuids().map(lambda u: str(u).encode()))

    @GENERATE
    @given(batch=st.lists(st.tuples(keys, values, headers), min_size=3, max_size=3))
    def collect(batch: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]
                ) -> None:
        found.extend(Input(k, v, h) for k, v, h in batch)

    collect()
    return _interleave(found, _wellformed_inputs(settings_))


def _wellformed_inputs(settings_: Settings) -> list[Input]:
    codec = bootstrap.command_codec(settings_)
    inputs = []
    for n in range(WELLFORMED):
        rid = uuid.uuid4()
        command = create(rid, f"fuzz-{n}") if n % 2 else update(rid, name="x")
        value, content_type = codec.encode(command)
        inputs.append(Input(str(rid).encode(), value, [("content-type", content_type.encode())]))
    return inputs


def _interleave(generated: list[Input], wellformed: list[Input]) -> list[Input]:
    step = max(1, len(generated) // len(wellformed))
    mixed: list[Input] = []
    for n, item in enumerate(generated):
        mixed.append(item)
        if n % step == 0 and wellformed:
            mixed.append(wellformed.pop())
    return mixed + wellformed


def test_generated_records_each_end_with_an_outcome(settings: Settings,
                                                    database_url: str) -> None:
    inputs = generate(settings)
    assert len(inputs) >= 2_000
    codec = bootstrap.command_codec(settings)
    expected_dead = 0
    decodable: set[uuid.UUID] = set()
    for item in inputs:  # what the worker must conclude, input by input
        try:
            command = codec.decode(item.value, command_headers(item.headers).content_type)
        except DecodeError:
            expected_dead += 1
        else:
            decodable.add(command.command_id)
    assert expected_dead > 300
    assert len(decodable) > 300, "the generators reach the success path"

    producer = bootstrap.producer(settings)
    with Pipeline(settings, relay=False) as pipeline:
        for item in inputs:
            producer.produce(settings.commands_topic, key=item.key, value=item.value,
                             headers=item.headers)
            producer.poll(0)
        assert producer.flush(60) == 0
        wait_until(lambda: decodable <= set(outcomes(database_url)), 180,
                   "an outcome for every decodable input")
        dead = read_all(settings.kafka_bootstrap_servers, settings.dlq_topic,
                        expected=expected_dead, timeout=120)
        assert not pipeline.errors

    recorded = outcomes(database_url)
    kinds = Counter(recorded[cid][0] for cid in decodable)
    assert set(kinds) <= {"applied", "rejected", "parked"}
    assert len(dead) == expected_dead
    assert all(header(m, "dlq.reason") not in (None, "unparkable") for m in dead)
    assert set(recorded) == decodable
