"""OpenTelemetry: a span per watched task and per create call, and the SDK's metrics.

Optional (the ``otel`` extra, which is ``opentelemetry-api`` only: the SDK never configures
exporters, the application does). Without it installed, :func:`telemetry_for` returns
``None`` and nothing of this module runs. With it, the tracer and the instruments come from
the providers given to the client, else from the global ones, whose proxies start recording
once the application configures them.

What it costs while no provider records: adding a task makes one non-recording span (about
0.3 µs), which is dropped at once; a poll then costs nothing more (the task's entry holds
``None``), and the counters polls update are plain integer increments, read by the metric
reader only when it collects (observable instruments). With a provider configured, each
watched task holds its span until it ends.

Names follow OpenTelemetry's semantic-convention style, under an ``anyfast.`` prefix for our
own (``error.type`` and ``gen_ai.request.model`` are the conventions' own).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Sized
from typing import Any, Final, TypeVar

from ._exceptions import (
    AnyFastError,
    RateLimitError,
    TaskStalledError,
)
from ._failures import UpstreamError
from ._models import Task
from ._version import __version__

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Span, Status, StatusCode

    AVAILABLE = True
except ImportError:  # the `otel` extra is not installed
    AVAILABLE = False

__all__ = [
    "AVAILABLE",
    "Counts",
    "CreateTrace",
    "Metrics",
    "TaskTrace",
    "Telemetry",
    "telemetry_for",
]

T = TypeVar("T")

#: The instrumentation scope's name (the tracer's and the meter's).
SCOPE: Final = "anyfast_async"
#: Histogram buckets in seconds, for phases that take seconds to hours (the gateway ends a
#: task after 24 hours).
DURATION_BUCKETS: Final = (
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 450.0,
    600.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
)  # fmt: skip

#: The instruments made on each meter provider, once: a provider keeps every instrument made
#: on it (the global one for the life of the process), and two sets of the same instruments
#: would have the provider drop the second set's observations.
_METRICS: weakref.WeakKeyDictionary[Any, Metrics] = weakref.WeakKeyDictionary()
_METRICS_KEPT: dict[int, tuple[Metrics, Any]] = {}  # providers that take no weak reference
_GLOBAL: dict[str, Any] = {}  # the tracer and the metrics of the global providers
_LOCK = threading.Lock()


def telemetry_for(tracer_provider: Any = None, meter_provider: Any = None) -> Telemetry | None:
    """The telemetry of a client with these providers (``None``: the global ones), or
    ``None`` when OpenTelemetry is not installed."""
    if not AVAILABLE:
        return None
    with _LOCK:
        if tracer_provider is None:
            tracer = _GLOBAL.get("tracer")
            if tracer is None:
                tracer = _GLOBAL["tracer"] = otel_trace.get_tracer(SCOPE, __version__)
        else:
            tracer = otel_trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        return Telemetry(tracer, _metrics_for(meter_provider))


def _metrics_for(meter_provider: Any) -> Metrics:
    if meter_provider is None:
        metrics = _GLOBAL.get("metrics")
        if metrics is None:
            metrics = _GLOBAL["metrics"] = Metrics(otel_metrics.get_meter(SCOPE, __version__))
        return metrics
    try:
        found = _METRICS.get(meter_provider)
    except TypeError:  # no weak reference to it: kept (with it, so its id stays its own)
        kept = _METRICS_KEPT.get(id(meter_provider))
        found = None if kept is None else kept[0]
    if found is not None:
        return found
    metrics = Metrics(otel_metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider))
    try:
        _METRICS[meter_provider] = metrics
    except TypeError:
        _METRICS_KEPT[id(meter_provider)] = (metrics, meter_provider)
    return metrics


def error_type(error: BaseException) -> str:
    """``error.type``: the exception's fully qualified class name (the public one for the
    SDK's own)."""
    cls = type(error)
    module = "anyfast_async" if isinstance(error, AnyFastError) else cls.__module__
    return f"{module}.{cls.__qualname__}"


#: ``error.type`` of a poll answered with HTTP 429 (``anyfast.poll.throttles`` counts them).
_THROTTLED: Final = "anyfast_async.RateLimitError"


