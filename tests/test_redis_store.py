"""The task store on Redis, against a real redis-server started for the tests (Debian's
package; `nox -s tests` installs it in CI): its records, its leases shared by several
stores as by several processes, and what survives a restart of Redis."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from anyfast_async import (
    AnyFast,
    Claim,
    RedisStore,
    StoreError,
    TaskFailedError,
    TaskStore,
    WaitTimeoutError,
)
from anyfast_async.testing import FakeAnyFast, Fault, Stage

from .test_telemetry import Otel

pytestmark = pytest.mark.anyio

URL = "https://cdn.example/v.mp4"


class RedisServer:
    """A redis-server of our own on a free loopback port, its data in ``folder``, with the
    settings that lose nothing acknowledged (AOF, fsync before each reply)."""

    def __init__(self, folder: Path) -> None:
        executable = os.environ.get("ANYFAST_REDIS_SERVER") or shutil.which("redis-server")
        if executable is None:
            if os.environ.get("CI"):
                pytest.fail("redis-server is required in CI")
            pytest.skip("no redis-server (apt-get install redis-server)")
        self.executable = executable
        self.folder = folder
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (a fixed command line)
            [
                *(self.executable, "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always"),
                *("--save", "", "--daemonize", "no", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no chance to save anything more."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()


async def test_a_create_and_a_watch_are_recorded(
    redis_server: RedisServer, server: FakeAnyFast
) -> None:
    """The client records on Redis what it records on SQLite: the intent before the create,
    the task, its statuses, its outcome and that it was handled."""
    store = RedisStore(redis_server.url)
    assert isinstance(store, TaskStore)
    server.create_stages = [Stage(status="QUEUED"), Stage(status="SUCCESS", result_url="u")]
    async with AnyFast(server.api_key, base_url=server.base_url, store=store) as client:
        created = await client.create_text_to_video("A cat")
        (record,) = await store.tasks()
        assert (record.task_id, record.state, record.model) == (
            created.task_id,
            "watching",
            "happyhorse-1.0-t2v",
        )
        assert record.body_sha256 is not None
        async with client.watcher(poll_interval=0.01, on_terminal=lambda u: None) as watcher:
            await watcher.add(created.task_id).wait()
        (record,) = await store.tasks()
    assert (record.state, record.status, record.error, record.handled) == (
        "finished",
        "SUCCESS",
        None,
        True,
    )
    assert record.finished_at is not None
    assert record.finished_at >= record.created_at


async def test_every_process_sees_the_same_records(redis_server: RedisServer) -> None:
    """Two stores on one Redis (as two processes): what one writes the other reads, and a
    namespace keeps fleets apart."""
    async with (
        RedisStore(redis_server.url) as one,
        RedisStore(redis_server.url) as two,
        RedisStore(redis_server.url, namespace="other") as other,
    ):
        one.watching("t1", 123.0)
        one.watching("t1", 456.0)  # the first deadline is kept
        intent = await one.intend(b'{"model": "m", "prompt": "p"}')
        await one.create_failed(intent, maybe_created=True, error="ServerError: HTTP 500")
        gone = await one.intend(b"{}")
        await one.create_failed(gone, maybe_created=False, error="BadRequestError")
        await one.flush()
        records = {r.task_id: r for r in await two.tasks()}
        assert await other.tasks() == []
    assert set(records) == {"t1", None}
    assert records["t1"].deadline == 123.0
    assert records[None].state == "unknown"
    assert records[None].error == "ServerError: HTTP 500"


async def test_a_task_is_held_by_one_store_at_a_time(redis_server: RedisServer) -> None:
    """Claims never overlap; a task given back is due again; a token that no longer holds
    cannot renew or give back."""
    async with (
        RedisStore(redis_server.url) as one,
        RedisStore(redis_server.url) as two,
    ):
        for i in range(100):
            one.watching(f"t{i}", None)
        got_one, got_two = await one.claim(60), await two.claim(60)
        assert len(got_one) == 60
        assert len(got_two) == 40
        assert not {c.task_id for c in got_one} & {c.task_id for c in got_two}
        assert await one.claim(10) == [], "every task is held"
        assert await one.renew(got_one) == []
        assert await two.renew([Claim("t0", "forged:1")]) == ["t0"]
        assert await one.give_back(got_one[:5]) == []
        again = await two.claim(10)
        assert {c.task_id for c in again} == {c.task_id for c in got_one[:5]}
        assert await one.renew(got_one[:5]) == [c.task_id for c in got_one[:5]], "now two's"
        await one.finished(got_one[5].task_id, "SUCCESS", None, handled=True)
        assert await one.renew(got_one[5:6]) == [got_one[5].task_id], "a finished task"
        # Finished, outcome not handled: still held (on_terminal runs), and if given back
        # (its holder died), claimed again to be delivered again.
        await one.finished(got_one[6].task_id, "SUCCESS", None)
        assert await one.renew(got_one[6:7]) == []
        await one.give_back(got_one[6:7])
        (redelivered,) = await two.claim(1)
        assert (redelivered.task_id, redelivered.redeliver) == (got_one[6].task_id, True)
        await two.handled(redelivered.task_id)
        assert await two.renew([redelivered]) == [redelivered.task_id]


async def test_a_dead_holder_loses_its_tasks_when_its_lease_runs_out(
    redis_server: RedisServer,
) -> None:
    """A store that claims and never renews (a process that died) holds its tasks only for
    its lease, measured by Redis's clock: then another store claims them."""
    async with (
        RedisStore(redis_server.url, lease=3.0) as dead,
        RedisStore(redis_server.url) as alive,
    ):
        dead.watching("t1", None)
        # Read before the claim: the lease starts after this, so no claim by another store
        # may succeed until 3 s from now have passed.
        claimed_at = time.monotonic()
        (held,) = await dead.claim(1)
        assert await alive.claim(1) == [], "held"
        with anyio.fail_after(30):
            while not (taken := await alive.claim(1)):
                await anyio.sleep(0.05)
        assert time.monotonic() - claimed_at >= 2.95, "not before its lease ran out"
        assert taken[0].task_id == "t1"
        assert await dead.renew([held]) == ["t1"], "the dead holder's token no longer holds"


