"""OpenTelemetry: the spans of watched tasks and create calls, the metrics, the statistics.

Each test gives the client its own providers (the SDK's, with the in-memory span exporter and
metric reader), so nothing global is configured; the fake server answers over real HTTP.
Virtual time makes every phase last exactly what its stages say.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import NoOpTracerProvider, StatusCode

from anyfast_async import (
    AnyFast,
    AuthenticationError,
    BadRequestError,
    FailureKind,
    PollPolicy,
    TaskFailedError,
    TaskNotFoundError,
    TaskStalledError,
)
from anyfast_async._telemetry import telemetry_for
from anyfast_async._updates import Tally
from anyfast_async.testing import FakeAnyFast, Fault, Stage

pytestmark = pytest.mark.virtual_time

EVERY_5 = PollPolicy.fixed(5)
VIDEO = "https://cdn.example/v.mp4"


def stages(queued: float, running: float) -> list[Stage]:
    return [
        Stage(status="QUEUED", progress="20%", seconds=queued),
        Stage(status="IN_PROGRESS", progress="50%", seconds=running),
        Stage(status="SUCCESS", progress="100%", result_url=VIDEO),
    ]


class Otel:
    """Local providers, an in-memory exporter and a metric reader."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    def client(self, server: FakeAnyFast, **options: Any) -> AnyFast:
        return AnyFast(
            server.api_key,
            base_url=server.base_url,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            **options,
        )

    def finished(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name]

    def only(self, name: str) -> tuple[ReadableSpan, dict[str, Any]]:
        """The one finished span named ``name``, and its attributes."""
        (span,) = self.finished(name)
        return span, dict(span.attributes or {})

    def metrics(self) -> dict[str, list[Any]]:
        """Each metric's data points, by name."""
        found: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = list(metric.data.data_points)
        return found

    def value(self, name: str, **attributes: str) -> Any:
        points = [p for p in self.metrics().get(name, []) if dict(p.attributes or {}) == attributes]
        assert len(points) == 1, (name, attributes, self.metrics().get(name))
        return points[0]


@pytest.fixture
def otel() -> Iterator[Otel]:
    otel = Otel()
    yield otel
    otel.tracer_provider.shutdown()
    otel.meter_provider.shutdown()


def on_session(
    server: FakeAnyFast, session: aiohttp.ClientSession, tracer_provider: Any
) -> AnyFast:
    """A client on ``session`` (whose trace config makes the HTTP spans), with its own
    tracer provider."""
    return AnyFast(
        server.api_key, base_url=server.base_url, session=session, tracer_provider=tracer_provider
    )


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


async def test_a_watched_task_has_one_span_from_its_add_to_its_end(otel: Otel) -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=stages(queued=30, running=60))
        async with otel.client(server) as client:
            await client.wait("t1", poll=EVERY_5)
        polls = sum(1 for r in server.requests if r.task_id == "t1")
    span, attributes = otel.only("anyfast.watch")
    assert attributes["anyfast.task.id"] == "t1"
    assert attributes["anyfast.task.status"] == "SUCCESS"
    assert attributes["anyfast.task.outcome"] == "succeeded"
    assert attributes["anyfast.task.action"] == "generate"
    assert attributes["anyfast.task.polls"] == polls
    assert attributes["anyfast.task.throttles"] == 0
    assert attributes["anyfast.task.queue.duration"] == 30.0
    assert attributes["anyfast.task.run.duration"] == 60.0
    assert "error.type" not in attributes
    assert span.status.status_code is StatusCode.UNSET
    changes = events(span, "anyfast.task.status_change")
    assert [(e["anyfast.task.status"], e.get("anyfast.task.previous_status")) for e in changes] == [
        ("QUEUED", None),
        ("IN_PROGRESS", "QUEUED"),
        ("SUCCESS", "IN_PROGRESS"),
    ]
    assert [e["anyfast.task.progress"] for e in changes] == [20, 50, 100]
    request_ids = [e["anyfast.request.id"] for e in changes]
    assert all(request_ids)
    assert len(set(request_ids)) == 3  # each poll's own answer


async def test_the_span_of_a_watch_is_a_child_of_the_callers_span(otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=stages(queued=5, running=5))
        async with otel.client(server) as client:
            with tracer.start_as_current_span("handler") as parent:
                await client.wait("t1", poll=EVERY_5)
    (span,) = otel.finished("anyfast.watch")
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id


