"""Workers: several processes, each with one watcher, taking task ids from a Redis queue (arq).

Each worker process opens one AnyFast client and one watcher for its whole life. One arq job per
task id adds the id to the watcher, waits for the task to end and returns the outcome as a dict.
The job id is derived from the task id, so a task enqueued twice is watched once.

By default this is a self-checking demo: an in-process FakeAnyFast server with 48 tasks (some of
them fail), two worker processes, one job per task. It checks that every task was handled exactly
once, with the outcome it was scripted to have, and that both workers took part. It needs a Redis
server (for example `apt-get install redis-server`) and REDIS_URL:

    redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes
    REDIS_URL=redis://127.0.0.1:6390/0 python examples/worker_arq.py

With real tasks: start workers (on as many machines as you like), then enqueue task ids; the
second command prints each task's outcome as it comes:

    ANYFAST_API_KEY=sk-... ANYFAST_STORE=worker-1.db REDIS_URL=redis://... \
        python examples/worker_arq.py worker
    REDIS_URL=redis://... python examples/worker_arq.py enqueue asyntask_1 asyntask_2 ...

Needs `pip install arq` (it brings redis-py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import uuid
import warnings
from asyncio.subprocess import Process
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import IO, Any, cast

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.cron import CronJob
from arq.jobs import Job
from arq.typing import StartupShutdown, WorkerCoroutine
from arq.worker import Function, create_worker

from anyfast_async import (
    AnyFast,
    AnyFastError,
    PollPolicy,
    SQLiteStore,
    TaskFailedError,
    Watcher,
)
from anyfast_async.testing import FakeAnyFast

REDIS_URL = os.environ.get("REDIS_URL", "")
QUEUE = os.environ.get("ARQ_QUEUE", "anyfast:watch")
WATCH_TIMEOUT = 900  # each task's deadline, from its job's start: generation takes 1 to 5 min
JOB_TIMEOUT = WATCH_TIMEOUT + 60  # longer, so a job ends with the watcher's outcome, not arq's
POLL = os.environ.get("WORKER_POLL_INTERVAL")  # the demo polls fast; unset: the SDK's cadence
STORE = os.environ.get("ANYFAST_STORE")  # this worker's task store file, if any

Outcome = dict[str, str | int | None]


def job_id(task_id: str) -> str:
    return f"watch:{task_id}"  # one arq job per task id, however often it is enqueued


async def submit(redis: ArqRedis, task_id: str) -> Job | None:
    """Enqueue a job for the task; None if one is already queued or running, or its result kept."""
    return await redis.enqueue_job("watch_task", task_id, _job_id=job_id(task_id))


# -- the worker ---------------------------------------------------------------------------------


async def startup(ctx: dict[str, Any]) -> None:
    """Open one client and one watcher for the worker's whole life."""
    async with contextlib.AsyncExitStack() as stack:
        # A task store of this worker's own (one process owns a store): a restarted worker
        # goes on polling what it was watching at once, and the job that arq runs again for
        # a task joins that watch.
        store = SQLiteStore(STORE) if STORE else None
        # ANYFAST_API_KEY, ANYFAST_BASE_URL
        client = await stack.enter_async_context(AnyFast(store=store))
        poll = PollPolicy.fixed(float(POLL)) if POLL else None
        watcher = client.watcher(concurrency=64, timeout=WATCH_TIMEOUT, poll=poll)
        ctx["watcher"] = await stack.enter_async_context(watcher)
        if store is not None:
            await ctx["watcher"].resume()
        ctx["stack"] = stack.pop_all()  # closed by shutdown()
    await ctx["redis"].sadd(f"{QUEUE}:workers", os.getpid())  # "ready", for the demo


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["redis"].srem(f"{QUEUE}:workers", os.getpid())
    await ctx["stack"].aclose()  # stops the watcher's polling, then closes the client


async def watch_task(ctx: dict[str, Any], task_id: str) -> Outcome:
    """The job: watch one task until it ends, and report how it ended.

    The task's end, success or not, is the job's result. The job fails only when it cannot
    watch at all: an id that is not a string or is empty, or a watcher closing under it.
    """
    watcher: Watcher = ctx["watcher"]
    outcome: Outcome = {"task_id": task_id, "worker": os.getpid()}
    try:
        task = await watcher.add(task_id).wait()
    except TaskFailedError as exc:
        outcome |= {"status": "FAILURE", "error": "TaskFailedError", "message": exc.reason}
    except AnyFastError as exc:  # WaitTimeoutError, TaskNotFoundError, AuthenticationError...
        outcome |= {"status": "ERROR", "error": type(exc).__name__, "message": str(exc)}
    else:
        outcome |= {"status": task.status.value, "result_url": task.result_url}
    await ctx["redis"].hincrby(f"{QUEUE}:handled", task_id, 1)  # for the demo's exactly-once check
    return outcome


