"""A fleet on Redis, with real processes: one process adds tasks and waits for them, three
worker processes poll them, and one worker is SIGKILLed midway. Against a real redis-server
and a fake AnyFast in a process of its own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import IO

import anyio
import pytest

from anyfast_async import AnyFast, RedisStore, Task, TaskFailedError
from anyfast_async.testing import FakeAnyFast, Stage

from .test_cli import success
from .test_redis_store import RedisServer, redis_server  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio

PROGRAMS = Path(__file__).parent / "programs"
KEY = "sk-fleet-test"
TASKS = 1000


class FakeAPI:
    """tests/programs/fake_api.py: FakeAnyFast in a process of its own."""

    def __init__(self, stage_seconds: float) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (our own program)
            [sys.executable, str(PROGRAMS / "fake_api.py"), KEY, str(stage_seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.base_url = self._line().strip()

    def _line(self) -> str:
        stdout: IO[bytes] | None = self.process.stdout
        assert stdout is not None
        return stdout.readline().decode()

    def polls(self) -> int:
        """Task queries answered so far."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(b"?\n")
        stdin.flush()
        return int(json.loads(self._line())["polls"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


def worker(redis_url: str, base_url: str, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(  # noqa: S603 (our own program)
        [sys.executable, str(PROGRAMS / "fleet_worker.py"), redis_url, base_url, KEY, str(log)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    return process


async def every_task_delivered(logs: list[Path], ids: list[str]) -> None:
    """Wait until the workers' logs name every task (a minute at most)."""
    with anyio.fail_after(60):
        while not set(ids) <= {line for log in logs for line in log.read_text().split()}:
            await anyio.sleep(0.1)


def prompt(i: int) -> str:
    return f"clip {i} (moderation)" if i % 10 == 9 else f"clip {i}"


async def create(client: AnyFast, count: int) -> list[str]:
    ids: list[str] = []
    for i in range(count):
        ids.append((await client.create_text_to_video(prompt(i))).task_id)
    return ids


# ~17 s here, well over a minute on a loaded machine with coverage on: a limit above the sum
# of the test's own guards, so that a hang ends at one of them, with its traceback.
@pytest.mark.timeout(300)
async def test_a_fleet_shares_the_tasks_and_survives_a_killed_worker(
    redis_server: RedisServer,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """Every handle in the adding process gets the right outcome; on_terminal ran for every
    task, twice only for tasks the killed worker had delivered; polls per task within 1.1x
    of one process watching alone."""
    api = await anyio.to_thread.run_sync(FakeAPI, 0.5)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        # One process alone: the polls per task to compare with.
        async with AnyFast(KEY, base_url=api.base_url) as alone:
            ids = await create(alone, TASKS)
            before = await anyio.to_thread.run_sync(api.polls)
            async with alone.watcher(concurrency=48, poll_interval=0.25, timeout=None) as w:
                with anyio.fail_after(60):
                    for handle in w.add_many(ids):
                        with contextlib.suppress(TaskFailedError):
                            await handle.wait()
            polls_alone = await anyio.to_thread.run_sync(api.polls) - before

        logs = [tmp_path / f"worker{i}.log" for i in range(3)]
        for log in logs:
            workers.append(
                await anyio.to_thread.run_sync(worker, redis_server.url, api.base_url, log)
            )
        store = RedisStore(redis_server.url, poll=False)
        async with AnyFast(KEY, base_url=api.base_url, store=store) as adder:
            ids = await create(adder, TASKS)
            before = await anyio.to_thread.run_sync(api.polls)
            async with adder.watcher(timeout=None) as watcher:
                handles = watcher.add_many(ids)
                outcomes: dict[str, object] = {}
                killed = False
                # The killed worker's tasks wait out its 10-second leases here.
                with anyio.fail_after(120):
                    for handle in handles:
                        try:
                            outcomes[handle.task_id] = await handle.wait()
                        except TaskFailedError as exc:
                            outcomes[handle.task_id] = exc
                        if len(outcomes) == TASKS // 6 and not killed:
                            workers[0].send_signal(signal.SIGKILL)
                            workers[0].wait()
                            killed = True
            polls_fleet = await anyio.to_thread.run_sync(api.polls) - before
            # A task the killed worker had ended but not delivered is delivered again by
            # another once its lease runs out: wait for that.
            await every_task_delivered(logs, ids)
    finally:
        for process in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(timeout=30)
            if process.stdout is not None:
                process.stdout.close()
        api.close()

    for i, task_id in enumerate(ids):
        outcome = outcomes[task_id]
        if i % 10 == 9:
            assert isinstance(outcome, TaskFailedError), (task_id, outcome)
            assert outcome.reason == "content moderation"
        else:
            assert isinstance(outcome, Task), (task_id, outcome)
            assert outcome.result_url is not None
    delivered = [line for log in logs for line in log.read_text().split()]
    counts = Counter(delivered)
    assert set(counts) == set(ids), "on_terminal ran for every task"
    twice = {task_id for task_id, n in counts.items() if n > 1}
    assert twice <= set(logs[0].read_text().split()), "duplicates only from the killed worker"
    assert set(logs[0].read_text().split()), "the killed worker had delivered some"
    assert polls_fleet <= 1.1 * polls_alone, (polls_fleet, polls_alone)


@pytest.mark.timeout(240)  # above the sum of the test's own guards
async def test_a_restart_of_redis_midway_loses_no_task(
    redis_server: RedisServer,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """Redis is SIGKILLed midway and started again on its files (`appendfsync always`): the
    fleet waits for it, then goes on; every handle gets its outcome and every task is
    delivered."""
    api = await anyio.to_thread.run_sync(FakeAPI, 0.5)
    workers: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    try:
        for log in logs:
            workers.append(
                await anyio.to_thread.run_sync(worker, redis_server.url, api.base_url, log)
            )
        store = RedisStore(redis_server.url, poll=False)
        async with AnyFast(KEY, base_url=api.base_url, store=store) as adder:
            ids = await create(adder, TASKS)
            async with adder.watcher(timeout=None) as watcher:
                outcomes: dict[str, object] = {}
                with anyio.fail_after(90):
                    for handle in watcher.add_many(ids):
                        try:
                            outcomes[handle.task_id] = await handle.wait()
                        except TaskFailedError as exc:
                            outcomes[handle.task_id] = exc
                        if len(outcomes) == TASKS // 6:
                            await anyio.to_thread.run_sync(redis_server.kill)
                            await anyio.to_thread.run_sync(redis_server.start)
            await every_task_delivered(logs, ids)
    finally:
        for process in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(timeout=30)
            if process.stdout is not None:
                process.stdout.close()
        api.close()
    assert len(outcomes) == TASKS
    for i, task_id in enumerate(ids):
        expected = TaskFailedError if i % 10 == 9 else Task
        assert isinstance(outcomes[task_id], expected), (task_id, outcomes[task_id])
    delivered = {line for log in logs for line in log.read_text().split()}
    assert delivered == set(ids), "on_terminal ran for every task"


async def test_anyfast_worker(redis_server: RedisServer, tmp_path: Path) -> None:  # noqa: F811
    """`anyfast worker` polls the fleet's tasks and runs an on_terminal hook given as an
    import path; SIGTERM gives the tasks it holds back at once and exits 0."""
    (tmp_path / "hooks.py").write_text(
        "def save(update):\n"
        f"    with open({str(tmp_path / 'saved.txt')!r}, 'a') as out:\n"
        "        out.write(update.task_id + '\\n')\n"
    )
    async with FakeAnyFast(api_key=KEY) as api:
        done = [api.add_task(f"d{i}", stages=success()).task_id for i in range(10)]
        stuck = [
            api.add_task(f"s{i}", stages=[Stage(status="QUEUED", polls=100_000)]).task_id
            for i in range(5)
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFAST_")}
        env.update(ANYFAST_API_KEY=KEY, ANYFAST_BASE_URL=api.base_url, PYTHONPATH=str(tmp_path))
        command = ["worker", "--store", redis_server.url, "--poll-interval", "0.05"]
        command += ["--on-terminal", "hooks:save", "--jsonl"]
        process = await anyio.open_process(
            [sys.executable, "-m", "anyfast_async", *command], env=env
        )
        async with process:
            store = RedisStore(redis_server.url, poll=False)
            async with AnyFast(KEY, base_url=api.base_url, store=store) as adder:
                async with adder.watcher(timeout=None) as watcher:
                    handles = watcher.add_many(done)
                    watcher.add_many(stuck)
                    with anyio.fail_after(30):
                        tasks = [await handle.wait() for handle in handles]
                        while not all(api.polls(task_id) for task_id in stuck):
                            await anyio.sleep(0.05)
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(30):
                    assert process.stdout is not None
                    stdout = b"".join([chunk async for chunk in process.stdout])
                    assert await process.wait() == 0
                given_back = await store.claim(10)
    assert all(task.result_url for task in tasks)
    outcomes = [json.loads(line) for line in stdout.decode().splitlines()]
    assert sorted(o["task_id"] for o in outcomes) == sorted(done)
    assert {o["outcome"] for o in outcomes} == {"succeeded"}
    assert sorted((tmp_path / "saved.txt").read_text().split()) == sorted(done)
    assert sorted(c.task_id for c in given_back) == sorted(stuck), "due again at once"


async def test_anyfast_worker_needs_redis(tmp_path: Path) -> None:
    result = await anyio.run_process(
        [sys.executable, "-m", "anyfast_async", "worker", "--store", str(tmp_path / "s.db")],
        check=False,
        env={**os.environ, "ANYFAST_API_KEY": KEY},
    )
    assert result.returncode == 2
    assert b"needs a Redis store" in result.stderr


def videos_in(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir()]


async def test_anyfast_resume_on_redis(redis_server: RedisServer, tmp_path: Path) -> None:  # noqa: F811
    """`anyfast resume --store redis://...` polls with the fleet until the store has nothing
    left to watch or deliver, downloading each video."""
    videos = tmp_path / "videos"
    async with FakeAnyFast(api_key=KEY) as api, FakeAnyFast() as storage:
        ids = []
        for i in range(8):
            url = storage.add_file(f"v{i}.mp4", b"V" * 100)
            ids.append(api.add_task(f"r{i}", stages=success(url)).task_id)
        async with RedisStore(redis_server.url) as store:
            for task_id in ids:
                store.watching(task_id, None)  # left by a process that went away
            await store.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFAST_")}
        env.update(ANYFAST_API_KEY=KEY, ANYFAST_BASE_URL=api.base_url)
        with anyio.fail_after(60):
            command = ["resume", "--store", redis_server.url, "--poll-interval", "0.05"]
            command += ["--download-to", str(videos), "--jsonl"]
            result = await anyio.run_process(
                [sys.executable, "-m", "anyfast_async", *command], env=env, check=False
            )
    assert result.returncode == 0, result.stderr.decode()
    outcomes = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert sorted(o["task_id"] for o in outcomes) == sorted(ids)
    assert sorted(videos_in(videos)) == sorted(f"{i}.mp4" for i in ids)
