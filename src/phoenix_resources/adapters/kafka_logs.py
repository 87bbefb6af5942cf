"""librdkafka's log lines, one per distinct problem: repeats of a line are held back.

A client that cannot reach a broker retries the connection several times a second, and
librdkafka logs every attempt (``FAIL … Connect to ipv4#10.0.0.7:9092 failed: Connection
refused``): some forty lines a second per broker while it is down. :class:`RepeatFilter`
passes the first line of each distinct problem and holds back its repeats for
``window_s`` seconds; the first repeat after the window is passed with the number held back
(``… (repeated 163 more times since last logged)``), and a new window starts.

Two lines are the same problem when they differ only in what changes between attempts or
between the ways librdkafka names one broker: the client instance (``[rdkafka#producer-2]``:
every client of the process shares one account), the thread (``[thrd:…]``), the broker's
role or id beside its address (``GroupCoordinator: 10.0.0.7:9092``, ``10.0.0.7:9092/1``,
``10.0.0.7:9092/bootstrap`` are one broker) and the durations (``after 0ms in state
CONNECT``). What identifies the problem stays: the log facility, the broker's address and
librdkafka's text.

Standard library only: the client library uses it. :func:`librdkafka_logger` is the logger
every client of the package logs to, with the filter installed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

LIBRDKAFKA_LOGGER = "phoenix_resources.librdkafka"
"""The logger librdkafka's lines arrive on (``observability.logs`` names it alike)."""

REPEAT_WINDOW_S = 60.0
"""How long the repeats of one problem are held back after a line was passed."""

_NOISE = re.compile(
    r"\[[^\]\s]*#(?:producer|consumer)-\d+\]\s*"  # the client instance
    r"|\[thrd:[^\]]*\]:?\s*"  # the thread
    r"|GroupCoordinator(?:/\d+)?:\s*"  # a broker's role
    r"|\s*\(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\)"
    r"|\d+ms")  # durations, and librdkafka's own count of repeats
_ID_AFTER_PORT = re.compile(r"(:\d+)/(?:\d+|bootstrap)\b")  # host:port/1 → host:port


def problem_key(record: logging.LogRecord) -> str:
    """What a line is about: its facility, broker address and text, without the client
    instance, thread, broker role or id, and durations."""
    return _NOISE.sub("", _ID_AFTER_PORT.sub(r"\1", record.getMessage()))


@dataclass
class _Seen:
    passed_at: float
    held: int = 0


class RepeatFilter(logging.Filter):
    """Passes the first line of a problem, holds back its repeats for ``window_s``; the
    first repeat after that carries the count held back. Thread-safe (librdkafka's lines
    arrive on whichever thread polls a client). Remembers at most ``max_problems`` problems,
    forgetting the least recently passed."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S, *, max_problems: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self._max = max_problems
        self._clock = clock
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = problem_key(record)
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.passed_at < self.window_s:
                seen.held += 1
                return False
            held = 0 if seen is None else seen.held
            self._seen[key] = _Seen(now)
            self._seen.move_to_end(key)
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
        if held:
            # Appended to the format, not the arguments: librdkafka's lines are
            # ``"%s [%s] %s" % (facility, client, text)``. No ``%`` in the addition.
            record.msg = f"{record.msg} (repeated {held} more times since last logged)"
        return True


def librdkafka_logger() -> logging.Logger:
    """The logger to pass as every client's ``logger``, its :class:`RepeatFilter` installed
    (once, however often this is called)."""
    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger
