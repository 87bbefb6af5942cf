"""The layers show in the folders and imports point inward (house style rule 1)."""

from __future__ import annotations

import ast
import subprocess
import sys
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


def test_adapters_take_port_types_from_the_ports_module_only() -> None:
    """Adapters implement ports; they never reach into a use case's module."""
    offenders = {p.name: n for p in _modules("adapters") for n in _imports(p)
                 if n.startswith("phoenix_resources.services")
                 and n != "phoenix_resources.services.ports"}
    assert offenders == {}


def test_postgres_adapters_do_not_import_each_other() -> None:
    """The worker's batch unit, the relay's outbox session and the API's queries share only
    the package itself (its constants), the error translation and the typed arrays."""
    shared = {"phoenix_resources.adapters.postgres", "phoenix_resources.adapters.postgres.errors",
              "phoenix_resources.adapters.postgres.arrays"}
    offenders = {p.name: n for p in sorted((PACKAGE / "adapters" / "postgres").glob("*.py"))
                 for n in _imports(p)
                 if n.startswith("phoenix_resources.adapters.postgres") and n not in shared}
    assert offenders == {}


def test_bootstrap_imports_no_entrypoint() -> None:
    """Bootstrap hands out ingredients; entry points assemble processes from them."""
    bad = {n for n in _imports(PACKAGE / "bootstrap.py")
           if n.startswith("phoenix_resources.entrypoints")}
    assert bad == set()


CLIENT_MUST_NOT_LOAD = ("phoenix_resources.bootstrap", "phoenix_resources.entrypoints",
                        "phoenix_resources.observability", "psycopg", "psycopg_pool",
                        "fastapi", "starlette", "uvicorn", "prometheus_client", "sqlalchemy",
                        "alembic")


def test_the_client_library_loads_no_server_module() -> None:
    """Importing the client (in a fresh interpreter) loads neither the server's wiring nor a
    server-only dependency: publishers need Kafka, nothing else."""
    code = ("import sys, phoenix_resources.client; "
            "print('\\n'.join(sorted(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout.split()
    offenders = sorted(m for m in loaded if m.startswith(CLIENT_MUST_NOT_LOAD))
    assert "phoenix_resources.client.publisher" in loaded
    assert offenders == []


CLIENT_MUST_NOT_IMPORT = ("phoenix_resources.adapters.postgres", "phoenix_resources.entrypoints",
                          "phoenix_resources.config", "phoenix_resources.bootstrap",
                          "phoenix_resources.observability")


def _module_file(name: str) -> Path | None:
    """The file of package module ``name`` (``phoenix_resources.a.b``), if it is one."""
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports, anywhere in it (``from a import b`` counts
    ``a.b`` when that is a module), with the packages they live in."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)
                      if parts[0] == "phoenix_resources"
                      and _module_file(".".join(parts[:i])) is not None}
    return found


def test_the_client_modules_import_no_server_module_even_indirectly() -> None:
    """Read, not run: every module the client's modules import, and every module those
    import in turn (imports inside functions too), stays off the server side — the
    PostgreSQL adapters, the entry points, the server's settings model."""
    client = {"phoenix_resources.client" + ("" if p.stem == "__init__" else f".{p.stem}")
              for p in _modules("client")}
    seen: set[str] = set()
    todo = set(client)
    offenders: set[tuple[str, str]] = set()
    while todo:
        name = todo.pop()
        seen.add(name)
        path = _module_file(name)
        assert path is not None, name
        for imported in _package_imports(path):
            if imported.startswith(CLIENT_MUST_NOT_IMPORT):
                offenders.add((name, imported))
            elif imported not in seen:
                todo.add(imported)
    assert "phoenix_resources.client.publisher" in client
    assert "phoenix_resources.wire.commands" in seen
    assert offenders == set()


WIRE_MAY_IMPORT = ("phoenix_resources.wire", "phoenix_resources.domain",
                   "phoenix_resources.errors", "fastavro", "orjson", "__future__")


def test_the_wire_package_imports_only_the_contract_and_its_codecs() -> None:
    """The published contract is shared by client and server: the standard library,
    fastavro, orjson, the domain and the error tree — nothing else."""
    offenders = {p.name: n for p in _modules("wire") for n in _imports(p)
                 if n.split(".")[0] not in sys.stdlib_module_names
                 and not (n + ".").startswith(tuple(m + "." for m in WIRE_MAY_IMPORT))}
    assert _modules("wire"), "the wire package must exist"
    assert offenders == {}


def test_only_the_cli_reaches_the_devstack() -> None:
    users = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
             if "devstack" not in p.parts
             and any(n.startswith("phoenix_resources.devstack") for n in _imports(p))}
    assert users <= {"entrypoints/cli/stack.py", "entrypoints/cli/soak.py"}


def test_services_import_only_the_domain() -> None:
    offenders = {p.name: n for p in _modules("services") for n in _imports(p)
                 if n.split(".")[0] in IO_LIBRARIES
                 or (n.startswith("phoenix_resources.")
                     and not n.startswith(("phoenix_resources.domain",
                                           "phoenix_resources.services",
                                           "phoenix_resources.errors")))}
    assert _modules("services"), "the services package must exist"
    assert offenders == {}
