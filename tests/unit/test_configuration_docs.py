"""Every setting is documented (docs/configuration.md), so the docs cannot silently rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from phoenix_resources.config import Settings

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_appears_in_the_configuration_doc() -> None:
    text = DOC.read_text()
    missing = [f"PHOENIX_{name.upper()}" for name in Settings.model_fields
               if f"PHOENIX_{name.upper()}" not in text]
    assert missing == []


def test_settings_read_the_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX_BATCH_SIZE", "7")
    monkeypatch.setenv("PHOENIX_KAFKA_OPTIONS", '{"security.protocol": "SSL"}')
    s = Settings()
    assert s.batch_size == 7
    assert s.kafka_common()["security.protocol"] == "SSL"
