"""The native extension for the parity tests: skipped with the reason when it is not built,
a failure under ``CI=true`` (where it must have been built; see ``native/README.md``)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

MODULE = "phoenix_resources_native"


@pytest.fixture(scope="session")
def native() -> ModuleType:
    try:
        return importlib.import_module(MODULE)
    except ImportError as e:
        reason = (f"the native extension {MODULE} is not built ({e}); build it with "
                  "native/build.sh and put native/target/site on PYTHONPATH (native/README.md)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
