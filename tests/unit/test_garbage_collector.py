"""Worker, relay and ``run`` processes freeze their start-up objects and collect the youngest
generation less often (``PHOENIX_GC_THRESHOLD``); ``0`` leaves the interpreter alone.

Run in a child interpreter: the settings are process-wide and must not leak into the tests."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = """
import gc, json, sys
from phoenix_resources.entrypoints.runner import _settle_garbage_collector
before = gc.get_threshold()
_settle_garbage_collector(int(sys.argv[1]))
print(json.dumps({"before": before, "after": gc.get_threshold(),
                  "frozen": gc.get_freeze_count()}))
"""


def _probe(threshold: int) -> dict[str, list[int] | int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(threshold)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    result: dict[str, list[int] | int] = json.loads(out)
    return result


def test_the_youngest_generation_waits_for_the_threshold_and_start_up_is_frozen() -> None:
    seen = _probe(50_000)
    before, after = seen["before"], seen["after"]
    assert isinstance(before, list)
    assert isinstance(after, list)
    assert after == [50_000, *before[1:]]
    assert isinstance(seen["frozen"], int)
    assert seen["frozen"] > 10_000


def test_zero_leaves_the_interpreter_as_it_was() -> None:
    seen = _probe(0)
    assert seen["after"] == seen["before"]
    assert seen["frozen"] == 0
