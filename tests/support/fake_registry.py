"""A FAKE Confluent-compatible schema registry, in process, over real HTTP(S) on loopback.

Why a fake: no real registry can be had on this machine's package registries — Karapace is
not on PyPI, and Apicurio Registry's Maven Central artifacts do not resolve (3.3.x depends on
``apicurio-registry-schema-util-provider``, which Central does not serve; 3.0.9's parent POM
is missing; 2.6.x has the same provider gap), and its app jar is an un-augmented Quarkus
module in any case. See docs/decisions/0008-schema-registry-client.md.

It speaks the subset of the REST API that ``confluent_kafka.schema_registry`` uses here
(register, lookup, schema by id), with the registry's error bodies (``error_code`` 40401,
40403...), optional basic auth and (mutual) TLS, and injectable faults. Tests that can use a
real registry take its URL from ``PHOENIX_TEST_SCHEMA_REGISTRY_URL``.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

Fault = Literal["unavailable", "slow", "html", "wrong-path"] | None


@dataclass
class _State:
    schemas: dict[int, tuple[str, str]] = field(default_factory=dict)  # id → (schema, type)
    subjects: dict[str, list[int]] = field(default_factory=dict)  # subject → ids by version
    credentials: str | None = None  # "user:password"
    fault: Fault = None
    slow_s: float = 2.0
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _same(a: str, b: str) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return a == b


class FakeRegistry:
    def __init__(self, state: _State, url: str) -> None:
        self.state = state
        self.url = url

    # --- set-up and inspection helpers (what an operator would do with the real one) --------

    def register(self, subject: str, schema: str, schema_type: str = "AVRO") -> int:
        with self.state.lock:
            return _register(self.state, subject, schema, schema_type)

    def subjects(self) -> list[str]:
        return sorted(self.state.subjects)

    def fault(self, fault: Fault, slow_s: float = 2.0) -> None:
        self.state.fault = fault
        self.state.slow_s = slow_s

    def requests(self, method: str | None = None, prefix: str = "") -> list[str]:
        return [p for m, p in self.state.requests
                if (method is None or m == method) and p.startswith(prefix)]


def _register(state: _State, subject: str, schema: str, schema_type: str) -> int:
    sid = next((i for i, (s, t) in state.schemas.items()
                if t == schema_type and _same(s, schema)), None)
    if sid is None:
        sid = len(state.schemas) + 1
        state.schemas[sid] = (schema, schema_type)
    versions = state.subjects.setdefault(subject, [])
    if sid not in versions:
        versions.append(sid)
    return sid


class _Handler(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: int, message: str) -> None:
        self._send(status, {"error_code": code, "message": message})

    def _gate(self) -> bool:
        """Auth and faults; True when the request may be served."""
        st = self.state
        with st.lock:
            st.requests.append((self.command, self.path))
        if st.fault == "slow":
            time.sleep(st.slow_s)
        if st.fault == "unavailable":
            self._error(503, 50003, "Error while forwarding the request to the leader")
            return False
        if st.fault == "html":
            self._send(200, b"<html>maintenance</html>", "text/html")
            return False
        if st.fault == "wrong-path":
            self._send(404, b"<html>Not Found</html>", "text/html")
            return False
        if st.credentials is not None:
            expected = "Basic " + base64.b64encode(st.credentials.encode()).decode()
            if self.headers.get("Authorization") != expected:
                self._error(401, 40101, "Unauthorized")
                return False
        return True

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        data = json.loads(self.rfile.read(length) or b"{}")
        return data if isinstance(data, dict) else {}

    def do_GET(self) -> None:
        if not self._gate():
            return
        path = unquote(urlsplit(self.path).path)
        st = self.state
        if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
            found = st.schemas.get(int(m.group(1)))
            if found is None:
                return self._error(404, 40403, "Schema not found")
            body = {"schema": found[0]}
            if found[1] != "AVRO":
                body["schemaType"] = found[1]
            return self._send(200, body)
        if m := re.fullmatch(r"/subjects/(.+)/versions/latest", path):
            ids = st.subjects.get(m.group(1))
            if not ids:
                return self._error(404, 40401, "Subject not found")
            sid = ids[-1]
            return self._send(200, {"subject": m.group(1), "id": sid, "version": len(ids),
                                    "schema": st.schemas[sid][0]})
        return self._error(404, 404, "HTTP 404 Not Found")

    def do_POST(self) -> None:
        if not self._gate():
            return
        path = unquote(urlsplit(self.path).path)
        st = self.state
        body = self._body()
        schema, kind = str(body.get("schema", "")), str(body.get("schemaType") or "AVRO")
        if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
            try:
                json.loads(schema)
            except ValueError:
                return self._error(422, 42201, "Invalid schema")
            with st.lock:
                return self._send(200, {"id": _register(st, m.group(1), schema, kind)})
        if m := re.fullmatch(r"/subjects/([^/]+)", path):
            subject = m.group(1)
            ids = st.subjects.get(subject)
            if ids is None:
                return self._error(404, 40401, f"Subject '{subject}' not found.")
            for version, sid in enumerate(ids, 1):
                if _same(st.schemas[sid][0], schema):
                    return self._send(200, {"subject": subject, "id": sid,
                                            "version": version, "schema": schema})
            return self._error(404, 40403, "Schema not found")
        return self._error(404, 404, "HTTP 404 Not Found")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a refused TLS handshake is what some tests provoke; nothing to print


@contextmanager
def fake_registry(*, credentials: str | None = None, tls: ssl.SSLContext | None = None,
                  ) -> Iterator[FakeRegistry]:
    """A fake registry on 127.0.0.1 (a free port), served until the block ends."""
    state = _State(credentials=credentials)
    handler = type("Handler", (_Handler,), {"state": state})
    server = _Server(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    host = "localhost" if tls is not None else "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield FakeRegistry(state, f"{scheme}://{host}:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
