"""Benchmark: client CPU per poll and memory per watched task.

A minimal keep-alive HTTP server runs in its own process and answers every request with the
same small task record (status IN_PROGRESS, so polling never ends by itself). In this process
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
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp

from anyfast_async import AnyFast, Limits, PollPolicy

BODY = (
    b'{"code":"success","message":"","data":{"task_id":"asyntask_bench","action":"generate",'
    b'"status":"IN_PROGRESS","fail_reason":"","submit_time":1777343862,"start_time":1777343866,'
    b'"finish_time":0,"progress":"50%","request_id":"20260428023742441081000FMrSbjcs",'
    b'"data":null}}'
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"X-Oneapi-Request-Id: 20260428023742441081000FMrSbjcs\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)
KEY = "sk-bench"


# -- the cheap server --------------------------------------------------------------------------


class _Answer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.buffer = self.buffer[end + 4 :]
            self.transport.write(RESPONSE)


def _serve(sock: socket.socket) -> None:
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


async def sdk_watch_many(base: str, concurrency: int, total: int) -> tuple[int, float, float]:
    tasks = max(concurrency * 4, 1000)
    policy = PollPolicy.fixed(1e-6)
    async with _client(base, concurrency) as client:
        async with client.watcher(concurrency=concurrency, poll=policy, timeout=None) as warm:
            warm.add_many(f"warm_{i}" for i in range(concurrency))
            while warm.statistics().polls < 500:
                await asyncio.sleep(0.01)
        async with client.watcher(concurrency=concurrency, poll=policy, timeout=None) as watcher:
            c0, w0 = cpu(), time.perf_counter()
            watcher.add_many(f"asyntask_{i}" for i in range(tasks))
            while watcher.statistics().polls < total:
                await asyncio.sleep(0.005)
            polls = watcher.statistics().polls
            return polls, cpu() - c0, time.perf_counter() - w0


async def watched_memory(base: str, count: int, concurrency: int) -> dict[str, float]:
    async with _client(base, concurrency) as client:
        await client.get_task("warm")
        async with client.watcher(concurrency=concurrency, timeout=None) as watcher:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks for the memory run")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per CPU run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 1000])
    parser.add_argument("--quick", action="store_true", help="10,000 tasks, 5,000 requests")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.requests = 10_000, 5_000

    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "cpu": [],
    }
    with cheap_server() as base:
        for concurrency in args.concurrency:
            total = args.requests if concurrency > 1 else max(args.requests // 4, 1000)
            row: dict[str, Any] = {"concurrency": concurrency}
            for name, fn in (
                ("bare_aiohttp", bare_aiohttp),
                ("get_task", sdk_get_task),
                ("watch_many", sdk_watch_many),
            ):
                count, cpu_s, wall = asyncio.run(fn(base, concurrency, total))
                row[name] = {"requests": count, "cpu_us_per_request": cpu_s / count * 1e6}
                row[name]["requests_per_second"] = count / wall
            floor = row["bare_aiohttp"]["cpu_us_per_request"]
            for name in ("get_task", "watch_many"):
                row[name]["ratio_to_floor"] = row[name]["cpu_us_per_request"] / floor
            results["cpu"].append(row)
            print(json.dumps(row), flush=True)
        results["memory"] = asyncio.run(watched_memory(base, args.tasks, 64))
        print(json.dumps(results["memory"]), flush=True)

    print()
    print(
        f"Machine: {results['machine']}; Python {results['python']}; aiohttp {results['aiohttp']}"
    )
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
    print("| watched tasks | RSS growth | bytes per task | time to add all | idle scheduler CPU |")
    print("|---:|---:|---:|---:|---:|")
    print(
        f"| {mem['tasks']:,} | {mem['rss_growth_mib']:.1f} MiB | {mem['bytes_per_task']:.0f} B "
        f"| {mem['add_seconds']:.2f} s | {mem['idle_cpu_seconds_per_second'] * 100:.1f} % of a core |"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
