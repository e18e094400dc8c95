"""What a task store costs: CPU per poll of a watcher with an SQLiteStore against the same
watcher without one, and the time to add 100,000 tasks to a watcher with a store.

The server is bench_watch's cheap keep-alive server in another process, answering the
gateway's realistic records (``bodies.py``); here each task runs IN_PROGRESS for 19 polls and
succeeds on its 20th: most polls change nothing, as in real use (a 5-minute generation polled
every 15 s is polled 20 times and changes status a few times). Per task a store writes the
start of its watch, its first status, its outcome and its handling.

The two watchers live in one event loop and take turns, burst by burst, so that the machine's
speed, which varies over seconds, hits both alike; each burst's CPU (this process, all
threads: the store's writer thread included) is divided by its polls. The report gives the
median CPU per poll of each and the median of the per-round ratios.

    python benchmarks/bench_store.py [--quick] [--json benchmarks/store.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_watch
from bench_watch import KEY, cheap_server, cpu

from anyfast_async import AnyFast, Limits, PollPolicy, SQLiteStore

POLLS = 20
bench_watch.POLLS_PER_TASK = POLLS  # read by the server process, forked after this


async def bursts(base: str, folder: str, tasks: int, rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"no store": [], "SQLiteStore": []}
    policy = PollPolicy.fixed(1e-6)
    run = iter(range(1_000_000))
    async with contextlib.AsyncExitStack() as stack:
        watchers: dict[str, Any] = {}
        ended: dict[str, asyncio.Event] = {}
        counts: dict[str, int] = {}
        for name in samples:
            store = SQLiteStore(Path(folder) / "bench.db") if name == "SQLiteStore" else None
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
            c0 = cpu()
            watchers[name].add_many(f"{prefix}asyntask_{i}" for i in range(tasks))
            await ended[name].wait()
            return (cpu() - c0) / (tasks * POLLS) * 1e6

        for name in samples:  # warm up: connections opened, the store's file grown
            await burst(name)
        for _ in range(rounds):
            for name in samples:
                samples[name].append(await burst(name))
    return samples


async def add_many(base: str, folder: str, count: int) -> dict[str, float]:
    """Seconds to add ``count`` tasks (that never finish) to a watcher, and, with a store,
    until every one of them is committed to it."""
    results: dict[str, float] = {}
    policy = PollPolicy.fixed(3600)
    for name in ("no store", "SQLiteStore"):
        store = SQLiteStore(Path(folder) / f"add-{count}.db") if name == "SQLiteStore" else None
        async with (
            AnyFast(KEY, base_url=base, store=store) as client,
            client.watcher(concurrency=64, timeout=None, poll=policy) as watcher,
        ):
            ids = [f"hold_{name[0]}{i}" for i in range(count)]
            t0 = time.perf_counter()
            watcher.add_many(ids)
            results[f"{name}: add_many"] = time.perf_counter() - t0
            if store is not None:
                await store.flush()  # every write queued so far is committed
                results[f"{name}: add_many and committed"] = time.perf_counter() - t0
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and tasks")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    rounds, tasks, adds = (3, 100, 20_000) if args.quick else (9, 200, 100_000)
    with cheap_server() as base, tempfile.TemporaryDirectory() as folder:
        samples = asyncio.run(bursts(base, folder, tasks, rounds))
        added = asyncio.run(add_many(base, folder, adds))
    ratios = [s / n for s, n in zip(samples["SQLiteStore"], samples["no store"], strict=True)]
    results = {
        "python": sys.version.split()[0],
        "polls_per_task": POLLS,
        "tasks_per_burst": tasks,
        "rounds": rounds,
        "cpu_us_per_poll": {name: statistics.median(v) for name, v in samples.items()},
        "store_ratio_median": statistics.median(ratios),
        "store_ratios": ratios,
        "added": adds,
        "add_seconds": added,
    }
    print(f"CPU per poll, median of {rounds} rounds of {tasks} tasks x {POLLS} polls:")
    for name, value in results["cpu_us_per_poll"].items():
        print(f"  {name:12} {value:7.1f} us")
    print(f"  with a store / without: {results['store_ratio_median']:.3f} (median of rounds)")
    print(f"adding {adds:,} tasks to a watcher:")
    for name, seconds in added.items():
        print(f"  {name:34} {seconds:6.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
