"""A fleet on Redis: a process that only adds tasks and waits for them (a web app's replica,
``poll=False``), and two workers that poll them, whichever process added them.

Here the three run in one process, against a fake AnyFast, for a self-contained example; in
production each is a process of its own (or a machine), with the same Redis URL and namespace.

    REDIS_URL=redis://localhost:6379/0 python examples/fleet.py
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter

from anyfast_async import AnyFast, RedisStore, TaskUpdate
from anyfast_async.testing import FakeAnyFast


async def main() -> None:
    url = os.environ.get("REDIS_URL") or "redis://localhost:6379/0"
    namespace = f"example-{uuid.uuid4().hex[:8]}"  # a fleet of its own on a shared Redis
    delivered: Counter[str] = Counter()

    def deliver(update: TaskUpdate) -> None:  # runs in the worker that polled the task
        delivered[update.task_id] += 1

    async with FakeAnyFast() as api:
        ids = [api.add_task().task_id for _ in range(20)]

        def client(*, poll: bool) -> AnyFast:
            store = RedisStore(url, namespace=namespace, poll=poll)
            return AnyFast(api.api_key, base_url=api.base_url, store=store)

        async with (
            client(poll=False) as web,
            client(poll=True) as worker_1,
            client(poll=True) as worker_2,
            worker_1.watcher(poll_interval=0.05, on_terminal=deliver),
            worker_2.watcher(poll_interval=0.05, on_terminal=deliver),
            web.watcher() as waiting,
        ):
            handles = waiting.add_many(ids)  # recorded in Redis; polled by the workers
            tasks = [await handle.wait() for handle in handles]

    print(f"{len(tasks)} tasks done, each delivered once: {set(delivered.values()) == {1}}")
    assert all(task.result_url for task in tasks)
    assert sorted(delivered) == sorted(ids)


if __name__ == "__main__":
    asyncio.run(main())
