"""Watch one task: print each transition, then wait for it and download the video.

Runs against an in-process FakeAnyFast server by default. With ANYFAST_API_KEY set, pass a task
id to watch a real task (and download its video into ./videos/).

    python examples/watch_one.py
    ANYFAST_API_KEY=sk-... python examples/watch_one.py asyntask_...
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

from anyfast_async import (
    AnyFast,
    PollPolicy,
    TaskFailedError,
    TaskNotFoundError,
    WaitTimeoutError,
)
from anyfast_async.testing import FakeAnyFast, Stage


async def follow(
    client: AnyFast, task_id: str, folder: str, poll: PollPolicy | None, timeout: float = 900
) -> None:
    try:
        # Transitions only: a task polled twenty times at "IN_PROGRESS 50%" prints one line.
        async for update in client.watch(task_id, timeout=timeout, poll=poll):
            progress = "" if update.progress is None else f" {update.progress}%"
            print(f"{update.previous_status} -> {update.status}{progress}")
        # The watch has seen the end; wait() on a finished task answers at once with the
        # Task, or raises TaskFailedError.
        task = await client.wait(task_id, poll=poll)
    except TaskFailedError as exc:
        print(f"failed: {exc.reason}")
        return
    except WaitTimeoutError as exc:  # watch() raises it too, at the deadline
        last = exc.last_task.status if exc.last_task else "never seen"
        print(f"still not finished after {exc.timeout:.0f} s (last status: {last})")
        return
    except TaskNotFoundError as exc:
        print(f"no such task (request id {exc.request_id})")
        return
    path = await client.download(task, folder)  # streamed, checked, renamed into place
    print(f"downloaded {path.name}: {path.stat().st_size} bytes")


async def main() -> None:
    if os.environ.get("ANYFAST_API_KEY") and len(sys.argv) > 1:
        async with AnyFast() as client:
            os.makedirs("videos", exist_ok=True)
            await follow(client, sys.argv[1], "videos/", poll=None)
        return

    async with FakeAnyFast() as server:
        video = server.add_file("cat.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(50_000))
        stages = FakeAnyFast.default_success_stages(video, polls=3)
        server.add_task("asyntask_cat", stages=stages)
        server.add_task("asyntask_refused", stages=FakeAnyFast.failure_stages("moderation"))
        server.add_task("asyntask_stuck", stages=[Stage(status="QUEUED")])
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            with tempfile.TemporaryDirectory() as folder:
                for task_id in ("asyntask_cat", "asyntask_refused"):
                    print(f"== {task_id}")
                    await follow(client, task_id, folder, poll=PollPolicy.fixed(0.05))
                print("== asyntask_stuck, with a 1 s deadline")
                await follow(client, "asyntask_stuck", folder, PollPolicy.fixed(0.2), timeout=1)


if __name__ == "__main__":
    asyncio.run(main())
