"""The CLI as a user runs it: a real process, pointed at a test's stack and topics."""

from __future__ import annotations

import os
import subprocess
import sys

from phoenix_resources.config import Settings


def cli_env(settings: Settings) -> dict[str, str]:
    return {**os.environ,
            "PHOENIX_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "PHOENIX_DATABASE_URL": settings.database_url,
            "PHOENIX_COMMANDS_TOPIC": settings.commands_topic,
            "PHOENIX_EVENTS_TOPIC": settings.events_topic,
            "PHOENIX_REJECTIONS_TOPIC": settings.rejections_topic,
            "PHOENIX_DLQ_TOPIC": settings.dlq_topic,
            "PHOENIX_CREATE_TOPICS": "false"}


def cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c",
                           "from phoenix_resources.entrypoints.cli import main; main()", *args],
                          env=cli_env(settings), capture_output=True, text=True,
                          timeout=timeout, check=False)
