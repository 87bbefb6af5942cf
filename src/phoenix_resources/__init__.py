"""phoenix-resources: apply resource commands from Kafka to PostgreSQL, effectively once.

Importing this package performs no I/O; processes are wired in :mod:`phoenix_resources.bootstrap`.
"""

from __future__ import annotations

__version__ = "0.1.0"
