"""Fan out: watch many tasks at once, under one concurrency limit, and collect the outcomes.

Runs against an in-process FakeAnyFast server by default: 200 tasks, some of which fail, with
a burst of rate limiting in the middle. With ANYFAST_API_KEY set, pass task ids as arguments
to watch real tasks instead.

    python examples/fan_out.py
    ANYFAST_API_KEY=sk-... python examples/fan_out.py asyntask_1 asyntask_2 ...
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter

from anyfast_async import AnyFast, PollPolicy, Task, Throttle
from anyfast_async.testing import FakeAnyFast, Fault


async def fan_out(client: AnyFast, task_ids: list[str], poll: PollPolicy | None) -> None:
    outcomes: Counter[str] = Counter()
    async with client.watch_many(task_ids, concurrency=32, timeout=900, poll=poll) as updates:
        async for update in updates:
            if not update.is_terminal:
                continue
            if update.succeeded:
                outcomes["succeeded"] += 1
            else:
                outcomes[type(update.error).__name__] += 1
    print("outcomes:", dict(outcomes))

    # The same, as one call: a dict of id -> Task or the error that ended it.
    results = await client.wait_many(task_ids[:10], concurrency=32, poll=poll)
    for task_id, outcome in results.items():
        if isinstance(outcome, Task):
            print(f"{task_id}: {outcome.status} {outcome.result_url}")
        else:
            print(f"{task_id}: {type(outcome).__name__}: {outcome}")


async def main() -> None:
    if os.environ.get("ANYFAST_API_KEY") and len(sys.argv) > 1:
        async with AnyFast() as client:
            await fan_out(client, sys.argv[1:], poll=None)
        return

    async with FakeAnyFast(latency=0.002) as server:
        ids = [t.task_id for t in server.add_tasks(170)]
        ids += [t.task_id for t in server.add_tasks(30, FakeAnyFast.failure_stages("moderation"))]
        server.inject(Fault.rate_limited(retry_after="0.2"), times=5)
        async with AnyFast(
            server.api_key,
            base_url=server.base_url,
            throttle=Throttle(initial_pause=0.1, max_pause=1.0, min_rate=100),
        ) as client:
            await fan_out(client, ids, poll=PollPolicy.fixed(0.01))
        assert server.max_in_flight <= 32
        print(f"requests: {len(server.requests)}, most in flight at once: {server.max_in_flight}")


if __name__ == "__main__":
    asyncio.run(main())