async def test_a_restart_of_redis_loses_nothing_acknowledged(
    redis_server: RedisServer,
) -> None:
    """With `appendonly yes` and `appendfsync always`, every write Redis answered is on
    disk: SIGKILL Redis, start it again on its files, and every record and every due task
    is there."""
    async with RedisStore(redis_server.url) as store:
        for i in range(500):
            store.watching(f"t{i}", None)
        for i in range(0, 500, 2):
            store.status(f"t{i}", "IN_PROGRESS")
        await store.finished("t1", "FAILURE", "moderation", handled=True)
        await store.flush()
    redis_server.kill()
    redis_server.start()
    async with RedisStore(redis_server.url) as store:
        records = {r.task_id: r for r in await store.tasks()}
        claims = await store.claim(1000)
    assert len(records) == 500
    assert records["t2"].status == "IN_PROGRESS"
    assert (records["t1"].state, records["t1"].error) == ("finished", "moderation")
    assert len(claims) == 499, "every unfinished task is due"


async def test_the_password_is_never_shown(redis_server: RedisServer) -> None:
    store = RedisStore("redis://:s3cret-PASSWORD@127.0.0.1:1/0")
    assert "s3cret" not in repr(store)
    with pytest.raises(StoreError) as info:
        await store.open()
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="lease"):
        RedisStore("redis://localhost", lease=0)
    with pytest.raises(ValueError, match="namespace"):
        RedisStore("redis://localhost", namespace="a{b}")


async def test_a_task_added_in_one_process_is_polled_by_another(
    redis_server: RedisServer, server: FakeAnyFast
) -> None:
    """A process that only adds and waits (poll=False) gets every outcome, whichever
    process polled the task; on_terminal runs once per task, in the process that polled it."""
    for i in range(30):
        stages = [
            Stage(status="QUEUED"),
            Stage(status="SUCCESS", result_url=f"https://cdn.example/{i}.mp4"),
        ]
        if i % 10 == 9:
            stages = [Stage(status="QUEUED"), Stage(status="FAILURE", fail_reason="moderation")]
        server.add_task(f"t{i}", stages=stages)
    delivered: list[str] = []
    adder_store = RedisStore(redis_server.url, poll=False)
    poller_store = RedisStore(redis_server.url)
    async with (
        AnyFast(server.api_key, base_url=server.base_url, store=adder_store) as adder,
        AnyFast(server.api_key, base_url=server.base_url, store=poller_store) as poller,
        adder.watcher(poll_interval=0.01) as waiting,
        poller.watcher(
            poll_interval=0.01, on_terminal=lambda u: delivered.append(u.task_id)
        ) as polling,
    ):
        handles = waiting.add_many([f"t{i}" for i in range(30)])
        with anyio.fail_after(30):
            outcomes = {}
            for handle in handles:
                try:
                    outcomes[handle.task_id] = (await handle.wait()).result_url
                except TaskFailedError as exc:
                    outcomes[handle.task_id] = f"failed: {exc.reason}"
        assert len(polling) == 0
    assert outcomes == {
        f"t{i}": "failed: moderation" if i % 10 == 9 else f"https://cdn.example/{i}.mp4"
        for i in range(30)
    }
    assert sorted(delivered) == sorted(f"t{i}" for i in range(30))
    polled_by_adder = [r for r in server.requests if r.headers.get("Authorization") and r.task_id]
    assert len(polled_by_adder) == 60, "two polls a task, all by the poller"