async def test_a_failed_task_has_its_kind_and_an_error_status(otel: Otel) -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task(
            "t1", stages=FakeAnyFast.failure_stages(kind="content_policy", provider="dashscope")
        )
        async with otel.client(server) as client:
            with pytest.raises(TaskFailedError):
                await client.wait("t1", poll=EVERY_5)
    span, attributes = otel.only("anyfast.watch")
    assert attributes["anyfast.task.outcome"] == "failed"
    assert attributes["anyfast.task.failure_kind"] == FailureKind.CONTENT_POLICY.value
    assert attributes["error.type"] == "anyfast_async.TaskFailedError"
    assert span.status.status_code is StatusCode.ERROR
    assert "content_policy" in (span.status.description or "")
    assert events(span, "exception")[0]["exception.type"].endswith("TaskFailedError")


async def test_throttled_polls_are_counted_on_the_span_and_in_the_metrics(otel: Otel) -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=stages(queued=10, running=10))
        server.inject(Fault.rate_limited(retry_after="1"), times=2, task_id="t1")
        async with otel.client(server) as client:
            await client.wait("t1", poll=EVERY_5)
            stats_polls = sum(1 for r in server.requests if r.task_id == "t1" and r.status == 200)
    span, attributes = otel.only("anyfast.watch")
    assert attributes["anyfast.task.throttles"] == 2
    assert attributes["anyfast.task.polls"] == stats_polls + 2
    errors = events(span, "anyfast.poll.error")
    assert [e["http.response.status_code"] for e in errors] == [429, 429]
    assert {e["error.type"] for e in errors} == {"anyfast_async.RateLimitError"}
    assert all(e["anyfast.request.id"] for e in errors)
    assert otel.value("anyfast.poll.throttles").value == 2
    assert (
        otel.value("anyfast.poll.errors", **{"error.type": "anyfast_async.RateLimitError"}).value
        == 2
    )
    assert otel.value("anyfast.polls").value == stats_polls


async def test_a_stalled_task_says_which_deadline_passed(otel: Otel) -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=[Stage(status="QUEUED", progress="20%")])
        async with otel.client(server) as client:
            with pytest.raises(TaskStalledError):
                await client.wait("t1", poll=EVERY_5, queue_timeout=30)
    _span, attributes = otel.only("anyfast.watch")
    assert attributes["anyfast.task.outcome"] == "timed_out"
    assert attributes["anyfast.task.stall_reason"] == "queue_timeout"
    assert attributes["error.type"] == "anyfast_async.TaskStalledError"
    assert "anyfast.task.queue.duration" not in attributes  # never started


async def test_a_provider_error_while_queued_is_an_event(otel: Otel) -> None:
    busy = {"code": "Throttling", "message": "Requests throttling triggered."}
    waiting = [
        Stage(status="QUEUED", progress="20%", seconds=5),
        Stage(status="QUEUED", progress="20%", seconds=10, extra={"data": busy}),
    ]
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=waiting + stages(queued=5, running=5))
        async with otel.client(server) as client:
            await client.wait("t1", poll=EVERY_5)
    (span,) = otel.finished("anyfast.watch")
    (appeared,) = events(span, "anyfast.task.upstream_error")
    assert appeared["anyfast.upstream_error.code"] == "Throttling"
    assert len(events(span, "anyfast.task.upstream_error_cleared")) == 1


async def test_a_watcher_closed_with_tasks_running_ends_their_spans(otel: Otel) -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=[Stage(status="IN_PROGRESS", progress="10%")])
        async with (
            otel.client(server) as client,
            client.watcher(poll=EVERY_5) as watcher,
            watcher.updates() as updates,
        ):
            watcher.add("t1")
            await updates.__anext__()
    span, attributes = otel.only("anyfast.watch")
    assert attributes["anyfast.task.outcome"] == "closed"
    assert span.status.status_code is StatusCode.UNSET


async def test_a_create_call_has_a_span_with_its_model_and_task(otel: Otel) -> None:
    async with FakeAnyFast(advance="time") as server, otel.client(server) as client:
        created = await client.create_text_to_video("A cat", duration=5)
    span, attributes = otel.only("anyfast.create")
    assert attributes["gen_ai.request.model"] == "happyhorse-1.0-t2v"
    assert attributes["anyfast.task.id"] == created.task_id
    assert span.parent is None  # no span of the caller's: a trace of its own
    assert attributes["anyfast.create.sent"] is True
    assert attributes["anyfast.request.id"]


