"""Benchmark: 150,000 running tasks at the 15 s cadence, in one process on one core.

The cheap server of ``bench_watch.py`` runs in its own process on the second core and answers
every poll with the gateway's realistic in-progress record (``bodies.IN_PROGRESS_BODY``). This
process, pinned to the first core, runs on uvloop (``--loop``), adds ``--tasks`` tasks to one
watcher with ``PollPolicy()`` (a running task is polled every 15 s, ±10 % jitter) and holds
every handle. All of them are due at once at the start; the first round of polls therefore
takes a while, after which polls spread out over the cadence. From then on, for ``--window``
seconds, it counts the polls done against those due (tasks / 15 per second) and the CPU this
process used. Then, as the floor, the bare aiohttp loop of ``bench_watch.py`` at the same
concurrency and on the same loop: its CPU per poll bounds what any aiohttp client can keep up
with on one core.

    python benchmarks/bench_scale.py                      # 150,000 tasks, a 30 s window
    python benchmarks/bench_scale.py --quick              # the same tasks, a 5 s window
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import bench_watch as bench

from anyfast_async import AnyFast, Limits, PollPolicy

CADENCE = 15.0


async def cadence(base: str, tasks: int, concurrency: int, window: float) -> dict[str, Any]:
    policy = PollPolicy()
    assert policy.interval == CADENCE
    limits = Limits(max_connections=concurrency)
    client = AnyFast(bench.KEY, base_url=base, limits=limits)
    async with (
        client,
        client.watcher(concurrency=concurrency, timeout=None, poll=policy) as watcher,
    ):
        rss0 = bench.rss_bytes()
        started = time.perf_counter()
        handles = watcher.add_many(f"hold_{i:036d}" for i in range(tasks))
        while watcher.statistics().polls < tasks:
            await asyncio.sleep(0.1)
        first_round = time.perf_counter() - started
        # Let the second round begin (its polls are spread by the jitter), then measure.
        await asyncio.sleep(max(0.0, CADENCE * 1.1 - first_round))
        polls0, cpu0, wall0 = watcher.statistics().polls, bench.cpu(), time.perf_counter()
        await asyncio.sleep(window)
        stats = watcher.statistics()
        polls, cpu_s, wall = (
            stats.polls - polls0,
            bench.cpu() - cpu0,
            time.perf_counter() - wall0,
        )
        rss1 = bench.rss_bytes()
        assert len(handles) == tasks
        assert stats.watching == tasks
        return {
            "tasks": tasks,
            "concurrency": concurrency,
            "window_seconds": wall,
            "polls_due_per_second": tasks / CADENCE,
            "polls_per_second": polls / wall,
            "kept_up": polls / wall / (tasks / CADENCE),
            "client_cpu_cores": cpu_s / wall,
            "cpu_us_per_poll": cpu_s / polls * 1e6,
            "first_round_seconds": first_round,
            "errors": stats.errors,
            "rss_growth_mib": (rss1 - rss0) / 2**20,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=150_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--quick", action="store_true", help="a 5 s window")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.window = 5.0
    with bench.cheap_server() as base:
        bench._pin(0)
        result = bench.run_on(args.loop, cadence(base, args.tasks, args.concurrency, args.window))
        # The floor: what a bare aiohttp loop on the same loop, at the same concurrency and
        # with the same answers, can do on this core (polls per second of CPU).
        count, cpu_s, _wall = bench.run_on(
            args.loop, bench.bare_aiohttp(base, args.concurrency, 20_000)
        )
    result["loop"] = args.loop
    result["floor_cpu_us_per_poll"] = cpu_s / count * 1e6
    result["floor_polls_per_core_second"] = count / cpu_s
    print(json.dumps(result))
    print(
        f"\n{result['tasks']:,} tasks at a {CADENCE:.0f} s cadence on {args.loop}: "
        f"{result['polls_per_second']:,.0f} polls/s done of {result['polls_due_per_second']:,.0f} "
        f"due ({result['kept_up']:.2f}), client CPU {result['client_cpu_cores']:.2f} of a core "
        f"({result['cpu_us_per_poll']:.0f} µs a poll), first round {result['first_round_seconds']:.1f} s"
    )
    print(
        f"The bare aiohttp floor at the same concurrency: {result['floor_cpu_us_per_poll']:.0f} µs "
        f"a poll, at most {result['floor_polls_per_core_second']:,.0f} polls per second of a core."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
