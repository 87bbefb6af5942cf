"""The image's HEALTHCHECK: exit 0 when /healthz answers 200 on the HTTP port (``api``,
``run``) or on the metrics port (``worker``: 9464, ``relay``: 9465, or ``PHOENIX_METRICS_PORT``),
else 1. Standard library only."""

from __future__ import annotations

import os
import sys
import urllib.request


def healthy(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


# PHOENIX_METRICS_PORT, when set, is the worker's or relay's port; else their defaults.
metrics = os.environ.get("PHOENIX_METRICS_PORT")
ports = [os.environ.get("PHOENIX_HTTP_PORT", "8000"),
         *([metrics] if metrics else [os.environ.get("PHOENIX_WORKER_METRICS_PORT", "9464"),
                                      os.environ.get("PHOENIX_RELAY_METRICS_PORT", "9465")])]
sys.exit(0 if any(healthy(p) for p in ports if p and p != "0") else 1)
