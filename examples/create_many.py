"""Create many tasks, keep their ids, then wait for all of them.

Runs against an in-process FakeAnyFast server by default. With ANYFAST_API_KEY set it creates
real (billed) tasks: pass --real to confirm.

    python examples/create_many.py
    ANYFAST_API_KEY=sk-... python examples/create_many.py --real
"""

from __future__ import annotations

import asyncio
import os
import sys

import anyio

from anyfast_async import AnyFast, AnyFastError, PollPolicy, Task, TextToVideo
from anyfast_async.testing import FakeAnyFast

PROMPTS = [f"A paper boat drifting down a rainy street, shot {i}" for i in range(12)]


async def create_then_wait(client: AnyFast, poll: PollPolicy | None) -> None:
    ids: list[str] = []

    async def create(prompt: str) -> None:
        created = await client.create(TextToVideo(prompt=prompt, duration=5, resolution="720P"))
        ids.append(created.task_id)  # persist it here in a real application

    limiter = anyio.CapacityLimiter(4)  # create at most 4 at a time

    async def limited(prompt: str) -> None:
        async with limiter:
            await create(prompt)

    async with anyio.create_task_group() as tg:
        for prompt in PROMPTS:
            tg.start_soon(limited, prompt)
    print(f"created {len(ids)} tasks")

    results = await client.wait_many(ids, concurrency=16, poll=poll)
    for task_id, outcome in results.items():
        if isinstance(outcome, Task):
            print(f"{task_id}: {outcome.status} {outcome.result_url}")
        elif isinstance(outcome, AnyFastError):
            print(f"{task_id}: {type(outcome).__name__}: {outcome}")


async def main() -> None:
    if os.environ.get("ANYFAST_API_KEY") and "--real" in sys.argv:
        async with AnyFast() as client:
            await create_then_wait(client, poll=None)
        return
    async with FakeAnyFast() as server:
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            await create_then_wait(client, poll=PollPolicy.fixed(0.01))
        assert len(server.created) == len(PROMPTS)


if __name__ == "__main__":
    asyncio.run(main())