async def test_a_429_in_one_process_pauses_the_whole_fleet(
    redis_server: RedisServer, server: FakeAnyFast
) -> None:
    """One process is answered 429 with Retry-After: 4; the other stops polling too (it
    takes the fleet's pause from Redis within a quarter of a second) and both go on after
    the pause."""
    for i in range(40):
        server.add_task(f"t{i}", stages=[Stage(status="QUEUED", polls=100_000)])

    def polls(since: float, until: float = math.inf) -> list[float]:
        return [
            r.time
            for r in server.requests
            if r.task_id and r.status == 200 and since < r.time < until
        ]

    async with (
        AnyFast(
            server.api_key, base_url=server.base_url, store=RedisStore(redis_server.url, hold=20)
        ) as one,
        AnyFast(
            server.api_key, base_url=server.base_url, store=RedisStore(redis_server.url, hold=20)
        ) as two,
        one.watcher(poll_interval=0.05, timeout=None) as first,
        two.watcher(poll_interval=0.05, timeout=None) as second,
    ):
        first.add_many([f"t{i}" for i in range(40)])
        with anyio.fail_after(30):
            while len(first) < 20 or len(second) < 20 or len(polls(0)) < 200:
                await anyio.sleep(0.05)  # both hold 20 tasks and poll them
            server.inject(Fault.rate_limited(retry_after="4"))
            while not (refused := [r.time for r in server.requests if r.status == 429]):
                await anyio.sleep(0.05)
            answered = refused[0]
            while not polls(answered + 4.0):  # the pause is over, and polling went on
                await anyio.sleep(0.05)
    # The other process takes the pause within half a second here; 1.5 s are allowed.
    assert polls(answered + 1.5, answered + 3.9) == [], "the whole fleet paused"


async def test_two_processes_adding_one_task_both_get_its_outcome(
    redis_server: RedisServer, server: FakeAnyFast
) -> None:
    server.add_task("t1", stages=[Stage(status="QUEUED"), Stage(status="SUCCESS", result_url=URL)])
    async with (
        AnyFast(
            server.api_key, base_url=server.base_url, store=RedisStore(redis_server.url, poll=False)
        ) as one,
        AnyFast(
            server.api_key, base_url=server.base_url, store=RedisStore(redis_server.url, poll=False)
        ) as two,
        AnyFast(
            server.api_key, base_url=server.base_url, store=RedisStore(redis_server.url)
        ) as poller,
        one.watcher() as first,
        two.watcher() as second,
        poller.watcher(poll_interval=0.05),
    ):
        handles = [first.add("t1"), second.add("t1")]
        with anyio.fail_after(30):
            results = [await handle.wait() for handle in handles]
    assert [task.result_url for task in results] == [URL, URL]
    assert server.polls("t1") == 2


async def test_a_task_watched_again_after_it_ended_gets_its_recorded_outcome(
    redis_server: RedisServer, server: FakeAnyFast
) -> None:
    server.add_task("t1", stages=[Stage(status="SUCCESS", result_url=URL)])
    async with (
        AnyFast(
            server.api_key, base_url=server.base_url, store=RedisStore(redis_server.url, poll=False)
        ) as adder,
        AnyFast(
            server.api_key, base_url=server.base_url, store=RedisStore(redis_server.url)
        ) as poller,
        adder.watcher() as watcher,
        poller.watcher(poll_interval=0.05, on_terminal=lambda u: None),
    ):
        with anyio.fail_after(30):
            await watcher.add("t1").wait()
            again = await watcher.add("t1").wait()
    assert again.result_url == URL
    assert server.polls("t1") == 1, "its outcome is final: told, not fetched again"


async def test_with_no_poller_a_waiter_still_times_out(redis_server: RedisServer) -> None:
    """A task added where nothing polls ends with WaitTimeoutError a few seconds after its
    deadline (time for a holder's news to arrive), not never."""
    async with (
        AnyFast(
            "sk-x", base_url="http://127.0.0.1:9", store=RedisStore(redis_server.url, poll=False)
        ) as adder,
        adder.watcher() as watcher,
    ):
        handle = watcher.add("t1", timeout=0.5)
        started = time.monotonic()
        with anyio.fail_after(30), pytest.raises(WaitTimeoutError):
            await handle.wait()
    assert time.monotonic() - started >= 0.5


