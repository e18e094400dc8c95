"""A member of a fleet for the fleet test (tests/test_fleet.py): a watcher on a RedisStore that
polls whatever tasks the fleet has due, and logs each task it delivers to on_terminal as a
line. It prints "ready" once running, and runs until killed or sent SIGTERM.

    python fleet_worker.py REDIS_URL BASE_URL API_KEY LOG

Leases last 10 s: long enough that a worker merely slowed down (a loaded machine, Redis's
fsync before each reply) renews its leases in time and keeps its tasks, short enough that the
others take over a killed worker's tasks within the test's time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from anyfast_async import AnyFast, RedisStore, TaskUpdate


async def main(redis_url: str, base_url: str, api_key: str, log: str) -> None:
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def deliver(update: TaskUpdate) -> None:
        os.write(out, f"{update.task_id}\n".encode())

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    store = RedisStore(redis_url, lease=10.0, hold=500)
    async with (
        AnyFast(api_key, base_url=base_url, store=store) as client,
        client.watcher(concurrency=16, poll_interval=0.25, timeout=None, on_terminal=deliver),
    ):
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