class WorkerSettings:  # annotated with arq's own types, so that mypy checks them
    functions: Sequence[WorkerCoroutine | Function] = (watch_task,)
    cron_jobs: Sequence[CronJob] | None = None
    on_startup: StartupShutdown | None = startup
    on_shutdown: StartupShutdown | None = shutdown
    redis_settings = RedisSettings.from_dsn(REDIS_URL or "redis://localhost:6379/0")
    queue_name = QUEUE
    max_jobs = int(os.environ.get("WORKER_MAX_JOBS", "200"))  # jobs at once: each one waits
    queue_read_limit = 2000  # more than the jobs running on all workers at once (see the docs)
    job_timeout = JOB_TIMEOUT
    job_completion_wait = 10  # SIGTERM: no new jobs; 10 s on, running ones go back to the queue
    keep_result = 3600  # results are kept 1 h, and meanwhile the same task id is not re-enqueued


async def run_worker() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    worker = create_worker(WorkerSettings)  # made in asyncio.run(): arq takes the running loop
    with contextlib.suppress(asyncio.CancelledError):
        await worker.async_run()  # until SIGTERM or SIGINT: arq then cancels its main task
    with warnings.catch_warnings():  # arq 0.28 calls redis-py's deprecated close()
        warnings.filterwarnings("ignore", "Call to deprecated close", DeprecationWarning)
        await worker.close()  # waits for the jobs, runs shutdown(), closes the Redis pool


# -- enqueueing ---------------------------------------------------------------------------------


async def outcome_of(job: Job) -> Outcome:
    """The job's result; a job that failed (or outlived the wait) is reported, not raised."""
    try:
        outcome: Outcome = await job.result(timeout=JOB_TIMEOUT + 60)
    except Exception as exc:  # arq re-raises whatever the job raised
        return {"job_id": job.job_id, "status": "JOB_FAILED", "error": repr(exc)}
    return outcome


async def enqueue(task_ids: list[str]) -> None:
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL), default_queue_name=QUEUE)
    try:
        jobs = []
        for task_id in task_ids:  # an id already queued: wait for the result of its job
            jobs.append(await submit(redis, task_id) or Job(job_id(task_id), redis, QUEUE))
        for result in asyncio.as_completed([outcome_of(job) for job in jobs]):
            print(await result)
    finally:
        await redis.aclose()


# -- the demo -----------------------------------------------------------------------------------


async def start_worker(env: dict[str, str], log: IO[bytes]) -> Process:
    flags = [f"-W{option}" for option in sys.warnoptions]  # `-W error` here: there too
    command = [sys.executable, *flags, __file__, "worker"]
    return await asyncio.create_subprocess_exec(*command, env=env, stdout=log, stderr=log)


async def stop_worker(worker: Process) -> None:
    """SIGTERM, as a supervisor would send; SIGKILL if it is still running 20 s later."""
    with contextlib.suppress(ProcessLookupError):
        worker.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(worker.wait(), 20)
    except asyncio.TimeoutError:
        worker.kill()  # its exit status is then -9, a failure
        await worker.wait()


async def demo() -> None:
    queue = f"anyfast-demo:{uuid.uuid4().hex[:12]}"  # a fresh queue for each run
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL), default_queue_name=queue)
    task_ids: list[str] = []
    try:
        with tempfile.TemporaryFile() as log:  # what the workers print
            await run_demo(redis, queue, task_ids, log)
    finally:  # delete this run's keys
        keys = [queue, f"{queue}:health-check", f"{queue}:workers", f"{queue}:handled"]
        for prefix in (job_key_prefix, result_key_prefix, in_progress_key_prefix, "arq:retry:"):
            keys += [prefix + job_id(task_id) for task_id in task_ids]
        await redis.delete(*keys)
        await redis.aclose()


