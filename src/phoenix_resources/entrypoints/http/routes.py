"""The documented ``/api/v1`` routes: a resource by id, the listing, a command's outcome.

The plain forms of the two resource routes are answered by :class:`~.fast.FastLookup`
before FastAPI routes anything; the routes here serve the other forms (an id without
hyphens, a query string) with the very same answers (:func:`~.lookup.lookup`,
:func:`~.listing.listing`) and carry the operations' OpenAPI description. An unknown query
parameter is a 400 ``RES-001``, never ignored.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.responses import Response

from phoenix_resources.domain.model import NAME_MAX, Status
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.fast import ApiState
from phoenix_resources.entrypoints.http.listing import (
    LIMIT_DEFAULT,
    LIMIT_MAX,
    ListQuery,
    decode_cursor,
    listing,
)
from phoenix_resources.entrypoints.http.lookup import lookup
from phoenix_resources.entrypoints.http.models import CommandOutcome, ResourceOut, ResourcePage
from phoenix_resources.entrypoints.http.openapi import (
    COMMON_PROBLEMS,
    ETAG_HEADERS,
    JSON,
    problem_doc,
)


def _reject_unknown_query(request: Request, allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise p.ApiProblem(p.INVALID_REQUEST, f"unknown query parameter(s): {', '.join(unknown)}"
                           f"; allowed: {', '.join(sorted(allowed)) or 'none'}")


def add_api_routes(app: FastAPI, state: ApiState) -> None:
    no_query: frozenset[str] = frozenset()
    list_query = frozenset({"status", "name_prefix", "limit", "cursor"})

    @app.get("/api/v1/resources/{resource_id}", response_model=ResourceOut,
             tags=["resources"], summary="A resource by id",
             responses={200: {"headers": ETAG_HEADERS},
                        304: {"description": "Not modified (If-None-Match matched the ETag)",
                              "headers": ETAG_HEADERS},
                        **problem_doc(p.NOT_FOUND), **COMMON_PROBLEMS},
             response_description="The resource; `ETag` is its version. A deleted resource "
                                  "answers 404 RES-004, an unknown id 404 RES-002.")
    async def get_resource(
        request: Request, resource_id: Annotated[UUID, Path()],
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        if request.query_params:
            _reject_unknown_query(request, no_query)
        # The plain form is answered by FastLookup; this route serves the other forms (e.g. an
        # id without hyphens) with the same answer (lookup.py), and documents the operation.
        answer = await lookup(state.queries, resource_id, if_none_match, request.scope["path"])
        return answer.response()

    @app.get("/api/v1/resources", response_model=ResourcePage, tags=["resources"],
             summary="Live resources, keyset-paginated",
             responses={**COMMON_PROBLEMS})
    async def list_resources(
        request: Request,
        status: Annotated[Status | None, Query(description="Only this status.")] = None,
        name_prefix: Annotated[str | None, Query(
            min_length=1, max_length=NAME_MAX,
            description="Only names starting with this; orders by (name, id).")] = None,
        limit: Annotated[int, Query(ge=1, le=LIMIT_MAX)] = LIMIT_DEFAULT,
        cursor: Annotated[str | None, Query(
            max_length=2048, pattern=r"^[A-Za-z0-9_-]+$",
            description="`next_cursor` of the previous page, unchanged (opaque; a cursor "
                        "this API did not issue is refused with 400).")] = None,
    ) -> Response:
        _reject_unknown_query(request, list_query)
        # The plain forms are answered by FastLookup; both send what listing.py answers.
        after = None if cursor is None else decode_cursor(cursor, by_name=name_prefix is not None)
        query = ListQuery(status.value if status else None, name_prefix, after, limit)
        return (await listing(state.queries, query)).response()

    @app.get("/api/v1/commands/{command_id}", response_model=CommandOutcome,
             tags=["commands"], summary="The recorded outcome of a command",
             responses={**problem_doc(p.NOT_FOUND), **COMMON_PROBLEMS})
    async def get_command(request: Request, command_id: Annotated[UUID, Path()]) -> Response:
        if request.query_params:
            _reject_unknown_query(request, no_query)
        doc = await state.queries.command(command_id)
        if doc is None:
            raise p.ApiProblem(p.NOT_FOUND, f"no outcome recorded for command {command_id} "
                               "(not processed yet, unknown, or pruned)")
        return Response(doc, media_type=JSON)
