"""OpenTelemetry tracing of the command → event path.

A command's trace context travels in its ``traceparent`` header (the client library writes it,
``wire/headers.py`` validates it); the worker stores it with the outbox row; the
relay sends the event with a ``traceparent`` of the *same trace*. Spans:

* **worker** — one ``process`` span per batch (not per command: the hot path stays flat), with
  a span **link** to every sampled command it carries (a batch has many parents), and child
  spans ``apply`` (the PostgreSQL transaction(s)) and ``dead-letter``;
* **relay** — one ``publish`` span per outbox batch with links to its sampled rows, and, for
  each *sampled* row only, a producer span ``send <topic>`` that is a child of the command's
  context; its id goes into the event's ``traceparent``, so a subscriber continues the trace
  under it. Unsampled rows keep the command's ``traceparent`` as it was;
* **API** — the ASGI instrumentation, one span per request (``entrypoints.http.tracing``).

Sampling is parent-based: a command sampled by its publisher (the ``sampled`` flag of its
``traceparent``) is traced everywhere, an unsampled one nowhere; a root span (a request with
no ``traceparent``, a batch with no sampled command) is sampled with probability
``PHOENIX_TRACE_SAMPLE_RATIO`` (default 0.1), decided on the trace id so that every process
agrees. A batch span is sampled when any command it links is.

Tracing is **off** unless an OTLP endpoint is configured (``PHOENIX_OTLP_ENDPOINT`` or the
standard ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``): then no span object is made at all and
every hook costs one attribute test. Nothing is exported by default.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    from phoenix_resources.config import Settings

log = logging.getLogger("phoenix_resources.tracing")

MAX_LINKS = 128
"""Links per batch span (the SDK's default limit): the first sampled commands of the batch."""
_SAMPLED_FLAGS = frozenset("13579bdf")  # the last hex digit of trace-flags has bit 0 set
_PROPAGATOR = TraceContextTextMapPropagator()


def is_sampled(traceparent: str | None) -> bool:
    """The ``sampled`` flag of a valid version-00 ``traceparent`` (55 characters)."""
    return traceparent is not None and traceparent[54:55] in _SAMPLED_FLAGS


def span_context(traceparent: str) -> SpanContext:
    """The remote span context of a validated ``traceparent`` (as the propagator reads it)."""
    return SpanContext(trace_id=int(traceparent[3:35], 16), span_id=int(traceparent[36:52], 16),
                       is_remote=True, trace_flags=TraceFlags(int(traceparent[53:55], 16)))


def traceparent_of(span: trace.Span) -> str | None:
    """The ``traceparent`` header that makes ``span`` the parent, written by the propagator."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


class ParentOrLinksSampler(Sampler):
    """Parent-based at ``ratio``; a root span with a sampled link is sampled too."""

    def __init__(self, ratio: float) -> None:
        self._ratio = ratio
        self._parent_based = ParentBased(TraceIdRatioBased(ratio))

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,  # noqa: PLR0917
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: Any = None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and links and any(link.context.trace_flags.sampled
                                                 for link in links):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return self._parent_based.should_sample(parent_context, trace_id, name, kind,
                                                attributes, links, trace_state)

    def get_description(self) -> str:
        return f"ParentOrLinks{{{self._ratio}}}"


class Tracing:
    """The spans of one process. ``Tracing()`` is off: every hook is a no-op."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.enabled = provider is not None
        self.tracer: trace.Tracer = (provider.get_tracer("phoenix_resources")
                                     if provider is not None else trace.NoOpTracer())

    @classmethod
    def configured(cls, *, ratio: float, component: str,
                   processor: SpanProcessor) -> Tracing:
        """Tracing on, spans handed to ``processor`` (tests pass an in-memory exporter's)."""
        provider = TracerProvider(
            sampler=ParentOrLinksSampler(ratio),
            resource=Resource.create({"service.name": f"phoenix-resources-{component}",
                                      "service.namespace": "phoenix"}))
        provider.add_span_processor(processor)
        return cls(provider)

    @classmethod
    def from_settings(cls, settings: Settings, component: str) -> Tracing:
        """Off without an OTLP endpoint; else OTLP over HTTP, batched in the background."""
        if not settings.otlp_endpoint:
            return cls()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        log.info("tracing on", extra={"endpoint": endpoint,
                                      "sample_ratio": settings.trace_sample_ratio})
        return cls.configured(ratio=settings.trace_sample_ratio, component=component,
                              processor=BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))

    def shutdown(self) -> None:
        """Export what is buffered and stop (process exit)."""
        if self.provider is not None:
            self.provider.shutdown()

    # --- the worker ----------------------------------------------------------------------

    def batch_span(self, traceparents: Sequence[str | None], start_ns: int,
                   attributes: Attributes) -> trace.Span | None:
        """The span of one worker batch, linked to its sampled commands; None when off."""
        if not self.enabled:
            return None
        sampled = [tp for tp in traceparents if tp is not None and tp[54:55] in _SAMPLED_FLAGS]
        links = [Link(span_context(tp)) for tp in sampled[:MAX_LINKS]]
        span = self.tracer.start_span("phoenix.worker process", kind=SpanKind.CONSUMER,
                                      links=links, start_time=start_ns, attributes=attributes,
                                      context=Context())
        if len(sampled) > MAX_LINKS and span.is_recording():
            span.set_attribute("phoenix.sampled_commands_not_linked", len(sampled) - MAX_LINKS)
        return span

    @contextmanager
    def child(self, parent: trace.Span | None, name: str) -> Iterator[trace.Span | None]:
        """A child span of ``parent`` (nothing when ``parent`` is None or not recording)."""
        if parent is None or not parent.is_recording():
            yield None
            return
        with self.tracer.start_as_current_span(
                name, context=trace.set_span_in_context(parent)) as span:
            yield span

    # --- the relay -----------------------------------------------------------------------

    def publish_spans(self, rows: Sequence[tuple[str | None, str]]
                      ) -> tuple[trace.Span | None, list[trace.Span | None]]:
        """For each ``(traceparent, topic)`` of an outbox batch: a ``send`` span when the
        row is sampled (else None), and the batch's ``publish`` span linking them."""
        if not self.enabled:
            return None, [None] * len(rows)
        sends: list[trace.Span | None] = []
        links: list[Link] = []
        for tp, topic in rows:
            if not is_sampled(tp):
                sends.append(None)
                continue
            assert tp is not None
            parent = span_context(tp)
            if len(links) < MAX_LINKS:
                links.append(Link(parent))
            sends.append(self.tracer.start_span(
                f"send {topic}", kind=SpanKind.PRODUCER,
                context=trace.set_span_in_context(NonRecordingSpan(parent)),
                attributes={"messaging.system": "kafka", "messaging.operation.type": "send",
                            "messaging.destination.name": topic}))
        batch = self.tracer.start_span("phoenix.relay publish", links=links, context=Context(),
                                       attributes={"messaging.batch.message_count": len(rows)})
        return batch, sends
