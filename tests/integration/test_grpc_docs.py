"""The Python example of docs/interfaces.md runs as written against a real server, worker
and relay (only the address is the test's)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from pathlib import Path

import pytest

from phoenix_resources.config import Settings
from tests.support.grpc_server import RunningServer, grpc_settings
from tests.support.http_api import reader_url
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "interfaces.md"


def test_the_python_example_runs(settings: Settings, pg_server: str,
                                 database_url: str) -> None:
    section = DOC.read_text().split("### Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    served = grpc_settings(settings, reader_url(pg_server, database_url),
                           api_token_hashes=[hashlib.sha256(b"s3cret").hexdigest()])
    out = io.StringIO()
    with RunningServer(served) as running, Pipeline(settings), contextlib.redirect_stdout(out):
        exec(code.group(1).replace("127.0.0.1:50051", f"127.0.0.1:{running.server.port}"), {})
    printed = out.getvalue()
    assert "StatusCode.NOT_FOUND RES-002" in printed
    assert "refused" not in printed
    assert "EVENT_TYPE_CREATED 1" in printed
    assert "EVENT_TYPE_UPDATED 2" in printed
