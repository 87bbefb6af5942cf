"""``python -m phoenix_resources.entrypoints.cli``: the same as ``phoenix-resources``."""

from __future__ import annotations

from phoenix_resources.entrypoints.cli import main

main()
