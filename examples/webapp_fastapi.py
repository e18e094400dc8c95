"""A FastAPI app whose request handlers share one watcher, opened in the app's lifespan.

    pip install anyfast-async fastapi uvicorn
    python examples/webapp_fastapi.py --port 8000     # a fake AnyFast in the process
    ANYFAST_API_KEY=sk-... python examples/webapp_fastapi.py --port 8000

Then:

    curl -X POST localhost:8000/videos -H 'content-type: application/json' \\
         -d '{"prompt": "A cat running on grass"}'
    curl localhost:8000/videos/asyntask_...            # the state now
    curl 'localhost:8000/videos/asyntask_...?wait=25'  # wait up to 25 s for the outcome

Run it under uvicorn with a graceful-shutdown limit shorter than your platform's grace period,
and waits shorter still (here at most 25 s): ``uvicorn webapp_fastapi:app
--timeout-graceful-shutdown 28``.
    curl localhost:8000/stats                          # the watcher's counters

Without ANYFAST_API_KEY the app starts a FakeAnyFast server in its lifespan and polls it fast;
prompts containing "moderation" fail there, to show how a failure looks.

With a key, the app keeps a task store (ANYFAST_STORE, default anyfast-tasks.db): what it
creates is recorded before it is sent, and a restarted app resumes watching it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any, TypedDict

import anyio
import msgspec
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel

from anyfast_async import (
    AnyFast,
    AnyFastError,
    APIStatusError,
    PollPolicy,
    SQLiteStore,
    Task,
    TaskFailedError,
    TaskNotFoundError,
    TaskUpdate,
    WaitTimeoutError,
    Watcher,
)
from anyfast_async.testing import FakeAnyFast, Stage

Answer = dict[str, Any]


class State(TypedDict):
    """What the lifespan hands to every request, as ``request.state``."""

    client: AnyFast
    watcher: Watcher
    # Task id -> its terminal update once it has ended, None before: your database.
    videos: dict[str, TaskUpdate | None]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    # Everything entered here is closed, in reverse order, after the server has stopped taking
    # requests and the ones in flight have finished (uvicorn waits for them, up to
    # --timeout-graceful-shutdown): the watcher stops polling, then the client's connections
    # close. Keep every wait shorter than your platform's grace period (Kubernetes: 30 s).
    videos: dict[str, TaskUpdate | None] = {}

    def keep(update: TaskUpdate) -> None:
        # Every task's end, whether or not a request is waiting for it: a finished task leaves
        # the watcher, so its outcome lives here.
        videos[update.task_id] = update

    async with AsyncExitStack() as stack:
        if os.environ.get("ANYFAST_API_KEY"):
            # The task store: a restart (a redeploy, a crash) picks up every task a previous
            # run created and did not see to its end. One process owns a store at a time.
            store = SQLiteStore(os.environ.get("ANYFAST_STORE", "anyfast-tasks.db"))
            client = await stack.enter_async_context(AnyFast(store=store))
            poll = None  # the default cadence: 15 s while running, 15-30 s while queued
        else:
            server = await stack.enter_async_context(FakeAnyFast(advance="time"))
            server.create_stages = demo_stages
            # The fake's tasks live as long as this process: a store of this run only.
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            store = SQLiteStore(os.path.join(folder, "anyfast-tasks.db"))
            client = await stack.enter_async_context(
                AnyFast(server.api_key, base_url=server.base_url, store=store)
            )
            poll = PollPolicy.fixed(0.1)
        watcher = await stack.enter_async_context(
            client.watcher(concurrency=64, timeout=600, poll=poll, on_terminal=keep)
        )
        # Tasks created before a restart, and outcomes not yet handed to `keep`.
        resumed = await watcher.resume()
        print(f"resumed {len(resumed)} task(s) from the store", flush=True)
        yield {"client": client, "watcher": watcher, "videos": videos}
    print(f"closed; final counters: {watcher.statistics()}", flush=True)


def demo_stages(body: dict[str, Any]) -> list[Stage]:
    """The fake server's script for a created task: about a second, then success or failure."""
    if "moderation" in str(body.get("prompt", "")):
        return FakeAnyFast.failure_stages("content moderation", seconds=0.3)
    return FakeAnyFast.default_success_stages(seconds=0.3)


app = FastAPI(title="videos", lifespan=lifespan)


# Dependencies are coroutines: a plain function would be run in the thread pool, once per
# request.
async def get_client(request: Request) -> AnyFast:
    client: AnyFast = request.state.client
    return client


async def get_watcher(request: Request) -> Watcher:
    watcher: Watcher = request.state.watcher
    return watcher


async def get_videos(request: Request) -> dict[str, TaskUpdate | None]:
    videos: dict[str, TaskUpdate | None] = request.state.videos
    return videos


Client = Annotated[AnyFast, Depends(get_client)]
SharedWatcher = Annotated[Watcher, Depends(get_watcher)]
Videos = Annotated[dict[str, TaskUpdate | None], Depends(get_videos)]


class NewVideo(BaseModel):
    prompt: str
    duration: int | None = None


@app.post("/videos", status_code=202)
async def create_video(
    new: NewVideo, client: Client, watcher: SharedWatcher, videos: Videos
) -> dict[str, str]:
    try:
        created = await client.create_text_to_video(new.prompt, duration=new.duration)
    except (TypeError, ValueError) as exc:  # refused before anything was sent
        raise HTTPException(422, str(exc)) from None
    except AnyFastError as exc:
        raise HTTPException(502, f"AnyFast: {exc}") from None
    videos[created.task_id] = None  # store the id before answering: the task exists now
    watcher.add(created.task_id)  # polling starts now; its end is kept by keep()
    return {"task_id": created.task_id}


@app.get("/videos/{task_id}")
async def get_video(
    task_id: str,
    watcher: SharedWatcher,
    videos: Videos,
    wait: Annotated[float, Query(ge=0, le=25)] = 0,
) -> Answer:
    if task_id not in videos:  # only this app's videos: no polling for ids from anywhere
        raise HTTPException(404, "no such video")
    if (ended := videos[task_id]) is None:
        # Adding a task that is already watched shares its watch: a thousand clients asking
        # about one task make one poll at a time, not a thousand. (After a restart of the app
        # it starts the watch again.)
        handle = watcher.add(task_id)
        with anyio.move_on_after(wait), contextlib.suppress(AnyFastError):
            await handle.wait()  # keep() has stored the end before this returns
        ended = videos[task_id]
        if ended is None:  # still running: its state now
            task = handle.latest
            return {
                "task_id": task_id,
                "status": task.status.value if task else None,  # None: not polled yet
                "progress": task.progress if task else None,
            }
    return describe(ended)  # finished: from the store, no request to AnyFast


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
        raise HTTPException(404, f"no task {ended.task_id!r}")
    if isinstance(outcome, WaitTimeoutError):
        raise HTTPException(504, "the task did not finish before its deadline")
    if isinstance(outcome, APIStatusError):
        raise HTTPException(502, f"AnyFast: {outcome} (request id {outcome.request_id})")
    raise HTTPException(502, f"AnyFast: {outcome}")


@app.get("/stats")
async def stats(watcher: SharedWatcher) -> dict[str, Any]:
    return msgspec.structs.asdict(watcher.statistics())


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    # On SIGTERM uvicorn waits for the requests in flight (each waits at most 25 s), but no
    # longer than this: under Kubernetes' default 30 s grace period.
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=28
    )
