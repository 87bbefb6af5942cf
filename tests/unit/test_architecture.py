"""The layers show in the folders and imports point inward (house style rule 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "phoenix_resources"
IO_LIBRARIES = {"psycopg", "psycopg_pool", "confluent_kafka", "sqlalchemy", "alembic",
                "fastapi", "starlette", "uvicorn", "httpx", "requests", "socket", "subprocess",
                "prometheus_client", "fastavro", "urllib"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def test_domain_imports_no_io_library_and_no_outer_layer() -> None:
    offenders = {}
    for path in _modules("domain"):
        bad = {n for n in _imports(path)
               if n.split(".")[0] in IO_LIBRARIES
               or n.startswith(("phoenix_resources.adapters", "phoenix_resources.entrypoints",
                                "phoenix_resources.bootstrap", "phoenix_resources.devstack"))}
        if bad:
            offenders[path.name] = bad
    assert _modules("domain"), "the domain package must exist"
    assert offenders == {}


def test_adapters_never_import_entrypoints() -> None:
    offenders = {p.name: n for p in _modules("adapters")
                 for n in _imports(p) if n.startswith(("phoenix_resources.entrypoints",
                                                       "phoenix_resources.bootstrap"))}
    assert offenders == {}


def test_only_the_cli_reaches_the_devstack() -> None:
    users = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
             if "devstack" not in p.parts
             and any(n.startswith("phoenix_resources.devstack") for n in _imports(p))}
    assert users <= {"entrypoints/cli.py"}


def test_services_import_only_the_domain() -> None:
    offenders = {p.name: n for p in _modules("services") for n in _imports(p)
                 if n.split(".")[0] in IO_LIBRARIES
                 or (n.startswith("phoenix_resources.")
                     and not n.startswith(("phoenix_resources.domain",
                                           "phoenix_resources.services",
                                           "phoenix_resources.errors")))}
    assert _modules("services"), "the services package must exist"
    assert offenders == {}
