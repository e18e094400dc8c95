"""Create many tasks at once, save each id as soon as it is known, then wait for all of them.

A create that fails does not stop the others: its error is collected, and ``error.sent`` says
whether it may still have created the task (then look for it before creating it again). Each
id is appended to a file, one per line, the moment its create returns.

Runs against an in-process FakeAnyFast server by default, which fails two of the creates: a
500 after making the task, and a 400. With ANYFAST_API_KEY set it creates real (billed) tasks:
pass --real to confirm (the ids go to created_ids.txt).

    python examples/create_many.py
    ANYFAST_API_KEY=sk-... python examples/create_many.py --real
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import anyio

from anyfast_async import AnyFast, AnyFastError, PollPolicy, Task, TextToVideo
from anyfast_async.testing import FakeAnyFast, Fault

PROMPTS = [f"A paper boat drifting down a rainy street, shot {i}" for i in range(12)]


async def create_all(
    client: AnyFast, saved: Path
) -> tuple[list[str], list[tuple[str, AnyFastError]]]:
    """Create a task per prompt, at most 4 at a time: the ids made, and each failed prompt
    with its error."""
    ids: list[str] = []
    errors: list[tuple[str, AnyFastError]] = []
    limiter = anyio.CapacityLimiter(4)

    with saved.open("a") as file:

        async def create(prompt: str) -> None:
            async with limiter:
                try:
                    created = await client.create(TextToVideo(prompt=prompt, duration=5))
                except AnyFastError as exc:  # collected: the other creates go on
                    errors.append((prompt, exc))
                    return
            file.write(created.task_id + "\n")  # saved before anything else can fail
            file.flush()
            ids.append(created.task_id)

        async with anyio.create_task_group() as tg:
            for prompt in PROMPTS:
                tg.start_soon(create, prompt)
    return ids, errors


async def create_then_wait(client: AnyFast, saved: Path, poll: PollPolicy | None) -> list[str]:
    ids, errors = await create_all(client, saved)
    for prompt, error in errors:
        verdict = "MAY EXIST" if error.sent else "not created"
        print(f"{verdict}: {prompt!r}: {type(error).__name__}: {error}")

    results = await client.wait_many(ids, concurrency=16, poll=poll)
    succeeded = sum(isinstance(outcome, Task) for outcome in results.values())
    maybe = sum(error.sent for _, error in errors)
    print(
        f"{len(ids)} of {len(PROMPTS)} created (ids in {saved}), {succeeded} succeeded; "
        f"failed: {maybe} may have created a task, {len(errors) - maybe} did not"
    )
    return ids


async def main() -> None:
    if os.environ.get("ANYFAST_API_KEY") and "--real" in sys.argv:
        async with AnyFast() as client:
            await create_then_wait(client, Path("created_ids.txt"), poll=None)
        return
    async with FakeAnyFast() as server:
        server.inject(Fault(status=500))  # the task is made, the answer is a 500
        server.inject(Fault.http(400))
        with tempfile.TemporaryDirectory() as tmp:
            saved = Path(tmp) / "created_ids.txt"
            async with AnyFast(server.api_key, base_url=server.base_url) as client:
                ids = await create_then_wait(client, saved, poll=PollPolicy.fixed(0.01))
            assert saved.read_text().split() == ids
        assert len(ids) == len(PROMPTS) - 2
        assert len(server.created) == len(PROMPTS) - 1  # one more than the ids: the 500's


if __name__ == "__main__":
    asyncio.run(main())
