"""Benchmark: client CPU per poll and memory per watched task.

A minimal keep-alive HTTP server runs in its own process and answers every request with a
small task record. In this process
the script measures, in one run:

* the floor: a bare aiohttp GET + read loop with the same concurrency;
* ``AnyFast.get_task`` in the same loop shape;
* ``AnyFast.watch_many`` polling many tasks with a near-zero interval;

reporting client CPU seconds per request from ``resource.getrusage`` (user + system, this
process only: the server's CPU is not counted), and the ratio to the floor. Then it adds
``--tasks`` tasks to one watcher with the default 15 s cadence, waits until each has been polled
once, and reports the growth of resident memory per watched task and the CPU the idle
scheduler burns between polls.

    python benchmarks/bench_watch.py                  # full run (100,000 tasks)
    python benchmarks/bench_watch.py --quick          # a smaller, faster run

Every task path answers IN_PROGRESS and SUCCESS on its fifth request, so the watch_many run
ends by itself after exactly the number of polls measured.
The memory figure is measured in a fresh interpreter (a subprocess of this script), so that
memory freed by the CPU runs cannot hide the growth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp

from anyfast_async import AnyFast, Limits, PollPolicy

POLLS_PER_TASK = 5


def _answer(status: bytes, progress: bytes) -> bytes:
    body = (
        b'{"code":"success","message":"","data":{"task_id":"asyntask_bench","action":"generate",'
        b'"status":"' + status + b'","fail_reason":"","submit_time":1777343862,'
        b'"start_time":1777343866,"finish_time":0,"progress":"' + progress + b'",'
        b'"request_id":"20260428023742441081000FMrSbjcs","data":null}}'
    )
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"X-Oneapi-Request-Id: 20260428023742441081000FMrSbjcs\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


RUNNING = _answer(b"IN_PROGRESS", b"50%")
DONE = _answer(b"SUCCESS", b"100%")
KEY = "sk-bench"


# -- the cheap server --------------------------------------------------------------------------


_POLLS: dict[bytes, int] = {}


class _Answer(asyncio.Protocol):
    """Every path answers IN_PROGRESS, and SUCCESS on its POLLS_PER_TASK-th request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            path = self.buffer[: self.buffer.find(b"\r\n")].split(b" ")[1]
            self.buffer = self.buffer[end + 4 :]
            count = _POLLS.get(path, 0) + 1
            _POLLS[path] = count
            self.transport.write(DONE if count % POLLS_PER_TASK == 0 else RUNNING)


def _pin(cpu_index: int) -> None:
    """Keep this process on one core (when there are two), so client and server never
    share a core and the CPU figures do not wander."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) >= 2:
        os.sched_setaffinity(0, {cores[cpu_index]})


def _serve(sock: socket.socket) -> None:
    _pin(1)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Answer, sock=sock, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextlib.contextmanager
def cheap_server() -> Iterator[str]:
    """A keep-alive HTTP server in another process; yields its base URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_serve, args=(sock,), daemon=True)
    proc.start()
    sock.close()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.join(5)


