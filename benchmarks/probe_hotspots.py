"""Probe: the two hot spots of docs/performance.md, as an interleaved A/B run.

Not part of ``nox -s bench``: run it (in the bench session's environment) to check a fix.

* **The read timeout.** ``get_task`` and ``watch_many`` (the contenders of ``bench_watch.py``)
  with the client's default ``Timeout()`` and with ``Timeout(read=None)``: aiohttp re-arms its
  ``sock_read`` timer on every chunk it reads, so the difference is what that timer costs.
* **The garbage collector.** For each run, the time spent inside the collector (from
  ``gc.callbacks``, wall time, which is CPU time in this single-threaded client) per request,
  next to the client CPU per request from ``resource.getrusage``.

The bare aiohttp loop runs alongside as the floor; every variant runs ``--repeat`` times,
interleaved, and the medians are printed.

    .nox/bench/bin/python benchmarks/probe_hotspots.py [--concurrency 64 1000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from typing import Any

import bench_watch as bench

from anyfast_async import AnyFast, Limits, Timeout

VARIANTS: list[tuple[str, str, Timeout | None]] = [
    ("bare aiohttp", "bare_aiohttp", None),
    ("get_task, Timeout()", "get_task", Timeout()),
    ("get_task, Timeout(read=None)", "get_task", Timeout(read=None)),
    ("watch_many, Timeout()", "watch_many", Timeout()),
    ("watch_many, Timeout(read=None)", "watch_many", Timeout(read=None)),
]

_current: dict[str, Any] = {"timeout": Timeout()}
_gc = {"spent": 0.0, "started": 0.0}


def _client(base: str, concurrency: int) -> AnyFast:
    """bench_watch's client, with the timeout of the variant being run."""
    return AnyFast(
        bench.KEY,
        base_url=base,
        limits=Limits(max_connections=max(concurrency, 100)),
        timeout=_current["timeout"],
    )


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc["started"] = time.perf_counter()
    else:
        _gc["spent"] += time.perf_counter() - _gc["started"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 1000])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    bench._client = _client  # the contenders build their client through this
    gc.callbacks.append(_on_gc)
    bench._pin(0)
    with bench.cheap_server() as base:
        for concurrency in args.concurrency:
            total = bench.requests_at(concurrency, args.requests)
            cpu: dict[str, list[float]] = {label: [] for label, _, _ in VARIANTS}
            in_gc: dict[str, list[float]] = {label: [] for label, _, _ in VARIANTS}
            for _ in range(args.repeat):
                for label, contender, timeout in VARIANTS:
                    _current["timeout"] = timeout
                    _gc["spent"] = 0.0
                    count, spent, _wall = asyncio.run(
                        bench.CONTENDERS[contender](base, concurrency, total)
                    )
                    cpu[label].append(spent / count * 1e6)
                    in_gc[label].append(_gc["spent"] / count * 1e6)
            floor = statistics.median(cpu["bare aiohttp"])
            print(f"\nconcurrency {concurrency:,}, {total:,} requests, median of {args.repeat}:")
            print("| variant | CPU per request | ratio to floor | in the garbage collector |")
            print("|---|---:|---:|---:|")
            for label in cpu:
                median = statistics.median(cpu[label])
                print(
                    f"| {label} | {median:.0f} µs | {median / floor:.2f}x "
                    f"| {statistics.median(in_gc[label]):.0f} µs |"
                )


if __name__ == "__main__":
    main()
