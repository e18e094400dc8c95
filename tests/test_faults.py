"""The fault matrix: every fault, through get_task, watch, watch_many and the watcher.

Each case states its outcome: "recovers" (the request or the watch succeeds anyway, with a
bounded number of requests) or the error that ends it.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from anyfast_async import (
    AnyFast,
    AnyFastError,
    APIConnectionError,
    APIStatusError,
    PollPolicy,
    ResponseDecodeError,
    RetryPolicy,
    Task,
    TaskStatus,
    Throttle,
    Timeout,
    WaitTimeoutError,
)
from anyfast_async.testing import FakeAnyFast, Fault, Stage

# Short client timeouts against slow and trickling answers: on virtual time, where each fires
# at its exact time, whatever the machine's speed.
pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

FAST = PollPolicy.fixed(0.005, not_found_grace=0.0)
RECOVERS = "recovers"


@dataclass(frozen=True)
class Case:
    name: str
    fault: Fault
    times: int
    outcome: str | type[AnyFastError]


CASES = [
    Case("reset mid-headers", Fault.drop_connection(), 2, RECOVERS),
    Case("reset mid-body", Fault.truncated_body(), 2, RECOVERS),
    Case("accepts, never answers", Fault.slow(30.0), 1, RECOVERS),
    Case("body trickles", Fault.trickle_body(0.2), 1, RECOVERS),
    Case("429 bare", Fault.rate_limited(), 2, RECOVERS),
    Case("429 Retry-After seconds", Fault.rate_limited(retry_after="0.02"), 2, RECOVERS),
    Case(
        "429 Retry-After date",
        Fault.rate_limited(retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
        2,
        RECOVERS,
    ),
    Case("429 Retry-After junk", Fault.rate_limited(retry_after="soon"), 2, RECOVERS),
    Case("429 html", Fault.rate_limited(shape="html"), 2, RECOVERS),
    Case("500 json", Fault.server_error(500), 2, RECOVERS),
    Case("500 panic", Fault.panic(), 2, RECOVERS),
    Case("502 html", Fault.html(502), 2, RECOVERS),
    Case("503 empty", Fault.empty(503), 2, RECOVERS),
    Case("504 html", Fault.html(504), 2, RECOVERS),
    Case("504 json", Fault.http(504, {"error": {"message": "upstream timeout"}}), 2, RECOVERS),
    Case("truncated json", Fault.truncated_json(), 1, ResponseDecodeError),
    Case("not json", Fault.not_json(), 1, ResponseDecodeError),
    Case("wrong shape", Fault.wrong_shape(), 1, ResponseDecodeError),
    Case("array body", Fault.wrong_shape("array"), 1, ResponseDecodeError),
    Case("200 non-success code", Fault.envelope(code="get_task_failed"), 1, APIStatusError),
]


@pytest.fixture
async def matrix_client(server: FakeAnyFast) -> AsyncIterator[AnyFast]:
    async with AnyFast(
        server.api_key,
        base_url=server.base_url,
        timeout=Timeout(total=0.3, read=0.1),
        retry=RetryPolicy(max_retries=3),
        throttle=Throttle(initial_pause=0.01, max_pause=0.05, min_rate=100),
    ) as client:
        yield client


def check_bounded(server: FakeAnyFast, normal: int, case: Case) -> None:
    """Recovery costs at most the injected faults plus aiohttp's own resend per drop."""
    extra = case.times * (2 if case.fault.drop else 1)
    assert len(server.requests) <= normal + extra + 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_get_task(server: FakeAnyFast, matrix_client: AnyFast, case: Case) -> None:
    """get_task: transient faults are retried away; the rest raise the stated error."""
    server.add_task("t1")
    server.inject(case.fault, times=case.times)
    if case.outcome == RECOVERS:
        task = await matrix_client.get_task("t1")
        # A slow answer that was given up on still counted as a poll on the server.
        assert task.status in (TaskStatus.NOT_START, TaskStatus.QUEUED)
        check_bounded(server, 1, case)
    else:
        assert not isinstance(case.outcome, str)
        with pytest.raises(case.outcome):
            await matrix_client.get_task("t1")
        assert len(server.requests) == 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_watch(server: FakeAnyFast, matrix_client: AnyFast, case: Case) -> None:
    """watch: a fault in mid-watch is ridden out, or ends the watch with the stated error."""
    server.add_task("t1")
    seen = []

    async def run() -> None:
        async for update in matrix_client.watch("t1", poll=FAST, timeout=10):
            seen.append(update)
            if update.status is TaskStatus.QUEUED:
                server.inject(case.fault, times=case.times, task_id="t1")

    if case.outcome == RECOVERS:
        await run()
        assert seen[-1].succeeded
        lifecycle = [(TaskStatus.NOT_START, 0), (TaskStatus.QUEUED, 20)]
        lifecycle += [(TaskStatus.IN_PROGRESS, 50), (TaskStatus.IN_PROGRESS, 75)]
        lifecycle += [(TaskStatus.SUCCESS, 100)]
        got = [(u.status, u.progress) for u in seen]
        # In order, each at most once; a stage whose answer was cut off may be missed.
        assert got == [step for step in lifecycle if step in got]
        assert got[:2] == lifecycle[:2]
        check_bounded(server, 5, case)
    else:
        assert not isinstance(case.outcome, str)
        with pytest.raises(case.outcome):
            await run()


