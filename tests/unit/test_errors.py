"""One error tree, drawn where it is defined, and every stable code documented."""

from __future__ import annotations

import ast
import builtins
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import phoenix_resources
from phoenix_resources import errors
from phoenix_resources.domain.rules import ParkCode, RejectionCode
from phoenix_resources.entrypoints.http import problems as http_problems

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "phoenix_resources"
# Raised on purpose by the CLI (Typer's own exits) or as a bare re-raise of a caught error.
ALLOWED_FOREIGN = {"typer.Exit", "typer.BadParameter", "_fail", "fail"}


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def _import_everything() -> None:
    for info in pkgutil.walk_packages(phoenix_resources.__path__, "phoenix_resources."):
        if ".migrations" in info.name or info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)


def test_every_error_class_is_drawn_in_the_tree_and_nothing_else_is() -> None:
    _import_everything()
    classes = {c.__name__ for c in _all_subclasses(errors.PhoenixError)
               if c.__module__.startswith("phoenix_resources")}
    doc = errors.__doc__ or ""
    drawn = set(re.findall(r"[├└]── (\w+)", doc))
    assert classes - drawn == set(), "classes missing from the drawing in errors.py"
    assert drawn - classes == set(), "the drawing names classes that do not exist"


def _raised_names(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            names.append(ast.unparse(node.exc.func))
    return names


def test_the_package_raises_only_errors_of_its_tree() -> None:
    _import_everything()
    ours = {c.__name__ for c in _all_subclasses(errors.PhoenixError)}
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            continue  # generated from proto/ (grpc_gen), never edited
        bad = [n for n in _raised_names(path)
               if n.split(".")[-1] not in ours and n not in ALLOWED_FOREIGN]
        if bad:
            offenders[path.relative_to(PACKAGE).as_posix()] = bad
    assert offenders == {}
    assert not hasattr(builtins, "PhoenixError")


def _dlq_reasons() -> set[str]:
    reasons = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in {"DecodeError", "MessageTooLarge"} and node.args
                    and isinstance(node.args[0], ast.Constant)):
                reasons.add(node.args[0].value)
    return reasons


def test_docs_errors_lists_every_stable_code() -> None:
    text = (ROOT / "docs" / "errors.md").read_text()
    codes = ({c.value for c in RejectionCode} | {c.value for c in ParkCode}
             | {c.code for c in http_problems.ALL_CODES})
    missing = {c for c in codes if f"`{c}`" not in text}
    reasons = _dlq_reasons()
    assert reasons, "the decoders raise DecodeError with literal reasons"
    missing |= {r for r in reasons if f"`{r}`" not in text}
    assert missing == set()
