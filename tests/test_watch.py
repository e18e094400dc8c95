"""watch(), wait(), watch_many(), wait_many() and the watcher, against FakeAnyFast."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from anyfast_async import (
    AnyFast,
    AnyFastError,
    APIConnectionError,
    AuthenticationError,
    PollPolicy,
    ResponseDecodeError,
    Task,
    TaskFailedError,
    TaskNotFoundError,
    TaskStatus,
    TaskUpdate,
    Throttle,
    Timeout,
    WaitTimeoutError,
)
from anyfast_async.testing import FakeAnyFast, Fault, Stage

from .conftest import now

pytestmark = pytest.mark.anyio

FAST = PollPolicy.fixed(0.005, not_found_grace=0.0)
SCHEDULER_TASK = "anyfast-async scheduler"


def scheduler_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == SCHEDULER_TASK and not t.done()]


@pytest.fixture(autouse=True)
async def no_scheduler_left_running() -> AsyncIterator[None]:
    """After each test, no scheduler task is left running."""
    yield
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    assert scheduler_tasks() == []


@pytest.fixture
async def fast_client(server: FakeAnyFast) -> AsyncIterator[AnyFast]:
    """A client with real sleeps and a quick throttle, for scheduler tests."""
    async with AnyFast(
        server.api_key,
        base_url=server.base_url,
        throttle=Throttle(initial_pause=0.05, max_pause=0.2, min_rate=50),
        timeout=Timeout(total=2.0),
    ) as client:
        yield client


def slow_stages(repeat: int = 3) -> list[Stage]:
    """A lifecycle in which every stage is seen several times."""
    return [
        Stage(status="NOT_START", progress="0%", polls=repeat),
        Stage(status="QUEUED", progress="20%", polls=repeat),
        Stage(status="IN_PROGRESS", progress="50%", polls=repeat),
        Stage(status="IN_PROGRESS", progress="75%", polls=repeat),
        Stage(status="SUCCESS", progress="100%", result_url="https://cdn.example/v.mp4"),
    ]


# -- one task ----------------------------------------------------------------------------------


async def test_watch_yields_transitions_only(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """Repeated identical polls yield nothing; status and progress changes do; terminal last."""
    server.add_task("t1", stages=slow_stages(repeat=3))
    updates = [u async for u in fast_client.watch("t1", poll=FAST)]
    assert [(u.status, u.progress) for u in updates] == [
        (TaskStatus.NOT_START, 0),
        (TaskStatus.QUEUED, 20),
        (TaskStatus.IN_PROGRESS, 50),
        (TaskStatus.IN_PROGRESS, 75),
        (TaskStatus.SUCCESS, 100),
    ]
    assert [u.previous_status for u in updates] == [
        None,
        TaskStatus.NOT_START,
        TaskStatus.QUEUED,
        TaskStatus.IN_PROGRESS,
        TaskStatus.IN_PROGRESS,
    ]
    assert [u.is_terminal for u in updates] == [False, False, False, False, True]
    assert updates[-1].error is None
    assert updates[-1].succeeded
    assert server.polls("t1") == 13, "12 repeated polls then the terminal one"


async def test_watch_failure_ends_with_error_update(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """A FAILURE is yielded as the last update, carrying TaskFailedError; watch does not raise."""
    server.add_task("t1", stages=FakeAnyFast.failure_stages("moderation"))
    updates = [u async for u in fast_client.watch("t1", poll=FAST)]
    last = updates[-1]
    assert last.status is TaskStatus.FAILURE
    assert last.is_terminal
    assert isinstance(last.error, TaskFailedError)
    assert last.error.reason == "moderation"
    assert not last.succeeded


async def test_wait_success(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """wait() returns the final Task on SUCCESS."""
    server.add_task("t1")
    task = await fast_client.wait("t1", poll_interval=0.005)
    assert task.status is TaskStatus.SUCCESS
    assert task.result_url is not None


async def test_wait_failure_raises(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """wait() raises TaskFailedError carrying the task and its reason."""
    server.add_task("t1", stages=FakeAnyFast.failure_stages("no credits"))
    with pytest.raises(TaskFailedError) as info:
        await fast_client.wait("t1", poll_interval=0.005)
    assert info.value.reason == "no credits"
    assert info.value.task.status is TaskStatus.FAILURE


@pytest.mark.virtual_time
async def test_wait_timeout_carries_last_task(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """At the deadline wait() raises WaitTimeoutError (a TimeoutError) with the last task."""
    server.add_task("t1", stages=[Stage(status="QUEUED", progress="20%")])
    started = now()
    with pytest.raises(WaitTimeoutError) as info:
        await fast_client.wait("t1", timeout=0.2, poll_interval=0.01)
    assert now() - started == pytest.approx(0.2)
    assert server.polls("t1") == 20  # at 0, 0.01, ... 0.19
    assert isinstance(info.value, TimeoutError)
    assert info.value.task_id == "t1"
    assert info.value.last_task is not None
    assert info.value.last_task.status is TaskStatus.QUEUED


@pytest.mark.virtual_time
async def test_deadline_cuts_a_long_poll_interval(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """A 60 s poll interval never sleeps past a 0.2 s deadline."""
    server.add_task("t1", stages=[Stage(status="IN_PROGRESS")])
    started = now()
    with pytest.raises(WaitTimeoutError):
        await fast_client.wait("t1", timeout=0.2, poll_interval=60)
    assert now() - started == pytest.approx(0.2)
    assert server.polls("t1") == 1


@pytest.mark.virtual_time
async def test_watch_raises_at_deadline(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """watch() raises WaitTimeoutError at its deadline, after the updates it saw."""
    server.add_task("t1", stages=[Stage(status="QUEUED")])
    seen: list[TaskUpdate] = []
    with pytest.raises(WaitTimeoutError):
        async for update in fast_client.watch("t1", timeout=0.1, poll=FAST):
            seen.append(update)
    assert [u.status for u in seen] == [TaskStatus.QUEUED]


@pytest.mark.parametrize(
    "fault",
    [
        Fault.empty(503),
        Fault.html(502),
        Fault.rate_limited(),
        Fault.rate_limited(retry_after="0.05"),
        Fault.panic(),
        Fault.truncated_body(),
        Fault.drop_connection(),
    ],
)
async def test_transient_faults_do_not_end_a_watch(
    server: FakeAnyFast, fast_client: AnyFast, fault: Fault
) -> None:
    """Transient errors in the middle of a watch are ridden out; the task still completes."""
    server.add_task("t1", stages=slow_stages(repeat=1))
    updates = []
    async for update in fast_client.watch("t1", poll=FAST):
        updates.append(update)
        if update.status is TaskStatus.QUEUED:
            server.inject(fault, times=4, task_id="t1")
    assert updates[-1].succeeded
    assert len(updates) == 5


@pytest.mark.virtual_time
async def test_timeouts_do_not_end_a_watch(server: FakeAnyFast) -> None:
    """A request timeout mid-watch is transient."""
    server.add_task("t1", stages=slow_stages(repeat=1))
    server.inject(Fault.slow(1.0), times=2, task_id="t1")
    async with AnyFast(
        server.api_key, base_url=server.base_url, timeout=Timeout(total=0.05)
    ) as client:
        task = await client.wait("t1", poll=FAST)
    assert task.status is TaskStatus.SUCCESS


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.task_not_exist(), TaskNotFoundError),
        (Fault.not_json(), ResponseDecodeError),
        (Fault.empty(401), AuthenticationError),
    ],
)
async def test_permanent_errors_end_a_watch(
    server: FakeAnyFast, fast_client: AnyFast, fault: Fault, error: type[AnyFastError]
) -> None:
    """Not found (after the grace period), a broken answer and a refused key raise at once."""
    server.add_task("t1", stages=[Stage(status="QUEUED")])
    with pytest.raises(error):
        async for update in fast_client.watch("t1", poll=FAST):
            assert update.status is TaskStatus.QUEUED
            server.inject(fault, task_id="t1")
    assert server.polls("t1") == 2


async def test_not_found_right_after_create_is_transient(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """task_not_exist within the grace period is retried; the watch then succeeds."""
    server.add_task("t1")
    server.inject(Fault.task_not_exist(), times=3, task_id="t1")
    policy = PollPolicy.fixed(0.005, not_found_grace=10.0)
    task = await fast_client.wait("t1", poll=policy)
    assert task.status is TaskStatus.SUCCESS


async def test_unknown_status_keeps_watching(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """An unknown status is non-terminal: the watch goes on to SUCCESS."""
    server.add_task(
        "t1",
        stages=[
            Stage(status="WARMING_UP", polls=3),
            Stage(status="SUCCESS", progress="100%", result_url="https://x.example/v.mp4"),
        ],
    )
    updates = [u async for u in fast_client.watch("t1", poll=FAST)]
    assert updates[0].status is TaskStatus.UNKNOWN
    assert updates[0].task is not None
    assert updates[0].task.raw_status == "WARMING_UP"
    assert updates[-1].succeeded


async def test_status_going_backwards_is_reported(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """A status or progress that goes back is a change like any other, not an error."""
    server.add_task(
        "t1",
        stages=[
            Stage(status="IN_PROGRESS", progress="60%"),
            Stage(status="IN_PROGRESS", progress="40%"),
            Stage(status="QUEUED", progress="40%"),
            Stage(status="SUCCESS", progress="100%"),
        ],
    )
    updates = [u async for u in fast_client.watch("t1", poll=FAST)]
    assert [u.progress for u in updates] == [60, 40, 40, 100]
    assert updates[2].previous_status is TaskStatus.IN_PROGRESS
    assert updates[2].status is TaskStatus.QUEUED


async def test_poll_and_poll_interval_are_exclusive(fast_client: AnyFast) -> None:
    """Passing both poll= and poll_interval= is a ValueError."""
    with pytest.raises(ValueError, match="not both"):
        fast_client.watch("t1", poll=FAST, poll_interval=1)


async def test_empty_id_rejected_before_polling(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """An empty id fails at once, and nothing is sent."""
    with pytest.raises(ValueError, match="task_id"):
        fast_client.watch("")
    with pytest.raises(ValueError, match="task_id"):
        fast_client.watch_many(["ok", " "])
    assert server.requests == []


# -- stopping ----------------------------------------------------------------------------------


CONCURRENCY = 8


@pytest.mark.virtual_time
async def test_break_stops_polling(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """Breaking out of watch_many stops polling at once and leaves no task running."""
    server.add_tasks(50, stages=[Stage(status="QUEUED")])
    ids = list(server.tasks)
    async for _update in fast_client.watch_many(ids, poll=FAST, concurrency=CONCURRENCY):
        before = len(server.requests)
        break
    gc.collect()
    for _ in range(100):  # the cancellation takes a few loop turns to unwind the pollers
        if not scheduler_tasks():
            break
        await anyio.lowlevel.checkpoint()
    assert scheduler_tasks() == []
    # Polls that were in flight at the break may still reach the server (their bytes were
    # written before it; uvloop delivers them later than asyncio does): at most one per
    # poller. Wait until the server has read them all, then nothing more may come.
    count = len(server.requests)
    for _ in range(100):
        await anyio.sleep(0.02)
        if len(server.requests) == count:
            break
        count = len(server.requests)
    assert count <= before + CONCURRENCY, "polls after the break"
    await anyio.sleep(0.05)
    assert len(server.requests) == count, "no request after the break"


async def test_context_manager_stops_polling(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """Leaving `async with client.watch(...)` stops polling before it returns."""
    server.add_task("t1", stages=[Stage(status="QUEUED")])
    async with fast_client.watch("t1", poll=FAST) as updates:
        async for _update in updates:
            break
    assert scheduler_tasks() == []


@pytest.mark.virtual_time
async def test_cancellation_stops_polling(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """Cancelling the task that waits stops polling; nothing is left running."""
    server.add_tasks(20, stages=[Stage(status="QUEUED")])
    ids = list(server.tasks)
    with anyio.move_on_after(0.1) as scope:
        await fast_client.wait_many(ids, poll=FAST)
    assert scope.cancelled_caught
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    assert scheduler_tasks() == []
    count = len(server.requests)
    await anyio.sleep(0.05)
    assert len(server.requests) == count


@pytest.mark.virtual_time
async def test_client_close_stops_watchers(server: FakeAnyFast) -> None:
    """Closing the client stops its running watchers; their waiters are told."""
    server.add_task("t1", stages=[Stage(status="QUEUED")])
    client = AnyFast(server.api_key, base_url=server.base_url)
    async with client:
        watcher = client.watcher(poll=FAST)
        await watcher.__aenter__()
        handle = watcher.add("t1")
        await anyio.sleep(0.02)
    assert scheduler_tasks() == []
    with pytest.raises(RuntimeError, match="closed"):
        await handle.wait()
    await watcher.aclose()


# -- many tasks --------------------------------------------------------------------------------


async def test_concurrency_limit_with_1000_tasks(server: FakeAnyFast) -> None:
    """With 1,000 tasks the server never sees more than `concurrency` requests at once."""
    server.latency = 0.005
    tasks = server.add_tasks(1000, stages=[Stage(status="QUEUED"), Stage(status="SUCCESS")])
    async with AnyFast(server.api_key, base_url=server.base_url) as client:
        results = await client.wait_many([t.task_id for t in tasks], concurrency=20, poll=FAST)
    assert len(results) == 1000
    assert all(isinstance(r, Task) for r in results.values())
    assert server.max_in_flight <= 20
    assert server.max_in_flight >= 5, "requests really run concurrently"


async def test_concurrency_capped_by_connection_pool(server: FakeAnyFast) -> None:
    """Pollers never outnumber the connection pool, so none waits inside aiohttp."""
    from anyfast_async import Limits

    server.latency = 0.005
    tasks = server.add_tasks(200, stages=[Stage(status="SUCCESS")])
    async with AnyFast(
        server.api_key, base_url=server.base_url, limits=Limits(max_connections=8)
    ) as client:
        await client.wait_many([t.task_id for t in tasks], concurrency=500, poll=FAST)
    assert server.max_in_flight <= 8


async def test_watch_many_merges_and_isolates_failures(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """One task's failure or absence does not stop the others; each ends exactly once."""
    server.add_task("ok", stages=slow_stages(repeat=1))
    server.add_task("bad", stages=FakeAnyFast.failure_stages("nope"))
    finals: dict[str, TaskUpdate] = {}
    count: dict[str, int] = {}
    async for update in fast_client.watch_many(["ok", "bad", "ghost", "ok"], poll=FAST):
        count[update.task_id] = count.get(update.task_id, 0) + 1
        if update.is_terminal:
            assert update.task_id not in finals, "one terminal update per task"
            finals[update.task_id] = update
    assert set(finals) == {"ok", "bad", "ghost"}
    assert finals["ok"].succeeded
    assert isinstance(finals["bad"].error, TaskFailedError)
    assert isinstance(finals["ghost"].error, TaskNotFoundError)
    assert finals["ghost"].task is None
    assert count["ok"] == 5


