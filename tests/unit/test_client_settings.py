"""The client's settings mirror the server's: same variables, types, limits and defaults; the
client's classes take either."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from phoenix_resources.adapters import kafka
from phoenix_resources.client import ClientSettings, OutcomeWatcher
from phoenix_resources.client.settings import client_settings
from phoenix_resources.config import Settings
from phoenix_resources.errors import ConfigurationError

pytestmark = pytest.mark.unit

CLIENT_ONLY = {"api_url", "api_token"}


@pytest.fixture(autouse=True)
def _no_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither model reads a ``.env`` of the working directory in these tests."""
    monkeypatch.setenv("PHOENIX_ENV_FILE", str(tmp_path / "absent.env"))
    monkeypatch.delenv("PHOENIX_SECRETS_DIR", raising=False)


@pytest.mark.parametrize("name", sorted(set(ClientSettings.model_fields) - CLIENT_ONLY))
def test_every_mirrored_field_is_the_servers(name: str) -> None:
    ours, theirs = ClientSettings.model_fields[name], Settings.model_fields.get(name)
    assert theirs is not None, f"{name} is not a server setting"
    assert ours.annotation == theirs.annotation
    assert ours.get_default(call_default_factory=True) == theirs.get_default(
        call_default_factory=True)
    assert ours.metadata == theirs.metadata, "the same limits (ge, le, gt)"
    assert ours.validation_alias == theirs.validation_alias


def test_one_environment_configures_both_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX_KAFKA_BOOTSTRAP_SERVERS", "k1:9093,k2:9093")
    monkeypatch.setenv("PHOENIX_KAFKA_OPTIONS",
                       '{"security.protocol": "SSL", "session.timeout.ms": 30000.0}')
    monkeypatch.setenv("PHOENIX_KAFKA_PRODUCER_OPTIONS", '{"linger.ms": 20}')
    monkeypatch.setenv("PHOENIX_COMMANDS_TOPIC", "cmds")
    monkeypatch.setenv("PHOENIX_SCHEMA_REGISTRY_BASIC_AUTH", "u:p")
    monkeypatch.setenv("PHOENIX_MAX_COMMAND_BYTES", "4096")
    client, server = ClientSettings(), Settings()
    for name in set(ClientSettings.model_fields) - CLIENT_ONLY:
        assert getattr(client, name) == getattr(server, name), name
    assert kafka.producer_config(client) == kafka.producer_config(server)
    assert kafka.consumer_config(client, "g") == kafka.consumer_config(server, "g")


def test_the_client_settings_refuse_what_the_servers_refuse() -> None:
    with pytest.raises(ValidationError, match="acks=1 would break a guarantee"):
        ClientSettings(kafka_producer_options={"acks": 1})
    with pytest.raises(ValidationError, match=r"enable\.auto\.offset\.store"):
        ClientSettings(kafka_options={"enable.auto.offset.store": True})
    with pytest.raises(ValidationError, match=r"a\.b"):
        ClientSettings(kafka_options={"a.b": None})
    with pytest.raises(ValidationError, match="max_command_bytes"):
        ClientSettings(max_command_bytes=10)


def test_a_consumer_needs_a_group_unless_the_settings_name_the_workers() -> None:
    with pytest.raises(ConfigurationError, match="group id"):
        kafka.consumer_config(ClientSettings())
    assert kafka.consumer_config(Settings())["group.id"] == "phoenix-resources-worker"


def test_the_servers_settings_are_copied_without_reading_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = Settings(events_topic="ev", schema_registry_key_password=SecretStr("k"),
                      kafka_consumer_options={"fetch.wait.max.ms": 10})
    monkeypatch.setenv("PHOENIX_EVENTS_TOPIC", "from-the-environment")
    monkeypatch.setenv("PHOENIX_API_URL", "http://api.test")
    copied = client_settings(server)
    assert copied.events_topic == "ev"
    assert copied.kafka_consumer_options == {"fetch.wait.max.ms": 10}
    assert copied.schema_registry_key_password == SecretStr("k")
    assert copied.api_url is None, "the server's settings have no API URL"
    own = ClientSettings()
    assert client_settings(own) is own
    assert own.api_url == "http://api.test"


def test_env_file_and_secrets_dir_are_read_like_the_servers(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = tmp_path / "client.env"
    env.write_text("PHOENIX_COMMANDS_TOPIC=from-env-file\nPHOENIX_DATABASE_URL=ignored\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "PHOENIX_API_TOKEN").write_text("s3cret")
    monkeypatch.setenv("PHOENIX_ENV_FILE", str(env))
    monkeypatch.setenv("PHOENIX_SECRETS_DIR", str(secrets))
    s = ClientSettings()
    assert s.commands_topic == "from-env-file"
    assert s.api_token_value() == "s3cret"
    monkeypatch.setenv("PHOENIX_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="not a directory"):
        ClientSettings()


def test_the_outcome_watcher_asks_the_api_of_the_settings() -> None:
    cid = uuid.uuid4()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"command_id": str(cid), "outcome": "applied",
                                         "resulting_version": 1})

    settings = ClientSettings(api_url="http://api.test/", api_token=SecretStr("t0k"))
    client = httpx.Client(transport=httpx.MockTransport(handler))
    assert OutcomeWatcher(settings, http_client=client).wait(cid, timeout=5).applied
    assert seen[0].url == f"http://api.test/api/v1/commands/{cid}"
    assert seen[0].headers["authorization"] == "Bearer t0k"
