"""Compile ``proto/`` into ``src/phoenix_resources/grpc_gen``: ``make proto``
(``python -m tests.support.protogen``).

A development tool, outside the package (the wheel ships the generated code, not the
generator): it needs the dev dependencies ``grpcio-tools`` and ``mypy-protobuf``, pinned in
``pyproject.toml`` because their versions show in the output.
It writes ``*_pb2.py`` / ``*_pb2_grpc.py`` (grpcio-tools) and their ``.pyi`` stubs
(mypy-protobuf) for every ``.proto`` under ``proto/`` except ``proto/released/``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
PACKAGE_DIR = ROOT / "src" / "phoenix_resources" / "grpc_gen"
VIRTUAL_ROOT = "phoenix_resources/grpc_gen"
"""Where the proto files sit for protoc: generated imports then name this package."""
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def proto_files(proto_dir: Path = PROTO_DIR) -> list[Path]:
    """The contracts to compile (the released copies are only compared, never compiled in)."""
    return sorted(p for p in proto_dir.rglob("*.proto")
                  if "released" not in p.relative_to(proto_dir).parts)


def generate(out_dir: Path, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Compile every contract into ``out_dir`` (a ``src``-like root); returns the files
    written, relative to ``out_dir``. Raises :class:`RuntimeError` if protoc fails."""
    from grpc_tools import protoc

    well_known = str(resources.files("grpc_tools").joinpath("_proto"))
    bin_dir = str(Path(sys.executable).parent)  # protoc-gen-mypy* live beside the interpreter
    files = [f"{VIRTUAL_ROOT}/{p.relative_to(proto_dir).as_posix()}"
             for p in proto_files(proto_dir)]
    args = ["grpc_tools.protoc", f"-I{VIRTUAL_ROOT}={proto_dir}", f"-I{well_known}",
            f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
            f"--plugin=protoc-gen-mypy={bin_dir}/protoc-gen-mypy",
            f"--plugin=protoc-gen-mypy_grpc={bin_dir}/protoc-gen-mypy_grpc",
            f"--mypy_out=quiet:{out_dir}", f"--mypy_grpc_out=quiet:{out_dir}", *files]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(files)}")
    return sorted(p.relative_to(out_dir) for p in out_dir.rglob("*")
                  if p.name.endswith(GENERATED_SUFFIXES))


def generated_here() -> dict[Path, bytes]:
    """The generated files committed in this package, keyed by path relative to ``src``."""
    src = PACKAGE_DIR.parents[1]
    return {p.relative_to(src): p.read_bytes() for p in PACKAGE_DIR.rglob("*")
            if p.name.endswith(GENERATED_SUFFIXES)}


def fresh() -> dict[Path, bytes]:
    """What the generators make of ``proto/`` now, keyed like :func:`generated_here`."""
    with tempfile.TemporaryDirectory(prefix="phoenix-proto-") as tmp:
        out = Path(tmp)
        return {rel: (out / rel).read_bytes() for rel in generate(out)}


def main() -> int:
    """Rewrite the generated files in place (stale ones are removed)."""
    src = PACKAGE_DIR.parents[1]
    new = fresh()
    for rel in set(generated_here()) - set(new):
        (src / rel).unlink()
    for rel, data in new.items():
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        init = target.parent / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated package (see ``phoenix_resources.grpc_gen``)."""\n')
        target.write_bytes(data)
        print(f"wrote {os.path.relpath(target, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
