"""docs/interfaces.md cannot rot silently: every grpcurl request body in it is a valid JSON
form of its method's request message, and every RPC and setting it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import json_format, symbol_database

from phoenix_resources.config import Settings
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "interfaces.md"
SERVICE = pb.DESCRIPTOR.services_by_name["ResourceService"]


def _grpcurl_calls() -> list[tuple[str, str]]:
    text = DOC.read_text().replace("\\\n", " ")
    calls = []
    for line in text.splitlines():
        if not line.lstrip().startswith("grpcurl") or " -d " not in line:
            continue
        body = re.search(r"-d '([^']*)'", line)
        method = re.search(r"ResourceService/(\w+)", line)
        assert body, line
        assert method, line
        calls.append((method.group(1), body.group(1)))
    return calls


def test_the_doc_shows_every_rpc_with_grpcurl() -> None:
    shown = {method for method, _ in _grpcurl_calls()}
    assert shown == {m.name for m in SERVICE.methods}


@pytest.mark.parametrize(("method", "body"), _grpcurl_calls())
def test_grpcurl_bodies_are_valid_requests(method: str, body: str) -> None:
    request_type = symbol_database.Default().GetSymbol(
        SERVICE.methods_by_name[method].input_type.full_name)
    json_format.Parse(body, request_type())


def test_the_settings_it_names_exist() -> None:
    named = set(re.findall(r"PHOENIX_GRPC_[A-Z_]+", DOC.read_text()))
    fields = {f"PHOENIX_{n.upper()}" for n in Settings.model_fields}
    assert named
    assert named <= fields
