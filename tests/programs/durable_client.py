"""A client process for the crash test (tests/test_durable.py): with a task store, it creates
tasks until the store holds ``count`` creates, and watches every one to its end, saving each
video; whatever a previous, killed run left unfinished it resumes first. It logs each
delivery to on_terminal as a line of JSON, and exits 0 once every task is handled.

    python durable_client.py BASE_URL STORE FOLDER LOG COUNT
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

from anyfast_async import AnyFast, AnyFastError, PollPolicy, SQLiteStore, TaskUpdate, TextToVideo


def append(log: str, line: dict[str, object]) -> None:
    with open(log, "a") as out:
        out.write(json.dumps(line) + "\n")


async def main(base_url: str, store: str, folder: str, log: str, count: int) -> None:
    async def deliver(update: TaskUpdate) -> None:
        await asyncio.sleep(0.005)  # a callback that takes a moment: kills land in it too
        append(log, {"task_id": update.task_id, "redelivered": update.redelivered})

    async with (
        AnyFast("test-key", base_url=base_url, store=SQLiteStore(store)) as client,
        client.watcher(
            concurrency=32,
            poll=PollPolicy.fixed(0.05),
            timeout=None,
            on_terminal=deliver,
            download_to=folder,
        ) as watcher,
    ):
        handles = await watcher.resume()
        assert client.store is not None
        made = len(await client.store.tasks())
        for i in range(made, count):
            try:
                created = await client.create(TextToVideo(prompt=f"A cat, take {i}"))
            except AnyFastError:
                continue  # recorded by the store as an unknown outcome, or not at all
            handles.append(watcher.add(created.task_id))
        for handle in handles:
            with contextlib.suppress(AnyFastError):
                await handle.wait()


if __name__ == "__main__":
    base_url, store, folder, log, count = sys.argv[1:]
    asyncio.run(main(base_url, store, folder, log, int(count)))
