"""The task store: SQLiteStore on a real SQLite file, and what a client records in it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import anyio
import pytest

from anyfast_async import (
    AnyFast,
    APIConnectionError,
    BadRequestError,
    PollPolicy,
    ResultExpiredError,
    ServerError,
    SQLiteStore,
    StoreError,
    TaskRecord,
    TaskStatus,
    TaskStore,
    TaskUpdate,
    TextToVideo,
    Timeout,
    WaitTimeoutError,
)
from anyfast_async.testing import FakeAnyFast, Fault, Stage

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

FAST = PollPolicy.fixed(1.0)
RUNNING = [Stage(status="IN_PROGRESS", progress="50%")]  # never ends


def client_for(server: FakeAnyFast, store: SQLiteStore, **options: object) -> AnyFast:
    return AnyFast(server.api_key, base_url=server.base_url, store=store, **options)  # type: ignore[arg-type]


# -- the file ----------------------------------------------------------------------------------


async def test_a_store_is_a_wal_sqlite_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "anyfast.db"
    async with SQLiteStore(path) as store:
        assert await store.tasks() == []
        assert "open" in repr(store)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA application_id").fetchone() == (0x41464153,)
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
    async with SQLiteStore(path) as again:  # reopened as it is
        assert await again.tasks() == []


async def test_one_process_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "anyfast.db"
    async with SQLiteStore(path):
        with pytest.raises(StoreError, match="in use by another process"):
            async with SQLiteStore(path):
                pass
    async with SQLiteStore(path):  # released on close
        pass


async def test_a_foreign_or_newer_file_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("PRAGMA user_version=3")
    with pytest.raises(StoreError, match="not an anyfast-async task store"):
        await SQLiteStore(foreign).open()
    newer = tmp_path / "newer.db"
    async with SQLiteStore(newer):
        pass
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="newer anyfast-async"):
        await SQLiteStore(newer).open()


async def test_many_writes_are_committed_in_few_transactions(tmp_path: Path) -> None:
    """Writes queued together share a transaction; each write's own await returns once it is
    committed, and a second connection then reads it."""
    async with SQLiteStore(tmp_path / "s.db") as store:
        for i in range(1000):
            store.watching(f"t{i}", deadline=None)
        async with anyio.create_task_group() as tg:
            for i in range(0, 1000, 10):
                tg.start_soon(store.finished, f"t{i}", "SUCCESS", None)
        records = await store.tasks()
        with sqlite3.connect(tmp_path / "s.db") as db:
            finished = db.execute("SELECT count(*) FROM tasks WHERE state = 'finished'")
            assert finished.fetchone() == (100,)
    assert len(records) == 1000
    assert sum(r.state == "finished" for r in records) == 100


# -- what a client records ---------------------------------------------------------------------


async def test_a_create_is_recorded_before_it_is_sent_and_its_id_after(
    server: FakeAnyFast, tmp_path: Path
) -> None:
    seen_before_send: list[int] = []
    store = SQLiteStore(tmp_path / "s.db")

    async with client_for(server, store) as client:

        def stages(body: dict[str, object]) -> list[Stage]:
            # The server looks at the store's file while it handles the create.
            with sqlite3.connect(tmp_path / "s.db") as db:
                seen_before_send.append(
                    db.execute("SELECT count(*) FROM tasks WHERE state = 'creating'").fetchone()[0]
                )
            return RUNNING

        server.create_stages = stages
        created = await client.create_text_to_video("A cat")
        (record,) = await store.tasks()
    assert seen_before_send == [1]
    assert record.task_id == created.task_id
    assert record.model == "happyhorse-1.0-t2v"
    assert record.state == "watching"
    assert record.unfinished


@pytest.mark.parametrize(
    ("fault", "error", "kept"),
    [
        (Fault.http(400, {"error": {"message": "bad"}}), BadRequestError, False),
        (Fault.empty(500), ServerError, True),
        (Fault.slow(60), APIConnectionError, True),  # a timeout after sending
    ],
)
async def test_a_failed_create_is_kept_only_if_it_may_have_made_a_task(
    server: FakeAnyFast, tmp_path: Path, fault: Fault, error: type[Exception], kept: bool
) -> None:
    server.inject(fault)
    store = SQLiteStore(tmp_path / "s.db")
    async with client_for(server, store, timeout=Timeout(total=5), max_retries=0) as client:
        with pytest.raises(error):
            await client.create(TextToVideo(prompt="A cat"))
        records = await store.tasks()
    if kept:
        (record,) = records
        assert record.state == "unknown"
        assert record.task_id is None
        assert record.intent_id
        assert record.error
    else:
        assert records == []


async def test_a_watch_records_status_outcome_and_handling(
    server: FakeAnyFast, tmp_path: Path
) -> None:
    server.add_task("ok")
    server.add_task("bad", stages=FakeAnyFast.failure_stages("moderation"))
    delivered: list[str] = []

    async def deliver(update: TaskUpdate) -> None:
        delivered.append(update.task_id)

    store = SQLiteStore(tmp_path / "s.db")
    async with (
        client_for(server, store) as client,
        client.watcher(poll=FAST, on_terminal=deliver) as watcher,
    ):
        for handle in watcher.add_many(["ok", "bad"]):
            with (
                pytest.raises(Exception, match="moderation")
                if handle.task_id == "bad"
                else (contextlib.nullcontext())
            ):
                await handle.wait()
        records = {r.task_id: r for r in await store.tasks()}
    assert sorted(delivered) == ["bad", "ok"]
    assert records["ok"].state == "finished"
    assert records["ok"].status == "SUCCESS"
    assert records["ok"].error is None
    assert records["ok"].handled
    assert records["bad"].status == "FAILURE"
    assert "moderation" in (records["bad"].error or "")
    assert records["bad"].handled


async def test_resume_picks_up_where_a_dead_watcher_left_off(
    server: FakeAnyFast, tmp_path: Path
) -> None:
    """A first run watches three tasks and dies (its watcher closed mid-watch, one callback
    failing); a second run's resume() takes the unfinished ones back with their original
    deadlines and delivers the unhandled outcome again."""
    server.add_task("slow", stages=[Stage(status="IN_PROGRESS", polls=30), Stage(status="SUCCESS")])
    server.add_task("stuck", stages=RUNNING)
    server.add_task("flaky")
    path = tmp_path / "s.db"

    def refuse(update: TaskUpdate) -> None:
        if update.task_id == "flaky":
            raise RuntimeError("the callback's own bug")

    started = asyncio.get_running_loop().time()
    async with (
        client_for(server, SQLiteStore(path)) as client,
        client.watcher(poll=FAST, on_terminal=refuse, timeout=None) as watcher,
    ):
        watcher.add("slow", timeout=600)
        watcher.add("stuck", timeout=20)
        await watcher.add("flaky").wait()
        await anyio.sleep(5)  # then the process "dies"

    delivered: dict[str, TaskUpdate] = {}
    async with (
        client_for(server, SQLiteStore(path)) as client,
        client.watcher(poll=FAST, on_terminal=lambda u: delivered.setdefault(u.task_id, u)) as w,
    ):
        handles = await w.resume()
        assert sorted(h.task_id for h in handles) == ["flaky", "slow", "stuck"]
        for handle in handles:
            with (
                pytest.raises(WaitTimeoutError)
                if handle.task_id == "stuck"
                else contextlib.nullcontext()
            ):
                await handle.wait()
        stuck_ended = delivered["stuck"]
        records = await client.store.tasks()  # type: ignore[union-attr]
    assert delivered["flaky"].task is not None
    assert delivered["flaky"].task.status is TaskStatus.SUCCESS  # delivered again
    assert delivered["flaky"].redelivered
    assert not delivered["slow"].redelivered
    assert delivered["slow"].succeeded
    # "stuck" kept its 20 s deadline from the first run, not a fresh one.
    assert isinstance(stuck_ended.error, WaitTimeoutError)
    assert all(r.state == "finished" and r.handled for r in records)
    assert asyncio.get_running_loop().time() - started < 40


async def test_resume_needs_a_store(server: FakeAnyFast) -> None:
    async with (
        AnyFast(server.api_key, base_url=server.base_url) as client,
        client.watcher() as watcher,
    ):
        with pytest.raises(RuntimeError, match="task store"):
            await watcher.resume()


async def test_a_task_created_but_never_watched_is_resumed(
    server: FakeAnyFast, tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    async with client_for(server, SQLiteStore(path)) as client:
        created = await client.create_text_to_video("A cat")  # and the process dies
    async with (
        client_for(server, SQLiteStore(path)) as client,
        client.watcher(poll=FAST) as watcher,
    ):
        (handle,) = await watcher.resume()
        task = await handle.wait()
    assert task.task_id == created.task_id
    assert task.status is TaskStatus.SUCCESS


async def test_a_watcher_saves_each_video_before_on_terminal(tmp_path: Path) -> None:
    async with FakeAnyFast(serve_results=True) as server:
        server.add_tasks(5)
        expired = server.add_file("gone.mp4", b"x", expired=True)
        server.add_task(
            "gone", stages=[Stage(status="SUCCESS", progress="100%", result_url=expired)]
        )
        seen: dict[str, TaskUpdate] = {}

        def deliver(update: TaskUpdate) -> None:
            if update.download_path is not None:  # the file is there when we are told
                assert Path(update.download_path).stat().st_size > 0
            seen[update.task_id] = update

        store = SQLiteStore(tmp_path / "s.db")
        # The folder starts empty: nothing to skip. skip_existing's look for a file already
        # there runs in a worker thread (anyio.Path), which the virtual clock cannot see: it
        # would skip ahead meanwhile, firing the timeouts pending.
        async with (
            client_for(server, store) as client,
            client.watcher(
                poll=FAST,
                on_terminal=deliver,
                download_to=tmp_path / "videos",
                skip_existing=False,
            ) as w,
        ):
            for handle in w.add_many(server.tasks):
                await handle.wait()  # the task succeeded, whatever became of its video
            records = {r.task_id: r for r in await store.tasks()}
    assert len(seen) == 6
    assert isinstance(seen["gone"].error, ResultExpiredError)
    assert seen["gone"].download_path is None
    assert "ResultExpiredError" in (records["gone"].error or "")
    assert records["gone"].handled  # recorded as lost, not retried forever
    for task_id in server.tasks:
        if task_id == "gone":
            continue
        assert seen[task_id].succeeded
        assert records[task_id].download_path == seen[task_id].download_path
        assert Path(seen[task_id].download_path or "").parent == tmp_path / "videos"
    assert not list((tmp_path / "videos").glob(".*.part"))


async def test_a_create_left_without_its_answer_becomes_unknown(tmp_path: Path) -> None:
    """A create recorded as being sent by a process that then died (its answer never
    recorded) is "unknown" once the store is opened again: it may have made a task."""
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as store:
        intent = await store.intend(b'{"model": "happyhorse-1.0-t2v", "prompt": "x"}')
        (record,) = await store.tasks()
        assert record.state == "creating"
    async with SQLiteStore(path) as store:
        (record,) = await store.tasks()
    assert record.state == "unknown"
    assert record.intent_id == intent
    assert record.model == "happyhorse-1.0-t2v"
    assert "ended before" in (record.error or "")


class ListStore:
    """A store of one's own, in a list (no durability: the interface is under test here)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, object]] = {}

    async def open(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def intend(self, body: bytes) -> str:
        intent = f"i{len(self.rows)}"
        self.rows[intent] = {"state": "creating", "task_id": None, "deadline": None}
        return intent

    async def created(self, intent_id: str, task_id: str) -> None:
        row = self.rows.pop(intent_id)
        self.rows[task_id] = {**row, "state": "watching", "task_id": task_id}

    async def create_failed(self, intent_id: str, *, maybe_created: bool, error: str) -> None:
        self.rows[intent_id]["state"] = "unknown"

    def watching(self, task_id: str, deadline: float | None) -> None:
        row = self.rows.setdefault(task_id, {"task_id": task_id, "deadline": deadline})
        row["state"] = "watching"

    def status(self, task_id: str, status: str) -> None:
        self.rows[task_id]["status"] = status

    async def finished(
        self, task_id: str, status: str, error: str | None, *, handled: bool = False
    ) -> None:
        self.rows[task_id].update(state="finished", status=status, handled=handled)

    async def handled(self, task_id: str) -> None:
        self.rows[task_id]["handled"] = True

    async def downloaded(self, task_id: str, path: str) -> None:
        self.rows[task_id]["path"] = path

    async def download_failed(self, task_id: str, error: str) -> None:
        self.rows[task_id]["error"] = error

    async def tasks(self, *, unfinished: bool = False, unhandled: bool = False) -> list[TaskRecord]:
        records = [
            TaskRecord(
                task_id=str(row["task_id"]),
                intent_id=None,
                model="",
                state=str(row["state"]),
                status=str(row.get("status", "")),
                created_at=0.0,
                deadline=None,
                finished_at=None,
                error=None,
                handled=bool(row.get("handled")),
                download_path=None,
            )
            for row in self.rows.values()
        ]
        if unfinished or unhandled:
            records = [
                r
                for r in records
                if (unfinished and r.unfinished)
                or (unhandled and r.state == "finished" and not r.handled)
            ]
        return records


async def test_a_store_of_ones_own(server: FakeAnyFast, tmp_path: Path) -> None:
    """The TaskStore protocol is all a client needs: a store of one's own records a create,
    and a second client resumes from it."""
    assert isinstance(SQLiteStore(tmp_path / "s.db"), TaskStore)
    mine = ListStore()
    assert isinstance(mine, TaskStore)
    async with AnyFast(server.api_key, base_url=server.base_url, store=mine) as client:
        created = await client.create_text_to_video("A cat")
    assert mine.rows[created.task_id]["state"] == "watching"
    async with (
        AnyFast(server.api_key, base_url=server.base_url, store=mine) as client,
        client.watcher(poll=FAST) as watcher,
    ):
        (handle,) = await watcher.resume()
        assert (await handle.wait()).status is TaskStatus.SUCCESS
    assert mine.rows[created.task_id]["state"] == "finished"
    assert mine.rows[created.task_id]["handled"] is True


async def test_a_create_cancelled_before_it_is_sent_is_forgotten(server: FakeAnyFast) -> None:
    """Cancelled while its intent is being recorded, a create is recorded whole, then
    settled as surely not made: nothing was sent."""
    entered, release = anyio.Event(), anyio.Event()
    settled: list[bool] = []

    class SlowStore(ListStore):
        async def intend(self, body: bytes) -> str:
            entered.set()
            await release.wait()
            return await super().intend(body)

        async def create_failed(self, intent_id: str, *, maybe_created: bool, error: str) -> None:
            settled.append(maybe_created)
            await super().create_failed(intent_id, maybe_created=maybe_created, error=error)

    store = SlowStore()
    async with (
        AnyFast(server.api_key, base_url=server.base_url, store=store) as client,
        anyio.create_task_group() as group,
    ):
        group.start_soon(client.create_text_to_video, "A cat")
        await entered.wait()
        group.cancel_scope.cancel()
        release.set()
    assert settled == [False]
    assert [r for r in server.requests if r.method == "POST"] == []


async def test_an_outcome_delivered_again_stays_marked_when_that_delivery_is_cut_short(
    server: FakeAnyFast, tmp_path: Path
) -> None:
    """A process dies in on_terminal; the next resumes the outcome and dies at once, before
    the task is even polled again; the third still finds the outcome finished but unhandled,
    and delivers it marked as delivered again (a resume must not record it as a new watch)."""
    server.add_task("t1")
    path = tmp_path / "s.db"
    entered = asyncio.Event()

    async def hang(update: TaskUpdate) -> None:
        entered.set()
        await asyncio.Event().wait()  # the process "dies" in here

    async with (
        client_for(server, SQLiteStore(path)) as client,
        client.watcher(poll=FAST, on_terminal=hang, timeout=None) as watcher,
    ):
        watcher.add("t1")
        await entered.wait()
    async with (
        client_for(server, SQLiteStore(path)) as client,
        client.watcher(poll=FAST, on_terminal=hang, timeout=None) as watcher,
    ):
        assert [h.task_id for h in await watcher.resume()] == ["t1"]
        # ... and "dies" at once: the store still applies what was queued as it closes.
    async with client_for(server, SQLiteStore(path)) as client:
        [record] = await client.store.tasks()  # type: ignore[union-attr]
    assert (record.state, record.handled) == ("finished", False)

    delivered: list[TaskUpdate] = []
    async with (
        client_for(server, SQLiteStore(path)) as client,
        client.watcher(poll=FAST, on_terminal=delivered.append, timeout=None) as watcher,
    ):
        for handle in await watcher.resume():
            await handle.wait()
    assert [(u.task_id, u.redelivered, u.succeeded) for u in delivered] == [("t1", True, True)]
