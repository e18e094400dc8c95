"""An aiohttp.web app whose request handlers share one watcher, opened in a cleanup context.

    pip install anyfast-async
    python examples/webapp_aiohttp.py --port 8000     # a fake AnyFast in the process
    ANYFAST_API_KEY=sk-... python examples/webapp_aiohttp.py --port 8000

The same routes as examples/webapp_fastapi.py: ``POST /videos`` with ``{"prompt": ...}``,
``GET /videos/{task_id}?wait=25``, ``GET /stats``, ``GET /healthz``.

Without ANYFAST_API_KEY the app starts a FakeAnyFast server with the app and polls it fast;
prompts containing "moderation" fail there, to show how a failure looks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import msgspec
from aiohttp import web

from anyfast_async import (
    AnyFast,
    AnyFastError,
    APIStatusError,
    PollPolicy,
    Task,
    TaskFailedError,
    TaskNotFoundError,
    TaskUpdate,
    WaitTimeoutError,
    Watcher,
)
from anyfast_async.testing import FakeAnyFast, Stage

Answer = dict[str, Any]

CLIENT = web.AppKey("client", AnyFast)
WATCHER = web.AppKey("watcher", Watcher)
# Task id -> its terminal update once it has ended, None before: your database.
VIDEOS: web.AppKey[dict[str, TaskUpdate | None]] = web.AppKey("videos")


async def anyfast_context(app: web.Application) -> AsyncIterator[None]:
    """Open the client and one watcher for the app's life; close both, in reverse, at exit."""
    videos: dict[str, TaskUpdate | None] = {}

    def keep(update: TaskUpdate) -> None:
        # Every task's end, whether or not a request is waiting for it: a finished task leaves
        # the watcher, so its outcome lives here.
        videos[update.task_id] = update

    async with AsyncExitStack() as stack:
        if os.environ.get("ANYFAST_API_KEY"):
            client = await stack.enter_async_context(AnyFast())
            poll = None  # the default cadence: 15 s while running, 15-30 s while queued
        else:
            server = await stack.enter_async_context(FakeAnyFast(advance="time"))
            server.create_stages = demo_stages
            client = await stack.enter_async_context(
                AnyFast(server.api_key, base_url=server.base_url)
            )
            poll = PollPolicy.fixed(0.1)
        app[CLIENT] = client
        app[VIDEOS] = videos
        app[WATCHER] = await stack.enter_async_context(
            client.watcher(concurrency=64, timeout=600, poll=poll, on_terminal=keep)
        )
        yield  # aiohttp runs this cleanup after the requests in flight (its shutdown_timeout)
    print(f"closed; final counters: {app[WATCHER].statistics()}", flush=True)


def demo_stages(body: dict[str, Any]) -> list[Stage]:
    """The fake server's script for a created task: about a second, then success or failure."""
    if "moderation" in str(body.get("prompt", "")):
        return FakeAnyFast.failure_stages("content moderation", seconds=0.3)
    return FakeAnyFast.default_success_stages(seconds=0.3)


routes = web.RouteTableDef()


@routes.post("/videos")
async def create_video(request: web.Request) -> web.Response:
    try:
        new = await request.json()
        prompt, duration = new["prompt"], new.get("duration")
    except (ValueError, TypeError, KeyError, AttributeError):
        raise web.HTTPUnprocessableEntity(text='expected {"prompt": "..."}') from None
    try:
        created = await request.app[CLIENT].create_text_to_video(prompt, duration=duration)
    except (TypeError, ValueError) as exc:  # refused before anything was sent
        raise web.HTTPUnprocessableEntity(text=str(exc)) from None
    except AnyFastError as exc:
        raise web.HTTPBadGateway(text=f"AnyFast: {exc}") from None
    request.app[VIDEOS][created.task_id] = None  # store the id before answering
    request.app[WATCHER].add(created.task_id)  # polling starts now, whoever asks later
    return web.json_response({"task_id": created.task_id}, status=202)


@routes.get("/videos/{task_id}")
async def get_video(request: web.Request) -> web.Response:
    try:
        wait = float(request.query.get("wait", "0"))
    except ValueError:
        raise web.HTTPUnprocessableEntity(text="wait must be a number") from None
    if not 0 <= wait <= 25:
        raise web.HTTPUnprocessableEntity(text="wait must be between 0 and 25")
    task_id, videos = request.match_info["task_id"], request.app[VIDEOS]
    if task_id not in videos:  # only this app's videos: no polling for ids from anywhere
        raise web.HTTPNotFound(text="no such video")
    if (ended := videos[task_id]) is None:
        # Adding a task that is already watched shares its watch: a thousand clients asking
        # about one task make one poll at a time, not a thousand.
        handle = request.app[WATCHER].add(task_id)
        with anyio.move_on_after(wait), contextlib.suppress(AnyFastError):
            await handle.wait()  # keep() has stored the end before this returns
        ended = videos[task_id]
        if ended is None:  # still running: its state now
            task = handle.latest
            return web.json_response(
                {
                    "task_id": task_id,
                    "status": task.status.value if task else None,  # None: not polled yet
                    "progress": task.progress if task else None,
                }
            )
    return web.json_response(describe(ended))  # finished: from the store, no request


def describe(ended: TaskUpdate) -> Answer:
    """A task's end as JSON. A video that failed is an answer; an error that ended the watch
    is an HTTP error."""
    outcome = ended.outcome()
    status = ended.status.value if ended.status else None
    answer: Answer = {"task_id": ended.task_id, "status": status, "progress": ended.progress}
    if isinstance(outcome, Task):
        return {**answer, "result_url": outcome.result_url}
    if isinstance(outcome, TaskFailedError):
        return {**answer, "error": outcome.reason}
    if isinstance(outcome, TaskNotFoundError):
        raise web.HTTPNotFound(text=f"no task {ended.task_id!r}")
    if isinstance(outcome, WaitTimeoutError):
        raise web.HTTPGatewayTimeout(text="the task did not finish before its deadline")
    if isinstance(outcome, APIStatusError):
        raise web.HTTPBadGateway(text=f"AnyFast: {outcome} (request id {outcome.request_id})")
    raise web.HTTPBadGateway(text=f"AnyFast: {outcome}")


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    return web.json_response(msgspec.structs.asdict(request.app[WATCHER].statistics()))


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(anyfast_context)
    app.add_routes(routes)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    # On SIGTERM aiohttp waits for the requests in flight (each waits at most 25 s), but no
    # longer than this: under Kubernetes' default 30 s grace period.
    web.run_app(make_app(), host=args.host, port=args.port, print=None, shutdown_timeout=28)
