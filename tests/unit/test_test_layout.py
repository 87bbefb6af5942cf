"""The test folders mean what ``pytest -m unit`` assumes (``tests/conftest.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import SERVICE_FOLDERS

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]


def test_no_unit_test_hides_in_a_service_folder() -> None:
    """``pytest -m unit`` skips these folders whole; a unit test there would never run."""
    offenders = [p.relative_to(TESTS).as_posix()
                 for folder in SERVICE_FOLDERS for p in (TESTS / folder).rglob("test_*.py")
                 if re.search(r"mark\.unit\b", p.read_text())]
    assert offenders == []


def test_every_service_folder_module_is_marked() -> None:
    unmarked = [p.relative_to(TESTS).as_posix()
                for folder in SERVICE_FOLDERS for p in (TESTS / folder).rglob("test_*.py")
                if not re.search(r"mark\.(integration|e2e)\b", p.read_text())]
    assert unmarked == []
