"""Virtual time: VirtualTimeLoop itself, and whole task lifecycles watched in it.

Every test here runs on a :class:`VirtualTimeLoop` (the ``virtual_time`` mark): the loop's clock
moves only when every task waits on a timer, so a 20-minute lifecycle takes milliseconds and
each timer fires at its exact time, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

import anyio
import pytest

from anyfast_async import (
    AnyFast,
    PollPolicy,
    Task,
    TaskStatus,
    Timeout,
    WaitTimeoutError,
)
from anyfast_async.testing import FakeAnyFast, Fault, Stage, VirtualTimeLoop

from .conftest import now

pytestmark = pytest.mark.virtual_time

MINUTE = 60.0
VIDEO = "https://cdn.example/v.mp4"
# A 20-minute generation: 5 minutes in the queue, 15 generating, then done.
LIFECYCLE = [
    Stage(status="QUEUED", progress="0%", seconds=5 * MINUTE),
    Stage(status="IN_PROGRESS", progress="30%", seconds=15 * MINUTE),
    Stage(status="SUCCESS", progress="100%", result_url="https://cdn.example/v.mp4"),
]


def status_at(elapsed: float) -> TaskStatus:
    """What the lifecycle shows ``elapsed`` seconds after the task was added."""
    if elapsed < 5 * MINUTE:
        return TaskStatus.QUEUED
    if elapsed < 20 * MINUTE:
        return TaskStatus.IN_PROGRESS
    return TaskStatus.SUCCESS


def predicted_polls(policy: PollPolicy, seed: int, deadline: float) -> list[float]:
    """When a watch with ``policy`` polls the lifecycle, by the policy alone: the first poll
    at once, then each wait drawn by :meth:`PollPolicy.next_delay` from the same seed, up to
    the end of the lifecycle or the deadline. A task still running whose next poll would
    come after the deadline is polled once more at the deadline, unless its last poll was
    less than a second before."""
    rng = random.Random(random.Random(seed).getrandbits(64))  # the watch's own, from the seed
    times, now, previous, same = [], 0.0, None, 0
    while now < deadline:
        times.append(now)
        status = status_at(now)
        if status is TaskStatus.SUCCESS:
            break
        same = same + 1 if status is previous else 1
        previous = status
        now += policy.next_delay(status, same, rng)
    else:
        if deadline - times[-1] >= 1.0:
            times.append(deadline)
    return times


async def test_the_clock_skips_waits() -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    started_wall, started = time.monotonic(), now()
    await asyncio.sleep(3600)
    await anyio.sleep(1800)
    with anyio.move_on_after(900) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert now() - started == 6300
    assert time.monotonic() - started_wall < 60  # not an hour and a half


@pytest.mark.parametrize(
    "seed", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
)
async def test_a_20_minute_lifecycle_polls_as_the_policy_predicts(seed: int) -> None:
    """The default PollPolicy over a 20-minute lifecycle, with a 30-minute deadline: the
    server sees exactly the polls the policy predicts, at exactly the predicted times, and the
    watch ends with the first poll that finds the task done."""
    policy = PollPolicy()
    expected = predicted_polls(policy, seed, deadline=30 * MINUTE)
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=LIFECYCLE)
        started = now()
        async with AnyFast(server.api_key, base_url=server.base_url, jitter_seed=seed) as client:
            updates = [u async for u in client.watch("t1", poll=policy, timeout=30 * MINUTE)]
        polled = [r.time - started for r in server.requests]
    assert polled == pytest.approx(expected, abs=1e-6)
    assert 1 + 5 * MINUTE / policy.max_waiting_interval < len(polled) < 1 + 20 * MINUTE / 13.5
    assert [u.status for u in updates] == [
        TaskStatus.QUEUED,
        TaskStatus.IN_PROGRESS,
        TaskStatus.SUCCESS,
    ]
    final = updates[-1].task
    assert final is not None
    assert final.result_url == "https://cdn.example/v.mp4"
    assert now() - started == pytest.approx(expected[-1], abs=1e-6)


async def test_a_10_minute_deadline_ends_the_watch_at_10_minutes() -> None:
    """A 10-minute deadline in the middle of the lifecycle: the server sees the polls the
    policy predicts and a last one at the deadline, whose answer the WaitTimeoutError
    carries; the watch ends at exactly 10 minutes."""
    policy = PollPolicy()
    expected = predicted_polls(policy, 7, deadline=10 * MINUTE)
    assert expected[-1] == 10 * MINUTE  # the cadence alone would not poll at the deadline
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=LIFECYCLE)
        started = now()
        async with AnyFast(server.api_key, base_url=server.base_url, jitter_seed=7) as client:
            with pytest.raises(WaitTimeoutError) as caught:
                await client.wait("t1", poll=policy, timeout=10 * MINUTE)
        assert now() - started == pytest.approx(10 * MINUTE, abs=1e-6)
        polled = [r.time - started for r in server.requests]
    assert polled == pytest.approx(expected, abs=1e-6)
    last = caught.value.last_task
    assert last is not None
    assert last.status is TaskStatus.IN_PROGRESS


async def test_many_tasks_in_virtual_time() -> None:
    """100 tasks of the 20-minute lifecycle, added a second apart, watched together: each
    makes the polls the policy predicts for it, under one scheduler."""
    async with FakeAnyFast(advance="time") as server:
        started = now()
        for i in range(100):
            server.add_task(f"t{i:03}", stages=LIFECYCLE)
            await asyncio.sleep(1)
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            done = await client.wait_many(list(server.tasks), poll=PollPolicy.fixed(15))
        assert all(isinstance(t, Task) and t.status is TaskStatus.SUCCESS for t in done.values())
        # Polled every 15 s from the moment watching started (100 s in) until done.
        for i in range(100):
            expected = [100.0 + 15 * k for k in range(100) if 100 + 15 * (k - 1) < 1200 + i]
            polled = [r.time - started for r in server.requests if r.task_id == f"t{i:03}"]
            assert polled == pytest.approx(expected, abs=1e-6)


async def test_timeouts_fire_at_their_exact_time() -> None:
    """A request the server never answers times out at the client's total timeout (the
    shared deadline timer checks every tenth of the timeout), not sooner."""
    async with FakeAnyFast() as server:
        server.add_task("t1")
        server.inject(Fault.slow(3600), times=2)
        async with AnyFast(
            server.api_key, base_url=server.base_url, timeout=Timeout(total=7.5), max_retries=0
        ) as client:
            started = now()
            with pytest.raises(Exception, match="timed out"):
                await client.get_task("t1")
            elapsed = now() - started
    # One tenth of the timeout of slack at most (the shared deadline timer's resolution).
    assert 7.5 <= elapsed <= 7.5 * 1.1


async def test_an_executor_job_makes_time_pass_as_in_reality() -> None:
    """While a job runs in a thread the clock follows real time: a timer 100 s away does
    not fire while a job of 0.2 s runs, and the clock has moved by at least those 0.2 s."""
    loop = asyncio.get_running_loop()
    fired: list[float] = []

    async def alarm() -> None:
        await asyncio.sleep(100)
        fired.append(now())

    started = now()
    alarm_task = asyncio.ensure_future(alarm())
    await loop.run_in_executor(None, time.sleep, 0.2)
    assert not fired
    assert 0.2 <= now() - started < 100
    await asyncio.to_thread(time.sleep, 0.2)  # asyncio.to_thread: the same
    assert not fired
    await alarm_task
    assert fired == [pytest.approx(started + 100)]


async def test_a_cancelled_job_counts_until_its_thread_returns() -> None:
    """Cancelling the future of a running job does not stop its thread: the clock follows
    real time until the thread is done (here about 0.2 s), and only then skips."""
    loop = asyncio.get_running_loop()
    running, release = threading.Event(), threading.Event()
    ended: asyncio.Future[None] = loop.create_future()

    def job() -> None:
        running.set()
        release.wait(30)
        loop.call_soon_threadsafe(ended.set_result, None)

    future = loop.run_in_executor(None, job)
    while not running.is_set():
        await asyncio.sleep(0)
    future.cancel()
    started = now()
    threading.Timer(0.2, release.set).start()  # a raw thread: the loop does not see it
    with anyio.move_on_after(100) as scope:  # must not fire while the job runs
        await ended
    assert not scope.cancelled_caught
    assert now() - started < 100


def test_the_runner_closes_in_real_time() -> None:
    """Closing a runner joins the executor's threads in real time: the clock does not skip
    past the join's own time limit (which would warn that the threads did not finish)."""
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(asyncio.to_thread(time.sleep, 0.05))
        # What asyncio.Runner does on closing (with a time limit of 300 s from Python 3.12).
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    assert loop.time() < 60