@pytest.mark.virtual_time
async def test_wait_many_outcomes(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """wait_many maps each id to its Task or the error that ended it, in input order."""
    server.add_task("ok")
    server.add_task("bad", stages=FakeAnyFast.failure_stages())
    server.add_task("slow", stages=[Stage(status="IN_PROGRESS")])
    results = await fast_client.wait_many(["slow", "ok", "ghost", "bad"], timeout=0.3, poll=FAST)
    assert list(results) == ["slow", "ok", "ghost", "bad"]
    assert isinstance(results["ok"], Task)
    assert isinstance(results["bad"], TaskFailedError)
    assert isinstance(results["ghost"], TaskNotFoundError)
    assert isinstance(results["slow"], WaitTimeoutError)


async def test_auth_error_ends_watch_many(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """A refused key raises from watch_many: no task can succeed."""
    server.add_tasks(30, stages=[Stage(status="QUEUED")])
    server.set_key_state("quota_exhausted")
    with pytest.raises(AuthenticationError):
        await fast_client.wait_many(list(server.tasks), poll=FAST)


@pytest.mark.virtual_time
async def test_transient_errors_exhaust_into_timeout(server: FakeAnyFast) -> None:
    """A server down for good: each task ends with WaitTimeoutError caused by the last error."""
    server.add_tasks(5)
    server.inject(Fault.empty(503), times=10_000)
    async with AnyFast(server.api_key, base_url=server.base_url) as client:
        results = await client.wait_many(list(server.tasks), timeout=0.2, poll=FAST)
    for outcome in results.values():
        assert isinstance(outcome, WaitTimeoutError)
        assert outcome.last_task is None
        assert isinstance(outcome.__cause__, AnyFastError)


@pytest.mark.virtual_time
async def test_timeout_cause_is_only_an_error_that_was_still_going_on(
    server: FakeAnyFast,
) -> None:
    """An error followed by good answers is not the cause of a later timeout."""
    server.add_task("recovered", stages=[Stage(status="QUEUED")])
    server.inject(Fault.server_error(500), task_id="recovered")
    async with AnyFast(server.api_key, base_url=server.base_url) as client:
        with pytest.raises(WaitTimeoutError) as info:
            await client.wait("recovered", timeout=0.2, poll=FAST)
    assert server.faults_served == 1
    assert server.polls("recovered") > 3
    assert info.value.__cause__ is None
    assert info.value.last_task is not None


@pytest.mark.virtual_time
async def test_connection_refused_is_transient(fast_client: AnyFast) -> None:
    """Nothing listening: polling goes on until the deadline, then WaitTimeoutError."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with AnyFast("sk-x", base_url=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(WaitTimeoutError) as info:
            await client.wait("t1", timeout=0.2, poll=FAST)
    assert isinstance(info.value.__cause__, APIConnectionError)


# -- throttling --------------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_429_storm_brings_polling_down_then_pauses_it(server: FakeAnyFast) -> None:
    """When every poll is refused, the rate comes down to min_rate, and then every task
    pauses: some 429 is followed by no request for the whole pause."""
    server.add_tasks(20, stages=[Stage(status="QUEUED", polls=10), Stage(status="SUCCESS")])
    throttle = Throttle(initial_pause=0.3, max_pause=0.3, min_rate=20)
    async with (
        AnyFast(server.api_key, base_url=server.base_url, throttle=throttle) as client,
        client.watcher(concurrency=10, poll=PollPolicy.fixed(0.002)) as watcher,
    ):
        handles = watcher.add_many(server.tasks)
        while len(server.requests) < 50:  # polling at full speed
            await anyio.sleep(0.01)
        server.inject_rate(Fault.rate_limited(), 1.0)  # a storm: every poll refused ...
        await anyio.sleep(1.5)
        server.clear_faults()  # ... for a while
        for handle in handles:
            await handle.wait()
        stats = watcher.statistics()
    times = [r.time for r in server.requests]
    refused = [i for i, r in enumerate(server.requests) if r.status == 429]
    gaps = [times[i + 1] - times[i] for i in refused if i + 1 < len(times)]
    assert max(gaps) == pytest.approx(0.3), "a pause of initial_pause followed some 429"
    assert stats.throttles == len(refused)
    assert stats.succeeded == 20


@pytest.mark.virtual_time
async def test_throttling_lowers_the_request_rate(server: FakeAnyFast) -> None:
    """While 429s keep coming, far fewer requests are made than without throttling."""
    server.add_tasks(50, stages=[Stage(status="QUEUED")])
    ids = list(server.tasks)

    async def requests_in(seconds: float, client: AnyFast) -> int:
        server.reset_stats()
        with anyio.move_on_after(seconds):
            await client.wait_many(ids, poll=PollPolicy.fixed(0.002))
        return len(server.requests)

    throttle = Throttle(initial_pause=0.05, max_pause=0.2)
    async with AnyFast(server.api_key, base_url=server.base_url, throttle=throttle) as client:
        free = await requests_in(0.3, client)
        server.inject_rate(Fault.rate_limited(), 1.0)
        throttled = await requests_in(0.3, client)
    assert throttled * 3 < free


@pytest.mark.virtual_time
async def test_retry_after_pauses_the_budget(server: FakeAnyFast) -> None:
    """A Retry-After on a 429 is the pause for every task: after one task's 429, no other
    task is polled until the pause is over."""
    server.add_tasks(20, stages=[Stage(status="QUEUED", polls=5), Stage(status="SUCCESS")])
    server.inject(Fault.rate_limited(retry_after="0.3"))  # the very first answer
    throttle = Throttle(min_rate=10_000)  # the pause is under test here, not the rate cap
    async with (
        AnyFast(server.api_key, base_url=server.base_url, throttle=throttle) as client,
        # One poller: polls go one after the other, so none can be under way at the 429.
        client.watcher(concurrency=1, poll=PollPolicy.fixed(0.002)) as watcher,
    ):
        for handle in watcher.add_many(server.tasks):
            await handle.wait()
    throttled, *after = server.requests
    assert throttled.status == 429
    assert after
    # On virtual time the 429 reaches the client at the moment the server sends it.
    assert min(r.time for r in after) - throttled.time == pytest.approx(0.3)


@pytest.mark.virtual_time
async def test_max_rate_caps_polls_per_second(server: FakeAnyFast) -> None:
    """max_rate spaces the polls of all tasks."""
    server.add_tasks(10, stages=[Stage(status="QUEUED")])
    async with AnyFast(server.api_key, base_url=server.base_url, max_rate=50) as client:
        with anyio.move_on_after(0.5):
            await client.wait_many(list(server.tasks), poll=PollPolicy.fixed(0.001))
    assert 25 <= len(server.requests) <= 30  # 50 a second for 0.5 s, and a first burst


# -- the watcher -------------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_watcher_tasks_added_while_running_complete(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """Tasks added from several coroutines at different times all complete."""
    server.add_tasks(30)
    ids = list(server.tasks)
    results: dict[str, Task] = {}
    async with fast_client.watcher(poll=FAST) as watcher:

        async def handler(task_id: str, delay: float) -> None:
            await anyio.sleep(delay)
            results[task_id] = await watcher.add(task_id).wait()

        async with anyio.create_task_group() as tg:
            for i, task_id in enumerate(ids):
                tg.start_soon(handler, task_id, i * 0.003)
        assert len(watcher) == 0
        stats = watcher.statistics()
    assert set(results) == set(ids)
    assert all(t.status is TaskStatus.SUCCESS for t in results.values())
    assert stats.succeeded == 30
    assert stats.polls == 150
    assert stats.watching == 0


@pytest.mark.virtual_time
async def test_watcher_shared_handles_and_updates(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """Adding the same id twice shares one watch; updates() streams every task's updates."""
    server.add_task("a", stages=slow_stages(repeat=2))
    server.add_task("b", stages=FakeAnyFast.failure_stages())
    async with fast_client.watcher(poll=FAST) as watcher:
        seen: list[TaskUpdate] = []

        async def collect() -> None:
            async for update in watcher.updates():
                seen.append(update)
                if sum(u.is_terminal for u in seen) == 2:
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(collect)
            await anyio.sleep(0.01)
            first, second = watcher.add("a"), watcher.add("a")
            failing = watcher.add("b")
            assert "a" in watcher
            task_a, task_a2 = await first.wait(), await second.wait()
            assert task_a is task_a2
            with pytest.raises(TaskFailedError):
                await failing.wait()
            assert failing.done()
            with pytest.raises(TaskFailedError):
                failing.result()
    assert server.polls("a") == 9
    assert [u.status for u in seen if u.task_id == "a"][-1] is TaskStatus.SUCCESS
    assert sum(1 for u in seen if u.task_id == "a") == 5


@pytest.mark.virtual_time
async def test_watcher_statistics_snapshot(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """statistics() is an immutable snapshot with tasks by status."""
    server.add_tasks(5, stages=[Stage(status="IN_PROGRESS")])
    async with fast_client.watcher(poll=FAST) as watcher:
        watcher.add_many(server.tasks)
        with anyio.fail_after(5):
            while watcher.statistics().polls < 10:
                await anyio.sleep(0.005)
        stats = watcher.statistics()
        assert stats.watching == 5
        assert stats.by_status == {"IN_PROGRESS": 5}
        assert stats.polls >= 5
        later = watcher.statistics()
        assert later.polls >= stats.polls
    with pytest.raises(AttributeError):
        stats.polls = 0  # type: ignore[misc]


async def test_watcher_auth_error_fails_current_tasks_but_keeps_running(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """A refused key ends the tasks being watched; tasks added later still work."""
    server.add_tasks(3, stages=[Stage(status="QUEUED")])
    async with fast_client.watcher(poll=FAST) as watcher:
        server.set_key_state("forbidden")
        handles = watcher.add_many(server.tasks)
        for handle in handles:
            with pytest.raises(AnyFastError):
                await handle.wait()
        server.set_key_state("ok")
        server.add_task("later")
        task = await watcher.add("later").wait()
        assert task.status is TaskStatus.SUCCESS


async def test_watcher_cancelled_waiter_leaves_the_watch_running(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """A waiter that gives up (a request's own time limit) stops waiting, not the watch: a
    later waiter gets the outcome, and the task was polled by one watch throughout."""
    server.add_task("a", stages=slow_stages(repeat=3))
    async with fast_client.watcher(poll=FAST) as watcher:
        handle = watcher.add("a")
        with anyio.CancelScope() as scope:
            scope.cancel()  # the waiter is cancelled at its first checkpoint
            await handle.wait()
        assert scope.cancelled_caught
        assert not handle.done()
        assert "a" in watcher
        task = await watcher.add("a").wait()
        assert handle.result() is task
    assert task.status is TaskStatus.SUCCESS
    assert server.polls("a") == 13  # 4 stages seen 3 times, then SUCCESS: one watch


async def test_watcher_must_be_running(fast_client: AnyFast) -> None:
    """add() before entering the watcher is a clear error."""
    watcher = fast_client.watcher()
    with pytest.raises(RuntimeError, match="not running"):
        watcher.add("t1")


@pytest.mark.virtual_time
async def test_watcher_per_task_timeout(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """Each added task gets its own deadline from when it was added."""
    server.add_task("stuck", stages=[Stage(status="QUEUED")])
    server.add_task("fine")
    async with fast_client.watcher(poll=FAST, timeout=None) as watcher:
        stuck = watcher.add("stuck", timeout=0.1)
        fine = watcher.add("fine")
        with pytest.raises(WaitTimeoutError):
            await stuck.wait()
        assert (await fine.wait()).status is TaskStatus.SUCCESS
        assert watcher.statistics().timed_out == 1


@pytest.mark.virtual_time
async def test_no_final_update_lost_when_many_finish_at_once(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """Hundreds of tasks finishing together, read slowly: every final update arrives."""
    server.add_tasks(400, stages=[Stage(status="SUCCESS", progress="100%")])
    ids = list(server.tasks)
    finals = 0
    async for update in fast_client.watch_many(ids, concurrency=50, poll=FAST):
        assert update.is_terminal
        finals += 1
        if finals % 50 == 0:
            await anyio.sleep(0.01)  # a slow reader: the buffer fills up
    assert finals == 400
    results = await fast_client.wait_many(ids[:300], concurrency=100, poll=FAST)
    assert len(results) == 300


@pytest.mark.virtual_time
async def test_deadline_cuts_a_poll_waiting_on_the_budget(server: FakeAnyFast) -> None:
    """A long shared pause does not carry a task past its own deadline."""
    server.add_task("a", stages=[Stage(status="QUEUED")])
    server.add_task("b", stages=[Stage(status="QUEUED")])
    async with (
        AnyFast(
            server.api_key, base_url=server.base_url, throttle=Throttle(max_pause=30)
        ) as client,
        client.watcher(poll=PollPolicy.fixed(0.01), timeout=None) as watcher,
    ):
        watcher.add("a")
        await anyio.sleep(0.05)
        server.inject(Fault.rate_limited(retry_after="5"))
        await anyio.sleep(0.05)
        started = now()
        with pytest.raises(WaitTimeoutError):
            await watcher.add("b", timeout=0.4).wait()
        assert now() - started == pytest.approx(0.4)


@pytest.mark.virtual_time
async def test_deadline_cuts_a_slow_answer(server: FakeAnyFast) -> None:
    """An answer still on its way at the deadline does not delay the timeout."""
    server.add_task("t1", stages=[Stage(status="QUEUED")])
    server.inject(Fault.slow(8.0), times=5)
    async with AnyFast(server.api_key, base_url=server.base_url) as client:
        started = now()
        with pytest.raises(WaitTimeoutError):
            await client.wait("t1", timeout=0.4, poll=FAST)
        assert now() - started == pytest.approx(0.4)


@pytest.mark.virtual_time
async def test_closing_the_client_ends_waits_with_an_error(server: FakeAnyFast) -> None:
    """wait(), watch() and wait_many() running when the client closes raise RuntimeError."""
    server.add_tasks(3, stages=[Stage(status="QUEUED")])
    ids = list(server.tasks)
    client = AnyFast(server.api_key, base_url=server.base_url)
    errors: list[BaseException] = []

    async def run(coro_factory: object) -> None:
        try:
            await coro_factory()  # type: ignore[operator]
        except RuntimeError as exc:
            errors.append(exc)

    async def watch_all() -> None:
        async for _ in client.watch(ids[1], poll=FAST):
            pass

    async with client, anyio.create_task_group() as tg:
        tg.start_soon(run, lambda: client.wait(ids[0], poll=FAST))
        tg.start_soon(run, watch_all)
        tg.start_soon(run, lambda: client.wait_many(ids, poll=FAST))
        await anyio.sleep(0.1)
        await client.aclose()
    assert len(errors) == 3
    assert all("closed before the task finished" in str(e) for e in errors)


async def test_a_terminal_updates_outcome_is_what_wait_many_gives(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """update.outcome() reads a terminal update: the task on success, the error otherwise;
    asked of an update that is not terminal, it refuses."""
    server.add_task("ok")
    server.add_task("bad", stages=FakeAnyFast.failure_stages("no"))
    outcomes = {}
    async with fast_client.watch_many(["ok", "bad", "gone"], poll=FAST) as updates:
        async for update in updates:
            if not update.is_terminal:
                with pytest.raises(ValueError, match="not terminal"):
                    update.outcome()
                continue
            outcomes[update.task_id] = update.outcome()
    ok, bad, gone = outcomes["ok"], outcomes["bad"], outcomes["gone"]
    assert isinstance(ok, Task)
    assert ok.status is TaskStatus.SUCCESS
    assert isinstance(bad, TaskFailedError)
    assert bad.reason == "no"
    assert isinstance(gone, TaskNotFoundError)
    expected = await fast_client.wait_many(["ok", "bad"], poll=FAST)
    assert {k: type(v) for k, v in expected.items()} == {"ok": Task, "bad": TaskFailedError}


async def test_on_terminal_keeps_every_outcome(server: FakeAnyFast, fast_client: AnyFast) -> None:
    """on_terminal gets each task's terminal update once, success, failure or error, and a
    store it writes is up to date when the task's waiters wake."""
    server.add_task("ok")
    server.add_task("bad", stages=FakeAnyFast.failure_stages("no"))
    store: dict[str, Task | AnyFastError] = {}

    async def save(update: TaskUpdate) -> None:
        assert update.is_terminal
        assert update.task_id not in store
        await anyio.lowlevel.checkpoint()
        store[update.task_id] = update.outcome()

    async with fast_client.watcher(poll=FAST, on_terminal=save) as watcher:
        handles = watcher.add_many(["ok", "bad", "gone"])
        for handle in handles:
            with contextlib.suppress(AnyFastError):
                await handle.wait()
            assert handle.task_id in store  # written before the waiter woke
        assert "ok" not in watcher  # finished tasks leave the watcher; the store keeps them
    assert isinstance(store["ok"], Task)
    assert isinstance(store["bad"], TaskFailedError)
    assert isinstance(store["gone"], TaskNotFoundError)


async def test_a_failing_on_terminal_is_logged_and_watching_goes_on(
    server: FakeAnyFast, fast_client: AnyFast, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception from a plain on_terminal callback is logged; the other tasks are still
    watched and delivered."""
    server.add_tasks(3)
    seen: list[str] = []

    def save(update: TaskUpdate) -> None:
        seen.append(update.task_id)
        if len(seen) == 1:
            raise KeyError("the store is down")

    async with fast_client.watcher(poll=FAST, on_terminal=save) as watcher:
        for handle in watcher.add_many(server.tasks):
            await handle.wait()
    assert sorted(seen) == sorted(server.tasks)
    assert "on_terminal failed for task" in caplog.text
    assert "the store is down" in caplog.text


async def test_a_waiter_wakes_when_on_terminal_is_cancelled(
    server: FakeAnyFast, fast_client: AnyFast
) -> None:
    """Closing the watcher while on_terminal is running (cancelling it) still wakes the
    task's waiters: they get the task's outcome, not a hang."""
    server.add_task("t1")
    delivering = anyio.Event()

    async def slow(update: TaskUpdate) -> None:
        delivering.set()
        await anyio.sleep_forever()

    watcher = fast_client.watcher(poll=FAST, on_terminal=slow)
    await watcher.__aenter__()
    handle = watcher.add("t1")
    await delivering.wait()
    await watcher.aclose()
    with anyio.fail_after(10):
        task = await handle.wait()
    assert task.task_id == "t1"