# -- measuring ---------------------------------------------------------------------------------


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def loop_of(
    concurrency: int, total: int, one: Callable[[int], Awaitable[object]]
) -> tuple[int, float, float]:
    """Run ``one(i)`` ``total`` times from ``concurrency`` coroutines; (count, cpu, wall)."""
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await one(i)

    c0, w0 = cpu(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total, cpu() - c0, time.perf_counter() - w0


async def bare_aiohttp(base: str, concurrency: int, total: int) -> tuple[int, float, float]:
    connector = aiohttp.TCPConnector(limit=max(concurrency, 100))
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            url = f"{base}/v1/video/generations/asyntask_{i % 1000}"
            async with session.get(url, headers=headers) as resp:
                await resp.read()

        await loop_of(concurrency, min(total, 500), one)  # warm up the pool
        return await loop_of(concurrency, total, one)


def _client(base: str, concurrency: int) -> AnyFast:
    return AnyFast(KEY, base_url=base, limits=Limits(max_connections=max(concurrency, 100)))


async def sdk_get_task(base: str, concurrency: int, total: int) -> tuple[int, float, float]:
    async with _client(base, concurrency) as client:

        async def one(i: int) -> None:
            await client.get_task(f"asyntask_{i % 1000}")

        await loop_of(concurrency, min(total, 500), one)
        return await loop_of(concurrency, total, one)


_RUN = iter(range(1_000_000))


async def sdk_watch_many(base: str, concurrency: int, total: int) -> tuple[int, float, float]:
    """wait_many over total / POLLS_PER_TASK fresh tasks, each answering SUCCESS on its
    fifth poll: exactly ``total`` polls, none left in flight when the clock stops."""
    policy = PollPolicy.fixed(1e-6)
    async with _client(base, concurrency) as client:
        warm = [f"warm{next(_RUN)}_{i}" for i in range(100)]
        await client.wait_many(warm, concurrency=concurrency, poll=policy)
        run = next(_RUN)
        ids = [f"r{run}_asyntask_{i}" for i in range(total // POLLS_PER_TASK)]
        c0, w0 = cpu(), time.perf_counter()
        results = await client.wait_many(ids, concurrency=concurrency, poll=policy)
        spent, wall = cpu() - c0, time.perf_counter() - w0
        assert len(results) == len(ids)
        return len(ids) * POLLS_PER_TASK, spent, wall


async def watched_memory(base: str, count: int, concurrency: int) -> dict[str, float]:
    # A long interval, so that after the first round every task is idle, waiting.
    policy = PollPolicy(interval=3600, waiting_interval=3600, max_waiting_interval=3600)
    async with _client(base, concurrency) as client:
        await client.get_task("warm")
        async with client.watcher(concurrency=concurrency, timeout=None, poll=policy) as watcher:
            gc.collect()
            rss0 = rss_bytes()
            c0, w0 = cpu(), time.perf_counter()
            watcher.add_many(f"asyntask_{i:032d}" for i in range(count))
            add_seconds = time.perf_counter() - w0
            while watcher.statistics().polls < count:
                await asyncio.sleep(0.05)
            first_round = time.perf_counter() - w0
            gc.collect()
            rss1 = rss_bytes()
            # Idle: every task waits ~15 s for its next poll.
            i0 = cpu()
            await asyncio.sleep(3.0)
            idle_cpu = cpu() - i0
            polls_idle = watcher.statistics().polls - count
            return {
                "tasks": count,
                "rss_growth_mib": (rss1 - rss0) / 2**20,
                "bytes_per_task": (rss1 - rss0) / count,
                "add_seconds": add_seconds,
                "first_round_seconds": first_round,
                "first_round_cpu_seconds": cpu() - c0 - idle_cpu,
                "idle_cpu_seconds_per_second": idle_cpu / 3.0,
                "polls_while_idle": polls_idle,
            }


# -- report ------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def measure_memory(tasks: int) -> dict[str, float]:
    """Run the memory measurement in a fresh interpreter, so earlier runs do not skew RSS."""
    out = subprocess.run(  # noqa: S603 - this very script
        [sys.executable, __file__, "--memory-only", str(tasks)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks for the memory run")
    parser.add_argument("--requests", type=int, default=10_000, help="requests per CPU run")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each, median reported")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 1000])
    parser.add_argument("--quick", action="store_true", help="10,000 tasks, 3,000 requests, 3 runs")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--memory-only", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_only:
        with cheap_server() as base:
            print(json.dumps(asyncio.run(watched_memory(base, args.memory_only, 64))))
        return
    if args.quick:
        args.tasks, args.requests, args.repeat = 10_000, 3_000, 3
    _pin(0)

    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "repeat": args.repeat,
        "cpu": [],
    }
    contenders = (
        ("bare_aiohttp", bare_aiohttp),
        ("get_task", sdk_get_task),
        ("watch_many", sdk_watch_many),
    )
    with cheap_server() as base:
        for concurrency in args.concurrency:
            total = args.requests if concurrency > 1 else max(args.requests // 4, 1000)
            samples: dict[str, list[float]] = {name: [] for name, _ in contenders}
            for _ in range(args.repeat):  # interleaved, so drift hits every contender alike
                for name, fn in contenders:
                    count, cpu_s, _wall = asyncio.run(fn(base, concurrency, total))
                    samples[name].append(cpu_s / count * 1e6)
            row: dict[str, Any] = {"concurrency": concurrency, "requests": total}
            for name, values in samples.items():
                row[name] = {"cpu_us_per_request": _median(values), "samples": values}
            floor = row["bare_aiohttp"]["cpu_us_per_request"]
            for name in ("get_task", "watch_many"):
                row[name]["ratio_to_floor"] = row[name]["cpu_us_per_request"] / floor
            results["cpu"].append(row)
            print(json.dumps(row), flush=True)
    results["memory"] = measure_memory(args.tasks)
    print(json.dumps(results["memory"]), flush=True)
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def report(results: dict[str, Any]) -> None:
    print()
    print(
        f"Machine: {results['machine']}; Python {results['python']}; aiohttp {results['aiohttp']}"
    )
    print(f"Median of {results['repeat']} interleaved runs.")
    print()
    print(
        "| concurrency | bare aiohttp (µs CPU/request) | get_task (µs, ratio) | watch_many (µs, ratio) |"
    )
    print("|---:|---:|---:|---:|")
    for row in results["cpu"]:
        floor = row["bare_aiohttp"]["cpu_us_per_request"]
        g, w = row["get_task"], row["watch_many"]
        print(
            f"| {row['concurrency']:,} | {floor:.0f} | {g['cpu_us_per_request']:.0f} "
            f"({g['ratio_to_floor']:.2f}x) | {w['cpu_us_per_request']:.0f} "
            f"({w['ratio_to_floor']:.2f}x) |"
        )
    mem = results["memory"]
    print()
    print(
        "| watched tasks | RSS growth | bytes per task | time to add all | first round of polls | idle scheduler CPU |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {mem['tasks']:,} | {mem['rss_growth_mib']:.1f} MiB | {mem['bytes_per_task']:.0f} B "
        f"| {mem['add_seconds']:.2f} s | {mem['first_round_seconds']:.1f} s "
        f"| {mem['idle_cpu_seconds_per_second'] * 100:.2f} % of a core |"
    )


if __name__ == "__main__":
    main()
