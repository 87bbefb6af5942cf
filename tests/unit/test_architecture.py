"""The layers show in the folders and imports point inward (house style rule 1); no import
cycle; small modules."""

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
                 and n not in ("phoenix_resources.services.ports",
                               "phoenix_resources.services.ports_encoded")}
    assert offenders == {}


def test_postgres_adapters_do_not_import_each_other() -> None:
    """The worker's batch unit, the relay's outbox session and the API's queries share only
    the package itself (its constants), the error translation, the typed arrays and the
    worker's statements (shared with the compiled hot path)."""
    shared = {"phoenix_resources.adapters.postgres", "phoenix_resources.adapters.postgres.errors",
              "phoenix_resources.adapters.postgres.arrays",
              "phoenix_resources.adapters.postgres.batch_sql"}
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


# --- the import graph -----------------------------------------------------------------------

GENERATED = PACKAGE / "grpc_gen"
MODULE_LINES_MAX = 400

CYCLES_LEFT: set[frozenset[str]] = set()
"""Cycles known and not yet broken; this set only shrinks (it is empty, and stays so)."""


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ancestors(module: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``: the packages Python initialises before ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool,
              modules: set[str]) -> list[str]:
    """The project modules one import statement names (relative imports resolved): for
    ``from X import n``, ``X.n`` when that is a module, else ``X``."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = importer if is_package else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    origin = ".".join(p for p in (base if node.level else "", node.module or "") if p)
    return [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin
            for a in node.names]


def _import_graph(package: Path = PACKAGE,
                  ) -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    """Every module of ``package`` -> the modules of it that it imports, and where
    (``file:line``)."""
    root = package.parent
    paths = {_module_name(p, root): p for p in sorted(package.rglob("*.py"))}
    modules = set(paths)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    where: dict[tuple[str, str], str] = {}
    for importer, path in paths.items():
        own = {importer, *_ancestors(importer)}
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for named in _imported(node, importer, is_package, modules):
                # The named module, plus the packages initialised on the way to it; not the
                # importer's own packages: those are initialised before the importer runs.
                targets = {named} | {a for a in _ancestors(named) if a not in own}
                for target in targets & modules - {importer}:
                    graph[importer].add(target)
                    where.setdefault((importer, target),
                                     f"{path.relative_to(root)}:{node.lineno}")
    return graph, where


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module: every module in one
    imports, directly or not, every other."""
    reach = {m: _reachable(graph, m) for m in graph}
    components: list[set[str]] = []
    for m in sorted(graph):
        if m in reach[m] and not any(m in c for c in components):
            components.append({n for n in reach[m] if m in reach[n]})
    return components


def test_no_import_cycle_among_the_packages_modules() -> None:
    """No module imports, directly or through others, a module that imports it back.

    The graph: one node per module under ``src/phoenix_resources`` (a package is its
    ``__init__.py``; generated code included). An edge A -> B for every ``import`` /
    ``from ... import`` statement anywhere in A's source — module level, inside functions
    (a deferred import hides a cycle, it does not remove it) and under ``TYPE_CHECKING`` —
    relative imports resolved. ``from X import n`` is an edge to ``X.n`` when that is a
    module (``n`` is then the submodule, not an attribute of ``X``), else to ``X``.

    Packages: importing ``a.b.c`` first initialises ``a`` and ``a.b``, so those are edges
    too — except the importer's own ancestor packages, which Python initialises before the
    importer runs: ``X.Y`` sitting inside (or importing) its package ``X`` is not a cycle by
    itself. It is one when ``X``'s ``__init__`` also imports ``X.Y`` back (a package that
    re-exports its modules must not be imported by them).

    Only project modules are nodes; ``importlib.import_module`` and import strings
    (uvicorn's ``"module:factory"``) are not statements and are not followed.
    """
    graph, where = _import_graph()
    report = {" <-> ".join(sorted(c)): sorted(f"{a} -> {b} ({where[a, b]})"
                                             for a in sorted(c) for b in graph[a] & c)
              for c in _cycles(graph) if c not in CYCLES_LEFT}
    assert report == {}, "\n".join(f"{c}:\n  " + "\n  ".join(e) for c, e in report.items())
    assert {frozenset(c) for c in _cycles(graph)} >= CYCLES_LEFT, "broken: drop it from the set"


RULE_CASES = {
    "a package re-exporting a module that imports a sibling": (
        {"x/__init__.py": "from pkg.x.y import Y", "x/y.py": "from pkg.x.z import Z",
         "x/z.py": ""}, []),
    "a module importing a name from the package that re-exports it": (
        {"x/__init__.py": "from pkg.x.y import Y", "x/y.py": "from pkg.x import helper"},
        [{"pkg.x", "pkg.x.y"}]),
    "imports inside functions": (
        {"a.py": "def f():\n    from pkg import b", "b.py": "def g():\n    import pkg.a"},
        [{"pkg.a", "pkg.b"}]),
    "relative imports": (
        {"a.py": "from .b import x", "b.py": "from . import a"}, [{"pkg.a", "pkg.b"}]),
    "a package initialised on the way to its module": (
        {"m.py": "import pkg.q.r", "q/__init__.py": "def f():\n    from pkg import m",
         "q/r.py": ""}, [{"pkg.m", "pkg.q"}]),
}


@pytest.mark.parametrize("case", RULE_CASES)
def test_what_the_cycle_rule_counts(case: str, tmp_path: Path) -> None:
    files, expected = RULE_CASES[case]
    for name, text in {"__init__.py": "", **files}.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name("__init__.py").touch()
        path.write_text(text + "\n")
    assert _cycles(_import_graph(tmp_path / "pkg")[0]) == expected


def test_no_hand_written_module_over_the_line_limit() -> None:
    """Small modules: no module under ``src/phoenix_resources`` has more than
    :data:`MODULE_LINES_MAX` lines, except the generated ``grpc_gen/`` (``make proto``)."""
    lines = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines())
             for p in sorted(PACKAGE.rglob("*.py")) if GENERATED not in p.parents}
    assert {path: n for path, n in lines.items() if n > MODULE_LINES_MAX} == {}
