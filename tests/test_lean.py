"""What keeps polls and watched tasks cheap, and what it must not change.

* The total timeout of every request is enforced by one timer for all requests in flight: a
  request past its deadline raises APITimeoutError as before, the task it ran in is left
  without a pending cancellation, and a cancellation from outside still cancels.
* A watcher keeps a running task's record without the provider's payload; updates carry it
  whole, and a finished task is kept whole.
* The CLI runs on uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from anyfast_async import (
    AnyFast,
    APITimeoutError,
    PollPolicy,
    TextToVideo,
    Timeout,
    WaitTimeoutError,
)
from anyfast_async._cli import _run
from anyfast_async.testing import FakeAnyFast, Fault, Stage

from .conftest import RecordingSleep, start_fake_server

PAYLOAD: dict[str, Any] = {
    "output": {
        "task_id": "e45a6a1b-6f05-43e5-ab06-ddfdc97587a7",
        "task_status": "RUNNING",
        "orig_prompt": "A cat running on grass",
        "submit_time": "2026-04-28 10:37:42.625",
    },
    "request_id": "53121cad-c008-9b96-af1d-4289a4fc714b",
}
RUNNING = Stage(status="IN_PROGRESS", progress="50%", polls=2, extra={"data": PAYLOAD})


def pending_cancellations() -> int:
    """Cancellations requested of the running task and not taken back (0 before 3.11)."""
    current = asyncio.current_task()
    assert current is not None
    cancelling = getattr(current, "cancelling", None)
    return int(cancelling()) if cancelling is not None else 0


def client_for(server: FakeAnyFast, sleep: RecordingSleep, total: float = 30.0) -> AnyFast:
    return AnyFast(
        server.api_key,
        base_url=server.base_url,
        timeout=Timeout(total=total),
        max_retries=0,
        sleep=sleep,
    )


# -- one timer for the total timeouts ----------------------------------------------------------


@pytest.mark.virtual_time
async def test_many_requests_past_their_deadline_each_time_out(
    server: FakeAnyFast, sleep: RecordingSleep
) -> None:
    """Twenty requests stuck at once all end with APITimeoutError, their tasks carry no
    leftover cancellation, and the client goes on working."""
    server.add_task("t1")
    server.inject(Fault.slow(30.0), times=20)
    left: list[int] = []

    async def one() -> None:
        with pytest.raises(APITimeoutError, match="timed out"):
            await client.get_task("t1")
        left.append(pending_cancellations())

    async with client_for(server, sleep, total=0.3) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
        assert left == [0] * 20
        assert (await client.get_task("t1")).task_id == "t1"


@pytest.mark.virtual_time
async def test_a_cancellation_from_outside_still_cancels(
    server: FakeAnyFast, sleep: RecordingSleep
) -> None:
    """A cancel scope around a request cancels it: it is not taken for a timeout."""
    server.add_task("t1")
    server.inject(Fault.slow(30.0))
    async with client_for(server, sleep) as client:
        with anyio.move_on_after(0.2) as scope:
            await client.get_task("t1")
        assert scope.cancelled_caught
        assert pending_cancellations() == 0


async def test_deadline_and_outer_cancellation_together(
    server: FakeAnyFast, sleep: RecordingSleep
) -> None:
    """When the request's deadline and an outer scope end at the same moment, the outer
    cancellation is never swallowed: either the scope caught it, or the timeout surfaced
    and the scope had not fired."""
    server.add_task("t1")
    for _ in range(5):
        server.inject(Fault.slow(30.0))
        async with client_for(server, sleep, total=0.2) as client:
            timed_out = False
            with anyio.move_on_after(0.2) as scope:
                try:
                    await client.get_task("t1")
                except APITimeoutError:
                    timed_out = True
                    await anyio.sleep(0.05)  # an outer cancellation lands here, if it fired
            assert timed_out or scope.cancelled_caught
            assert pending_cancellations() == 0


# -- what a watcher keeps ----------------------------------------------------------------------


async def test_a_running_task_is_kept_without_its_provider_payload(
    server: FakeAnyFast, sleep: RecordingSleep
) -> None:
    """handle.latest of a running task has every field but ``data``; the update that
    reported it carries the whole record; the finished task is kept whole."""
    success_payload = {**PAYLOAD, "output": {**PAYLOAD["output"], "task_status": "SUCCEEDED"}}
    server.add_task(
        "t1",
        stages=[
            RUNNING,
            Stage(status="SUCCESS", progress="100%", extra={"data": success_payload}),
        ],
    )
    client = client_for(server, sleep)
    async with client, client.watcher(poll=PollPolicy.fixed(0.01)) as watcher:
        updates = watcher.updates()
        handle = watcher.add("t1")
        first = await updates.__anext__()
        latest = handle.latest
        assert first.task is not None
        assert first.task.data == PAYLOAD
        assert first.task.dashscope is not None
        assert latest is not None
        assert latest.data is None
        assert (latest.status, latest.progress, latest.task_id) == (
            first.task.status,
            50,
            "t1",
        )
        assert latest.submit_time == first.task.submit_time
        assert latest.request_id == first.task.request_id
        done = await handle.wait()
        await updates.aclose()
    assert done.data == success_payload
    assert handle.latest is done


@pytest.mark.virtual_time
async def test_a_timed_out_task_reports_its_last_record(
    server: FakeAnyFast, sleep: RecordingSleep
) -> None:
    """WaitTimeoutError.last_task is the last record seen (without the provider payload)."""
    server.add_task(
        "t1", stages=[Stage(status="IN_PROGRESS", progress="60%", extra={"data": PAYLOAD})]
    )
    client = client_for(server, sleep)
    async with client, client.watcher(poll=PollPolicy.fixed(0.01), timeout=0.3) as watcher:
        handle = watcher.add("t1")
        with pytest.raises(WaitTimeoutError) as info:
            await handle.wait()
    last = info.value.last_task
    assert last is not None
    assert (last.raw_status, last.progress, last.data) == ("IN_PROGRESS", 60, None)


async def test_ids_that_need_quoting_keep_their_path(
    server: FakeAnyFast, sleep: RecordingSleep
) -> None:
    """An id with characters that are percent-encoded in the path is polled at its own path."""
    odd = "task/with space?x"
    server.add_task(odd, stages=[Stage(status="SUCCESS", progress="100%")])
    client = client_for(server, sleep)
    async with client, client.watcher(poll=PollPolicy.fixed(0.01)) as watcher:
        done = await watcher.add(odd).wait()
    assert done.task_id == odd
    assert server.requests[-1].task_id == odd


# -- the event loop of the command line --------------------------------------------------------


async def _loop_module() -> int:
    return 1 if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else 0


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")
def test_cli_runs_on_uvloop_when_installed() -> None:
    assert _run(_loop_module(), "auto") == 1
    assert _run(_loop_module(), "uvloop") == 1
    assert _run(_loop_module(), "asyncio") == 0


# -- closing a busy watcher --------------------------------------------------------------------


@pytest.fixture
def stand_in() -> Iterator[str]:
    """``anyfast fake-server`` in a process of its own: its base URL."""
    process = start_fake_server("--stage-seconds", "3600", stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    try:
        yield process.stdout.readline().decode().split()[3]
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


async def test_closing_a_busy_watcher_stops_its_polls_at_once(stand_in: str) -> None:
    """A watcher closed while every poller is busy sends no new poll: at most the ones in
    flight complete. Answers from a server in another process, always ready by the time the
    loop looks, once kept the pollers from seeing the cancellation on uvloop for seconds to
    minutes, polling all the while."""
    concurrency = 16
    async with AnyFast("test-key", base_url=stand_in) as client:
        ids = [
            (await client.create(TextToVideo(prompt=f"a cat, take {i}"))).task_id
            for i in range(100)
        ]
        watcher = client.watcher(concurrency=concurrency, poll=PollPolicy.fixed(1e-6))
        async with watcher:
            watcher.add_many(ids)
            while watcher.statistics().polls < 3 * len(ids):
                await anyio.sleep(0.01)
            before = watcher.statistics().polls
        after = watcher.statistics().polls
    assert after - before <= concurrency
