"""The generated gRPC code (``src/phoenix_resources/grpc_gen``) is what the pinned generators
make of ``proto/`` now: regenerated into a temporary folder and compared byte for byte. If
this fails, run ``make proto`` and commit the result."""

from __future__ import annotations

import pytest

from tests.support import protogen as generate

pytestmark = pytest.mark.unit


def test_generated_code_is_current() -> None:
    fresh = generate.fresh()
    committed = generate.generated_here()
    assert fresh, "protoc generated nothing"
    assert sorted(map(str, committed)) == sorted(map(str, fresh)), "run `make proto`"
    stale = sorted(str(path) for path, data in fresh.items() if committed[path] != data)
    assert stale == [], "run `make proto`"


def test_the_service_has_the_issues_rpcs() -> None:
    from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["ResourceService"]
    assert service.full_name == "phoenix.resources.v1.ResourceService"
    assert {m.name for m in service.methods} == {
        "GetResource", "ListResources", "CreateResource", "UpdateResource", "DeleteResource",
        "GetCommand", "WatchResources"}
    assert service.methods_by_name["WatchResources"].server_streaming
