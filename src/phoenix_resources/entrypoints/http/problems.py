"""RFC 9457 problem details: the one shape of every HTTP error, with stable codes.

The codes are a public contract (documented in ``docs/api.md``): a code never changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from phoenix_resources.errors import PhoenixError

PROBLEM_TYPE = "application/problem+json"


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    status: int
    title: str


INVALID_REQUEST = Code("RES-001", 400, "Invalid request")
NOT_FOUND = Code("RES-002", 404, "Not found")
TIMEOUT = Code("RES-003", 408, "Request timeout")
DELETED = Code("RES-004", 404, "Resource deleted")
UNAUTHORIZED = Code("RES-005", 401, "Unauthorized")
FORBIDDEN = Code("RES-006", 403, "Forbidden")
UNAVAILABLE = Code("RES-007", 503, "Service unavailable")
DATABASE_UNAVAILABLE = "the database is unavailable"
"""A 503's detail names the dependency, never its host, port or role (the driver's text
does: it is logged instead)."""
INTERNAL = Code("RES-008", 500, "Internal error")
METHOD_NOT_ALLOWED = Code("RES-009", 405, "Method not allowed")

ALL_CODES = (INVALID_REQUEST, NOT_FOUND, TIMEOUT, DELETED, UNAUTHORIZED, FORBIDDEN,
             UNAVAILABLE, INTERNAL, METHOD_NOT_ALLOWED)


class ApiProblem(PhoenixError):
    """Raised by a route to answer with a problem document instead of a result."""

    def __init__(self, code: Code, detail: str, *, headers: dict[str, str] | None = None,
                 **extensions: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions


def problem_body(code: Code, detail: str, instance: str, **extensions: Any) -> bytes:
    """The JSON document: ``type`` is a stable URN per code, so clients may switch on it."""
    doc: dict[str, Any] = {
        "type": f"urn:phoenix:resources:problem:{code.code}",
        "title": code.title,
        "status": code.status,
        "detail": detail,
        "code": code.code,
        "instance": instance,
    }
    doc.update(extensions)
    return orjson.dumps(doc)