async def run_demo(redis: ArqRedis, queue: str, task_ids: list[str], log: IO[bytes]) -> None:
    async with FakeAnyFast(advance="time") as server:
        env = dict(os.environ, ARQ_QUEUE=queue, WORKER_MAX_JOBS="16", WORKER_POLL_INTERVAL="0.2")
        env |= {"ANYFAST_API_KEY": server.api_key, "ANYFAST_BASE_URL": server.base_url}
        workers: list[Process] = []
        stores = tempfile.mkdtemp(prefix="anyfast-demo-")
        try:
            for index in range(2):  # each worker with a task store of its own
                store = os.path.join(stores, f"worker-{index}.db")
                workers.append(await start_worker(env | {"ANYFAST_STORE": store}, log))
            for _ in range(200):  # until both workers are ready (or one exited), 20 s at most
                ready = await cast("Awaitable[int]", redis.scard(f"{queue}:workers")) == 2
                if ready or any(worker.returncode is not None for worker in workers):
                    break
                await asyncio.sleep(0.1)
            if not ready:
                raise SystemExit("the workers did not start:\n" + read(log))
            # Added only now, as their stages are timed from now on: 48 tasks of 3 s, and at
            # most 16 jobs at once per worker, so neither worker can take all of them.
            success = FakeAnyFast.default_success_stages(seconds=0.75)
            failure = FakeAnyFast.failure_stages("content moderation (demo)", seconds=1.0)
            for task in [*server.add_tasks(36, success), *server.add_tasks(12, failure)]:
                task_ids.append(task.task_id)
            jobs = [await submit(redis, task_id) for task_id in task_ids]
            again = await submit(redis, task_ids[0])  # None: that task has its job already
            print(f"enqueued {len(jobs)} jobs; enqueueing {task_ids[0]} again gives {again}")
            results = [job.result(timeout=30, poll_delay=0.1) for job in jobs if job]
            outcomes: list[Outcome] = await asyncio.gather(*results)
            handled = await cast("Awaitable[dict[bytes, bytes]]", redis.hgetall(f"{queue}:handled"))
        finally:
            await asyncio.gather(*(stop_worker(worker) for worker in workers))
            shutil.rmtree(stores, ignore_errors=True)
        print("outcomes:", dict(Counter(outcome["status"] for outcome in outcomes)))
        print("jobs per worker:", dict(Counter(outcome["worker"] for outcome in outcomes)))
        problems = check(server, workers, outcomes, handled, read(log))
        if again is not None:
            problems.append("enqueueing a task id twice made a second job")
        if problems:
            raise SystemExit("FAILED:\n  " + "\n  ".join(problems) + "\n" + read(log))
        print("every task was handled exactly once, as scripted, and by both workers")


def check(
    server: FakeAnyFast,
    workers: list[Process],
    outcomes: list[Outcome],
    handled: dict[bytes, bytes],
    output: str,
) -> list[str]:
    problems = [f"worker {w.pid} exited with {w.returncode}" for w in workers if w.returncode]
    if "Traceback" in output:
        problems.append("a worker printed a traceback")
    counts = {key.decode(): int(value) for key, value in handled.items()}
    if sorted(counts) != sorted(server.tasks) or set(counts.values()) != {1}:
        problems.append(f"not every task was handled exactly once: {counts}")
    if len(outcomes) != len(server.tasks):
        problems.append(f"{len(outcomes)} outcomes for {len(server.tasks)} tasks")
    for outcome in outcomes:
        last = server.tasks[str(outcome["task_id"])].stages[-1]  # as the task was scripted
        found = outcome.get("result_url") or outcome.get("message")  # the URL, or the reason
        if (outcome["status"], found) != (last.status, last.result_url or last.fail_reason):
            problems.append(f"{outcome} is not what was scripted: {last}")
    if {outcome["worker"] for outcome in outcomes} != {worker.pid for worker in workers}:
        problems.append("each of the two workers should have handled some of the jobs")
    return problems


def read(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


def main() -> None:
    role = sys.argv[1] if len(sys.argv) > 1 else "demo"
    if not REDIS_URL:
        sys.exit("set REDIS_URL, for example REDIS_URL=redis://127.0.0.1:6379/0")
    if role == "worker":
        asyncio.run(run_worker())
    elif role == "enqueue" and len(sys.argv) > 2:
        asyncio.run(enqueue(sys.argv[2:]))
    elif role == "demo":
        asyncio.run(demo())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
