"""Structured logs: one JSON object per line on stderr, with the context of what is logged.

Guarantees:

* every line is one JSON object: ``ts``, ``level``, ``logger``, ``msg``, every ``extra=``
  field, ``exc`` for an exception; values that JSON cannot hold are written as text;
* ``trace_id`` / ``span_id`` are added when a sampled or unsampled OpenTelemetry span is
  current (the worker's batch span, an API request), unless the call gave its own;
* fields bound with :func:`log_context` (e.g. the topic and partition of the record being
  handled) are added to every line logged inside the ``with`` block, on that thread only;
* librdkafka's own log lines reach Python logging through the logger named
  :data:`LIBRDKAFKA_LOGGER` (``adapters/kafka.py`` passes it as ``logger=`` to every client),
  so they are JSON too and never raw lines on stderr.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import orjson
from opentelemetry import trace

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

LIBRDKAFKA_LOGGER = "phoenix_resources.librdkafka"
"""The logger librdkafka's lines arrive on (its facility and client name in ``msg``)."""

_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "phoenix_log_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log line of this thread inside the block (nested blocks
    add to the outer ones; a call's own ``extra=`` wins over them)."""
    outer = _CONTEXT.get()
    token = _CONTEXT.set({**outer, **fields} if outer else fields)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    bound = _CONTEXT.get()
    if bound:
        out.update(bound)
    out.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
    if "trace_id" not in out:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            out["trace_id"] = format(context.trace_id, "032x")
            out["span_id"] = format(context.span_id, "016x")
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the context and every ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """For humans (``PHOENIX_LOG_FORMAT=console``): time, level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        base = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} " \
               f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        text = f"{base} {extra}" if extra else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger of the process (librdkafka's included) to one stderr handler, and
    uncaught exceptions (of any thread) through it too: a crash is a JSON line as well."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], error: BaseException,
                  tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, tb)
        return
    logging.getLogger("phoenix_resources").critical(
        "uncaught exception; exiting", exc_info=(kind, error, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    logging.getLogger("phoenix_resources").critical(
        "uncaught exception in a thread", exc_info=(args.exc_type, args.exc_value,
                                                    args.exc_traceback),
        extra={"thread": args.thread.name if args.thread else None})
