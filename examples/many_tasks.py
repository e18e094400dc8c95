"""Many running tasks in one watcher, on uvloop when it is installed.

Runs against an in-process FakeAnyFast server by default: 5,000 tasks that run for a few polls
and succeed. It shows what a watcher keeps per task while the tasks run (the record without
the provider's payload, in ``handle.latest``), what an update carries (the whole record), and
the event loop it ran on. With ANYFAST_API_KEY set, pass task ids to watch real tasks instead.

    pip install "anyfast-async[speed]"        # uvloop (optional)
    python examples/many_tasks.py
    ANYFAST_API_KEY=sk-... python examples/many_tasks.py asyntask_1 asyntask_2 ...
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any

from anyfast_async import AnyFast, PollPolicy
from anyfast_async.testing import FakeAnyFast, Stage

#: The provider's payload the gateway passes through in ``data`` while a task runs.
PAYLOAD = {
    "output": {"task_id": "e45a6a1b-6f05-43e5-ab06", "task_status": "RUNNING"},
    "request_id": "53121cad-c008-9b96-af1d-4289a4fc714b",
}


async def watch_all(client: AnyFast, task_ids: list[str], poll: PollPolicy | None) -> None:
    async with client.watcher(concurrency=64, timeout=1800, poll=poll) as watcher:
        updates = watcher.updates()
        handles = watcher.add_many(task_ids)
        first = await updates.__anext__()  # the first change of any task: the whole record
        await updates.aclose()
        assert first.task is not None
        print(f"an update carries the provider payload: {first.task.data is not None}")
        running = next((h for h in handles if h.latest is not None and not h.done()), None)
        if running is not None and running.latest is not None:
            print(f"a running task is kept without it: latest.data = {running.latest.data}")
        outcomes = [await handle.wait() for handle in handles]
    print(f"{len(outcomes)} tasks succeeded")


async def main() -> None:
    loop = type(asyncio.get_running_loop())
    print(f"event loop: {loop.__module__}.{loop.__qualname__}")
    if os.environ.get("ANYFAST_API_KEY") and len(sys.argv) > 1:
        async with AnyFast() as client:
            await watch_all(client, sys.argv[1:], poll=None)
        return
    async with FakeAnyFast() as server:
        stages = [
            Stage(status="IN_PROGRESS", progress="50%", polls=3, extra={"data": PAYLOAD}),
            Stage(status="SUCCESS", progress="100%"),
        ]
        ids = [t.task_id for t in server.add_tasks(5000, stages=stages)]
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            await watch_all(client, ids, poll=PollPolicy.fixed(0.05))


def run(main: Coroutine[Any, Any, None]) -> None:
    """uvloop when it is installed, else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    run(main())
