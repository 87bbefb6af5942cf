"""The API's spans: OpenTelemetry's ASGI instrumentation around the whole app.

Installed only when tracing is on (``observability.tracing``), so the hot path pays nothing
otherwise. It is the outermost layer: a request's ``traceparent`` header is continued, the
span is named by the route template (``GET /api/v1/resources/{id}``, bounded like the
metrics' ``route`` label) and the fast lookup path is inside it. Probes and scrapes
(``/healthz``, ``/readyz``, ``/metrics``) are not traced.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

from phoenix_resources.entrypoints.http.edge import route_label
from phoenix_resources.observability.tracing import Tracing

UNTRACED = "/healthz,/readyz,/metrics"


def span_details(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Span name and attributes of a request: its method and route template."""
    route = route_label(scope.get("path", ""))
    return f"{scope.get('method', 'HTTP')} {route}", {"http.route": route}


def add_tracing(app: FastAPI, tracing: Tracing) -> None:
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=tracing.provider,
                       default_span_details=span_details, excluded_urls=UNTRACED,
                       exclude_spans=["receive", "send"])
