"""Watching, as users see it: update streams, task handles, the watcher, and the fan-outs.

Each public watch method of :class:`~anyfast_async.AnyFast` builds a
:class:`~anyfast_async._scheduler.Scheduler` on the client's engine here (checking its
arguments at the call) and hands back a stream, a handle or a result.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType

import anyio
import msgspec

from ._aio import BaseExceptionGroup, unwrap
from ._config import DEFAULT_POLL, UNSET, PollPolicy, UnsetType
from ._download import download, remove_partial_files
from ._engine import Engine
from ._exceptions import AnyFastError, TaskFailedError
from ._fleet import Fleet
from ._models import CreatedTask, Task
from ._phases import PhaseLimits
from ._scheduler import Entry, Scheduler
from ._store import describe_error
from ._updates import Outcomes, TaskUpdate, WatcherStatistics

__all__ = [
    "CreateAndWatchStream",
    "TaskHandle",
    "UpdateStream",
    "Watcher",
    "follow",
    "new_scheduler",
    "one_task_scheduler",
    "wait_for",
    "wait_many",
]


def new_scheduler(
    engine: Engine,
    *,
    concurrency: int,
    timeout: float | None,
    poll: PollPolicy | None,
    poll_interval: float | None,
    close_when_idle: bool,
    on_terminal: Callable[[TaskUpdate], Awaitable[object] | object] | None = None,
    phases: PhaseLimits | None = None,
) -> Scheduler:
    """A scheduler on ``engine``, its arguments checked now (nothing is sent yet).

    Raises:
        RuntimeError: the engine is not open.
        ValueError: an argument is out of range, or both ``poll`` and ``poll_interval`` are
            given.
    """
    engine.check_open()
    if poll is not None and poll_interval is not None:
        raise ValueError("pass poll= or poll_interval=, not both")
    policy = PollPolicy.fixed(poll_interval) if poll_interval is not None else poll
    return Scheduler(
        engine,
        concurrency=concurrency,
        poll=policy or DEFAULT_POLL,
        timeout=timeout,
        close_when_idle=close_when_idle,
        on_terminal=on_terminal,
        phases=phases,
    )


OnTerminal = Callable[[TaskUpdate], Awaitable[object] | object]


def downloading(
    engine: Engine,
    on_terminal: OnTerminal | None,
    folder: str | os.PathLike[str],
    concurrency: int,
    *,
    skip_existing: bool = True,
) -> Callable[[TaskUpdate], Awaitable[None]]:
    """An ``on_terminal`` that first saves the video of each task that succeeded into
    ``folder`` (at most ``concurrency`` at once; one already there is kept with
    ``skip_existing``), records it in the engine's store, then calls ``on_terminal`` with the
    path (or, if the video could not be saved, the error)."""
    if concurrency < 1:
        raise ValueError(f"download_concurrency must be >= 1, got {concurrency!r}")
    Path(folder).mkdir(parents=True, exist_ok=True)
    remove_partial_files(folder)  # left by downloads a crash cut short
    limiter = anyio.CapacityLimiter(concurrency)
    store = engine.store

    async def deliver(update: TaskUpdate) -> None:
        task = update.task
        if update.succeeded and task is not None and task.result_url:
            try:
                async with limiter:
                    path = await download(
                        engine, task, folder, folder=True, skip_existing=skip_existing
                    )
            except AnyFastError as exc:
                update = msgspec.structs.replace(update, error=exc)
                if store is not None:
                    await store.download_failed(update.task_id, describe_error(exc))
            else:
                update = msgspec.structs.replace(update, download_path=str(path))
                if store is not None:
                    await store.downloaded(update.task_id, str(path))
        if on_terminal is not None:
            result = on_terminal(update)
            if inspect.isawaitable(result):
                await result

    return deliver


def one_task_scheduler(
    engine: Engine,
    *,
    timeout: float | None,
    poll: PollPolicy | None,
    poll_interval: float | None,
    phases: PhaseLimits | None = None,
) -> Scheduler:
    """The scheduler of a one-task watch (``watch``, ``wait``, the create-then-wait forms):
    one poller, and it ends with its task. Checked as :func:`new_scheduler` checks."""
    return new_scheduler(
        engine,
        concurrency=1,
        timeout=timeout,
        poll=poll,
        poll_interval=poll_interval,
        close_when_idle=True,
        phases=phases,
    )


def follow(scheduler: Scheduler) -> UpdateStream:
    """The stream of a one-task scheduler: it owns the scheduler, and raises the error that
    ends the watch (other than FAILURE, which is a terminal update)."""
    return UpdateStream(scheduler, buffer=16, owns_scheduler=True, raise_errors=True)


class UpdateStream:
    """An async iterator of :class:`~anyfast_async.TaskUpdate`, returned by ``watch()`` and
    ``watch_many()`` (and ``Watcher.updates()``).

    Iterate it with ``async for``. Use it as an async context manager (or call :meth:`aclose`)
    to stop polling at a point you choose; breaking out of an ``async for`` also stops polling,
    as soon as the stream object is released.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        buffer: int,
        owns_scheduler: bool,
        raise_errors: bool,
        terminal_only: bool = False,
    ) -> None:
        self._scheduler = scheduler
        self._receive = scheduler.subscribe(buffer, terminal_only=terminal_only)
        self._owns = owns_scheduler
        self._raise_errors = raise_errors
        self._closed = False

    def __aiter__(self) -> UpdateStream:
        return self

    async def __anext__(self) -> TaskUpdate:
        if self._closed:
            raise StopAsyncIteration
        if self._owns:
            self._scheduler.start()
        try:
            try:
                update = self._receive.receive_nowait()
            except anyio.WouldBlock:
                update = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            await self.aclose()
            problem = self._scheduler.problem
            if problem is not None:
                raise problem from None
            raise StopAsyncIteration from None
        error = update.error
        if self._raise_errors and error is not None and not isinstance(error, TaskFailedError):
            await self.aclose()
            raise error
        return update

    async def aclose(self) -> None:
        """Stop receiving updates (and stop polling, if this stream started it)."""
        if self._closed:
            return
        self._closed = True
        self._receive.close()
        if self._owns:
            await self._scheduler.aclose()

    async def __aenter__(self) -> UpdateStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if not self._closed:
            self._receive.close()
            if self._owns:
                self._scheduler.cancel_soon()


