"""``GET /asyncapi.json``: the HTTP API serves the AsyncAPI document of its own settings,
open like ``/openapi.json`` even when bearer tokens guard ``/api``."""

from __future__ import annotations

import hashlib

import pytest

from phoenix_resources.entrypoints.asyncapi import document
from phoenix_resources.entrypoints.http.app import create_app
from tests.support.http_api import (
    TestClient,
    api_settings,
    assert_security_headers,
    reader_url,
)

pytestmark = pytest.mark.integration


def test_asyncapi_json_is_the_document_of_the_servers_settings(
        pg_server: str, database_url: str) -> None:
    settings = api_settings(database_url, reader_url(pg_server, database_url),
                            events_topic="custom.events", api_token_hashes=[
                                hashlib.sha256(b"token").hexdigest()])
    with TestClient(create_app(settings)) as http:
        resp = http.get("/asyncapi.json")
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/json"
        assert_security_headers(resp)
        assert resp.json() == document(settings)
        assert resp.json()["channels"]["events"]["address"] == "custom.events"
        assert "/asyncapi.json" in http.get("/openapi.json").json()["paths"]
        assert http.get("/api/v1/resources").status_code == 401, "the API itself stays guarded"
