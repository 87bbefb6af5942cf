"""Tracing end to end, with an in-memory exporter: one trace id from the published command
to the published event, batch spans linking their commands, the sampling ratio honoured."""

from __future__ import annotations

import random
import uuid

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from phoenix_resources.client import CommandPublisher
from phoenix_resources.config import Settings
from phoenix_resources.observability.tracing import Tracing, is_sampled
from tests.support.kafka import header
from tests.support.pipeline import Pipeline, events, wait_until

pytestmark = pytest.mark.integration


def _ids(traceparent: str) -> tuple[int, int]:
    return int(traceparent[3:35], 16), int(traceparent[36:52], 16)


def _named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def test_one_trace_from_the_published_command_to_the_published_event(
        settings: Settings) -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.configured(ratio=0.1, component="test",
                                 processor=SimpleSpanProcessor(exporter))
    # The publishing application traces: its current span becomes the command's parent.
    app = TracerProvider().get_tracer("publishing-app")
    unsampled = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"
    with CommandPublisher(settings) as publisher:
        with app.start_as_current_span("app: create a resource") as app_span:
            traced = publisher.create("traced")
        untraced = publisher.create("untraced", traceparent=unsampled)
    app_ctx = app_span.get_span_context()

    with Pipeline(settings, tracing=tracing):
        received = {r.event.resource_id: r for r in events(settings, expected=2)}
        wait_until(lambda: len(_named(exporter.get_finished_spans(), "send ")) == 1, 30,
                   "the relay's send span")
    spans = exporter.get_finished_spans()

    # The traced command's event carries the command's trace id, under the relay's span …
    event_tp = header(received[traced.resource_id].message, "traceparent")
    assert event_tp is not None
    assert is_sampled(event_tp)
    trace_id, parent_id = _ids(event_tp)
    assert trace_id == app_ctx.trace_id
    [send] = _named(spans, "send ")
    assert send.name == f"send {settings.events_topic}"
    assert (send.context.trace_id, send.context.span_id) == (trace_id, parent_id)
    assert send.parent is not None
    assert send.parent.span_id == app_ctx.span_id

    # … the worker's batch span links the command (one span per batch, not per command) …
    batches = _named(spans, "phoenix.worker process")
    assert 1 <= len(batches) <= 2
    linked = {(link.context.trace_id, link.context.span_id)
              for b in batches for link in b.links}
    assert linked == {(app_ctx.trace_id, app_ctx.span_id)}, "only the sampled command"
    applies = _named(spans, "apply")
    assert applies
    assert {a.parent.span_id for a in applies if a.parent} <= {
        b.context.span_id for b in batches}
    # … and the relay's publish span links it too.
    assert any((link.context.trace_id, link.context.span_id) == (app_ctx.trace_id,
                                                                 app_ctx.span_id)
               for p in _named(spans, "phoenix.relay publish") for link in p.links)

    # The unsampled command is traced nowhere; its event keeps the command's traceparent.
    assert header(received[untraced.resource_id].message, "traceparent") == unsampled
    assert all(s.context.trace_id != _ids(unsampled)[0] for s in spans)


def test_the_sampling_ratio_is_honoured_end_to_end(settings: Settings) -> None:
    """Publishers sample new traces at PHOENIX_TRACE_SAMPLE_RATIO; the worker and relay
    trace exactly the sampled commands (parent-based)."""
    quarter = settings.model_copy(update={"trace_sample_ratio": 0.25})
    exporter = InMemorySpanExporter()
    tracing = Tracing.configured(ratio=0.25, component="test",
                                 processor=SimpleSpanProcessor(exporter))
    random.seed(20251125)  # the client draws trace ids from `random`: a fixed sample
    with CommandPublisher(quarter) as publisher:
        sent = [publisher.create(f"r{i}") for i in range(200)]
    with Pipeline(quarter, tracing=tracing):
        received = events(quarter, expected=len(sent))
        tps = [header(r.message, "traceparent") for r in received]
        sampled = {_ids(tp)[0] for tp in tps if tp is not None and is_sampled(tp)}
        wait_until(lambda: len(_named(exporter.get_finished_spans(), "send ")) == len(sampled),
                   30, "a send span per sampled event")
    assert 30 <= len(sampled) <= 70, f"{len(sampled)} of 200 sampled at 0.25"
    spans = exporter.get_finished_spans()
    linked = {link.context.trace_id for b in _named(spans, "phoenix.worker process")
              for link in b.links}
    assert linked == sampled
    assert {s.context.trace_id for s in _named(spans, "send ")} == sampled
