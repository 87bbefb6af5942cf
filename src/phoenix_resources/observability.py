"""Structured logs and Prometheus metrics.

Each process builds one :class:`Metrics` on its own registry (in ``bootstrap``); nothing is
registered at import time, so tests can run several workers in one process.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and every ``extra=`` field."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _RESERVED)
        base = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} " \
               f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        text = f"{base} {extra}" if extra else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class Metrics:
    """Every metric of the service, on one registry per process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.commands = Counter("phoenix_commands", "Commands by recorded outcome",
                                ["outcome"], registry=r)
        self.invalid_headers = Counter("phoenix_invalid_headers",
                                       "Command record headers dropped as invalid (the "
                                       "command is still processed)", ["header"], registry=r)
        self.batches = Counter("phoenix_batches", "Batches committed to PostgreSQL", registry=r)
        self.batch_size = Histogram("phoenix_batch_size", "Commands per batch", registry=r,
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000))
        self.batch_seconds = Histogram("phoenix_batch_seconds",
                                       "Decode+decide+write+commit time per batch", registry=r,
                                       buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, 1))
        self.transient_errors = Counter("phoenix_transient_errors",
                                        "Transient faults waited out", ["component", "kind"],
                                        registry=r)
        self.consumer_paused = Gauge("phoenix_consumer_paused",
                                     "1 while consumption is paused by a fault", registry=r)
        self.assigned_partitions = Gauge("phoenix_assigned_partitions",
                                         "Partitions assigned to this worker", registry=r)
        self.events_published = Counter("phoenix_events_published",
                                        "Outbox rows published by the relay", ["topic"],
                                        registry=r)
        self.events_parked = Counter("phoenix_events_parked",
                                     "Outbox rows parked by the relay after a permanent "
                                     "refusal by the broker", ["topic"], registry=r)
        self.outbox_parked = Gauge("phoenix_outbox_parked_rows",
                                   "Outbox rows parked now (their resource's later rows wait "
                                   "behind them)", registry=r)
        self.outbox_lag = Gauge("phoenix_outbox_lag_seconds",
                                "Age of the oldest outbox row in the relay's last fetch "
                                "(0 when the outbox is empty)", registry=r)
        self.relay_active = Gauge("phoenix_relay_active",
                                  "1 when this relay holds the lock, 0 on standby", registry=r)
        self.outbox_pruned = Counter("phoenix_processed_commands_pruned",
                                     "processed_commands rows pruned", registry=r)
        self.http_requests = Counter("phoenix_http_requests", "HTTP requests",
                                     ["route", "status"], registry=r)
        self.http_seconds = Histogram("phoenix_http_request_seconds", "HTTP latency",
                                      ["route"], registry=r,
                                      buckets=(.001, .0025, .005, .01, .025, .05, .1, .5, 1))