async def test_a_refused_create_says_it_was_not_sent_through(otel: Otel) -> None:
    async with FakeAnyFast(advance="time") as server, otel.client(server) as client:
        with pytest.raises(BadRequestError, match="invalid duration"):
            await client.create_task("happyhorse-1.0-t2v", {"prompt": "x", "duration": 99})
    span, attributes = otel.only("anyfast.create")
    assert attributes["anyfast.create.sent"] is False
    assert attributes["error.type"] == "anyfast_async.BadRequestError"
    assert attributes["anyfast.request.id"]
    assert span.status.status_code is StatusCode.ERROR
    assert server.api_key not in (span.status.description or "")


async def test_the_http_client_spans_nest_in_the_sdks_spans(otel: Otel) -> None:
    config = create_trace_config(tracer_provider=otel.tracer_provider)
    async with FakeAnyFast(advance="time") as server:
        server.create_stages = stages(queued=5, running=5)
        async with (
            aiohttp.ClientSession(trace_configs=[config]) as session,
            otel.client(server, session=session) as client,
        ):
            await client.create_and_wait(
                __import__("anyfast_async").TextToVideo(prompt="A cat", duration=5),
                poll=EVERY_5,
            )
    (create,) = otel.finished("anyfast.create")
    (watch,) = otel.finished("anyfast.watch")
    assert dict(watch.attributes or {})["gen_ai.request.model"] == "happyhorse-1.0-t2v"
    posts = otel.finished("POST")
    gets = otel.finished("GET")
    assert len(posts) == 1
    assert posts[0].parent is not None
    assert posts[0].parent.span_id == create.context.span_id
    assert len(gets) == dict(watch.attributes or {})["anyfast.task.polls"]
    assert {g.parent.span_id for g in gets if g.parent is not None} == {watch.context.span_id}
    assert all(g.context.trace_id == watch.context.trace_id for g in gets)


async def test_the_metrics_count_polls_tasks_and_phase_times(otel: Otel) -> None:
    async with FakeAnyFast(advance="time") as server:
        for i, (queued, running) in enumerate([(10, 30), (20, 60), (30, 90)]):
            server.add_task(f"ok{i}", stages=stages(queued=queued, running=running))
        server.add_task("bad", stages=FakeAnyFast.failure_stages(kind="quota"))
        async with otel.client(server) as client, client.watcher(poll=EVERY_5) as watcher:
            handles = watcher.add_many(["ok0", "ok1", "ok2", "bad"])
            assert otel.value("anyfast.task.active").value == 4
            for handle in handles[:3]:
                await handle.wait()
            with pytest.raises(TaskFailedError):
                await handles[3].wait()
            stats = watcher.statistics()
            assert otel.value("anyfast.task.active").value == 0
    assert otel.value("anyfast.polls").value == stats.polls
    assert otel.value("anyfast.task.outcomes", **{"anyfast.task.outcome": "succeeded"}).value == 3
    failed = {"anyfast.task.outcome": "failed", "anyfast.task.failure_kind": "quota"}
    assert otel.value("anyfast.task.outcomes", **failed).value == 1
    queue = otel.value("anyfast.task.queue.duration", **{"anyfast.task.outcome": "succeeded"})
    assert (queue.count, queue.sum) == (3, 60.0)
    run = otel.value("anyfast.task.run.duration", **{"anyfast.task.outcome": "succeeded"})
    assert (run.count, run.sum) == (3, 180.0)
    assert 60.0 in run.explicit_bounds  # buckets in seconds, not milliseconds
    assert stats.queue_time_p50 == 20.0
    assert stats.queue_time_p95 == 30.0
    assert stats.run_time_p50 == 60.0
    assert stats.run_time_p95 == 90.0
    polls = {
        t: sum(1 for r in server.requests if r.task_id == t) for t in ("ok0", "ok1", "ok2", "bad")
    }
    assert stats.polls_per_task == pytest.approx(sum(polls.values()) / 4)


