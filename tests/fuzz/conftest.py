"""Hypothesis profiles for the codec fuzz tests, and a count of what they generated.

* ``fuzz-unit`` (default): a bounded share (~2,000 inputs, a few seconds) that runs with
  the unit suite (``pytest -m unit``);
* ``fuzz`` (``HYPOTHESIS_PROFILE=fuzz``, ``make fuzz``): 5,000 examples per property,
  which is over 100,000 inputs (several properties derive many inputs from one example).

No example database is written (``database=None``): nothing lands in the repository, and a
failure prints the reproducing ``@reproduce_failure`` blob instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

_COMMON = {"database": None, "deadline": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example,
                                     HealthCheck.filter_too_much]}
settings.register_profile("fuzz-unit", max_examples=60, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("fuzz", max_examples=5_000, **_COMMON)  # type: ignore[arg-type]

PROFILE = "fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "fuzz-unit"

COUNT = {"inputs": 0, "seconds": 0.0}


@pytest.fixture(scope="session", autouse=True)
def _timed() -> Iterator[None]:
    started = time.perf_counter()
    yield
    COUNT["seconds"] = time.perf_counter() - started


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if COUNT["inputs"]:
        terminalreporter.write_line(
            f"codec fuzz ({PROFILE}): {COUNT['inputs']:,} generated inputs in "
            f"{COUNT['seconds']:.1f} s")
