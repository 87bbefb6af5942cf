"""The official AsyncAPI JSON Schemas (npm package ``@asyncapi/specs``), pinned, fetched once
into ``.local/`` by ``make deps`` (``python -m tests.support.asyncapi_specs``) or, failing
that, by the first test that needs them. npm is the only client involved; nothing else is
downloaded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "@asyncapi/specs"
VERSION = "6.11.1"
"""Pinned: the schema a document is validated against must not move under the tests."""
PREFIX = ROOT / ".local" / f"asyncapi-specs-{VERSION}"
PACKAGE_DIR = PREFIX / "node_modules" / "@asyncapi" / "specs"


def install() -> Path:
    """The package's folder, installed with npm if it is not there yet."""
    if (PACKAGE_DIR / "package.json").is_file():
        return PACKAGE_DIR
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed for the AsyncAPI schema: run `make deps` "
                           "(it installs Debian's npm) or apt-get install npm")
    PREFIX.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund",
                    "--no-package-lock", "--prefix", str(PREFIX), f"{PACKAGE}@{VERSION}"],
                   check=True, capture_output=True, text=True, timeout=300)
    installed = json.loads((PACKAGE_DIR / "package.json").read_text())["version"]
    if installed != VERSION:
        raise RuntimeError(f"npm installed {PACKAGE} {installed}, not {VERSION}")
    return PACKAGE_DIR


def schema(asyncapi_version: str) -> Any:
    """The official JSON Schema (draft-07, bundled) of one AsyncAPI version."""
    return json.loads((install() / "schemas" / f"{asyncapi_version}.json").read_text())


if __name__ == "__main__":
    print(f"{PACKAGE} {VERSION} in {install().relative_to(ROOT)}")
    sys.exit(0)
