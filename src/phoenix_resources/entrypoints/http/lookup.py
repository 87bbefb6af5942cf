"""The one answer to ``GET /api/v1/resources/{id}``, whichever path serves the request.

Two paths serve this request (``docs/decisions/0006-fast-lookup-path.md``):

* :class:`~phoenix_resources.entrypoints.http.fast.FastLookup`, below FastAPI, answers the
  plain form (GET, canonical UUID, no query string) straight on the ASGI channel;
* the FastAPI route ``get_resource`` (``http.py``) answers every other form that gets as far
  as a lookup, and documents the operation in the OpenAPI document.

Both call :func:`lookup` and send the :class:`~.edge.Answer` it returns unchanged, so they
cannot drift: same status, same headers in the same order, same body.
``tests/unit/test_http_lookup.py`` drives the same requests through both and compares them.
"""

from __future__ import annotations

import logging
from uuid import UUID

from phoenix_resources.adapters.postgres.queries import ReadQueries, ResourceDoc
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.edge import Answer, problem_answer
from phoenix_resources.errors import DatabaseUnavailable

log = logging.getLogger("phoenix_resources.http")

CACHE_CONTROL = (b"cache-control", b"private, max-age=0")
CONTENT_TYPE = (b"content-type", b"application/json")
RETRY_AFTER = {"retry-after": "1"}


async def lookup(queries: ReadQueries, resource_id: UUID, if_none_match: str | None,
                 instance: str) -> Answer:
    """Read ``resource_id`` and answer for it (:func:`answer`).

    A database that cannot answer is 503 ``RES-007`` with ``Retry-After: 1``, returned, not
    raised. ``instance`` is the request path as the server decoded it (``scope["path"]``).
    """
    try:
        doc = await queries.resource(resource_id)
    except DatabaseUnavailable as e:
        log.warning("database unavailable", extra={"error": str(e)[:300]})
        return problem_answer(p.UNAVAILABLE, p.DATABASE_UNAVAILABLE, instance, RETRY_AFTER)
    return answer(resource_id, doc, if_none_match, instance)


def answer(resource_id: UUID, doc: ResourceDoc | None, if_none_match: str | None,
           instance: str) -> Answer:
    """The complete answer to a lookup that found ``doc`` (None: the id was never stored).

    * unknown id: 404 ``RES-002``; tombstone: 404 ``RES-004`` with ``deleted_at`` and
      ``version`` (problem documents, see ``edge.problem_answer``);
    * ``If-None-Match`` matching the ETag: 304 with ``ETag`` and ``Cache-Control``, no body;
    * otherwise 200: ``ETag: "<version>"``, ``Cache-Control: private, max-age=0``,
      ``Content-Type: application/json``, ``Content-Length``, and the JSON document exactly
      as PostgreSQL rendered it.
    """
    if doc is None:
        return problem_answer(p.NOT_FOUND, f"no resource with id {resource_id}", instance)
    if doc.deleted_at is not None:
        return problem_answer(p.DELETED, f"resource {resource_id} was deleted at {doc.deleted_at}",
                              instance, deleted_at=doc.deleted_at, version=doc.version)
    etag = f'"{doc.version}"'
    headers = [(b"etag", etag.encode()), CACHE_CONTROL]
    if if_none_match is not None and etag_matches(if_none_match, etag):
        return Answer(304, headers, b"")
    body = doc.json.encode()
    headers += [CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
    return Answer(200, headers, body)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match requires: ``*``, ``W/`` tags and lists."""
    if if_none_match.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in if_none_match.split(","))