def test_the_clock_holds_far_from_zero() -> None:
    """A clock started at a Unix time (past 2**24 s, where a nanosecond is lost in
    rounding) still runs each timer, exactly once, at its time."""
    start = 1_777_000_000.0
    loop = VirtualTimeLoop(start=start)
    try:
        assert loop.run_until_complete(asyncio.sleep(1, "slept")) == "slept"
        assert loop.time() == start + 1
        assert loop.run_until_complete(asyncio.sleep(86_400 * 3)) is None
        assert loop.time() == start + 1 + 86_400 * 3
    finally:
        loop.close()


async def test_tasks_added_before_the_loop_follow_its_clock() -> None:
    """A FakeAnyFast made and given tasks outside the event loop (say in a synchronous
    fixture) runs their stages on the loop's virtual clock once started."""
    server = await anyio.to_thread.run_sync(made_outside_the_loop)
    async with server:
        started = now()
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            task = await client.wait("t1", poll=PollPolicy.fixed(10), timeout=600)
        assert task.status is TaskStatus.SUCCESS
        assert 60 <= now() - started <= 70


def made_outside_the_loop() -> FakeAnyFast:
    server = FakeAnyFast(advance="time")
    server.add_task(
        "t1", stages=[Stage(status="QUEUED", seconds=60), Stage(status="SUCCESS", result_url=VIDEO)]
    )
    return server


