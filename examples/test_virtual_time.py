"""Testing a FastAPI handler that waits out a 5-minute generation, in milliseconds.

The handler below creates a video and waits for it at the SDK's default cadence (a poll every
15 to 30 s). Against a real clock its test would take five minutes; on
``anyfast_async.testing.VirtualTimeLoop`` it takes a few milliseconds, and sees exactly the polls,
the answer and the timeout that five real minutes would give:

    pip install anyfast-async fastapi httpx pytest anyio
    pytest examples/test_virtual_time.py

What makes it work: the test's event loop is a ``VirtualTimeLoop`` (the ``anyio_backend``
fixture), whose clock jumps to the next timer whenever every task is only waiting; the fake
server is in the same loop, its lifecycle runs on that clock (``advance="time"``), and the app is
called in-process with ``httpx.ASGITransport``. Keep whatever the test awaits inside that loop: a
server in another thread or process, or work handed to ``anyio.to_thread``, lets the clock jump
while it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from anyfast_async import AnyFast, TaskFailedError, TextToVideo, WaitTimeoutError
from anyfast_async.testing import FakeAnyFast, Stage, VirtualTimeLoop

# -- the application under test --------------------------------------------------------------


class VideoRequest(BaseModel):
    prompt: str


def create_app(client: AnyFast) -> FastAPI:
    """An app whose handler answers once the video is ready: at most 10 minutes."""
    app = FastAPI()

    @app.post("/videos")
    async def make_video(body: VideoRequest) -> dict[str, Any]:
        try:
            task = await client.create_and_wait(TextToVideo(prompt=body.prompt), timeout=600)
        except TaskFailedError as exc:
            raise HTTPException(422, f"generation failed: {exc.reason}") from None
        except WaitTimeoutError:
            raise HTTPException(504, "the video is not ready after 10 minutes") from None
        return {"task_id": task.task_id, "url": task.result_url}

    return app


# -- its tests ----------------------------------------------------------------------------------

VIDEO = "https://cdn.example/cat.mp4"
# Five minutes: one in the queue, four generating.
FIVE_MINUTES = [
    Stage(status="QUEUED", progress="0%", seconds=60),
    Stage(status="IN_PROGRESS", progress="40%", seconds=240),
    Stage(status="SUCCESS", progress="100%", result_url=VIDEO),
]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": VirtualTimeLoop})


@pytest.fixture
async def server() -> AsyncIterator[FakeAnyFast]:
    async with FakeAnyFast(advance="time") as fake:
        yield fake


@pytest.fixture
async def http(server: FakeAnyFast) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        AnyFast(server.api_key, base_url=server.base_url) as client,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(client)), base_url="http://app"
        ) as http,
    ):
        yield http


def now() -> float:
    return asyncio.get_running_loop().time()


@pytest.mark.anyio
async def test_the_answer_comes_when_the_video_is_ready(
    server: FakeAnyFast, http: httpx.AsyncClient
) -> None:
    server.create_stages = FIVE_MINUTES
    started = now()
    answer = await http.post("/videos", json={"prompt": "A cat running on grass"})
    waited = now() - started
    assert answer.status_code == 200
    assert answer.json()["url"] == VIDEO
    # Ready at 5 minutes; seen at the first poll after that (polls are 15 s apart, +-10 %).
    assert 300 <= waited <= 300 + 16.5
    polls = [r for r in server.requests if r.method == "GET"]
    assert 300 / 16.5 < len(polls) < 300 / 13.5 + 2  # the default cadence, not a busy loop


@pytest.mark.anyio
async def test_a_stuck_generation_times_out_after_exactly_10_minutes(
    server: FakeAnyFast, http: httpx.AsyncClient
) -> None:
    server.create_stages = [Stage(status="QUEUED", progress="0%")]  # never starts
    started = now()
    answer = await http.post("/videos", json={"prompt": "A cat running on grass"})
    assert answer.status_code == 504
    assert now() - started == pytest.approx(600)


@pytest.mark.anyio
async def test_a_failure_is_answered_when_it_happens(
    server: FakeAnyFast, http: httpx.AsyncClient
) -> None:
    server.create_stages = [
        Stage(status="IN_PROGRESS", progress="30%", seconds=90),
        Stage(status="FAILURE", fail_reason="content moderation"),
    ]
    answer = await http.post("/videos", json={"prompt": "A cat running on grass"})
    assert answer.status_code == 422
    assert answer.json()["detail"] == "generation failed: content moderation"
