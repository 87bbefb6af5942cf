"""The system's Chromium for browser tests (driven by Playwright, never a downloaded browser)."""

from __future__ import annotations

import os
import shutil

from tests.support.services import unavailable

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
"""Headless as root, and no background connections (refused by a closed network)."""


def chromium_path() -> str:
    """``PHOENIX_CHROMIUM``, else the ``chromium`` on PATH; unavailable otherwise."""
    path = os.environ.get("PHOENIX_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        unavailable("Chromium", f"{path} is not an executable (make deps installs the Debian "
                    "package 'chromium'; elsewhere set PHOENIX_CHROMIUM)")
    return path
