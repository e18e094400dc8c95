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
from pathlib import Path

from anyfast_async import AnyFast, PollPolicy, TaskFailedError, WaitTimeoutError
from anyfast_async.testing import FakeAnyFast


async def follow(client: AnyFast, task_id: str, folder: Path, poll: PollPolicy | None) -> None:
    # Transitions only: a task polled twenty times at "IN_PROGRESS 50%" prints one line.
    async for update in client.watch(task_id, timeout=900, poll=poll):
        print(f"{update.previous_status} -> {update.status} {update.progress}%")
        if update.error is not None:  # the last update of a failed task
            print(f"  ended: {type(update.error).__name__}: {update.error}")

    # wait() returns the finished Task or raises; a finished task answers at once.
    try:
        task = await client.wait(task_id, timeout=900, poll=poll)
    except TaskFailedError as exc:
        print(f"failed: {exc.reason}")
        return
    except WaitTimeoutError as exc:
        last = exc.last_task.status if exc.last_task else "never seen"
        print(f"still not finished after {exc.timeout:.0f} s (last status: {last})")
        return
    path = await client.download(task, folder)  # streamed, checked, renamed into place
    print(f"downloaded {path.name}: {path.stat().st_size} bytes")


async def main() -> None:
    if os.environ.get("ANYFAST_API_KEY") and len(sys.argv) > 1:
        async with AnyFast() as client:
            await follow(client, sys.argv[1], Path("videos"), poll=None)
        return

    async with FakeAnyFast() as server:
        video = server.add_file("cat.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(50_000))
        stages = FakeAnyFast.default_success_stages(video, polls=3)
        server.add_task("asyntask_cat", stages=stages)
        server.add_task("asyntask_refused", stages=FakeAnyFast.failure_stages("moderation"))
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            with tempfile.TemporaryDirectory() as folder:
                for task_id in ("asyntask_cat", "asyntask_refused"):
                    print(f"== {task_id}")
                    await follow(client, task_id, Path(folder), poll=PollPolicy.fixed(0.05))


if __name__ == "__main__":
    asyncio.run(main())
