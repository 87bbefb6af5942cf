"""The worker's rules hold on both per-command paths. The suite runs the worker, isolation
and parking unit tests on the path ``PHOENIX_NATIVE`` chooses (the compiled one when it is
built: CI builds it); this runs the same modules again, in a fresh interpreter, on the other
path — the Python reference when the suite ran compiled, the compiled one when it did not."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["tests/unit/test_worker_rules.py", "tests/unit/test_parking_rules.py",
           "tests/unit/test_apply_batch.py", "tests/unit/test_consumer_replacement.py",
           "tests/unit/test_reused_ids.py"]


def _other_path() -> str:
    built = importlib.util.find_spec("phoenix_resources_native") is not None
    if built and os.environ.get("PHOENIX_NATIVE", "auto") != "off":
        return "off"
    if not built:
        reason = "the compiled hot path is not built (make deps builds it when cargo is there)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return "on"


def test_the_worker_rules_hold_on_the_other_path() -> None:
    mode = _other_path()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *MODULES],
        cwd=ROOT, env={**os.environ, "PHOENIX_NATIVE": mode}, capture_output=True, text=True,
        timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1]
