"""A command id reused for another resource, through the real worker, relay, broker,
database and HTTP API: the reuse is refused with CMD-012 and announced on the rejections
topic; the first command's resource and recorded outcome are untouched, and the API still
answers the first outcome for the id."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from phoenix_resources.config import Settings
from phoenix_resources.domain.events import reuse_rejection_id_for
from phoenix_resources.entrypoints.http.app import create_app
from phoenix_resources.observability import Metrics
from tests.support.http_api import TestClient, api_settings
from tests.support.pipeline import (
    Pipeline,
    create,
    events,
    outcomes,
    publish,
    rejections,
    resources,
    scalar,
    wait_until,
)

pytestmark = pytest.mark.integration

REUSED = "CMD-012"


def test_a_reused_command_id_is_refused_announced_and_the_first_outcome_stays(
        settings: Settings, database_url: str, read_url: str) -> None:
    first, elsewhere = uuid.uuid4(), uuid.uuid4()
    made = create(first, "first")
    reuse = replace(create(elsewhere, "elsewhere"), command_id=made.command_id)
    with Pipeline(settings) as pipeline:
        publish(settings, [made])
        wait_until(lambda: made.command_id in outcomes(database_url), timeout=90,
                   what="the first command's outcome")
        publish(settings, [reuse])
        refused = rejections(settings, expected=1, timeout=90)
        wait_until(lambda: pipeline.metrics.registry.get_sample_value(
            "phoenix_commands_total", {"outcome": "rejected", "code": REUSED}) == 1,
            timeout=30, what="the refusal counted")
    assert [(r.command_id, r.resource_id, r.code) for r in refused] == [
        (made.command_id, elsewhere, REUSED)]
    assert refused[0].rejection_id == reuse_rejection_id_for(made.command_id, elsewhere,
                                                             "CREATE")
    assert f"already names the CREATE of resource {first}" in refused[0].message
    assert [r.event.resource_id for r in events(settings, expected=1)] == [first]

    assert outcomes(database_url) == {made.command_id: ("applied", None, 0)}
    assert scalar(database_url, "SELECT resource_id FROM processed_commands "
                                "WHERE command_id = %s", made.command_id) == first
    stored = resources(database_url)
    assert set(stored) == {first}
    assert (stored[first]["name"], stored[first]["version"]) == ("first", 1)

    app = create_app(api_settings(database_url, read_url), metrics=Metrics())
    with TestClient(app) as client:
        body = client.get(f"/api/v1/commands/{made.command_id}").json()
    assert (body["outcome"], body["resource_id"], body["command_type"],
            body["resulting_version"], body["error_code"]) == (
        "applied", str(first), "CREATE", 1, None)
