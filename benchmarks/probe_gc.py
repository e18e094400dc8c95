"""Probe: how often each contender makes the garbage collector run, per poll.

Not part of ``nox -s bench``: run it in the bench session's environment. For the bare aiohttp
floor, ``get_task`` (with the SDK's one timer for the total timeouts of every request, and with
aiohttp's own timer per request instead) and ``watch_many`` of ``bench_watch.py`` (the cheap
server, the realistic in-progress body), at ``--concurrency`` polls in flight on uvloop, it counts the collections of
each generation (``gc.callbacks``) per 1,000 polls, and the time spent in them. A young
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

import bench_watch as bench

import anyfast_async._transport as tr

_counts: Counter[int] = Counter()
_spent: Counter[int] = Counter()
_started = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _counts[info["generation"]] += 1
        _started[0] = time.perf_counter()
    else:
        _spent[info["generation"]] += time.perf_counter() - _started[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    gc.callbacks.append(_on_gc)
    variants = [
        ("bare aiohttp", "bare_aiohttp", True),
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
                contender = bench.CONTENDERS[name]
                polls, cpu_s, _ = bench.run_on(
                    "uvloop", contender(base, args.concurrency, args.requests)
                )
                per = 1000 / polls
                print(
                    f"{label:26s} collections per 1,000 polls: young {_counts[0] * per:.1f}, "
                    f"middle {_counts[1] * per:.2f}, full {_counts[2] * per:.2f}; "
                    f"{sum(_spent.values()) / polls * 1e6:.1f} µs a poll in the collector "
                    f"of {cpu_s / polls * 1e6:.0f} µs a poll"
                )


if __name__ == "__main__":
    main()
