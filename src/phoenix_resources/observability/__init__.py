"""Observability of every process: metrics, logs, health and tracing.

* ``metrics`` — :class:`Metrics`, one Prometheus registry per process (nothing registered at
  import time, so tests can run several workers in one process);
* ``logs`` — JSON lines with the trace and record context, librdkafka's lines included;
* ``health`` — ``/healthz``, ``/readyz`` and ``/metrics`` of the worker and relay processes;
* ``tracing`` — OpenTelemetry spans from a command's ``traceparent`` to its event's;
* ``lag``, ``worker_watch``, ``relay_watch`` — what the worker and relay report, behind one
  hook call each.
"""

from __future__ import annotations

from phoenix_resources.observability.logs import (
    ConsoleFormatter,
    JsonFormatter,
    configure_logging,
    log_context,
)
from phoenix_resources.observability.metrics import Metrics

__all__ = ["ConsoleFormatter", "JsonFormatter", "Metrics", "configure_logging", "log_context"]