async def _many(client: AnyFast, ids: list[str]) -> dict[str, Task | AnyFastError]:
    return await client.wait_many(ids, poll=FAST, timeout=10)


async def _watcher(client: AnyFast, ids: list[str]) -> dict[str, Task | AnyFastError]:
    outcomes: dict[str, Task | AnyFastError] = {}
    async with client.watcher(poll=FAST, timeout=10) as watcher:
        for handle in watcher.add_many(ids):
            try:
                outcomes[handle.task_id] = await handle.wait()
            except AnyFastError as exc:
                outcomes[handle.task_id] = exc
    return outcomes


Runner = Callable[[AnyFast, list[str]], Awaitable[dict[str, Task | AnyFastError]]]


@pytest.mark.parametrize("runner", [_many, _watcher], ids=["watch_many", "watcher"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_many(
    server: FakeAnyFast, matrix_client: AnyFast, case: Case, runner: Runner
) -> None:
    """Fan-out: the faulted task recovers or ends with the stated error; the others succeed."""
    ids = [t.task_id for t in server.add_tasks(3)]
    server.inject(case.fault, times=case.times, task_id=ids[1])
    outcomes = await runner(matrix_client, ids)
    assert isinstance(outcomes[ids[0]], Task)
    assert isinstance(outcomes[ids[2]], Task)
    if case.outcome == RECOVERS:
        assert isinstance(outcomes[ids[1]], Task)
        check_bounded(server, 15, case)
    else:
        assert not isinstance(case.outcome, str)
        assert isinstance(outcomes[ids[1]], case.outcome)


@pytest.mark.parametrize(
    "stages",
    [
        [Stage(status="WARMING_UP", polls=2), Stage(status="SUCCESS")],
        [
            Stage(status="IN_PROGRESS", progress="60%"),
            Stage(status="QUEUED", progress="20%"),
            Stage(status="SUCCESS", progress="100%"),
        ],
        [
            Stage(status="IN_PROGRESS", progress="80%"),
            Stage(status="IN_PROGRESS", progress="40%"),
            Stage(status="SUCCESS", progress="100%"),
        ],
    ],
    ids=["unknown status", "status backwards", "progress down"],
)
async def test_odd_lifecycles_complete(
    server: FakeAnyFast, matrix_client: AnyFast, stages: list[Stage]
) -> None:
    """Unknown statuses, a status going backwards, progress going down: all still finish."""
    server.add_task("t1", stages=stages)
    server.add_task("t2", stages=stages)
    updates = [u async for u in matrix_client.watch("t1", poll=FAST)]
    assert updates[-1].succeeded
    assert len(updates) == len(stages)
    assert isinstance((await matrix_client.wait_many(["t2"], poll=FAST))["t2"], Task)
    async with matrix_client.watcher(poll=FAST) as watcher:
        server.add_task("t3", stages=stages)
        assert (await watcher.add("t3").wait()).status is TaskStatus.SUCCESS


async def test_connection_refused_everywhere() -> None:
    """Nothing listening: get_task raises; every waiting form times out, citing the cause."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async with AnyFast("sk-x", base_url=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(APIConnectionError):
            await client.get_task("t1")
        with pytest.raises(WaitTimeoutError) as info:
            await client.wait("t1", poll=FAST, timeout=0.1)
        assert isinstance(info.value.__cause__, APIConnectionError)
        results = await client.wait_many(["a", "b"], poll=FAST, timeout=0.1)
        assert all(isinstance(r, WaitTimeoutError) for r in results.values())
        async with client.watcher(poll=FAST, timeout=0.1) as watcher:
            with pytest.raises(WaitTimeoutError):
                await watcher.add("c").wait()
