"""Quickstart: fetch a task's state once.

Runs against an in-process FakeAnyFast server by default. With ANYFAST_API_KEY set (and a task
id as the first argument), it queries the real service instead.

    python examples/quickstart.py                 # fake server, no account needed
    ANYFAST_API_KEY=sk-... python examples/quickstart.py asyntask_...
"""

from __future__ import annotations

import asyncio
import os
import sys

from anyfast_async import AnyFast, TaskNotFoundError, TaskStatus
from anyfast_async.testing import FakeAnyFast


async def show(client: AnyFast, task_id: str) -> None:
    try:
        task = await client.get_task(task_id)
    except TaskNotFoundError as exc:
        print(f"{task_id}: not found (request id {exc.request_id})")
        return
    print(f"{task_id}: {task.status.value} progress={task.progress}")
    if task.status is TaskStatus.SUCCESS:
        print(f"  video: {task.result_url} (valid 24 h)")
    elif task.status is TaskStatus.FAILURE:
        print(f"  failed: {task.error}")


async def main() -> None:
    if os.environ.get("ANYFAST_API_KEY") and len(sys.argv) > 1:
        async with AnyFast() as client:
            await show(client, sys.argv[1])
        return

    async with FakeAnyFast() as server:
        server.add_task("asyntask_demo")  # NOT_START -> QUEUED -> IN_PROGRESS -> SUCCESS
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            for _ in range(5):
                await show(client, "asyntask_demo")
            await show(client, "asyntask_unknown")


if __name__ == "__main__":
    asyncio.run(main())
