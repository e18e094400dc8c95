"""A deadline that comes before the next poll: the task is polled once more at the deadline.

Every test runs on virtual time against a FakeAnyFast whose tasks follow the clock
(``advance="time"``), so each poll and each end comes at an exact time.
"""

from __future__ import annotations

import anyio
import pytest

from anyfast_async import (
    AnyFast,
    PollPolicy,
    ServerError,
    Task,
    TaskFailedError,
    TaskStatus,
    TaskUpdate,
    WaitTimeoutError,
)
from anyfast_async.testing import FakeAnyFast, Fault, Stage

from .conftest import now

pytestmark = pytest.mark.virtual_time

VIDEO = "https://cdn.example/v.mp4"
#: Done 4 s after it was added.
DONE_AT_4 = [
    Stage(status="IN_PROGRESS", progress="10%", seconds=4),
    Stage(status="SUCCESS", progress="100%", result_url=VIDEO),
]
#: Failed 2 s after it was added.
FAILED_AT_2 = [
    Stage(status="IN_PROGRESS", progress="10%", seconds=2),
    Stage(status="FAILURE", progress="100%", fail_reason="content policy"),
]
#: At 10 % for 3 s, then at 60 % for ever.
RUNNING = [
    Stage(status="IN_PROGRESS", progress="10%", seconds=3),
    Stage(status="IN_PROGRESS", progress="60%"),
]


def polled(server: FakeAnyFast, started: float, task_id: str = "t1") -> list[float]:
    """When the server was asked for ``task_id``, in seconds from ``started``."""
    return [r.time - started for r in server.requests if r.task_id == task_id]


async def test_a_task_done_before_a_short_deadline_is_seen_done_at_the_deadline() -> None:
    """Polled every 15 s with a 5 s deadline: the task, done at 4 s, is polled at 0 and at
    the deadline, and the wait returns it at 5 s instead of timing out with the answer at 0."""
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=DONE_AT_4)
        started = now()
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            task = await client.wait("t1", timeout=5, poll=PollPolicy.fixed(15))
            assert now() - started == pytest.approx(5.0, abs=1e-6)
        assert polled(server, started) == pytest.approx([0.0, 5.0], abs=1e-6)
    assert task.status is TaskStatus.SUCCESS
    assert task.result_url == VIDEO


async def test_a_task_still_running_times_out_with_the_answer_at_the_deadline() -> None:
    """A task still running at the deadline ends with WaitTimeoutError at exactly 5 s, and its
    last task is the answer of the poll at the deadline (60 %), not that of the poll at 0."""
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=RUNNING)
        started = now()
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            with pytest.raises(WaitTimeoutError) as caught:
                await client.wait("t1", timeout=5, poll=PollPolicy.fixed(10))
            assert now() - started == pytest.approx(5.0, abs=1e-6)
        assert polled(server, started) == pytest.approx([0.0, 5.0], abs=1e-6)
    last = caught.value.last_task
    assert last is not None
    assert (last.status, last.progress) == (TaskStatus.IN_PROGRESS, 60)
    assert caught.value.__cause__ is None


async def test_no_poll_at_a_deadline_right_after_one() -> None:
    """A deadline 0.5 s after a poll (under the 1 s margin) brings no extra poll: the watch
    ends at the deadline with that poll's answer, though the task finished in between."""
    async with FakeAnyFast(advance="time") as server:
        server.add_task(
            "t1",
            stages=[
                Stage(status="IN_PROGRESS", progress="40%", seconds=10.2),
                Stage(status="SUCCESS", progress="100%", result_url=VIDEO),
            ],
        )
        started = now()
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            with pytest.raises(WaitTimeoutError) as caught:
                await client.wait("t1", timeout=10.5, poll=PollPolicy.fixed(10))
            assert now() - started == pytest.approx(10.5, abs=1e-6)
        assert polled(server, started) == pytest.approx([0.0, 10.0], abs=1e-6)
    last = caught.value.last_task
    assert last is not None
    assert (last.status, last.progress) == (TaskStatus.IN_PROGRESS, 40)


async def test_wait_many_with_a_deadline_shorter_than_the_interval() -> None:
    """wait_many(timeout=5, poll_interval=15): each task gets its poll at the deadline, and
    ends with what that poll saw: success, failure, or a timeout carrying that answer."""
    async with FakeAnyFast(advance="time") as server:
        server.add_task("done", stages=DONE_AT_4)
        server.add_task("failed", stages=FAILED_AT_2)
        server.add_task("running", stages=RUNNING)
        started = now()
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            results = await client.wait_many(list(server.tasks), timeout=5, poll_interval=15)
            assert now() - started == pytest.approx(5.0, abs=1e-6)
        for task_id in server.tasks:
            assert polled(server, started, task_id) == pytest.approx([0.0, 5.0], abs=1e-6)
    done, failed, running = results["done"], results["failed"], results["running"]
    assert isinstance(done, Task)
    assert done.status is TaskStatus.SUCCESS
    assert isinstance(failed, TaskFailedError)
    assert failed.reason == "content policy"
    assert isinstance(running, WaitTimeoutError)
    assert running.last_task is not None
    assert running.last_task.progress == 60


async def test_watch_yields_the_change_seen_at_the_deadline_then_times_out() -> None:
    """watch() yields what the poll at the deadline found new before it raises."""
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=RUNNING)
        started = now()
        seen: list[TaskUpdate] = []
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            with pytest.raises(WaitTimeoutError):
                async for update in client.watch("t1", timeout=5, poll=PollPolicy.fixed(15)):
                    seen.append(update)
            assert now() - started == pytest.approx(5.0, abs=1e-6)
    assert [(u.progress, u.is_terminal) for u in seen] == [(10, False), (60, False)]


async def test_the_poll_at_the_deadline_has_one_second_to_answer() -> None:
    """An answer to the poll at the deadline that is slower than the 1 s margin is not waited
    for: the timeout comes 1 s after the deadline, with the answer seen before it."""
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=RUNNING)
        started = now()
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            async with anyio.create_task_group() as tg:

                async def slow_down_the_next_answer() -> None:
                    await anyio.sleep(1)  # after the first poll
                    server.inject(Fault.slow(30))

                tg.start_soon(slow_down_the_next_answer)
                with pytest.raises(WaitTimeoutError) as caught:
                    await client.wait("t1", timeout=5, poll=PollPolicy.fixed(15))
            assert now() - started == pytest.approx(6.0, abs=1e-6)
    last = caught.value.last_task
    assert last is not None
    assert last.progress == 10


async def test_failing_polls_keep_their_backoff_at_the_deadline() -> None:
    """A task whose last poll failed is not polled again early at the deadline (its backoff
    stands): the timeout comes at the deadline, caused by that failure."""
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=RUNNING)
        server.inject(Fault.empty(500))
        started = now()
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            with pytest.raises(WaitTimeoutError) as caught:
                await client.wait("t1", timeout=5, poll=PollPolicy.fixed(15))
            assert now() - started == pytest.approx(5.0, abs=1e-6)
        assert polled(server, started) == pytest.approx([0.0], abs=1e-6)
    assert caught.value.last_task is None
    assert isinstance(caught.value.__cause__, ServerError)
