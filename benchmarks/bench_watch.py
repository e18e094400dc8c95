"""Benchmark: client CPU per poll against the floor and the alternatives, and the cost of scale.

A minimal keep-alive HTTP server runs in its own process (pinned to the second core; this
process is pinned to the first) and answers every task path with a small IN_PROGRESS record,
and SUCCESS on the path's fifth request. In this process the script measures, interleaved run
by run, at each concurrency:

* the floor: a bare aiohttp GET + read loop, ``concurrency`` coroutines;
* ``AnyFast.get_task`` in the same loop shape (decode into ``Task`` included);
* ``AnyFast.watch_many`` (through ``wait_many``) over ``requests / 5`` fresh tasks with a
  near-zero poll interval, so the scheduler does exactly ``requests`` polls and stops by itself;
* the stack most SDKs use: an ``httpx.AsyncClient`` + pydantic loop in the same shape as the
  floor, ``await client.get(url)`` then ``PydanticEnvelope.model_validate_json(resp.content)``
  (``benchmarks/pydantic_task.py``, the fields of ``Task``);
* a naive loop: one ``asyncio.create_task`` per task id over ``requests / 5`` fresh tasks, each
  doing aiohttp GET + ``json.loads`` + ``asyncio.sleep(interval)`` until its task is done, with
  the connection pool (``TCPConnector(limit=concurrency)``) as the only concurrency limit.

Each contender does the same number of requests (``--requests``; a quarter of it at
concurrency 1 and half at 1,000, see ``requests_at``), after opening every connection of its
pool. CPU is this process's user + system time from ``resource.getrusage`` (the server's CPU
is not counted), divided by the requests; the report gives the median of ``--repeat`` runs
(``--slow-repeat`` for httpx + pydantic, whose runs take up to a minute) and the median of
its ratios to the floor, each run divided by the floor's run of the same round. Everything
runs on asyncio's loop and on uvloop (``--loops``), each contender against the floor on the
same loop; httpx + pydantic and the naive loop on asyncio only.

Then, for each of ``--tasks`` (1,000, 10,000 and 100,000 by default), a fresh interpreter (a
subprocess of this script, so that memory freed by the CPU runs cannot hide the growth) adds
that many tasks to one watcher with a one-hour cadence, waits until each has been polled once,
and reports the growth of resident memory per watched task, the time ``add_many`` took, and
the CPU the scheduler burns in 3 idle seconds, with every task waiting for its next poll.

    python benchmarks/bench_watch.py                  # full run (about 10 minutes)
    python benchmarks/bench_watch.py --quick          # a smaller, faster run

It needs httpx and pydantic besides the package: ``nox -s bench`` installs them.
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
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp
import httpx
import pydantic
from bodies import IN_PROGRESS_BODY, SUCCESS_BODY
from pydantic_task import PydanticEnvelope

from anyfast_async import AnyFast, Limits, PollPolicy

POLLS_PER_TASK = 5
T = TypeVar("T")


def _answer(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"X-Oneapi-Request-Id: 20260428023742441081000FMrSbjcs\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


RUNNING = _answer(IN_PROGRESS_BODY)
DONE = _answer(SUCCESS_BODY)
KEY = "sk-bench"


# -- the cheap server --------------------------------------------------------------------------


_POLLS: dict[bytes, int] = {}
#: Ids with this in them are IN_PROGRESS forever.
HOLD = b"/hold_"


class _Answer(asyncio.Protocol):
    """Every path answers IN_PROGRESS, and SUCCESS on its POLLS_PER_TASK-th request (except
    the ids that begin with ``hold_``, which never finish)."""

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
            if HOLD in path:  # a task that runs for as long as the benchmark does
                self.transport.write(RUNNING)
                continue
            count = _POLLS.get(path, 0) + 1
            _POLLS[path] = count
            self.transport.write(DONE if count % POLLS_PER_TASK == 0 else RUNNING)


def _pin(cpu_index: int) -> None:
    """Keep this process on one core (when there are two), so client and server never
    share a core and the CPU figures do not wander."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) >= 2:
        os.sched_setaffinity(0, {cores[cpu_index]})