async def test_statistics_have_no_percentiles_before_a_task_finishes() -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=[Stage(status="IN_PROGRESS", progress="10%")])
        async with (
            AnyFast(server.api_key, base_url=server.base_url) as client,
            client.watcher(poll=EVERY_5) as watcher,
            watcher.updates() as updates,
        ):
            watcher.add("t1")
            await updates.__anext__()
            stats = watcher.statistics()
    assert stats.queue_time_p50 is None
    assert stats.run_time_p95 is None
    assert stats.polls_per_task is None


def test_a_tally_gives_nearest_rank_percentiles() -> None:
    tally = Tally()
    assert tally.percentile(50) is None
    for value in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 2:
        tally.add(value)
    assert tally.percentile(50) == 5
    assert tally.percentile(95) == 10
    assert tally.percentile(100) == 10
    assert tally.percentile(1) == 1
    assert tally.mean() == 5.5


def test_with_no_provider_configured_no_span_is_kept() -> None:
    # The global providers are never set in this test process: the proxies record nothing.
    telemetry = telemetry_for()
    assert telemetry is not None
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert telemetry.watching("t1") is None
    assert telemetry.creating("happyhorse-1.0-t2v") is None
    # The instruments are made once: the API keeps every meter and instrument it hands out.
    again = telemetry_for()
    assert again is not None
    assert again.metrics is telemetry.metrics


def test_a_span_a_sampler_leaves_out_is_kept_for_its_polls_to_follow() -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    telemetry = telemetry_for(provider)
    assert telemetry is not None
    kept = telemetry.watching("t1")
    assert kept is not None
    assert not kept.span.is_recording()
    assert not kept.span.get_span_context().trace_flags.sampled


def test_without_opentelemetry_installed_the_client_works(tmp_path: Any) -> None:
    script = tmp_path / "no_otel.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, sys

            class Hide:
                def find_spec(self, name, path=None, target=None):
                    if name == "opentelemetry" or name.startswith("opentelemetry."):
                        raise ImportError("hidden")
                    return None

            sys.meta_path.insert(0, Hide())
            from anyfast_async import AnyFast, PollPolicy
            from anyfast_async import _telemetry
            from anyfast_async.testing import FakeAnyFast

            async def main():
                async with FakeAnyFast() as server:
                    server.add_task("t1")
                    async with AnyFast(server.api_key, base_url=server.base_url) as client:
                        created = await client.create_text_to_video("A cat", duration=5)
                        task = await client.wait("t1", poll=PollPolicy.fixed(0.01))
                        stats = None
                        async with client.watcher(poll=PollPolicy.fixed(0.01)) as watcher:
                            await watcher.add(created.task_id).wait()
                            stats = watcher.statistics()
                print(_telemetry.AVAILABLE, "opentelemetry" in sys.modules, task.status.value,
                      stats.polls_per_task is not None)

            asyncio.run(main())
            """
        )
    )
    done = subprocess.run(  # noqa: S603 (this interpreter, a script of the test's)
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "SUCCESS", "True"]


async def test_each_status_as_sent_is_a_change_with_the_one_before_it(otel: Otel) -> None:
    """Two statuses the SDK does not know are both UNKNOWN, but each is an event of its own,
    and the previous status is the one sent too."""
    odd = [
        Stage(status="QUEUED", progress="20%", seconds=5),
        Stage(status="RUNNING", progress="30%", seconds=5),
        Stage(status="PROCESSING", progress="40%", seconds=5),
        Stage(status="SUCCESS", progress="100%", result_url=VIDEO),
    ]
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=odd)
        async with otel.client(server) as client:
            await client.wait("t1", poll=EVERY_5)
    (span,) = otel.finished("anyfast.watch")
    changes = events(span, "anyfast.task.status_change")
    assert [(e.get("anyfast.task.previous_status"), e["anyfast.task.status"]) for e in changes] == [
        (None, "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "PROCESSING"),
        ("PROCESSING", "SUCCESS"),
    ]


async def test_a_bad_id_in_wait_many_leaves_no_span_open_and_nothing_active(otel: Otel) -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=stages(queued=5, running=5))
        async with otel.client(server) as client:
            with pytest.raises(ValueError, match="task_id"):
                await client.wait_many(["t1", ""])
            assert otel.value("anyfast.task.active").value == 0
    (span,) = otel.finished("anyfast.watch")
    assert dict(span.attributes or {})["anyfast.task.outcome"] == "closed"


async def test_a_refused_key_ends_a_wait_as_an_error(otel: Otel) -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=stages(queued=5, running=5))
        server.set_key_state("quota_exhausted")
        async with otel.client(server) as client:
            with pytest.raises(AuthenticationError):
                await client.wait("t1", poll=EVERY_5)
    span, attributes = otel.only("anyfast.watch")
    assert attributes["anyfast.task.outcome"] == "errored"
    assert attributes["error.type"] == "anyfast_async.AuthenticationError"
    assert span.status.status_code is StatusCode.ERROR
    assert otel.value("anyfast.task.outcomes", **{"anyfast.task.outcome": "errored"}).value == 1
    assert otel.value("anyfast.task.active").value == 0
    assert server.api_key not in str([e.attributes for e in span.events])


async def test_on_terminal_runs_outside_the_span_of_the_task_that_ended(otel: Otel) -> None:
    """Whether a task ends with an answer or with an error of its poll, its outcome is
    handled with no span of the SDK's current (its span has ended by then)."""
    current: dict[str, int] = {}

    def on_terminal(update: Any) -> None:
        current[update.task_id] = trace.get_current_span().get_span_context().span_id

    async with FakeAnyFast(advance="time") as server:
        server.add_task("ok", stages=stages(queued=5, running=5))
        server.add_task("gone", stages=stages(queued=50, running=5))
        server.inject(Fault.task_not_exist(), times=50, task_id="gone")
        async with (
            otel.client(server) as client,
            client.watcher(poll=EVERY_5, on_terminal=on_terminal) as watcher,
        ):
            handles = watcher.add_many(["ok", "gone"])
            await handles[0].wait()
            with pytest.raises(TaskNotFoundError):
                await handles[1].wait()
    assert current == {"ok": 0, "gone": 0}
    assert len(otel.finished("anyfast.watch")) == 2