class Counts:
    """What the schedulers of one thread count for the observable instruments: plain
    integers (a poll costs an increment, not an instrument call), written by that thread only
    and read by the metric reader when it collects."""

    __slots__ = ("errors", "polls")

    def __init__(self) -> None:
        self.polls = 0
        self.errors: dict[str, int] = {}

    def failed_poll(self, error: BaseException) -> None:
        kind = error_type(error)
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Metrics:
    """The SDK's instruments on one meter provider, and the counts its observable ones
    report: the totals of every client using that provider, in every thread (each thread
    counts in a :class:`Counts` of its own, summed when the reader collects). The tasks being
    watched are those of the schedulers it was told of (:meth:`watching`)."""

    __slots__ = ("_all", "_local", "_lock", "_outcomes", "_queue", "_run", "_watchers")

    def __init__(self, meter: Any) -> None:
        self._local = threading.local()
        self._all: list[Counts] = []
        self._watchers: weakref.WeakSet[Sized] = weakref.WeakSet()
        self._lock = threading.Lock()
        meter.create_observable_counter(
            "anyfast.polls",
            callbacks=[self._observe_polls],
            unit="{poll}",
            description="Polls of watched tasks answered with a task record.",
        )
        meter.create_observable_counter(
            "anyfast.poll.errors",
            callbacks=[self._observe_errors],
            unit="{poll}",
            description="Polls of watched tasks that failed, by error.type (429s included).",
        )
        meter.create_observable_counter(
            "anyfast.poll.throttles",
            callbacks=[self._observe_throttles],
            unit="{poll}",
            description="Polls of watched tasks answered with HTTP 429.",
        )
        meter.create_observable_up_down_counter(
            "anyfast.task.active",
            callbacks=[self._observe_active],
            unit="{task}",
            description="Tasks being watched.",
        )
        self._outcomes = meter.create_counter(
            "anyfast.task.outcomes",
            unit="{task}",
            description="Watches ended, by anyfast.task.outcome (and failure kind).",
        )
        self._queue = meter.create_histogram(
            "anyfast.task.queue.duration",
            unit="s",
            description="Seconds from submission to start of finished tasks (gateway times).",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._run = meter.create_histogram(
            "anyfast.task.run.duration",
            unit="s",
            description="Seconds from start to finish of finished tasks (gateway times).",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )

    def counts(self) -> Counts:
        """The counts of the calling thread (a scheduler's, in its event loop's thread)."""
        counts: Counts | None = getattr(self._local, "counts", None)
        if counts is None:
            counts = self._local.counts = Counts()
            with self._lock:
                self._all.append(counts)
        return counts

    def watching(self, watcher: Sized) -> None:
        """Count the tasks of ``watcher`` (a scheduler: its length) as being watched, for as
        long as it lives."""
        with self._lock:
            self._watchers.add(watcher)

    def ended(self, outcome: str, task: Task | None) -> None:
        """A watch ended (once per task, not per poll)."""
        attributes: dict[str, str] = {"anyfast.task.outcome": outcome}
        if task is not None and outcome == "failed":
            kind = task.failure_kind
            if kind is not None:
                attributes["anyfast.task.failure_kind"] = kind.value
        self._outcomes.add(1, attributes)
        if task is not None and task.is_terminal:
            only = {"anyfast.task.outcome": outcome}
            queued = task.queue_time
            if queued is not None:
                self._queue.record(queued, only)
            ran = task.run_time
            if ran is not None:
                self._run.record(ran, only)

    # The readers' callbacks (possibly on the reader's thread: they only read).

    def _threads(self) -> list[Counts]:
        with self._lock:
            return list(self._all)

    def _observe_polls(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(sum(c.polls for c in self._threads()))]

    def _errors(self) -> dict[str, int]:
        errors: dict[str, int] = {}
        for counts in self._threads():
            for kind, n in counts.errors.copy().items():
                errors[kind] = errors.get(kind, 0) + n
        return errors

    def _observe_throttles(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._errors().get(_THROTTLED, 0))]

    def _observe_active(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            watchers = list(self._watchers)
        return [Observation(sum(len(watcher) for watcher in watchers))]

    def _observe_errors(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"error.type": kind}) for kind, n in self._errors().items()]


