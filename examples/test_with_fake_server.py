"""Testing your own code with FakeAnyFast: a pytest module to copy.

``start_video`` and ``finish_video`` stand for your application's code. The tests run them
against a real HTTP server on 127.0.0.1 that answers like AnyFast: a success, a failure, a
burst of 429s, a proxy's HTML error page, a lost answer to a create call, a task that never
finishes. No patching, no mocks, no network, no account.

    pip install anyfast-async pytest anyio
    pytest examples/test_with_fake_server.py
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from anyfast_async import (
    AnyFast,
    PollPolicy,
    ServerError,
    TaskFailedError,
    TextToVideo,
    Throttle,
    WaitTimeoutError,
)
from anyfast_async.testing import FakeAnyFast, Fault, Stage

# -- the code under test --------------------------------------------------------------------------


@dataclass
class Video:
    task_id: str
    url: str | None
    problem: str | None = None


async def start_video(client: AnyFast, prompt: str) -> str:
    """Create a video; return its task id (an application would store it now)."""
    created = await client.create(TextToVideo(prompt=prompt, duration=5))
    return created.task_id


async def finish_video(
    client: AnyFast, task_id: str, *, timeout: float = 600, poll: PollPolicy | None = None
) -> Video:
    """Wait for a video; a failure or a timeout is an answer, not an exception."""
    try:
        task = await client.wait(task_id, timeout=timeout, poll=poll)
    except TaskFailedError as exc:
        return Video(task_id, None, problem=exc.reason)
    except WaitTimeoutError:
        return Video(task_id, None, problem="timed out")
    return Video(task_id, task.result_url)


# -- fixtures ------------------------------------------------------------------------------------

FAST = PollPolicy.fixed(0.01)  # the fake's tasks move one stage per poll: poll fast


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def server() -> AsyncIterator[FakeAnyFast]:
    async with FakeAnyFast() as server:
        yield server


@pytest.fixture
async def client(server: FakeAnyFast) -> AsyncIterator[AnyFast]:
    # 429s that keep coming bring polling down to `min_rate` polls per second and then pause
    # it (1 s at first): in tests, where tasks take milliseconds, keep both short.
    throttle = Throttle(initial_pause=0.05, min_rate=100)
    async with AnyFast(server.api_key, base_url=server.base_url, throttle=throttle) as client:
        yield client


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_video_is_made(server: FakeAnyFast, client: AnyFast) -> None:
    task_id = await start_video(client, "A cat on grass")
    video = await finish_video(client, task_id, poll=FAST)
    assert video.url is not None
    assert video.url.startswith("https://")
    assert video.problem is None
    (create,) = [r for r in server.requests if r.method == "POST"]
    assert json.loads(create.body)["prompt"] == "A cat on grass"


@pytest.mark.anyio
async def test_a_refused_video_is_reported(server: FakeAnyFast, client: AnyFast) -> None:
    server.create_stages = FakeAnyFast.failure_stages("content moderation")
    task_id = await start_video(client, "Something refused")
    video = await finish_video(client, task_id, poll=FAST)
    assert video == Video(task_id, None, problem="content moderation")


@pytest.mark.anyio
async def test_rate_limits_and_proxy_errors_are_ridden_out(
    server: FakeAnyFast, client: AnyFast
) -> None:
    server.inject(Fault.rate_limited(retry_after="0.05"), times=2)  # a 429 is safe to resend
    task_id = await start_video(client, "A cat")
    server.inject(Fault.html(502), times=3, task_id=task_id)  # a proxy's error page, 3 times
    video = await finish_video(client, task_id, poll=FAST)  # failed polls: again, with backoff
    assert video.url is not None
    assert server.faults_served == 5


@pytest.mark.anyio
async def test_a_create_that_may_have_reached_the_server_is_not_resent(
    server: FakeAnyFast, client: AnyFast
) -> None:
    server.inject(Fault.html(502))  # the answer to the create call was lost: did it create?
    with pytest.raises(ServerError):
        await start_video(client, "A cat")
    assert (
        len([r for r in server.requests if r.method == "POST"]) == 1
    )  # sent once, not billed twice


@pytest.mark.anyio
async def test_a_task_that_never_finishes_times_out(server: FakeAnyFast, client: AnyFast) -> None:
    server.create_stages = [Stage(status="QUEUED")]  # the last stage repeats forever
    task_id = await start_video(client, "A cat")
    video = await finish_video(client, task_id, timeout=0.2, poll=FAST)
    assert video.problem == "timed out"
    assert server.polls(task_id) > 5
