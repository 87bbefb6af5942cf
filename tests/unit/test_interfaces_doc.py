"""docs/interfaces.md cannot rot silently: every grpcurl request body in it is a valid JSON
form of its method's request message; every answer it shows is what grpcurl prints for the
method's response message (proto field names, int64 as strings, enum names, defaults left
out); every RPC and setting it names exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, symbol_database
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

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


def _answers() -> list[tuple[str, str]]:
    """(full method, printed answer) of the grpcurl section: each output block after a
    ``sh`` block is the answer to that block's call."""
    section = DOC.read_text().split("### grpcurl", 1)[1].split("\n### ", 1)[0]
    answers, method = [], None
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", section, re.S):
        if lang == "sh":
            found = re.findall(r"([\w.]+/\w+)\s*$", body.replace("\\\n", " "), re.M)
            method = found[-1] if found else None
        elif method is not None:
            answers.append((method, body))
    return answers


def _printed_messages(text: str) -> list[dict[str, Any]]:
    """The JSON objects grpcurl printed in ``text`` (each starts a line)."""
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(text, m.start())[0]
            for m in re.finditer(r"^\{", text, re.M)]


def _response_type(method: str) -> type[Message]:
    health_pb2.DESCRIPTOR  # noqa: B018 - registers grpc.health.v1 in the default pool
    service, name = method.split("/")
    pool = symbol_database.Default().pool
    output = pool.FindServiceByName(service).methods_by_name[name].output_type
    response: type[Message] = symbol_database.Default().GetSymbol(output.full_name)
    return response


@pytest.mark.parametrize(("method", "answer"), _answers())
def test_answers_are_what_grpcurl_prints(method: str, answer: str) -> None:
    for printed in _printed_messages(answer):
        message = json_format.ParseDict(printed, _response_type(method)())
        assert json_format.MessageToDict(message, preserving_proto_field_name=True) == printed


def test_every_rpc_shows_its_answer() -> None:
    shown = {method.rsplit("/", 1)[1] for method, answer in _answers()
             if method.startswith(SERVICE.full_name + "/") and _printed_messages(answer)}
    assert shown == {m.name for m in SERVICE.methods}


def test_the_answer_check_refuses_camel_case() -> None:
    printed = {"command_id": "5f0e8d61-3b0a-4a8e-9c53-1d2f3e4a5b6c", "resultingVersion": "2"}
    message = json_format.ParseDict(printed, pb.CommandOutcome())  # protobuf accepts both
    assert json_format.MessageToDict(message, preserving_proto_field_name=True) != printed


def test_the_settings_it_names_exist() -> None:
    named = set(re.findall(r"PHOENIX_GRPC_[A-Z_]+", DOC.read_text()))
    fields = {f"PHOENIX_{n.upper()}" for n in Settings.model_fields}
    assert named
    assert named <= fields