async def test_polls_follow_the_samplers_decision_for_their_task(otel: Otel) -> None:
    """A sampler leaves the watch span out but would keep a root GET span: the GETs are
    children of the (unsampled) watch span, so they are left out too."""
    sampler = ParentBased(root=DropWatches())
    tracer_provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(otel.spans))
    config = create_trace_config(tracer_provider=tracer_provider)
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=stages(queued=5, running=5))
        async with (
            aiohttp.ClientSession(trace_configs=[config]) as session,
            on_session(server, session, tracer_provider) as client,
        ):
            await client.wait("t1", poll=EVERY_5)
            await session.get(server.base_url + "/v1/video/generations/t1")  # a root: kept
    names = [span.name for span in otel.spans.get_finished_spans()]
    assert names == ["GET"]


async def test_polls_without_a_span_do_not_nest_in_whoever_started_the_watcher(
    otel: Otel,
) -> None:
    """The client's tracer records nothing, the HTTP instrumentation does: each poll's GET
    is a root, not a child of the span that was current when the watcher started."""
    config = create_trace_config(tracer_provider=otel.tracer_provider)
    startup = otel.tracer_provider.get_tracer("app")
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=stages(queued=5, running=5))
        async with (
            aiohttp.ClientSession(trace_configs=[config]) as session,
            on_session(server, session, NoOpTracerProvider()) as client,
        ):
            with startup.start_as_current_span("startup"):
                watcher = client.watcher(poll=EVERY_5)
                await watcher.__aenter__()
            try:
                await watcher.add("t1").wait()
            finally:
                await watcher.aclose()
    gets = otel.finished("GET")
    assert gets
    assert all(get.parent is None for get in gets)


async def test_clients_sharing_a_meter_provider_add_up(otel: Otel) -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_tasks(2, stages=stages(queued=5, running=5))
        first, second = list(server.tasks)
        async with (
            otel.client(server) as one,
            AnyFast(
                server.api_key, base_url=server.base_url, meter_provider=otel.meter_provider
            ) as other,
        ):
            await one.wait(first, poll=EVERY_5)
            await other.wait(second, poll=EVERY_5)
    polls = sum(1 for r in server.requests if r.method == "GET")
    assert otel.value("anyfast.polls").value == polls
    assert otel.value("anyfast.task.outcomes", **{"anyfast.task.outcome": "succeeded"}).value == 2


class DropWatches(Sampler):
    """Keeps every span but the SDK's watch spans."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        name = kwargs.get("name", args[2] if len(args) > 2 else "")
        keep = name != "anyfast.watch"
        return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP)

    def get_description(self) -> str:
        return "DropWatches"