class TaskHandle:
    """One task added to a :class:`Watcher`; await :meth:`wait` for its outcome.

    Any number of coroutines may wait on the same handle.
    """

    __slots__ = ("_entry",)

    def __init__(self, entry: Entry) -> None:
        self._entry = entry

    def __repr__(self) -> str:
        state = "done" if self._entry.done else "watching"
        return f"<TaskHandle {self._entry.task_id!r} {state}>"

    @property
    def task_id(self) -> str:
        """The task's id."""
        return self._entry.task_id

    @property
    def latest(self) -> Task | None:
        """The task as last seen, or ``None`` before the first answer.

        While the task runs, this is its last record without the provider's payload:
        ``data`` is ``None`` (status, progress, times, ids and every other field are there),
        unless the payload is the provider's error, which is kept
        (:attr:`Task.upstream_error` reads it).
        The payload is most of a record and is rarely read before the end, and a watcher
        keeps one record per task; dropping it keeps a watched task under 1 KB. The
        :class:`TaskUpdate` of a change carries the whole record, and so does the finished
        task; for the payload of a running task, call :meth:`AnyFast.get_task`.
        """
        return self._entry.task

    def done(self) -> bool:
        """Whether the task's watch has ended (success, failure, error, deadline, close)."""
        return self._entry.done

    async def wait(self) -> Task:
        """Wait for the task to finish and return it.

        Returns:
            The final :class:`Task`, whose status is SUCCESS.

        Raises:
            TaskFailedError: the task ended in FAILURE.
            WaitTimeoutError: its deadline passed.
            TaskNotFoundError: the task does not exist (after the grace period).
            AuthenticationError, PermissionDeniedError: the key was refused (ends every task
                of the watcher).
            BadRequestError: the server refused the query for another reason.
            ResponseDecodeError: an answer could not be read as a task.
            RuntimeError: the watcher was closed before the task finished.

        Cancelling the waiting coroutine stops only this wait: the task stays watched.
        """
        entry = self._entry
        if not entry.settled:
            await entry.finished()
        return self.result()

    def result(self) -> Task:
        """The outcome of a finished task, as :meth:`wait` gives it, without waiting.

        Raises:
            RuntimeError: the task has not finished yet.
        """
        entry = self._entry
        if not entry.done:
            raise RuntimeError(f"task {entry.task_id!r} has not finished yet")
        outcome = entry.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        return outcome


