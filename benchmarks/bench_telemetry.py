"""Benchmark: what OpenTelemetry costs a watch, per poll, against the bare aiohttp floor.

The cheap server of ``bench_watch.py`` in its own process answers the gateway's realistic
records; this process, on one core, takes turns between the floor (``bare_aiohttp``) and
``wait_many`` over fresh tasks (five polls each, the fifth a SUCCESS), round after round, and
reports the median of the rounds' ratios (the watch's CPU per poll over the floor's of the
same round), for three set-ups, each measured in processes of its own (twice, in the order
``ORDER``):

- ``not installed``: ``import opentelemetry`` fails;
- ``no provider``: the API installed, nothing configured (the global proxies);
- ``SDK provider``: a ``TracerProvider`` with a batch span processor (to an exporter that
  drops what it gets) and a ``MeterProvider`` with an in-memory reader, given to the client.

    python benchmarks/bench_telemetry.py [--quick] [--json FILE]
"""

from __future__ import annotations

import sys

if "--hide-otel" in sys.argv:  # before anything imports it

    class _Hide:
        def find_spec(self, name: str, path: object = None, target: object = None) -> None:
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"{name} is hidden")

    sys.meta_path.insert(0, _Hide())  # type: ignore[arg-type]

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import bench_watch as bench

from anyfast_async import AnyFast, Limits, PollPolicy
from anyfast_async import _telemetry as telemetry


async def watch_many(
    base: str, concurrency: int, total: int, options: dict[str, Any]
) -> tuple[int, float, float]:
    """``wait_many`` over total / 5 fresh tasks (``bench_watch.sdk_watch_many`` with client
    options)."""
    policy = PollPolicy.fixed(1e-6)
    limits = Limits(max_connections=max(concurrency, 100))
    async with AnyFast(bench.KEY, base_url=base, limits=limits, **options) as client:
        warm = [f"warm{time.monotonic_ns()}_{i}" for i in range(bench.warm_tasks(concurrency))]
        await client.wait_many(warm, concurrency=concurrency, poll=policy)
        ids = [f"r{time.monotonic_ns()}_asyntask_{i}" for i in range(total // 5)]
        c0, w0 = bench.cpu(), time.perf_counter()
        results = await client.wait_many(ids, concurrency=concurrency, poll=policy)
        spent, wall = bench.cpu() - c0, time.perf_counter() - w0
        assert len(results) == len(ids)
        return len(ids) * 5, spent, wall


async def watched_memory(base: str, count: int, options: dict[str, Any]) -> float:
    """Bytes of resident memory per running task in one watcher after its first round of
    polls, the caller holding every handle (``bench_watch.watched_memory``, with client
    options)."""
    policy = PollPolicy(interval=3600, waiting_interval=3600, max_waiting_interval=3600)
    async with AnyFast(
        bench.KEY, base_url=base, limits=Limits(max_connections=64), **options
    ) as client:
        await asyncio.gather(*(client.get_task(f"warm_{i}") for i in range(64)))
        async with client.watcher(concurrency=64, timeout=None, poll=policy) as watcher:
            gc.collect()
            rss0 = bench.rss_bytes()
            handles = watcher.add_many(f"hold_{i:036d}" for i in range(count))
            while watcher.statistics().polls < count:
                await asyncio.sleep(0.05)
            gc.collect()
            grown = bench.rss_bytes() - rss0
            assert len(handles) == count
            return grown / count


def sdk_options() -> dict[str, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    return {"tracer_provider": tracer_provider, "meter_provider": meter_provider}


def ratios(
    base: str, options: dict[str, Any], rounds: int, concurrency: int, polls: int, loop: str
) -> list[float]:
    found = []
    for _ in range(rounds):
        n0, cpu0, _ = bench.run_on(loop, bench.bare_aiohttp(base, concurrency, polls))
        n1, cpu1, _ = bench.run_on(loop, watch_many(base, concurrency, polls, options))
        found.append((cpu1 / n1) / (cpu0 / n0))
    return found


SETUPS = {
    "hidden": "not installed",
    "api": "no provider",
    "sdk": "SDK provider",
}
#: The order the set-ups' processes run in: each twice, mirrored, so that a machine that
#: slows down or speeds up over the run weighs on them alike.
ORDER = ("hidden", "api", "sdk", "sdk", "api", "hidden")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds per process")
    parser.add_argument("--rounds", type=int, default=12, help="rounds per process")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--polls", type=int, default=5_000, help="polls per burst")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--setup", choices=list(SETUPS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory", type=int, default=20_000, help="running tasks for the memory figure"
    )
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hide-otel", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    if args.setup is not None:  # a child: one set-up, in a process of its own
        assert telemetry.AVAILABLE is (args.setup != "hidden")
        options = sdk_options() if args.setup == "sdk" else {}
        if args.memory_only:
            with bench.cheap_server() as base:
                print(json.dumps(asyncio.run(watched_memory(base, args.memory, options))))
            return
        with bench.cheap_server() as base:
            bench._pin(0)
            found = ratios(base, options, rounds, args.concurrency, args.polls, args.loop)
        print(json.dumps(found))
        return
    results: dict[str, list[float]] = {name: [] for name in SETUPS.values()}
    for setup in ORDER:
        child = [sys.executable, __file__, "--setup", setup]
        child += ["--concurrency", str(args.concurrency), "--polls", str(args.polls)]
        child += ["--loop", args.loop, "--rounds", str(rounds)]
        if setup == "hidden":
            child.append("--hide-otel")
        done = subprocess.run(child, capture_output=True, check=True)  # noqa: S603 (this script)
        results[SETUPS[setup]] += json.loads(done.stdout)
    memory = {}
    for setup in ("api", "sdk"):
        child = [sys.executable, __file__, "--setup", setup, "--memory-only"]
        child += ["--memory", str(args.memory)]
        done = subprocess.run(child, capture_output=True, check=True)  # noqa: S603 (this script)
        memory[SETUPS[setup]] = json.loads(done.stdout)
    summary = {
        "memory_tasks": args.memory,
        "bytes_per_running_task": memory,
        "loop": args.loop,
        "concurrency": args.concurrency,
        "rounds": len(results["no provider"]),
        "median_ratio_to_floor": {k: statistics.median(v) for k, v in results.items()},
        "quartiles": {k: statistics.quantiles(v, n=4) for k, v in results.items()},
        "ratios": results,
    }
    for name, ratio in summary["median_ratio_to_floor"].items():
        low, _, high = summary["quartiles"][name]
        print(
            f"{name:14s} wait_many / bare aiohttp, median of {summary['rounds']} rounds: "
            f"{ratio:.3f}x (quartiles {low:.3f} to {high:.3f})"
        )
    for name, per_task in memory.items():
        print(f"{name:14s} {per_task:,.0f} B per running task ({args.memory:,} tasks)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
