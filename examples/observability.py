"""Traces and metrics of video tasks with OpenTelemetry, printed to the console.

The application configures OpenTelemetry (here: the SDK's console exporters, with a compact
one-line format); anyfast-async, installed with its ``otel`` extra, only uses the API. A
request handler's span ``generate video`` holds the SDK's ``anyfast.create`` span and the
``anyfast.watch`` span of the task, with an event per status change; when the meter provider
shuts down, the metrics are printed.

Runs against an in-process FakeAnyFast on a virtual clock (``VirtualTimeLoop``: the minutes a
task queues and runs pass in a moment; the spans' timestamps are the wall clock's).

    pip install 'anyfast-async[otel]' opentelemetry-sdk
    python examples/observability.py
"""

from __future__ import annotations

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from anyfast_async import AnyFast, PollPolicy, TextToVideo
from anyfast_async.testing import FakeAnyFast, Stage, VirtualTimeLoop


def one_line(span: ReadableSpan) -> str:
    """A span as one line: name, its id and its parent's, attributes, then its events."""
    parent = f"{span.parent.span_id:016x}" if span.parent else "-"
    attributes = " ".join(f"{k}={v!s}" for k, v in (span.attributes or {}).items())
    lines = [f"span {span.name} id={span.context.span_id:016x} parent={parent} {attributes}"]
    for event in span.events:
        details = " ".join(f"{k}={v!s}" for k, v in (event.attributes or {}).items())
        lines.append(f"    event {event.name} {details}")
    return "\n".join(lines) + "\n"


def metric_lines(data: MetricsData) -> str:
    """Each anyfast metric's data points, one line each."""
    lines = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    labels = dict(point.attributes or {})
                    value = getattr(point, "value", None)
                    if value is None:  # a histogram
                        value = f"count={point.count} sum={point.sum}"  # type: ignore[union-attr]
                    lines.append(f"metric {metric.name} {labels or ''} {value}")
    return "\n".join(lines) + "\n"


def configure() -> tuple[TracerProvider, MeterProvider]:
    """What an application does once at startup (an OTLP exporter instead, in production)."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=one_line)))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(
        ConsoleMetricExporter(formatter=metric_lines), export_interval_millis=3_600_000
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


async def main() -> None:
    tracer = trace.get_tracer("my-app")
    async with FakeAnyFast(advance="time") as server:
        server.create_stages = [
            Stage(status="QUEUED", progress="20%", seconds=40),
            Stage(status="IN_PROGRESS", progress="50%", seconds=90),
            Stage(status="SUCCESS", progress="100%", result_url="https://cdn.example/v.mp4"),
        ]
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            with tracer.start_as_current_span("generate video"):
                task = await client.create_and_wait(
                    TextToVideo(prompt="A lighthouse at dusk", duration=5),
                    poll=PollPolicy.fixed(15),
                )
    assert task.queue_time is not None
    assert task.run_time is not None
    print(f"queued {task.queue_time:g} s, ran {task.run_time:g} s: {task.result_url}")


if __name__ == "__main__":
    tracer_provider, meter_provider = configure()
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        tracer_provider.shutdown()
        meter_provider.shutdown()  # exports the metrics one last time
