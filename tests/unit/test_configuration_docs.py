"""docs/configuration.md is generated from the settings model and is current; settings come
from the environment, a .env file and a secrets directory, in that order."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phoenix_resources import config_docs
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.cli import app
from phoenix_resources.errors import ConfigurationError

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_configuration_doc_is_what_the_settings_model_renders() -> None:
    assert DOC.read_text(encoding="utf-8") == config_docs.render(), (
        "docs/configuration.md is stale: run `make docs`")


def test_every_setting_has_a_row_and_a_meaning() -> None:
    rows = [row for _, section in config_docs.sections() for row in section]
    assert sorted(r.variable for r in rows) == sorted(
        f"PHOENIX_{name.upper()}" for name in Settings.model_fields)
    assert all(r.meaning.strip() for r in rows)


def test_config_docs_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "docs", "--check", str(stale)])
    assert result.exit_code == 1
    assert "not current" in result.output
    assert CliRunner().invoke(app, ["config", "docs", "--output", str(stale)]).exit_code == 0
    assert CliRunner().invoke(app, ["config", "docs", "--check", str(stale)]).exit_code == 0


def test_settings_read_the_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX_BATCH_SIZE", "7")
    monkeypatch.setenv("PHOENIX_KAFKA_OPTIONS", '{"security.protocol": "SSL"}')
    s = Settings()
    assert s.batch_size == 7
    assert s.kafka_common()["security.protocol"] == "SSL"


@pytest.fixture
def no_phoenix_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests below set every source themselves (make test exports some variables)."""
    for name in [n for n in os.environ if n.startswith("PHOENIX_")]:
        monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_phoenix_environment")
def test_environment_beats_env_file_beats_secrets_dir(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text("PHOENIX_BATCH_SIZE=11\nPHOENIX_RELAY_BATCH_SIZE=12\n"
                        "OTHER_TOOL_SETTING=ignored\n", encoding="utf-8")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "PHOENIX_DATABASE_URL").write_text("postgresql://phoenix:s3cret@db/phoenix")
    (secrets / "PHOENIX_RELAY_BATCH_SIZE").write_text("99")
    (secrets / "PHOENIX_TOPIC_PARTITIONS").write_text("12")
    monkeypatch.setenv("PHOENIX_ENV_FILE", str(env_file))
    monkeypatch.setenv("PHOENIX_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("PHOENIX_TOPIC_PARTITIONS", "3")
    s = Settings()
    assert s.database_url == "postgresql://phoenix:s3cret@db/phoenix", "from the secrets dir"
    assert (s.batch_size, s.relay_batch_size) == (11, 12), "the .env file beats secrets"
    assert s.topic_partitions == 3, "the environment beats both"

    shown = json.loads(CliRunner().invoke(app, ["config", "show"]).output)
    assert shown["database_url"] == "postgresql://phoenix:***@db/phoenix"


@pytest.mark.usefixtures("no_phoenix_environment")
def test_a_missing_env_file_is_skipped_and_a_missing_secrets_dir_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PHOENIX_ENV_FILE", str(tmp_path / "absent.env"))
    assert Settings().batch_size == 1000
    monkeypatch.setenv("PHOENIX_SECRETS_DIR", str(tmp_path / "not-mounted"))
    with pytest.raises(ConfigurationError, match="not a directory"):
        Settings()
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "PHOENIX_SECRETS_DIR" in result.output