async def test_loopback_answers_arrive_before_time_skips() -> None:
    """Real HTTP to a server on the same loop: 1,000 requests with a client timeout of 1 s
    pending all along, and none of them times out."""
    async with FakeAnyFast() as server:
        server.add_tasks(50)
        async with AnyFast(
            server.api_key, base_url=server.base_url, timeout=Timeout(total=1.0), max_retries=0
        ) as client:
            started = now()
            async with anyio.create_task_group() as tg:
                for task_id in list(server.tasks) * 20:
                    tg.start_soon(client.get_task, task_id)
            assert now() - started < 1.0
    assert len(server.requests) == 1000


def test_the_loop_is_checked() -> None:
    with pytest.raises(ValueError, match="idle_polls"):
        VirtualTimeLoop(idle_polls=0)
    loop = VirtualTimeLoop(start=100.0)
    try:
        assert loop.time() == 100.0
        assert loop.run_until_complete(asyncio.sleep(60, "slept")) == "slept"
        assert loop.time() == 160.0
    finally:
        loop.close()


async def test_a_download_takes_its_virtual_time(tmp_path: Path) -> None:
    """A result file served at 100 kB/s: 1 MB downloads in 10 virtual seconds, each chunk
    written to disk in the loop's executor while the clock follows real time, and the read
    timeout never fires early."""
    content = bytes(range(256)) * 4096  # 1 MiB
    async with FakeAnyFast() as server:
        url = server.add_file("v.mp4", content, bytes_per_second=100_000)
        server.add_task("t1", stages=[Stage(status="SUCCESS", progress="100%", result_url=url)])
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            task = await client.get_task("t1")
            started = now()
            path = await client.download(task, tmp_path, read_timeout=5.0)
            elapsed = now() - started
    assert path.read_bytes() == content
    assert len(content) / 100_000 - 0.5 <= elapsed <= len(content) / 100_000 + 1.0
