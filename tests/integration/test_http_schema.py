"""schemathesis (4.x) against the app's own OpenAPI document, with real PostgreSQL behind it.

Property tests generate valid and invalid requests for every operation; each response must
not be a 5xx and must conform to the document (status, content type, headers, body schema).
Explicit cases with stored rows make sure the 200 bodies are validated too, not only 404s.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.http.app import create_app
from tests.support.http_api import (
    TOKEN,
    api_settings,
    insert_command,
    insert_resource,
    reader_url,
    served_api,
)
from tests.support.net import free_port

pytestmark = pytest.mark.integration


def _schema(app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


# The document does not depend on the database: build it from an app that is never started.
# (schemathesis.pytest.from_fixture would be the lazy way, but it breaks on pytest 9.)
schema = schemathesis.openapi.from_dict(create_app(Settings(api_token_hashes=[])).openapi())


@pytest.fixture
def live_api(pg_server: str, database_url: str) -> Iterator[str]:
    """A real uvicorn server (build_server) on a free port, over seeded rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i in range(5):
            insert_resource(conn, name=f"seed-{i}")
        insert_resource(conn, deleted=True)
    with served_api(api_settings(database_url, reader_url(pg_server, database_url),
                                 http_port=free_port())) as url:
        yield url


@schema.parametrize()
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_every_operation_conforms_and_never_5xx(case: Any, live_api: str) -> None:
    # A cursor is opaque: a made-up one that fits the schema is still refused (400) by design.
    made_up_cursor = "cursor" in (case.query or {})
    case.call_and_validate(base_url=live_api, excluded_checks=[positive_data_acceptance]
                           if made_up_cursor else None)


def test_stored_rows_conform(pg_server: str, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        live = insert_resource(conn, name="conforming", config={"k": "v"})
        deleted = insert_resource(conn, deleted=True)
        commands = [insert_command(conn),
                    insert_command(conn, outcome="rejected", error_code="RULE-001",
                                   error_message="bad", resulting_version=None),
                    insert_command(conn, duplicates=3)]
    app = create_app(api_settings(database_url, reader_url(pg_server, database_url)))
    loaded = _schema(app)
    try:
        one = loaded["/api/v1/resources/{resource_id}"]["GET"]
        for rid in (live, deleted, uuid.uuid4()):
            one.Case(path_parameters={"resource_id": str(rid)}).call_and_validate()
        one.Case(path_parameters={"resource_id": str(live)},
                 headers={"If-None-Match": '"1"'}).call_and_validate()
        listing = loaded["/api/v1/resources"]["GET"]
        listing.Case(query={"limit": 2}).call_and_validate()
        listing.Case(query={"name_prefix": "conf", "status": "active"}).call_and_validate()
        command = loaded["/api/v1/commands/{command_id}"]["GET"]
        for cid in commands:
            command.Case(path_parameters={"command_id": str(cid)}).call_and_validate()
        for path in ("/healthz", "/readyz"):
            loaded[path]["GET"].Case().call_and_validate()
    finally:
        asgi.shutdown_lifespans()


def test_auth_document_and_responses_conform(pg_server: str, database_url: str) -> None:
    settings_ = api_settings(database_url, reader_url(pg_server, database_url),
                             api_token_hashes=[hashlib.sha256(TOKEN.encode()).hexdigest()])
    loaded = _schema(create_app(settings_))
    try:
        one = loaded["/api/v1/resources/{resource_id}"]["GET"]
        rid = str(uuid.uuid4())
        for headers in ({}, {"Authorization": "Bearer nope"},
                        {"Authorization": f"Bearer {TOKEN}"}):
            one.Case(path_parameters={"resource_id": rid},
                     headers=headers).call_and_validate()
    finally:
        asgi.shutdown_lifespans()
