"""The AsyncAPI document: valid against the official AsyncAPI 3.0.0 JSON Schema, current in
``schemas/asyncapi.yaml``, and a faithful function of the Avro contracts and the settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.asyncapi import (
    default_settings,
    document,
    json_schema,
    render_yaml,
)
from phoenix_resources.entrypoints.cli import app
from phoenix_resources.wire.framing import load_schema
from tests.support import asyncapi_specs

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "schemas" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = asyncapi_specs.schema("3.0.0")
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _plain(doc: dict[str, Any]) -> Any:
    return json.loads(json.dumps(doc))  # what a consumer of /asyncapi.json gets


def test_the_committed_document_is_current() -> None:
    assert COMMITTED.read_text() == render_yaml(document(default_settings())), \
        "run `make asyncapi` and commit schemas/asyncapi.yaml"


def test_the_committed_document_is_valid_asyncapi_3(
        validator: jsonschema.Draft7Validator) -> None:
    doc = yaml.safe_load(COMMITTED.read_text())
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(doc)]
    assert errors == []


@pytest.mark.parametrize("overrides", [
    {"schema_registry_url": "http://registry:8081"},
    {"kafka_bootstrap_servers": "b1:9093,b2:9093", "kafka_options": {
        "security.protocol": "SASL_SSL"}},
    {"commands_topic": "c", "events_topic": "e", "rejections_topic": "r", "dlq_topic": "d",
     "topic_partitions": 24, "consumer_group": "g", "event_source": "urn:x"},
])
def test_documents_for_other_settings_are_valid_too(
        validator: jsonschema.Draft7Validator, overrides: dict[str, Any]) -> None:
    assert list(validator.iter_errors(_plain(document(Settings(**overrides))))) == []


def test_the_validator_catches_a_broken_document(
        validator: jsonschema.Draft7Validator) -> None:
    doc = _plain(document(default_settings()))
    doc["channels"]["events"]["bindings"]["kafka"]["partitions"] = -1
    doc["components"]["messages"]["ResourceChanged"]["payload"]["schema"]["type"] = "recrod"
    assert len(list(validator.iter_errors(doc))) >= 2


def test_the_document_follows_the_settings() -> None:
    s = Settings(commands_topic="in.cmd", events_topic="out.ev", rejections_topic="out.rej",
                 dlq_topic="in.cmd.dlq", topic_partitions=12, consumer_group="grp",
                 kafka_bootstrap_servers="b1:9093,b2:9093", event_source="urn:test",
                 kafka_options={"security.protocol": "SSL"},
                 schema_registry_url="http://registry:8081")
    doc = document(s)
    assert {c["address"] for c in doc["channels"].values()} == {
        "in.cmd", "out.ev", "out.rej", "in.cmd.dlq"}
    assert doc["channels"]["events"]["bindings"]["kafka"]["partitions"] == 12
    assert doc["channels"]["deadLetters"]["bindings"]["kafka"]["partitions"] == 1
    assert [v["host"] for v in doc["servers"].values()] == ["b1:9093", "b2:9093"]
    assert {v["protocol"] for v in doc["servers"].values()} == {"kafka-secure"}
    assert doc["servers"]["kafka-1"]["bindings"]["kafka"]["schemaRegistryUrl"] == \
        "http://registry:8081"
    changed = doc["components"]["messages"]["ResourceChanged"]
    assert changed["bindings"]["kafka"]["schemaIdPayloadEncoding"] == "confluent"
    headers = doc["components"]["schemas"]["EventHeaders"]["properties"]
    assert headers["ce_source"]["const"] == "urn:test"
    assert doc["operations"]["receiveCommands"]["bindings"]["kafka"]["groupId"]["enum"] == [
        "grp"]


def test_every_avro_contract_is_a_payload_with_keys_and_headers() -> None:
    doc = document(default_settings())
    messages = doc["components"]["messages"]
    payloads = {m["payload"]["schema"]["name"] for m in messages.values()
                if "schemaFormat" in m.get("payload", {})}
    avsc = {json.loads(p.read_text())["name"] for p in (ROOT / "schemas").glob("*.avsc")}
    assert payloads == avsc
    for name, m in messages.items():
        assert "key" in m["bindings"]["kafka"], name
        assert "headers" in m, name
    event_types = doc["components"]["schemas"]["EventHeaders"]["properties"]["ce_type"]["enum"]
    assert event_types == ["phoenix.resources.v1.ResourceCreated",
                           "phoenix.resources.v1.ResourceDeleted",
                           "phoenix.resources.v1.ResourceUpdated"]
    fingerprint = load_schema("resource_command.avsc").header.hex(" ")
    assert fingerprint in messages["ResourceCommand"]["description"]
    assert "traceparent" in doc["components"]["schemas"]["CommandHeaders"]["properties"]


def test_the_json_command_schema_matches_what_the_worker_reads() -> None:
    schema = json_schema(load_schema("resource_command.avsc").raw)
    check = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    good = {"command_id": "0d3c5e9a-8c1b-4c7e-9f57-0c4b1f2a9e11", "command_type": "UPDATE",
            "resource_id": "6f0c2a4e-7a4b-4c1d-8d8e-0b3f5a6c7de1", "status": "active",
            "expected_version": 1, "issued_at": "2026-11-24T12:00:00Z",
            "correlation_id": "order-42", "config": {"k": "v"}}
    assert list(check.iter_errors(good)) == []
    assert list(check.iter_errors(good | {"issued_at": 1_764_000_000_000_000})) == []
    missing = {k: v for k, v in good.items() if k != "issued_at"}
    assert list(check.iter_errors(missing))
    assert list(check.iter_errors(good | {"status": "deleted"}))
    assert list(check.iter_errors(good | {"config": {"k": 1}}))


def test_the_cli_prints_or_writes_the_document(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX_EVENTS_TOPIC", "from.env")
    runner = CliRunner()
    printed = runner.invoke(app, ["asyncapi", "--format", "json"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output)["channels"]["events"]["address"] == "from.env"
    out = tmp_path / "asyncapi.yaml"
    written = runner.invoke(app, ["asyncapi", "--defaults", "--output", str(out)])
    assert written.exit_code == 0, written.output
    assert out.read_text() == COMMITTED.read_text()