async def test_a_one_off_wait_is_not_polled_by_the_fleet_too(
    redis_server: RedisServer, server: FakeAnyFast
) -> None:
    """client.wait() on a client with a RedisStore watches the task itself: the fleet's
    pollers do not take it as well."""
    server.add_task(
        "t1",
        stages=[Stage(status="QUEUED", polls=5), Stage(status="SUCCESS", result_url=URL)],
    )
    async with (
        AnyFast(
            server.api_key, base_url=server.base_url, store=RedisStore(redis_server.url)
        ) as waiting,
        AnyFast(
            server.api_key, base_url=server.base_url, store=RedisStore(redis_server.url)
        ) as poller,
        poller.watcher(poll_interval=0.05),
    ):
        with anyio.fail_after(30):
            task = await waiting.wait("t1", poll_interval=0.05)
    assert task.result_url == URL
    assert server.polls("t1") == 6


async def test_the_adding_process_reads_the_outcomes_as_updates(
    redis_server: RedisServer, server: FakeAnyFast
) -> None:
    """watcher.updates() in the process that added the tasks yields each task's terminal
    update, whichever process polled it."""
    for i in range(5):
        server.add_task(
            f"u{i}", stages=[Stage(status="QUEUED"), Stage(status="SUCCESS", result_url=URL)]
        )
    async with (
        AnyFast(
            server.api_key, base_url=server.base_url, store=RedisStore(redis_server.url, poll=False)
        ) as adder,
        AnyFast(
            server.api_key, base_url=server.base_url, store=RedisStore(redis_server.url)
        ) as poller,
        adder.watcher() as watcher,
        poller.watcher(poll_interval=0.05),
    ):
        updates = watcher.updates()
        watcher.add_many([f"u{i}" for i in range(5)])
        seen = {}
        with anyio.fail_after(30):
            async with updates:
                async for update in updates:
                    seen[update.task_id] = update
                    if len(seen) == 5:
                        break
    assert all(u.is_terminal and u.succeeded for u in seen.values())
    assert {u.task.result_url for u in seen.values() if u.task} == {URL}


async def test_a_fleet_traces_each_task_where_it_was_added_and_counts_it_where_polled(
    redis_server: RedisServer, server: FakeAnyFast
) -> None:
    """The adding process has the span of each task it waits for, ended with the outcome
    the poller found; the outcome is counted once, by the process that polled the task."""
    server.add_task("ok1", stages=[Stage(status="QUEUED"), Stage(status="SUCCESS")])
    server.add_task("ok2", stages=[Stage(status="QUEUED"), Stage(status="SUCCESS")])
    server.add_task("bad", stages=[Stage(status="FAILURE", fail_reason="moderation")])
    adding, polling = Otel(), Otel()
    async with (
        adding.client(server, store=RedisStore(redis_server.url, poll=False)) as adder,
        polling.client(server, store=RedisStore(redis_server.url)) as poller,
        adder.watcher(poll_interval=0.01) as waiting,
        poller.watcher(poll_interval=0.01),
    ):
        handles = waiting.add_many(["ok1", "ok2", "bad"])
        with anyio.fail_after(30):
            for handle in handles:
                with contextlib.suppress(TaskFailedError):
                    await handle.wait()
        assert adding.value("anyfast.task.active").value == 0
    spans = {
        dict(s.attributes or {})["anyfast.task.id"]: s for s in adding.finished("anyfast.watch")
    }
    assert set(spans) == {"ok1", "ok2", "bad"}
    outcomes = {k: dict(s.attributes or {})["anyfast.task.outcome"] for k, s in spans.items()}
    assert outcomes == {"ok1": "succeeded", "ok2": "succeeded", "bad": "failed"}
    assert {dict(s.attributes or {})["anyfast.task.polls"] for s in spans.values()} == {0}
    assert polling.finished("anyfast.watch") == []  # it polled for others: no span of its own
    assert "anyfast.task.outcomes" not in adding.metrics()
    ended = {"anyfast.task.outcome": "succeeded"}
    assert polling.value("anyfast.task.outcomes", **ended).value == 2
    polls = sum(1 for r in server.requests if r.method == "GET")
    assert polling.value("anyfast.polls").value == polls
    for otel in (adding, polling):
        otel.tracer_provider.shutdown()
        otel.meter_provider.shutdown()