def run_on(loop: str, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a new event loop of the kind named: ``asyncio`` or ``uvloop``."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


async def _spin() -> None:
    """Keep the server's loop polling its sockets without ever sleeping in the kernel.

    A request that finds the server asleep makes the client's ``send`` wake it up, which on
    a VM costs the client tens of microseconds of kernel time; whether it does depends on the
    timing of each contender's requests, not on its code, and was the largest source of
    noise in the ratios. A busy server, as a loaded gateway is, removes it.
    """
    while True:
        await asyncio.sleep(0)


def _serve(sock: socket.socket) -> None:
    _pin(1)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Answer, sock=sock, backlog=4096)
        spin = asyncio.ensure_future(_spin())
        async with server:
            await server.serve_forever()
        spin.cancel()

    # The server runs on uvloop when it is there, so that it keeps up with the fastest client.
    run_on("uvloop" if _has_uvloop() else "asyncio", main())


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def cheap_server() -> Iterator[str]:
    """A keep-alive HTTP server in another process; yields its base URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)  # connections wait in the backlog until the server process is up
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


def warm_requests(concurrency: int) -> int:
    """Requests run before the clock starts: enough to open every connection of the pool."""
    return max(500, concurrency)


def warm_tasks(concurrency: int) -> int:
    """Tasks watched before the clock starts (5 polls each), for the same reason."""
    return max(100, concurrency)


async def bare_aiohttp(base: str, concurrency: int, total: int) -> tuple[int, float, float]:
    connector = aiohttp.TCPConnector(limit=max(concurrency, 100))
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            url = f"{base}/v1/video/generations/asyntask_{i % 1000}"
            async with session.get(url, headers=headers) as resp:
                await resp.read()

        await loop_of(concurrency, warm_requests(concurrency), one)  # fill the pool
        return await loop_of(concurrency, total, one)


def _client(base: str, concurrency: int) -> AnyFast:
    return AnyFast(KEY, base_url=base, limits=Limits(max_connections=max(concurrency, 100)))


async def sdk_get_task(base: str, concurrency: int, total: int) -> tuple[int, float, float]:
    async with _client(base, concurrency) as client:

        async def one(i: int) -> None:
            await client.get_task(f"asyntask_{i % 1000}")

        await loop_of(concurrency, warm_requests(concurrency), one)
        return await loop_of(concurrency, total, one)


_RUN = iter(range(1_000_000))


async def sdk_watch_many(base: str, concurrency: int, total: int) -> tuple[int, float, float]:
    """wait_many over total / POLLS_PER_TASK fresh tasks, each answering SUCCESS on its
    fifth poll: exactly ``total`` polls, none left in flight when the clock stops."""
    policy = PollPolicy.fixed(1e-6)
    async with _client(base, concurrency) as client:
        warm = [f"warm{next(_RUN)}_{i}" for i in range(warm_tasks(concurrency))]
        await client.wait_many(warm, concurrency=concurrency, poll=policy)
        run = next(_RUN)
        ids = [f"r{run}_asyntask_{i}" for i in range(total // POLLS_PER_TASK)]
        c0, w0 = cpu(), time.perf_counter()
        results = await client.wait_many(ids, concurrency=concurrency, poll=policy)
        spent, wall = cpu() - c0, time.perf_counter() - w0
        assert len(results) == len(ids)
        return len(ids) * POLLS_PER_TASK, spent, wall


async def httpx_pydantic(base: str, concurrency: int, total: int) -> tuple[int, float, float]:
    """What most SDKs do: httpx.AsyncClient, then a pydantic model from the body."""
    pool = max(concurrency, 100)
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    headers = {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=httpx.Timeout(60.0)
    ) as client:

        async def one(i: int) -> None:
            resp = await client.get(f"/v1/video/generations/asyntask_{i % 1000}")
            resp.raise_for_status()
            PydanticEnvelope.model_validate_json(resp.content)

        await loop_of(concurrency, warm_requests(concurrency), one)
        return await loop_of(concurrency, total, one)


_TERMINAL = ("SUCCESS", "FAILURE")


async def naive_loop(base: str, concurrency: int, total: int) -> tuple[int, float, float]:
    """One asyncio task per task id, each polling and sleeping until done: total / 5 tasks
    polled 5 times each, at most ``concurrency`` requests in flight (the pool's limit)."""
    headers = {"Authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def poll(task_id: str) -> dict[str, Any]:
            url = f"{base}/v1/video/generations/{task_id}"
            while True:
                async with session.get(url) as resp:
                    doc: dict[str, Any] = json.loads(await resp.read())
                if doc["data"]["status"] in _TERMINAL:
                    return doc
                await asyncio.sleep(1e-6)

        async def run(ids: list[str]) -> None:
            await asyncio.gather(*[asyncio.create_task(poll(task_id)) for task_id in ids])

        await run([f"warm{next(_RUN)}_{i}" for i in range(warm_tasks(concurrency))])
        run_id = next(_RUN)
        ids = [f"r{run_id}_asyntask_{i}" for i in range(total // POLLS_PER_TASK)]
        c0, w0 = cpu(), time.perf_counter()
        await run(ids)
        return len(ids) * POLLS_PER_TASK, cpu() - c0, time.perf_counter() - w0


async def watched_memory(base: str, count: int, concurrency: int) -> dict[str, float]:
    # A long interval, so that after the first round every task is idle, waiting.
    policy = PollPolicy(interval=3600, waiting_interval=3600, max_waiting_interval=3600)
    async with _client(base, concurrency) as client:
        # Open every connection of the pool first, so that their buffers are not counted.
        await asyncio.gather(*(client.get_task(f"warm_{i}") for i in range(concurrency)))
        async with client.watcher(concurrency=concurrency, timeout=None, poll=policy) as watcher:
            gc.collect()
            rss0 = rss_bytes()
            c0, w0 = cpu(), time.perf_counter()
            # The caller keeps every handle, as an app that awaits its tasks does.
            handles = watcher.add_many(f"hold_{i:036d}" for i in range(count))
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
            assert len(handles) == count
            assert all(h.latest is not None for h in handles)
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


#: A burst of polls: run ``requests`` polls, return how many were made.
Burst = Callable[[int], Awaitable[int]]


async def open_bursts(
    stack: contextlib.AsyncExitStack, base: str, concurrency: int
) -> dict[str, Burst]:
    """The three contenders close to the floor, each opened once (pool filled) and ready to
    run a burst of polls: the floor, ``get_task`` and ``watch_many``."""
    headers = {"Authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(limit=max(concurrency, 100))
    session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
    client = await stack.enter_async_context(_client(base, concurrency))
    policy = PollPolicy.fixed(1e-6)

    async def bare_one(i: int) -> None:
        async with session.get(
            f"{base}/v1/video/generations/asyntask_{i % 1000}", headers=headers
        ) as resp:
            await resp.read()

    async def get_one(i: int) -> None:
        await client.get_task(f"asyntask_{i % 1000}")

    async def bare(requests: int) -> int:
        return (await loop_of(concurrency, requests, bare_one))[0]

    async def get(requests: int) -> int:
        return (await loop_of(concurrency, requests, get_one))[0]

    async def watch(requests: int) -> int:
        run = next(_RUN)
        ids = [f"r{run}_asyntask_{i}" for i in range(requests // POLLS_PER_TASK)]
        results = await client.wait_many(ids, concurrency=concurrency, poll=policy)
        assert len(results) == len(ids)
        return len(ids) * POLLS_PER_TASK

    # The watcher: one, long-lived, as a service keeps it; each burst adds fresh tasks and
    # waits until all have ended, counted by ``on_terminal`` (no coroutine per task).
    ended = {"count": 0, "target": 0}
    done = asyncio.Event()

    def count(_update: object) -> None:
        ended["count"] += 1
        if ended["count"] >= ended["target"]:
            done.set()

    watcher = await stack.enter_async_context(
        client.watcher(concurrency=concurrency, timeout=None, poll=policy, on_terminal=count)
    )

    async def watch_one_by_one(requests: int) -> int:
        run = next(_RUN)
        tasks = requests // POLLS_PER_TASK
        ended["count"], ended["target"] = 0, tasks
        done.clear()
        watcher.add_many(f"w{run}_asyntask_{i}" for i in range(tasks))
        await done.wait()
        return tasks * POLLS_PER_TASK

    bursts: dict[str, Burst] = {
        "bare_aiohttp": bare,
        "get_task": get,
        "watcher": watch_one_by_one,
        "watch_many": watch,
    }
    for burst in bursts.values():  # open every connection of each pool
        await burst(max(500, concurrency * POLLS_PER_TASK))
    return bursts


async def paired_bursts(
    base: str, concurrency: int, requests: int, rounds: int
) -> dict[str, list[float]]:
    """CPU per poll of each burst contender, ``rounds`` bursts each, in turn.

    All three live in one event loop and take turns burst by burst (a fraction of a second
    each), so that a change of the machine's speed, which on a shared VM comes and goes over
    seconds, hits the three alike; each burst's CPU is divided by its polls.
    """
    samples: dict[str, list[float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        bursts = await open_bursts(stack, base, concurrency)
        for _ in range(rounds):
            for name, burst in bursts.items():
                c0 = cpu()
                count = await burst(requests)
                samples.setdefault(name, []).append((cpu() - c0) / count * 1e6)
    return samples


CONTENDERS: dict[str, Callable[[str, int, int], Awaitable[tuple[int, float, float]]]] = {
    "bare_aiohttp": bare_aiohttp,
    "get_task": sdk_get_task,
    "watcher": sdk_watch_many,  # measured in bursts only (see open_bursts)
    "watch_many": sdk_watch_many,
    "httpx_pydantic": httpx_pydantic,
    "naive_loop": naive_loop,
}


#: Contenders so slow that they run only ``--slow-repeat`` times (their ratio is far from any
#: target, so fewer samples change no conclusion, and the whole run stays under 15 minutes).
SLOW = frozenset({"httpx_pydantic"})
LABELS = {
    "bare_aiohttp": "bare aiohttp",
    "get_task": "get_task",
    "watcher": "watcher",
    "watch_many": "wait_many",
    "httpx_pydantic": "httpx + pydantic",
    "naive_loop": "naive loop",
}

#: The contenders measured in paired bursts (see :func:`paired_bursts`).
BURSTS = ("bare_aiohttp", "get_task", "watcher", "watch_many")


def burst_requests(concurrency: int, *, quick: bool = False) -> int:
    """Polls in one burst: a fraction of a second's worth, several per poller."""
    if concurrency <= 1:
        return 500
    return max(2000, concurrency * (3 if quick else 5))


#: Contenders measured on asyncio only.
ASYNCIO_ONLY = frozenset({"httpx_pydantic", "naive_loop"})


def requests_at(concurrency: int, requests: int) -> int:
    """Requests per run at a concurrency: a quarter at 1 (each waits for a round trip), half
    at 1,000 and above (httpx + pydantic spends about 12 ms of CPU per request there)."""
    if concurrency == 1:
        return max(requests // 4, 1000)
    if concurrency >= 1000:
        return requests // 2
    return requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="watched tasks"
    )
    parser.add_argument("--requests", type=int, default=10_000, help="requests per CPU run")
    parser.add_argument(
        "--rounds", type=int, default=21, help="bursts of the floor, get_task and watch_many"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs of the naive loop, median reported"
    )
    parser.add_argument(
        "--slow-repeat", type=int, default=3, help="runs of httpx + pydantic (10-60 s each)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 1000])
    parser.add_argument(
        "--loops",
        nargs="+",
        choices=["asyncio", "uvloop"],
        default=["asyncio", "uvloop"],
        help="event loops to measure on (each contender against the floor on the same loop)",
    )
    parser.add_argument(
        "--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS)
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10,000 tasks, concurrency 64 and 1,000, 3 rounds, the alternatives at 64 only",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--memory-only", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_only:
        with cheap_server() as base:
            print(json.dumps(asyncio.run(watched_memory(base, args.memory_only, 64))))
        return
    if args.quick:
        args.tasks, args.requests, args.repeat, args.slow_repeat = [10_000], 3_000, 3, 1
        args.rounds = 3
        args.concurrency = [64, 1000]
    _pin(0)

    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "httpx": httpx.__version__,
        "pydantic": pydantic.VERSION,
        "repeat": args.repeat,
        "rounds": args.rounds,
        "slow_repeat": dict.fromkeys(SLOW, args.slow_repeat),
        "bodies": {"in_progress_bytes": len(IN_PROGRESS_BODY), "success_bytes": len(SUCCESS_BODY)},
        "cpu": [],
        "memory": [],
    }
    with cheap_server() as base:
        for loop in args.loops:
            # The alternatives are measured on asyncio only: they are there for scale.
            names = [n for n in args.contenders if loop == "asyncio" or n not in ASYNCIO_ONLY]
            if "bare_aiohttp" not in names:
                names.insert(0, "bare_aiohttp")
            for concurrency in args.concurrency:
                row: dict[str, Any] = {"loop": loop, "concurrency": concurrency}
                burst = burst_requests(concurrency, quick=args.quick)
                paired = run_on(loop, paired_bursts(base, concurrency, burst, args.rounds))
                floors = paired["bare_aiohttp"]
                for name, values in paired.items():
                    if name not in names:
                        continue
                    # Each burst divided by the floor's burst of the same round.
                    ratios = [a / b for a, b in zip(values, floors, strict=True)]
                    row[name] = {
                        "cpu_us_per_request": _median(values),
                        "samples": values,
                        "ratio_to_floor": _median(ratios),
                        "ratios": ratios,
                        "requests_per_burst": burst,
                    }
                floor = row["bare_aiohttp"]["cpu_us_per_request"]
                total = requests_at(concurrency, args.requests)
                # The alternatives, far from any target, only at 64 in a quick run.
                alternatives = [n for n in names if n not in BURSTS]
                if args.quick and concurrency != 64:
                    alternatives = []
                for name in alternatives:
                    values = []
                    for _ in range(args.slow_repeat if name in SLOW else args.repeat):
                        count, cpu_s, _wall = run_on(
                            loop, CONTENDERS[name](base, concurrency, total)
                        )
                        values.append(cpu_s / count * 1e6)
                    row[name] = {
                        "cpu_us_per_request": _median(values),
                        "samples": values,
                        "ratio_to_floor": _median(values) / floor,
                        "requests": total,
                    }
                results["cpu"].append(row)
                print(json.dumps(dict(row.items())), flush=True)
    for tasks in args.tasks:
        results["memory"].append(measure_memory(tasks))
        print(json.dumps(results["memory"][-1]), flush=True)
    results["elapsed_seconds"] = time.perf_counter() - started
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def report(results: dict[str, Any]) -> None:
    print()
    print(
        f"Machine: {results['machine']}; Python {results['python']}; aiohttp "
        f"{results['aiohttp']}, httpx {results['httpx']}, pydantic {results['pydantic']}"
    )
    print(
        f"Floor, get_task and watch_many: medians of {results['rounds']} bursts each, taking "
        f"turns; the naive loop {results['repeat']} runs, httpx + pydantic "
        f"{results['slow_repeat']['httpx_pydantic']}; the whole run took "
        f"{results['elapsed_seconds'] / 60:.1f} min."
    )
    print()
    print("Client CPU per request (µs), and the ratio to the bare aiohttp floor on the same loop:")
    print()
    names = [n for n in LABELS if any(n in row for row in results["cpu"])]
    print("| loop | concurrency | " + " | ".join(LABELS[n] for n in names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for row in results["cpu"]:
        cells = []
        for name in names:
            r = row.get(name)
            if r is None:
                cells.append("")
            elif name == "bare_aiohttp":
                cells.append(f"{r['cpu_us_per_request']:.0f} µs")
            else:
                cells.append(f"{r['cpu_us_per_request']:.0f} µs ({r['ratio_to_floor']:.2f}x)")
        print(f"| {row['loop']} | {row['concurrency']:,} | " + " | ".join(cells) + " |")
    print()
    print(
        "| watched tasks | RSS growth | per task | time to add all | first round of polls "
        "| idle scheduler CPU |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for mem in results["memory"]:
        print(
            f"| {mem['tasks']:,} | {mem['rss_growth_mib']:.1f} MiB | {mem['bytes_per_task']:,.0f} B "
            f"| {mem['add_seconds'] * 1000:,.0f} ms | {mem['first_round_seconds']:.1f} s "
            f"| {mem['idle_cpu_seconds_per_second'] * 100:.2f} % of a core |"
        )


if __name__ == "__main__":
    main()
