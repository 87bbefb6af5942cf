"""What pyproject declares is what the code imports; the base install serves the client side;
the image's lock file pins every declared dependency inside its range."""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "phoenix_resources"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
LOCK = ROOT / "requirements" / "server.lock"

SERVER_SIDE = ("adapters/postgres/", "bootstrap.py", "observability/", "services/",
               "entrypoints/worker.py", "entrypoints/relay.py", "entrypoints/runner.py",
               "entrypoints/supervisor.py",
               "entrypoints/http", "entrypoints/cli/outbox.py", "entrypoints/grpc",
               "grpc_gen/", "soak/", "entrypoints/cli/soak.py", "entrypoints/console")
"""Modules that run only with the ``server`` extra (PostgreSQL, the API, the processes).
Everything else is what ``pip install phoenix-resources`` (no extra) must be able to run:
the client library, the CLI's client commands, the settings and the local stack."""

SERVICE_COMMANDS = ("entrypoints/cli/ops.py", "entrypoints/cli/parked.py",
                    "entrypoints/cli/outbox.py", "entrypoints/cli/grpc.py",
                    "entrypoints/cli/soak.py", "entrypoints/cli/console.py")
"""CLI modules whose commands need the server side: each refuses without the extra."""


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


BASE = _names(PYPROJECT["project"]["dependencies"])
SERVER = _names(PYPROJECT["project"]["optional-dependencies"]["server"])


NAMESPACES = {"opentelemetry"}
"""Top-level names several distributions share (opentelemetry-api, -sdk, …): their imports
are kept whole and resolved to the distribution that owns the imported module's file."""


def _third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name if a.name.split(".")[0] in NAMESPACES else a.name.split(".")[0]
                      for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top not in NAMESPACES:
                found.add(top)
            elif node.module in NAMESPACES:  # from opentelemetry import trace
                found |= {f"{node.module}.{a.name}" for a in node.names}
            else:
                found.add(node.module)
    return {m for m in found if m.split(".")[0] not in sys.stdlib_module_names
            and m not in ("__future__", "phoenix_resources")}


@functools.cache
def _providers() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@functools.cache
def _file_owners() -> dict[str, str]:
    owners = {}
    for dist in metadata.distributions():
        for f in dist.files or []:
            if f.parts and f.parts[0] in NAMESPACES and f.suffix == ".py":
                owners[f.as_posix()] = dist.metadata["Name"]
    return owners


def _distribution(module: str) -> str:
    if module.split(".", maxsplit=1)[0] in NAMESPACES:
        parts = module.split(".")
        while parts:
            base = "/".join(parts)
            for candidate in (f"{base}/__init__.py", f"{base}.py"):
                if candidate in _file_owners():
                    return canonicalize_name(_file_owners()[candidate])
            parts.pop()
        raise AssertionError(f"no installed distribution provides {module!r}")
    dists = _providers().get(module)
    assert dists, f"no installed distribution provides {module!r}"
    return canonicalize_name(dists[0])


def _imports_by_module() -> dict[str, set[str]]:
    return {p.relative_to(PACKAGE).as_posix(): _third_party_imports(p)
            for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_imported_third_party_package_is_declared() -> None:
    undeclared = {f"{module} ({_distribution(module)}) in {path}"
                  for path, modules in _imports_by_module().items() for module in modules
                  if _distribution(module) not in BASE | SERVER}
    assert undeclared == set()


def test_the_client_side_needs_only_the_base_dependencies() -> None:
    server_only = {f"{module} in {path}"
                   for path, modules in _imports_by_module().items()
                   if not path.startswith(SERVER_SIDE) for module in modules
                   if _distribution(module) not in BASE}
    assert server_only == set()


def _internal_imports(path: Path) -> set[str]:
    return {node.module for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom) and node.module
            and node.module.startswith("phoenix_resources.")}


def test_cli_modules_that_reach_the_server_side_refuse_without_the_extra() -> None:
    server_modules = tuple("phoenix_resources." + s.removesuffix(".py").replace("/", ".")
                           for s in SERVER_SIDE)
    reaching = {p.relative_to(PACKAGE).as_posix()
                for p in sorted((PACKAGE / "entrypoints" / "cli").glob("*.py"))
                if any(m.startswith(server_modules) for m in _internal_imports(p))
                or _third_party_imports(p) - {"typer", "rich", "httpx", "confluent_kafka"}}
    assert reaching == set(SERVICE_COMMANDS)
    for path in SERVICE_COMMANDS:
        assert "require_server(" in (PACKAGE / path).read_text(), path


def _readme_base_list() -> list[str]:
    """The requirements README's Installing section says the base install depends on."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Installing", 1)[1].split("\n## ", 1)[0]
    sentence = re.search(r"The base install depends on (.+?)\(", section, re.S)
    assert sentence, "README: 'The base install depends on `a`, `b` … (pyproject's …)'"
    return re.findall(r"`([^`]+)`", sentence.group(1))


def test_the_readme_lists_exactly_the_base_dependencies() -> None:
    listed = _readme_base_list()
    declared = {canonicalize_name(Requirement(r).name): Requirement(r).extras
                for r in PYPROJECT["project"]["dependencies"]}
    assert {canonicalize_name(Requirement(r).name): Requirement(r).extras
            for r in listed} == declared
    assert len(listed) == len(declared), "each once"


def test_dev_installs_the_server_extra() -> None:
    assert "phoenix-resources[server]" in PYPROJECT["project"]["optional-dependencies"]["dev"]


def _lock() -> dict[str, str]:
    pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", LOCK.read_text(), re.M))
    return {canonicalize_name(name): version for name, version in pins.items()}


def test_the_lock_pins_every_declared_dependency_inside_its_range() -> None:
    pins = _lock()
    out_of_range = {}
    for text in [*PYPROJECT["project"]["dependencies"],
                 *PYPROJECT["project"]["optional-dependencies"]["server"]]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name not in pins or not req.specifier.contains(pins[name], prereleases=True):
            out_of_range[name] = pins.get(name, "missing")
    assert out_of_range == {}, "run `make lock`"
    assert "--hash=sha256:" in LOCK.read_text(), "the image installs with --require-hashes"
    assert "phoenix-resources" not in pins, "the lock holds dependencies, not the package"
