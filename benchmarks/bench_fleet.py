"""What sharing the watching through Redis costs: client CPU per poll of a watcher with a
RedisStore (a fleet of one process, which adds its tasks and polls them) against the same
watcher with no store, and the Redis round trips and Redis CPU per poll.

The server is bench_watch's cheap keep-alive server in another process, answering the
gateway's realistic records (``bodies.py``); each task runs IN_PROGRESS for 19 polls and
succeeds on its 20th, as in bench_store.py. Redis is a redis-server of its own on loopback
(no persistence: its disk is not what is measured). The two watchers take turns, burst by
burst, in one event loop; each burst's CPU (this process, all threads) is divided by its
polls, and so are the round trips clients made to Redis (the commands they sent, from ``INFO
commandstats``: a script call is one, whatever it does inside Redis) and the CPU Redis used
(``INFO cpu``) during the burst.

    python benchmarks/bench_fleet.py [--quick] [--json benchmarks/fleet.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bench_watch
import redis.asyncio
from bench_watch import KEY, cheap_server, cpu

from anyfast_async import AnyFast, Limits, PollPolicy, RedisStore

POLLS = 20
bench_watch.POLLS_PER_TASK = POLLS  # read by the server process, forked after this


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("bench_fleet.py needs redis-server (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(  # noqa: S603 (a fixed command line)
        [
            *(executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--loglevel", "warning"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


#: The commands a client sends (a script's own calls inside Redis are counted apart).
CLIENT_COMMANDS = ("evalsha", "eval", "script|load", "xread", "hgetall", "ping", "hello")


async def redis_counters(client: Any) -> tuple[int, float]:
    """Round trips clients made to Redis (commands they sent, not the probe's), and the CPU
    seconds Redis has used."""
    stats, used = await client.info("commandstats"), await client.info("cpu")
    sent = sum(
        int(stats[f"cmdstat_{name}"]["calls"])
        for name in CLIENT_COMMANDS
        if f"cmdstat_{name}" in stats
    )
    return sent, float(used["used_cpu_user"] + used["used_cpu_sys"])


async def bursts(base: str, url: str, tasks: int, rounds: int) -> dict[str, Any]:
    names = ("no store", "RedisStore")
    samples: dict[str, list[float]] = {name: [] for name in names}
    trips: list[float] = []
    redis_cpu: list[float] = []
    policy = PollPolicy.fixed(1e-6)
    run = iter(range(1_000_000))
    probe = redis.asyncio.Redis.from_url(url)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(probe.aclose)
        watchers: dict[str, Any] = {}
        ended: dict[str, asyncio.Event] = {}
        counts: dict[str, int] = {}
        for name in names:
            store = RedisStore(url, hold=10_000) if name == "RedisStore" else None
            client = await stack.enter_async_context(
                AnyFast(KEY, base_url=base, limits=Limits(max_connections=100), store=store)
            )
            event = ended[name] = asyncio.Event()

            def count(_update: object, name: str = name, event: asyncio.Event = event) -> None:
                counts[name] += 1
                if counts[name] == tasks:
                    event.set()

            watchers[name] = await stack.enter_async_context(
                client.watcher(concurrency=64, timeout=None, poll=policy, on_terminal=count)
            )

        async def burst(name: str) -> float:
            counts[name] = 0
            ended[name].clear()
            prefix = f"{name[0]}{next(run)}_"
            before = await redis_counters(probe)
            c0 = cpu()
            watchers[name].add_many(f"{prefix}asyntask_{i}" for i in range(tasks))
            await ended[name].wait()
            spent = (cpu() - c0) / (tasks * POLLS) * 1e6
            if name == "RedisStore":
                await asyncio.sleep(0.3)  # the handled marks and the last renewals land
                after = await redis_counters(probe)
                trips.append((after[0] - before[0]) / (tasks * POLLS))
                redis_cpu.append((after[1] - before[1]) / (tasks * POLLS) * 1e6)
            return spent

        for name in names:  # warm up: connections opened, scripts loaded
            await burst(name)
        trips.clear()
        redis_cpu.clear()
        for _ in range(rounds):
            for name in names:
                samples[name].append(await burst(name))
    ratios = [f / n for f, n in zip(samples["RedisStore"], samples["no store"], strict=True)]
    return {
        "cpu_us_per_poll": {name: statistics.median(v) for name, v in samples.items()},
        "fleet_ratio_median": statistics.median(ratios),
        "fleet_ratios": ratios,
        "redis_round_trips_per_poll": statistics.median(trips),
        "redis_cpu_us_per_poll": statistics.median(redis_cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    rounds, tasks = (3, 200) if args.quick else (9, 500)
    with cheap_server() as base, redis_server() as url:
        measured = asyncio.run(bursts(base, url, tasks, rounds))
    results = {
        "python": sys.version.split()[0],
        "polls_per_task": POLLS,
        "tasks_per_burst": tasks,
        "rounds": rounds,
        **measured,
    }
    print(f"CPU per poll, median of {rounds} rounds of {tasks} tasks x {POLLS} polls:")
    for name, value in results["cpu_us_per_poll"].items():
        print(f"  {name:12} {value:7.1f} us")
    print(f"  RedisStore / no store: {results['fleet_ratio_median']:.3f} (median of rounds)")
    print(f"  Redis round trips per poll: {results['redis_round_trips_per_poll']:.4f}")
    print(f"  Redis CPU per poll: {results['redis_cpu_us_per_poll']:.2f} us")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
