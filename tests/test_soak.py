"""Soak: thousands of tasks in one watcher while the server injects faults at a 10 % rate.

Every task must reach exactly one terminal outcome; no update may be duplicated or lost
(checked against the server's own record of each task's lifecycle); open file descriptors
must return to their starting level and memory must not keep what it used.

ANYFAST_SOAK_TASKS sets the number of tasks (default 10,000; `nox -s soak` runs 100,000).
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time

import anyio
import pytest

from anyfast_async import AnyFast, PollPolicy, TaskStatus, TaskUpdate, Throttle
from anyfast_async.testing import FakeAnyFast, Fault

# 10,000 tasks (100,000 with `nox -s soak`): minutes, not the default minute.
pytestmark = [pytest.mark.anyio, pytest.mark.soak, pytest.mark.timeout(1200)]

TASKS = int(os.environ.get("ANYFAST_SOAK_TASKS", "10000"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def warm_up() -> None:
    """One small round first: an event loop opens descriptors of its own on first use (uvloop's
    thread pool for name resolution, for one), which are not the SDK's to close."""
    async with FakeAnyFast() as server:
        server.add_task("warm")
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            await client.get_task("warm")


async def test_soak(capsys: pytest.CaptureFixture[str]) -> None:
    """10 % faults, thousands of tasks: one terminal outcome each, every transition once."""
    await warm_up()
    gc.collect()
    fds_before, rss_before, blocks_before = open_fds(), rss_mib(), sys.getallocatedblocks()
    started = time.monotonic()
    seen: dict[str, list[tuple[TaskStatus | None, int | None]]] = {}
    finals: dict[str, TaskUpdate] = {}
    async with FakeAnyFast() as server:
        failing = TASKS // 10
        ok = server.add_tasks(TASKS - failing)
        bad = server.add_tasks(failing, stages=FakeAnyFast.failure_stages("moderation"))
        for seed, (fault, rate) in enumerate(
            [
                (Fault.empty(503), 0.03),
                (Fault.html(502), 0.01),
                (Fault.drop_connection(), 0.02),
                (Fault.truncated_body(), 0.02),
                (Fault.rate_limited(retry_after="0.01"), 0.02),
            ]
        ):
            server.inject_rate(fault, rate, seed=seed)
        async with (
            AnyFast(
                server.api_key,
                base_url=server.base_url,
                throttle=Throttle(initial_pause=0.01, max_pause=0.05, min_rate=2000),
            ) as client,
            client.watcher(concurrency=64, poll=PollPolicy.fixed(0.01), timeout=None) as watcher,
        ):
            updates = watcher.updates(buffer=256)
            watcher.add_many(t.task_id for t in ok + bad)
            with anyio.fail_after(300):
                async with updates:
                    async for update in updates:
                        seen.setdefault(update.task_id, []).append((update.status, update.progress))
                        if update.is_terminal:
                            assert update.task_id not in finals, "one terminal update per task"
                            finals[update.task_id] = update
                            if len(finals) == TASKS:
                                break
            stats = watcher.statistics()
        faults = server.faults_served
        requests = len(server.requests)
        # The server's own record: the stages each task went through, one per normal answer.
        expected = {
            task.task_id: [
                (TaskStatus.parse(s.status), int(str(s.progress).rstrip("%"))) for s in task.stages
            ]
            for task in ok + bad
        }
    elapsed = time.monotonic() - started

    assert len(finals) == TASKS
    assert all(finals[t.task_id].succeeded for t in ok)
    assert all(finals[t.task_id].status is TaskStatus.FAILURE for t in bad)
    lost_or_duplicated = [tid for tid, steps in seen.items() if steps != expected[tid]]
    assert lost_or_duplicated == []
    assert stats.succeeded == len(ok)
    assert stats.failed == len(bad)
    assert stats.watching == 0
    assert faults > TASKS * 0.3, "faults really were injected"

    # Drop what the test itself holds; what remains is what the SDK and the server kept.
    del seen, finals, expected, ok, bad, updates, watcher, client, server
    gc.collect()
    fds_after, rss_after, blocks_after = open_fds(), rss_mib(), sys.getallocatedblocks()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert fds_after == fds_before, "every socket was closed"
    kept = blocks_after - blocks_before
    assert kept < 20_000, f"{kept} memory blocks still allocated after the run"
    with capsys.disabled():
        print(
            f"\nsoak: {TASKS} tasks, {requests} requests, {faults} faults injected "
            f"({faults / requests:.1%}), {stats.throttles} throttled, {elapsed:.1f} s; "
            f"RSS {rss_before:.0f} MiB -> peak {peak:.0f} MiB -> {rss_after:.0f} MiB "
            f"(allocator keeps its arenas); Python memory blocks {blocks_before} -> "
            f"{blocks_after}; fds {fds_before} -> {fds_after}"
        )
