"""Task stores: what a client records about its tasks, so that watching survives a crash.

:class:`SQLiteStore` is the embedded store: the standard library's :mod:`sqlite3` in WAL mode
with ``synchronous=FULL``, one connection confined to one thread of its own and reached with
``loop.run_in_executor``, so that the event loop never waits on a disk. Writes are coalesced:
every operation queued while a batch commits goes into the next batch, one transaction, one
fsync; each caller's await returns once its own operation is committed.

Times in the store are Unix seconds (wall clock): deadlines outlive the process that set them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import itertools
import operator
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final, Generic, Protocol, TypeVar, runtime_checkable

import msgspec

if sys.platform != "win32":
    import fcntl

__all__ = ["SQLiteStore", "StoreError", "TaskRecord", "TaskStore", "WriteQueue"]

_APPLICATION_ID: Final = 0x41464153  # "AFAS"
_SCHEMA_VERSION: Final = 1
_MIGRATIONS: Final[Sequence[str]] = (
    """
    CREATE TABLE tasks (
        key           TEXT PRIMARY KEY,  -- the task id, or "intent:<id>" until it is known
        task_id       TEXT,
        intent_id     TEXT,
        model         TEXT NOT NULL DEFAULT '',
        body_sha256   TEXT,
        state         TEXT NOT NULL,     -- creating | unknown | watching | finished
        status        TEXT NOT NULL DEFAULT '',
        created_at    REAL NOT NULL,
        deadline      REAL,
        finished_at   REAL,
        error         TEXT,
        handled_at    REAL,
        download_path TEXT
    );
    CREATE UNIQUE INDEX tasks_intent ON tasks (intent_id) WHERE intent_id IS NOT NULL;
    """,
)
_BATCH: Final = 4096
# The start of a watch, for one row (_WATCH_ROW) or many: a batch applies a run of them as
# statements of many rows each, so that 100,000 tasks added at once are a few hundred steps
# of SQLite (each a hand-over of the GIL between the loop's thread and the store's), not
# 100,000.
_WATCH: Final = (
    "INSERT INTO tasks (key, task_id, state, created_at, deadline) VALUES %s"
    " ON CONFLICT (key) DO UPDATE SET state = 'watching', finished_at = NULL,"
    " deadline = coalesce(tasks.deadline, excluded.deadline)"
)
_WATCH_ROW: Final = "(?, ?, 'watching', ?, ?)"
_WATCH_ONE: Final = _WATCH % _WATCH_ROW
# SQLite's default limit of parameters in one statement (999 before 3.32.0).
_MAX_PARAMETERS: Final = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


def describe_error(exc: BaseException) -> str:
    """How an error is written in a record: its class name and message."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class StoreError(Exception):
    """The task store cannot be used (locked by another process, not a store, newer schema)."""


class TaskRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the store knows of one task.

    Attributes:
        task_id: The task's id; ``None`` for a create whose answer never came.
        intent_id: The id the client gave the create before sending it (``None`` for a task
            that was only watched).
        model: The model of the create call, or ``""``.
        state: ``"creating"`` (the create is being sent), ``"unknown"`` (it may or may not have
            created a task: reconcile it), ``"watching"`` or ``"finished"``.
        status: The last raw status seen, ``""`` before the first poll.
        created_at: Unix seconds when the client recorded the task.
        deadline: Unix seconds when its watch times out, or ``None``.
        finished_at: Unix seconds when its outcome was recorded, or ``None``.
        error: Why the watch ended without success (a failure reason or an error), or ``None``.
        handled: Whether ``on_terminal`` returned for its outcome.
        download_path: Where its video was saved, or ``None``.
        body_sha256: The SHA-256 (hex) of the create call's JSON body, or ``None`` for a task
            that was only watched: a batch tool tells by it which of its requests were sent.
    """

    task_id: str | None
    intent_id: str | None
    model: str
    state: str
    status: str
    created_at: float
    deadline: float | None
    finished_at: float | None
    error: str | None
    handled: bool
    download_path: str | None
    body_sha256: str | None = None

    @property
    def unfinished(self) -> bool:
        """Whether the task still has to be watched to its end."""
        return self.state == "watching"


@runtime_checkable
class TaskStore(Protocol):
    """What a client needs of a task store: :class:`SQLiteStore` is one; write another (on
    your own database) by implementing these methods.

    The client calls :meth:`open` and :meth:`aclose` with its own. The awaited writes must be
    durable when they return (the client acts on them: it sends the create, calls
    ``on_terminal``, wakes the waiters); :meth:`watching` and :meth:`status` are called in the
    middle of polling, not awaited: queue them, and write them soon (within about a second).
    """

    async def open(self) -> None:
        """Make the store ready (called by the client when it opens)."""

    async def aclose(self) -> None:
        """Write what is queued and release the store (called by the client when it closes)."""

    async def intend(self, body: bytes) -> str:
        """Record a create about to be sent; return an id for it, durable on return.

        Args:
            body: The create call's JSON body.
        """
        ...

    async def created(self, intent_id: str, task_id: str) -> None:
        """The create of ``intent_id`` made the task ``task_id``, to be watched.

        Args:
            intent_id: What :meth:`intend` returned.
            task_id: The id of the task it created.
        """

    async def create_failed(self, intent_id: str, *, maybe_created: bool, error: str) -> None:
        """The create of ``intent_id`` failed.

        Args:
            intent_id: What :meth:`intend` returned.
            maybe_created: Whether it may have made a task (keep it, as unknown) or surely
                did not (forget it).
            error: What went wrong.
        """

    def watching(self, task_id: str, deadline: float | None) -> None:
        """A watch of ``task_id`` begins (not awaited). Keep the first deadline of a task.

        Args:
            task_id: The task's id.
            deadline: When the watch times out, in Unix seconds, or ``None``.
        """

    def status(self, task_id: str, status: str) -> None:
        """A new status was seen (not awaited).

        Args:
            task_id: The task's id.
            status: The raw status.
        """

    async def finished(
        self, task_id: str, status: str, error: str | None, *, handled: bool = False
    ) -> None:
        """The task's watch ended.

        Args:
            task_id: The task's id.
            status: The last raw status seen.
            error: Why it did not succeed, or ``None``.
            handled: Whether its outcome is handled already.
        """

    async def handled(self, task_id: str) -> None:
        """``on_terminal`` returned for the task's outcome.

        Args:
            task_id: The task's id.
        """

    async def downloaded(self, task_id: str, path: str) -> None:
        """The task's video was saved.

        Args:
            task_id: The task's id.
            path: Where.
        """

    async def download_failed(self, task_id: str, error: str) -> None:
        """The task's video could not be saved.

        Args:
            task_id: The task's id.
            error: Why.
        """

    async def tasks(self, *, unfinished: bool = False, unhandled: bool = False) -> list[TaskRecord]:
        """The records, oldest first, after every write made so far.

        Args:
            unfinished: Only tasks still to be watched.
            unhandled: Only finished tasks whose outcome is not handled.
        """
        ...


_COLUMNS: Final = (
    "task_id, intent_id, model, state, status, created_at, deadline, finished_at, error,"
    " handled_at IS NOT NULL, download_path, body_sha256"
)

# An operation: SQL and its parameters, applied inside the batch's transaction.
_Op = tuple[str, tuple[Any, ...]]
_OpT = TypeVar("_OpT")


def _record(row: tuple[Any, ...]) -> TaskRecord:
    return TaskRecord(
        task_id=row[0],
        intent_id=row[1],
        model=row[2],
        state=row[3],
        status=row[4],
        created_at=row[5],
        deadline=row[6],
        finished_at=row[7],
        error=row[8],
        handled=bool(row[9]),
        download_path=row[10],
        body_sha256=row[11],
    )


class WriteQueue(Generic[_OpT]):
    """A store's writes, queued and applied in batches by one writer task: everything queued
    while a batch is applied goes in the next one. An awaited write returns once its batch
    is applied (or raises its own error); a write queued "soon" is not waited for.

    ``apply`` applies a batch and returns each operation's error (``None``: applied); if it
    raises, every caller of the batch gets that error.
    """

    def __init__(
        self,
        apply: Callable[[list[_OpT]], Awaitable[list[BaseException | None]]],
        *,
        batch: int,
        name: str,
    ) -> None:
        self._apply = apply
        self._batch = batch
        self._name = name
        self._queue: list[tuple[_OpT, asyncio.Future[None] | None]] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the writer task."""
        self._closing = False
        self._wake = asyncio.Event()
        self._writer = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def close(self) -> None:
        """Apply what is queued, then stop the writer task."""
        self._closing = True
        writer, self._writer = self._writer, None
        if writer is not None and self._wake is not None:
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(writer)
        self._wake = None

    def _put(self, op: _OpT, done: asyncio.Future[None] | None) -> None:
        wake = self._wake
        if wake is None or self._closing:
            raise RuntimeError("the store is not open")
        self._queue.append((op, done))
        wake.set()

    async def write(self, op: _OpT) -> None:
        """Queue one operation and wait until it is applied."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put(op, done)
        await done

    def write_soon(self, op: _OpT) -> None:
        """Queue one operation; it is applied with the next batch (within milliseconds)."""
        self._put(op, None)

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            if not self._queue:
                if self._closing:
                    return
                wake.clear()
                await wake.wait()
                continue
            batch, self._queue = self._queue[: self._batch], self._queue[self._batch :]
            try:
                errors = await self._apply([op for op, _ in batch])
            except BaseException as exc:  # the whole batch failed: every caller hears of it
                errors = [exc] * len(batch)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            for (_, done), error in zip(batch, errors, strict=True):
                if done is None or done.done():
                    continue
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)


class SQLiteStore:
    """The embedded task store: one SQLite file, no server.

    Pass it to the client (``AnyFast(store=SQLiteStore("anyfast.db"))``), which opens it and
    closes it with itself. One process owns a store at a time: a second one fails to open it
    with :class:`StoreError` (a lock file next to it, ``<path>.lock``, says who holds it). Keep
    the file on a local disk (SQLite's WAL mode does not work over a network file system) and
    back it up with ``sqlite3 anyfast.db ".backup copy.db"``, not by copying the files of an
    open store.

    ``SQLiteStore(path, readonly=True)`` only reads (:meth:`tasks`), takes no lock and so
    works while another process owns the store: for a dashboard, or ``anyfast tasks``.

    Args:
        path: The database file; created with its folder if missing (unless ``readonly``).
        readonly: Open it only to read; it must exist.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        """The database file."""
        self.readonly = readonly
        """Whether it is opened only to read."""
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._writes = WriteQueue(
            self._apply_in_thread, batch=_BATCH, name="anyfast-async store writer"
        )

    def __repr__(self) -> str:
        state = "open" if self._db is not None else "closed"
        return f"SQLiteStore({str(self.path)!r}, {state})"

    # -- opening and closing -------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file (creating or upgrading its tables) and take its lock."""
        if self._executor is not None:
            raise RuntimeError("the store is already open")
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "anyfast-store")
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self._writes.start()

    async def aclose(self) -> None:
        """Write what is queued, then close the file and release its lock."""
        executor = self._executor
        if executor is None:
            return
        await self._writes.close()
        try:
            await self._run(self._close)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _open(self) -> None:
        if self.readonly:
            self._open_readonly()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = f"{self.path}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd, lock_path)
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        except BaseException:
            os.close(fd)
            raise
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            app, version = (
                db.execute("PRAGMA application_id").fetchone()[0],
                db.execute("PRAGMA user_version").fetchone()[0],
            )
            if app not in (0, _APPLICATION_ID) or (app == 0 and version != 0):
                raise StoreError(f"{self.path} is not an anyfast-async task store")
            if version > _SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer anyfast-async (schema {version}); "
                    "upgrade the package to open it"
                )
            for number in range(version, _SCHEMA_VERSION):
                db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _MIGRATIONS[number].split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA application_id={_APPLICATION_ID}")
                    db.execute(f"PRAGMA user_version={number + 1}")
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            # A create still "creating" belongs to a process that died waiting for its
            # answer (this one holds the lock now): it may or may not have made a task.
            db.execute(
                "UPDATE tasks SET state = 'unknown', error = ? WHERE state = 'creating'",
                ("the process ended before the create call's answer",),
            )
        except BaseException:
            db.close()
            os.close(fd)
            raise
        self._db, self._lock_fd = db, fd

    def _open_readonly(self) -> None:
        if not self.path.is_file():
            raise StoreError(f"no task store at {self.path}")
        db = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0, isolation_level=None
        )
        try:
            app = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"{self.path} cannot be read: {exc}") from None
        if app != _APPLICATION_ID or version != _SCHEMA_VERSION:
            db.close()
            raise StoreError(
                f"{self.path} is not a task store of this anyfast-async version "
                f"(application id {app:#x}, schema {version})"
            )
        self._db = db

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    async def _run(self, func: Callable[..., Any], *args: Any) -> Any:
        executor = self._executor
        if executor is None:
            raise RuntimeError("the store is not open")
        return await asyncio.get_running_loop().run_in_executor(executor, func, *args)

    # -- writing ---------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only")

    async def _write(self, sql: str, *params: Any) -> None:
        """Queue one operation and wait until it is committed."""
        self._check_writable()
        await self._writes.write((sql, params))

    def _write_soon(self, sql: str, *params: Any) -> None:
        """Queue one operation; it is committed with the next batch (within milliseconds)."""
        self._check_writable()
        self._writes.write_soon((sql, params))

    async def _apply_in_thread(self, ops: list[_Op]) -> list[BaseException | None]:
        errors: list[BaseException | None] = await self._run(self._apply, ops)
        return errors

    def _apply(self, ops: list[_Op]) -> list[BaseException | None]:
        """One transaction for the batch. If an operation fails, the batch is applied again
        with each operation in a savepoint of its own, so that it is rolled back alone."""
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, group in itertools.groupby(ops, key=operator.itemgetter(0)):
                if sql == _WATCH_ONE:
                    self._watch_rows(db, [params for _, params in group])
                else:
                    for _, params in group:
                        db.execute(sql, params)
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
        else:
            return [None] * len(ops)
        errors: list[BaseException | None] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in ops:
                db.execute("SAVEPOINT op")
                try:
                    db.execute(sql, params)
                except sqlite3.Error as exc:
                    db.execute("ROLLBACK TO op")
                    errors.append(exc)
                else:
                    errors.append(None)
                db.execute("RELEASE op")
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return errors

    @staticmethod
    def _watch_rows(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        limit = _MAX_PARAMETERS
        if hasattr(db, "getlimit"):  # Python 3.11+: the library's own limit
            limit = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[attr-defined,unused-ignore]
        per_statement = max(1, limit // 4)  # 4 parameters a row
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            db.execute(
                _WATCH % ", ".join([_WATCH_ROW] * len(chunk)),
                [value for row in chunk for value in row],
            )

    # -- what the client records ---------------------------------------------------------------

    async def intend(self, body: bytes) -> str:
        """Record a create about to be sent; return its intent id, committed on return.

        Args:
            body: The create call's JSON body (its ``model`` is recorded, and a hash of it).
        """
        intent = uuid.uuid4().hex
        try:
            model = str(msgspec.json.decode(body).get("model", ""))
        except (msgspec.DecodeError, AttributeError):
            model = ""
        await self._write(
            "INSERT INTO tasks (key, intent_id, model, body_sha256, state, created_at)"
            " VALUES (?, ?, ?, ?, 'creating', ?)",
            f"intent:{intent}",
            intent,
            model,
            hashlib.sha256(body).hexdigest(),
            time.time(),
        )
        return intent

    async def created(self, intent_id: str, task_id: str) -> None:
        """The create of ``intent_id`` made ``task_id``: a task to watch (on the next
        ``resume()`` if no watcher takes it first).

        Args:
            intent_id: What :meth:`intend` returned.
            task_id: The id of the task it created.
        """
        await self._write(
            "UPDATE tasks SET key = ?, task_id = ?, state = 'watching' WHERE intent_id = ?",
            task_id,
            task_id,
            intent_id,
        )

    async def create_failed(self, intent_id: str, *, maybe_created: bool, error: str) -> None:
        """The create of ``intent_id`` failed: forgotten if it surely made no task, else
        kept as ``"unknown"`` for the user to reconcile.

        Args:
            intent_id: What :meth:`intend` returned.
            maybe_created: Whether the request may have reached the server and made a task.
            error: What went wrong, for the record.
        """
        if maybe_created:
            await self._write(
                "UPDATE tasks SET state = 'unknown', error = ? WHERE intent_id = ?",
                error,
                intent_id,
            )
        else:
            await self._write("DELETE FROM tasks WHERE intent_id = ?", intent_id)

    def watching(self, task_id: str, deadline: float | None) -> None:
        """A watch of ``task_id`` begins, written with the next batch. A task the store knows
        keeps its record and its first deadline; a finished one is watched again.

        Args:
            task_id: The task's id.
            deadline: When its watch times out, in Unix seconds, or ``None``.
        """
        self._write_soon(_WATCH_ONE, task_id, task_id, time.time(), deadline)

    def status(self, task_id: str, status: str) -> None:
        """A new status was seen (written with the next batch; a crash may lose the last
        fraction of a second of these, never an outcome).

        Args:
            task_id: The task's id.
            status: The raw status, as the server sent it.
        """
        self._write_soon(
            "UPDATE tasks SET status = ? WHERE key = ? AND state = 'watching'", status, task_id
        )

    async def finished(
        self, task_id: str, status: str, error: str | None, *, handled: bool = False
    ) -> None:
        """The task's watch ended.

        Args:
            task_id: The task's id.
            status: The last raw status seen (``""`` if none).
            error: Why it did not succeed (the failure reason or the error), or ``None``.
            handled: Record the outcome as handled at once (no ``on_terminal`` to call).
        """
        now = time.time()
        await self._write(
            "UPDATE tasks SET state = 'finished', status = ?, error = ?, finished_at = ?,"
            " handled_at = ? WHERE key = ?",
            status,
            error,
            now,
            now if handled else None,
            task_id,
        )

    async def handled(self, task_id: str) -> None:
        """``on_terminal`` returned for the task's outcome.

        Args:
            task_id: The task's id.
        """
        await self._write(
            "UPDATE tasks SET handled_at = ? WHERE key = ? AND state = 'finished'",
            time.time(),
            task_id,
        )

    async def downloaded(self, task_id: str, path: str) -> None:
        """The task's video was saved.

        Args:
            task_id: The task's id.
            path: Where it was saved.
        """
        await self._write("UPDATE tasks SET download_path = ? WHERE key = ?", path, task_id)

    async def download_failed(self, task_id: str, error: str) -> None:
        """The task succeeded but its video could not be saved.

        Args:
            task_id: The task's id.
            error: What went wrong (an expired URL, ...).
        """
        await self._write("UPDATE tasks SET error = ? WHERE key = ?", error, task_id)

    async def flush(self) -> None:
        """Wait until every write queued so far is committed."""
        if not self.readonly:
            await self._write("SELECT 1")

    # -- reading ------------------------------------------------------------------------------

    async def tasks(self, *, unfinished: bool = False, unhandled: bool = False) -> list[TaskRecord]:
        """The records, oldest first (after every write queued so far).

        Args:
            unfinished: Only tasks still to be watched.
            unhandled: Only finished tasks whose outcome ``on_terminal`` has not handled.
        """
        await self.flush()
        where = []
        if unfinished:
            where.append("state = 'watching'")
        if unhandled:
            where.append("state = 'finished' AND handled_at IS NULL")
        sql = f"SELECT {_COLUMNS} FROM tasks"  # noqa: S608 (fixed strings only)
        if where:
            sql += " WHERE " + " OR ".join(f"({w})" for w in where)
        sql += " ORDER BY created_at, rowid"
        rows = await self._run(self._select, sql)
        return [_record(row) for row in rows]

    def _select(self, sql: str) -> list[tuple[Any, ...]]:
        db = self._db
        assert db is not None
        return db.execute(sql).fetchall()


def _lock(fd: int, path: str) -> None:
    """Take an exclusive lock on the store's lock file, or raise :class:`StoreError`."""
    if sys.platform == "win32":  # SQLite's own locking alone
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StoreError(
            f"the task store is in use by another process (lock file {path}); one process "
            "watches a store at a time"
        ) from None