class Telemetry:
    """A client's tracer and metrics."""

    __slots__ = ("metrics", "tracer")

    def __init__(self, tracer: Any, metrics: Metrics) -> None:
        self.tracer = tracer
        self.metrics = metrics

    def watching(self, task_id: str, model: str = "") -> TaskTrace | None:
        """The span of a task being added to a watch (a child of the caller's current span),
        or ``None`` if no provider records. A span a sampler left out is kept: it is made
        current for the task's polls, so that their HTTP spans follow its decision.
        ``model``: the model it was created with, when known."""
        span = self.tracer.start_span("anyfast.watch")
        if not span.is_recording():
            if not span.get_span_context().is_valid:
                return None  # no provider: nothing to follow
            return TaskTrace(span)
        span.set_attribute("anyfast.task.id", task_id)
        if model:
            span.set_attribute("gen_ai.request.model", model)
        return TaskTrace(span)

    @staticmethod
    def outside_spans(start: Callable[[], T]) -> T:
        """``start()`` (which starts a long-lived asyncio task) with no span current, so
        that the task does not carry the span of whoever started it into work of its own."""
        token = otel_context.attach(otel_context.Context())
        try:
            return start()
        finally:
            otel_context.detach(token)

    def creating(self, model: str) -> CreateTrace | None:
        """The span of a create call, made current (the HTTP client's spans nest in it), or
        ``None`` if it would not be recorded."""
        span = self.tracer.start_span("anyfast.create")
        if not span.is_recording():
            return None
        if model:
            span.set_attribute("gen_ai.request.model", model)
        return CreateTrace(span)


class TaskTrace:
    """The span of one watched task, and what it counts until the task ends."""

    __slots__ = ("context", "request_id", "span", "throttles")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.context = otel_trace.set_span_in_context(span)
        self.throttles = 0
        #: The X-Oneapi-Request-Id of the last poll's answer.
        self.request_id: str | None = None

    def enter(self) -> object:
        """Make the span current for a poll (the HTTP client's span nests in it)."""
        return otel_context.attach(self.context)

    def leave(self, token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]

    def transition(self, status: str, previous: str | None, progress: int | None) -> None:
        attributes: dict[str, str | int] = {"anyfast.task.status": status}
        if previous is not None:
            attributes["anyfast.task.previous_status"] = previous
        if progress is not None:
            attributes["anyfast.task.progress"] = progress
        if self.request_id:
            attributes["anyfast.request.id"] = self.request_id
        self.span.add_event("anyfast.task.status_change", attributes)

    def upstream(self, error: UpstreamError | None) -> None:
        """The provider's error appeared, changed or went away."""
        if error is None:
            self.span.add_event("anyfast.task.upstream_error_cleared")
            return
        attributes = {"anyfast.upstream_error.message": error.message}
        if error.code:
            attributes["anyfast.upstream_error.code"] = error.code
        self.span.add_event("anyfast.task.upstream_error", attributes)

    def poll_failed(self, error: AnyFastError) -> None:
        if isinstance(error, RateLimitError):
            self.throttles += 1
        attributes: dict[str, str | int] = {"error.type": error_type(error)}
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            attributes["http.response.status_code"] = status
        request_id = getattr(error, "request_id", None)
        if request_id:
            attributes["anyfast.request.id"] = request_id
        self.span.add_event("anyfast.poll.error", attributes)

    def end(self, outcome: str, task: Task | None, error: BaseException | None, polls: int) -> None:
        span = self.span
        attributes: dict[str, str | int | float] = {
            "anyfast.task.outcome": outcome,
            "anyfast.task.polls": polls,
            "anyfast.task.throttles": self.throttles,
        }
        if task is not None:
            attributes["anyfast.task.status"] = task.raw_status
            if task.action:
                attributes["anyfast.task.action"] = task.action
            if task.request_id:
                attributes["anyfast.task.request_id"] = task.request_id
            kind = task.failure_kind
            if kind is not None:
                attributes["anyfast.task.failure_kind"] = kind.value
            queued = task.queue_time
            if queued is not None:
                attributes["anyfast.task.queue.duration"] = queued
            ran = task.run_time
            if ran is not None:
                attributes["anyfast.task.run.duration"] = ran
        if error is not None:
            attributes["error.type"] = error_type(error)
            if isinstance(error, TaskStalledError):
                attributes["anyfast.task.stall_reason"] = error.reason
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.set_attributes(attributes)
        span.end()


class CreateTrace:
    """The span of one create call, current while the call runs."""

    __slots__ = ("_token", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._token = otel_context.attach(otel_trace.set_span_in_context(span))

    def end(
        self,
        *,
        task_id: str | None,
        sent: bool,
        request_id: str | None,
        error: BaseException | None = None,
    ) -> None:
        span = self.span
        otel_context.detach(self._token)
        attributes: dict[str, str | bool] = {"anyfast.create.sent": sent}
        if task_id:
            attributes["anyfast.task.id"] = task_id
        if request_id:
            attributes["anyfast.request.id"] = request_id
        if error is not None:
            attributes["error.type"] = error_type(error)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.set_attributes(attributes)
        span.end()
