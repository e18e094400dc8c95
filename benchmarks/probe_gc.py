"""Probe: how often each contender makes the garbage collector run, per poll.

Not part of ``nox -s bench``: run it in the bench session's environment. For the bare aiohttp
floor (with aiohttp's default total timeout, and with none), ``get_task`` (with the SDK's one
timer for the total timeouts of every request, and with aiohttp's own timer per request
instead) and ``watch_many`` of ``bench_watch.py`` (the cheap server, the realistic in-progress
body), at ``--concurrency`` polls in flight on uvloop, it counts the collections of each
generation (``gc.callbacks``) per 1,000 polls, the objects each young collection walks, and the
time spent in them. A young
generation's collection walks every object still alive among those allocated since the last
one: with hundreds of polls in flight, the objects of every request under way (coroutines,
futures, buffers; about 17,000 at 256 in flight), so each costs milliseconds.

    .nox/bench/bin/python benchmarks/probe_gc.py [--concurrency 256] [--requests 20000]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import Counter
from typing import Any

import aiohttp
import bench_watch as bench

import anyfast_async._transport as tr

_counts: Counter[int] = Counter()
_spent: Counter[int] = Counter()
_young_objects = [0]
_started = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _counts[info["generation"]] += 1
        if info["generation"] == 0:
            _young_objects[0] += len(gc.get_objects(0))
        _started[0] = time.perf_counter()
    else:
        _spent[info["generation"]] += time.perf_counter() - _started[0]


async def bare_untimed(base: str, concurrency: int, total: int) -> tuple[int, float, float]:
    """The bare aiohttp floor with no total timeout (aiohttp's path without a timer)."""
    connector = aiohttp.TCPConnector(limit=max(concurrency, 100))
    headers = {"Authorization": f"Bearer {bench.KEY}"}
    untimed = aiohttp.ClientTimeout(total=None, connect=10)
    async with aiohttp.ClientSession(connector=connector, timeout=untimed) as session:

        async def one(i: int) -> None:
            url = f"{base}/v1/video/generations/asyntask_{i % 1000}"
            async with session.get(url, headers=headers) as resp:
                await resp.read()

        await bench.loop_of(concurrency, bench.warm_requests(concurrency), one)
        return await bench.loop_of(concurrency, total, one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    gc.callbacks.append(_on_gc)
    contenders = {**bench.CONTENDERS, "bare_untimed": bare_untimed}
    variants = [
        ("bare aiohttp", "bare_aiohttp", True),
        ("bare aiohttp, total=None", "bare_untimed", True),
        ("get_task", "get_task", True),
        ("get_task, aiohttp's timer", "get_task", False),
        ("watcher", "watch_many", True),
    ]
    with bench.cheap_server() as base:
        for _ in range(args.repeat):
            for label, name, one_timer in variants:
                # The SDK's one timer for every request's total timeout, or aiohttp's own
                # timer per request (what the SDK does where Task.uncancel is missing).
                tr._CAN_UNCANCEL = one_timer
                _counts.clear()
                _spent.clear()
                _young_objects[0] = 0
                contender = contenders[name]
                polls, cpu_s, _ = bench.run_on(
                    "uvloop", contender(base, args.concurrency, args.requests)
                )
                per = 1000 / polls
                print(
                    f"{label:26s} collections per 1,000 polls: young {_counts[0] * per:.1f}, "
                    f"middle {_counts[1] * per:.2f}, full {_counts[2] * per:.2f}; "
                    f"{_young_objects[0] / max(_counts[0], 1):,.0f} objects a young collection; "
                    f"{sum(_spent.values()) / polls * 1e6:.1f} µs a poll in the collector "
                    f"of {cpu_s / polls * 1e6:.0f} µs a poll"
                )


if __name__ == "__main__":
    main()