class Watcher:
    """A long-lived scheduler that tasks can be added to while it runs.

    Create it with :meth:`AnyFast.watcher`. Share one across the request handlers of a web
    app or the jobs of a worker::

        async with client.watcher(concurrency=64) as watcher:
            handle = watcher.add("asyntask_...")
            task = await handle.wait()

    Closing it (leaving the ``async with``) stops all polling; tasks still being watched end
    with a ``RuntimeError`` for their waiters.
    """

    def __init__(self, scheduler: Scheduler, fleet: Fleet | None = None) -> None:
        self._scheduler = scheduler
        self._fleet = fleet

    def __repr__(self) -> str:
        return f"<Watcher watching={len(self._scheduler)}>"

    async def __aenter__(self) -> Watcher:
        self._scheduler.start()
        if self._fleet is not None:
            self._fleet.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop polling; waiters of unfinished tasks get a ``RuntimeError``. In a fleet, the
        tasks this process held are given back to the others at once."""
        if self._fleet is not None:
            await self._fleet.stop()
        await self._scheduler.aclose()
        if self._fleet is not None:
            await self._fleet.give_back()

    def add(
        self,
        task_id: str,
        *,
        timeout: float | UnsetType | None = UNSET,
        queue_timeout: float | UnsetType | None = UNSET,
        run_timeout: float | UnsetType | None = UNSET,
        stall_timeout: float | UnsetType | None = UNSET,
        upstream_error_timeout: float | UnsetType | None = UNSET,
    ) -> TaskHandle:
        """Start watching ``task_id`` and return its handle.

        Adding a task that is already watched returns a handle to the same watch.

        Args:
            task_id: The task's id.
            timeout: Seconds from now until the task's deadline; defaults to the watcher's.
                ``None``: no deadline.
            queue_timeout: Longest wait (NOT_START, SUBMITTED, QUEUED) for this task;
                defaults to the watcher's. ``None``: no limit.
            run_timeout: Longest run (IN_PROGRESS, or an unknown status); defaults to the
                watcher's.
            stall_timeout: Longest time running with neither status nor progress changing;
                defaults to the watcher's.
            upstream_error_timeout: Longest time a provider's error may persist; defaults to
                the watcher's.

        Raises:
            TypeError: the id is not a string.
            ValueError: the id is empty, a timeout is not > 0, or phase deadlines are given
                per task to a watcher whose client has a ``RedisStore`` (give them to the
                watcher: the process that polls a task applies its own).
            RuntimeError: the watcher is not running (not entered yet, or closed).
        """
        if not self._scheduler.running:
            raise RuntimeError("the watcher is not running: use `async with client.watcher()`")
        given = (queue_timeout, run_timeout, stall_timeout, upstream_error_timeout)
        phases: PhaseLimits | UnsetType | None = UNSET
        if not all(isinstance(value, UnsetType) for value in given):
            if self._fleet is not None:
                raise ValueError(
                    "phase deadlines cannot be given per task in a fleet: give them to "
                    "client.watcher(), as every process that polls applies its own"
                )
            default = self._scheduler.phases or PhaseLimits()
            queue, run, stall, upstream = (
                default_value if isinstance(value, UnsetType) else value
                for value, default_value in zip(
                    given,
                    (default.queue, default.run, default.stall, default.upstream_error),
                    strict=True,
                )
            )
            phases = PhaseLimits.of(
                queue_timeout=queue,
                run_timeout=run,
                stall_timeout=stall,
                upstream_error_timeout=upstream,
            )
        if self._fleet is not None:
            return TaskHandle(self._fleet.add(task_id, timeout))
        return TaskHandle(self._scheduler.add(task_id, timeout, phases=phases))

    async def resume(self) -> list[TaskHandle]:
        """Watch again what the client's task store left unfinished: every task created or
        watched through a client with that store that has not ended (each with the deadline
        it was given, not a fresh one; one already past ends at once with
        :class:`WaitTimeoutError`), and every task that ended but whose outcome
        ``on_terminal`` did not return from (fetched again and delivered again: at least
        once). Return their handles.

        Raises:
            RuntimeError: the client has no store, or the watcher is not running.
        """
        if not self._scheduler.running:
            raise RuntimeError("the watcher is not running: use `async with client.watcher()`")
        if self._fleet is not None:  # the fleet takes over unfinished tasks by itself
            return []
        return [TaskHandle(entry) for entry in await self._scheduler.resume()]

    def add_many(
        self,
        task_ids: Iterable[str],
        *,
        timeout: float | UnsetType | None = UNSET,
        queue_timeout: float | UnsetType | None = UNSET,
        run_timeout: float | UnsetType | None = UNSET,
        stall_timeout: float | UnsetType | None = UNSET,
        upstream_error_timeout: float | UnsetType | None = UNSET,
    ) -> list[TaskHandle]:
        """:meth:`add` each id; returns the handles in the same order.

        Args:
            task_ids: The tasks' ids.
            timeout: As for :meth:`add`, for each of them.
            queue_timeout: As for :meth:`add`, for each of them.
            run_timeout: As for :meth:`add`, for each of them.
            stall_timeout: As for :meth:`add`, for each of them.
            upstream_error_timeout: As for :meth:`add`, for each of them.

        Raises:
            TypeError, ValueError, RuntimeError: as for :meth:`add`, for the first id that
                fails (the ids before it are watched).
        """
        return [
            self.add(
                task_id,
                timeout=timeout,
                queue_timeout=queue_timeout,
                run_timeout=run_timeout,
                stall_timeout=stall_timeout,
                upstream_error_timeout=upstream_error_timeout,
            )
            for task_id in task_ids
        ]

    def __len__(self) -> int:
        """The number of tasks being watched now."""
        return len(self._scheduler)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._scheduler

    def updates(self, *, buffer: int = 1024) -> UpdateStream:
        """A stream of the updates of every task, from now on, merged.

        Each call gives an independent stream. A stream that is not read holds back the
        watcher once ``buffer`` updates wait in it: read it, or close it.

        Args:
            buffer: How many updates may wait in the stream before the watcher waits for
                its reader.
        """
        return UpdateStream(
            self._scheduler, buffer=buffer, owns_scheduler=False, raise_errors=False
        )

    def __aiter__(self) -> UpdateStream:
        return self.updates()

    def statistics(self) -> WatcherStatistics:
        """An immutable snapshot of the counters: polls, errors, throttles, tasks by state."""
        return self._scheduler.statistics()


async def wait_for(updates: UpdateStream, task_id: str) -> Task:
    """Read a one-task stream to its end; return the task or raise what ended it."""
    last = None
    async with updates:
        async for update in updates:
            last = update
    if last is None or not last.is_terminal or (last.task is None and last.error is None):
        raise RuntimeError(f"the watch of task {task_id!r} ended before the task did")
    outcome = last.outcome()
    if isinstance(outcome, AnyFastError):
        raise outcome
    return outcome


async def wait_many(
    engine: Engine,
    updates: UpdateStream,
    task_ids: list[str],
    *,
    download_to: str | os.PathLike[str] | None,
    download_concurrency: int,
    skip_existing: bool = True,
    results: Outcomes | None = None,
) -> Outcomes:
    """Read a many-task stream to its end, downloading each success into ``download_to``
    while the others are still watched; the outcomes in the order of ``task_ids``.
    ``results``, if given, is filled as each task ends (and so keeps what an interrupted
    call had learned)."""
    found: dict[str, Task | AnyFastError] = {} if results is None else results
    files: dict[str, Path] = {} if results is None else results.files
    limiter = anyio.CapacityLimiter(download_concurrency) if download_to else None

    async def fetch(task: Task) -> None:
        assert limiter is not None
        assert download_to is not None
        async with limiter:
            try:
                files[task.task_id] = await download(
                    engine, task, download_to, folder=True, skip_existing=skip_existing
                )
            except AnyFastError as exc:
                found[task.task_id] = exc

    try:
        async with updates:
            if download_to is not None:
                await anyio.Path(download_to).mkdir(parents=True, exist_ok=True)
            async with anyio.create_task_group() as downloads:
                async for update in updates:
                    if not update.is_terminal:
                        continue
                    outcome = found[update.task_id] = update.outcome()
                    if limiter is not None and isinstance(outcome, Task) and outcome.result_url:
                        downloads.start_soon(fetch, outcome)
    except BaseExceptionGroup as group:  # raise the error itself, as documented
        raise unwrap(group) from None
    outcomes = Outcomes()
    for task_id in task_ids:
        outcomes[task_id] = found[task_id]
        if task_id in files:
            outcomes.files[task_id] = files[task_id]
    return outcomes


class CreateAndWatchStream:
    """An async iterator returned by :meth:`AnyFast.create_and_watch
    <anyfast_async.AnyFast.create_and_watch>`: the :class:`~anyfast_async.CreatedTask` first,
    then the :class:`~anyfast_async.TaskUpdate` s of the task, as :meth:`AnyFast.watch
    <anyfast_async.AnyFast.watch>` yields them.

    The create call is sent when iteration starts. Use it as an async context manager (or
    call :meth:`aclose`) to stop at a point you choose, as with :class:`UpdateStream`.
    """

    def __init__(self, create: Callable[[], Awaitable[CreatedTask]], scheduler: Scheduler) -> None:
        self._create: Callable[[], Awaitable[CreatedTask]] | None = create
        self._creating = False
        self._created: CreatedTask | None = None
        self._scheduler = scheduler
        self._updates: UpdateStream | None = None
        self._closed = False

    def __aiter__(self) -> CreateAndWatchStream:
        return self

    async def __anext__(self) -> CreatedTask | TaskUpdate:
        if self._creating:
            raise RuntimeError("the create call of this stream is still under way")
        if self._updates is not None:
            return await self._updates.__anext__()
        if self._closed:
            raise StopAsyncIteration
        create, self._create = self._create, None
        if create is None:
            # The task exists: its watch starts now, as it would after ``yield`` in a loop.
            assert self._created is not None
            self._scheduler.add(self._created.task_id, model=self._created.model)
            self._updates = follow(self._scheduler)
            return await self._updates.__anext__()
        self._creating = True
        try:
            self._created = await create()
        except BaseException:
            self._closed = True
            raise
        finally:
            self._creating = False
        # Handed back even if the stream was closed meanwhile: a created task is paid for.
        return self._created

    async def aclose(self) -> None:
        """Stop: no create call if it was not sent yet, and no more polling."""
        self._closed = True
        self._create = None
        if self._updates is not None:
            await self._updates.aclose()

    async def __aenter__(self) -> CreateAndWatchStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
