"""Small Java programs the tests run with the Kafka client jars (real Java publishers)."""

from __future__ import annotations

from pathlib import Path

JAVA_DIR = Path(__file__).resolve().parent
