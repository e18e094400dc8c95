"""Many tasks, one scheduler: a heap of next-poll times, a bounded pool of pollers, and fan-in.

A :class:`Scheduler` keeps one small entry per watched task in a dict and a heap ordered by the
time of its next poll. One dispatcher coroutine sleeps until the earliest poll is due, then hands
each due entry straight to an idle poller of a fixed pool (or queues it for the next poller to
come free), so at most ``concurrency`` polls are in flight whatever the number of tasks, and an
idle task costs only its entry. The hand-off is a bare future per idle poller: this is the hot
path of every poll, and a memory stream's checkpoints cost an event-loop turn each. Updates go
out to subscribers over bounded anyio memory streams: a slow consumer slows the polling down
instead of growing a buffer.

The scheduler runs in its own asyncio task (started by :meth:`Scheduler.start`), which owns the
task group of the pollers, so no generator ever yields inside a task group or cancel scope.
:meth:`Scheduler.aclose` cancels that task and waits for it: nothing is left running.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import sys
from collections import Counter, deque
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._config import UNSET, PollPolicy, _Unset
from ._exceptions import (
    AnyFastError,
    APIStatusError,
    AuthenticationError,
    PermissionDeniedError,
    RateLimitError,
    TaskFailedError,
    TaskNotFoundError,
    WaitTimeoutError,
)
from ._models import Task, TaskStatus, TaskUpdate, WatcherStatistics
from ._retry import is_retryable

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    from ._client import AnyFast

__all__ = ["Scheduler", "TaskHandle", "UpdateStream", "Watcher"]

_UNSEEN: Final = "UNSEEN"
_NEVER: Final = math.inf
#: Timer slack: work due within this many seconds is done now, which spares a timer and an
#: event-loop turn when intervals are tiny, and changes nothing at the 15 s cadence.
_SLACK: Final = 0.001


class _Entry:
    """One watched task."""

    __slots__ = (
        "deadline",
        "done",
        "errors",
        "last_error",
        "outcome",
        "path",
        "progress",
        "same",
        "started",
        "status",
        "task",
        "task_id",
        "timeout",
        "waiters",
    )

    def __init__(self, task_id: str, path: str, started: float, timeout: float | None) -> None:
        self.task_id = task_id
        self.path = path
        self.started = started
        self.timeout = timeout
        self.deadline = _NEVER if timeout is None else started + timeout
        self.task: Task | None = None
        self.status: TaskStatus | None = None
        self.progress: int | None = None
        self.same = 0
        self.errors = 0
        self.last_error: AnyFastError | None = None
        self.done = False
        self.outcome: Task | BaseException | None = None
        self.waiters: anyio.Event | None = None

    def update(
        self, *, previous: TaskStatus | None, terminal: bool, error: AnyFastError | None = None
    ) -> TaskUpdate:
        return TaskUpdate(
            task_id=self.task_id,
            task=self.task,
            previous_status=previous,
            status=self.status,
            progress=self.progress,
            is_terminal=terminal,
            error=error,
        )


class Scheduler:
    """Polls many tasks under one concurrency limit and the client's shared budget."""

    def __init__(
        self,
        client: AnyFast,
        *,
        concurrency: int,
        poll: PollPolicy,
        timeout: float | None,
        close_when_idle: bool,
        stop_on_fatal: bool,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout!r}")
        self._client = client
        self._poll = poll
        self._timeout = timeout
        self._workers = client._poller_limit(concurrency)
        # The longest one poll can take (a full pause, then a request to its total timeout):
        # only polls closer than this to their deadline need a cancel scope around them.
        total = client.timeout.total
        self._longest_poll = _NEVER if total is None else total + client._pacer_max_pause
        self._close_when_idle = close_when_idle
        self._stop_on_fatal = stop_on_fatal
        self._rng = random.Random()
        self._heap: list[tuple[float, int, _Entry]] = []
        self._entries: dict[str, _Entry] = {}
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Future[None] | None = None
        self._sleeping_until = -_NEVER
        self._idle: deque[asyncio.Future[_Entry | None]] = deque()
        self._stopping = False
        self._ready: deque[_Entry] = deque()
        self._subscribers: list[MemoryObjectSendStream[TaskUpdate]] = []
        self._runner: asyncio.Task[None] | None = None
        self._cancel: anyio.CancelScope | None = None
        self._closed = False
        self.problem: BaseException | None = None
        self._in_flight = 0
        self._polls = 0
        self._errors = 0
        self._throttles = 0
        self._outcomes: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()

    # -- adding tasks ----------------------------------------------------------------------

    def add(self, task_id: str, timeout: float | _Unset | None = UNSET) -> _Entry:
        """Watch ``task_id`` (once: adding it again returns the same entry)."""
        from ._client import task_path

        path = task_path(task_id)
        if self._closed:
            raise RuntimeError("this watcher is closed")
        entry = self._entries.get(task_id)
        if entry is not None:
            return entry
        limit = self._timeout if isinstance(timeout, _Unset) else timeout
        if limit is not None and not limit > 0:
            raise ValueError(f"timeout must be > 0 or None, got {limit!r}")
        now = self._now()
        entry = _Entry(task_id, path, now, limit)
        self._entries[task_id] = entry
        self._by_status[_UNSEEN] += 1
        self._push(entry, now)
        return entry

    def _push(self, entry: _Entry, due: float) -> None:
        if due > entry.deadline:
            due = entry.deadline
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, entry))
        if self._idle and due < self._sleeping_until:
            self._wake_up()

    def _wake_up(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _now(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None else asyncio.get_running_loop().time()

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start polling in a task of its own (idempotent)."""
        if self._runner is not None:
            return
        if self._closed:
            raise RuntimeError("this watcher is closed")
        self._client._check_open()
        self._loop = asyncio.get_running_loop()
        self._runner = self._loop.create_task(self._run(), name="anyfast-async scheduler")
        self._client._schedulers.add(self)

    def cancel_soon(self) -> None:
        """Cancel the polling task without waiting for it (for finalizers)."""
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()

    async def aclose(self) -> None:
        """Stop polling and wait until the polling task has ended. Idempotent."""
        runner = self._runner
        if runner is not None and not runner.done():
            runner.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([runner])
        self._shutdown()
        self._client._schedulers.discard(self)

    async def _run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._cancel = tg.cancel_scope
                for _ in range(self._workers):
                    tg.start_soon(self._worker)
                await self._dispatch()
                # Every task is done. Let the pollers finish what they are doing (a final
                # update may still be on its way to a slow reader), then leave.
                self._stopping = True
                while self._idle:
                    waiter = self._idle.popleft()
                    if not waiter.done():
                        waiter.set_result(None)
        except Exception as exc:
            self.problem = _unwrap(exc)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        closed = RuntimeError("the watch was closed before the task finished")
        if self._entries and self.problem is None:
            self.problem = closed  # readers of the updates must not take this for an end
        for entry in self._entries.values():
            entry.done = True
            entry.outcome = self.problem or closed
            if entry.waiters is not None:
                entry.waiters.set()
        self._entries.clear()
        self._heap.clear()
        self._ready.clear()
        for stream in self._subscribers:
            stream.close()
        self._subscribers.clear()

    async def _sleep_until(self, when: float) -> None:
        """Sleep until ``when`` (loop time) or until :meth:`_wake_up`, whichever is first."""
        loop = self._loop
        assert loop is not None
        wake = self._wake = loop.create_future()
        timer = None if when == _NEVER else loop.call_at(when, _resolve, wake)
        self._sleeping_until = when
        try:
            await wake
        finally:
            self._sleeping_until = -_NEVER
            if timer is not None:
                timer.cancel()

    async def _dispatch(self) -> None:
        """Move due entries to the pollers; sleep until the next is due."""
        heap = self._heap
        idle = self._idle
        ready = self._ready
        while True:
            now = self._now()
            while heap and heap[0][0] <= now + _SLACK:
                entry = heapq.heappop(heap)[2]
                if entry.done:
                    continue
                while idle:
                    waiter = idle.popleft()
                    if not waiter.done():
                        waiter.set_result(entry)
                        break
                else:
                    ready.append(entry)
            if self._close_when_idle and not self._entries:
                return
            await self._sleep_until(heap[0][0] if heap else _NEVER)

    async def _worker(self) -> None:
        loop = self._loop
        assert loop is not None
        fetch = self._client._fetch_task
        pacer = self._client._pacer
        heap = self._heap
        idle = self._idle
        ready = self._ready
        while True:
            # A poller that comes free takes due work itself; it waits (and the dispatcher
            # hands it the next entry when due) only when nothing is due.
            if ready:
                entry = ready.popleft()
            elif heap and heap[0][0] <= loop.time() + _SLACK:
                entry = heapq.heappop(heap)[2]
            elif self._stopping:
                return
            else:
                waiter: asyncio.Future[_Entry | None] = loop.create_future()
                idle.append(waiter)
                if heap and heap[0][0] < self._sleeping_until:
                    self._wake_up()  # the dispatcher must time the next due entry for us
                next_entry = await waiter
                if next_entry is None:
                    return
                entry = next_entry
            if entry.done:
                continue
            if loop.time() + _SLACK >= entry.deadline:
                await self._expire(entry)
                continue
            self._in_flight += 1
            try:
                remaining = entry.deadline - loop.time()
                if remaining > self._longest_poll:
                    if not pacer.try_acquire():
                        await pacer.acquire()
                    task = await fetch(entry.path)
                else:  # this poll could outlast the deadline: cut it off there
                    with anyio.move_on_after(remaining):
                        if not pacer.try_acquire():
                            await pacer.acquire()
                        task = await fetch(entry.path)
                        remaining = -1.0
                    if remaining >= 0:
                        self._in_flight -= 1
                        await self._expire(entry)
                        continue
            except AnyFastError as exc:
                self._in_flight -= 1
                await self._failed(entry, exc)
                continue
            self._in_flight -= 1
            if not entry.done:
                await self._observe(entry, task)

    # -- outcomes --------------------------------------------------------------------------

    async def _observe(self, entry: _Entry, task: Task) -> None:
        self._polls += 1
        status = task.status
        progress = task.progress
        previous = entry.status
        if entry.errors:  # a streak of failed polls ends: its error is no longer the news
            entry.errors = 0
            entry.last_error = None
        entry.task = task
        if status is not previous:
            self._by_status[_UNSEEN if previous is None else previous.value] -= 1
            self._by_status[status.value] += 1
            entry.status = status
            entry.same = 1
            changed = True
        else:
            entry.same += 1
            changed = progress != entry.progress
        entry.progress = progress
        if status is TaskStatus.SUCCESS:
            await self._finish(entry, task, entry.update(previous=previous, terminal=True))
            return
        if status is TaskStatus.FAILURE:
            error = TaskFailedError(task)
            await self._finish(
                entry, error, entry.update(previous=previous, terminal=True, error=error)
            )
            return
        if changed:
            await self._emit(entry.update(previous=previous, terminal=False))
        if not entry.done:
            delay = self._poll.next_delay(status, entry.same, self._rng)
            self._push(entry, self._now() + delay)

    async def _failed(self, entry: _Entry, exc: AnyFastError) -> None:
        self._errors += 1
        if isinstance(exc, RateLimitError):
            self._throttles += 1
        if entry.done:  # ended while this poll was in flight: stale news
            return
        if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
            await self._fatal(exc)
            return
        now = self._now()
        transient = is_retryable(exc) or (
            isinstance(exc, TaskNotFoundError) and now - entry.started < self._poll.not_found_grace
        )
        if not transient:
            await self._finish(
                entry, exc, entry.update(previous=entry.status, terminal=True, error=exc)
            )
            return
        entry.errors += 1
        entry.last_error = exc
        delay = self._poll.error_delay(entry.errors, self._rng)
        if isinstance(exc, APIStatusError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self._client.retry.max_retry_after))
        self._push(entry, now + delay)

    async def _fatal(self, exc: AnyFastError) -> None:
        """No task can succeed with this key."""
        if self._stop_on_fatal:
            if self.problem is None:
                self.problem = exc
            if self._cancel is not None:
                self._cancel.cancel()
            return
        for entry in list(self._entries.values()):
            await self._finish(
                entry, exc, entry.update(previous=entry.status, terminal=True, error=exc)
            )

    async def _expire(self, entry: _Entry) -> None:
        error = WaitTimeoutError(entry.task_id, last_task=entry.task, timeout=entry.timeout or 0.0)
        error.__cause__ = entry.last_error
        await self._finish(
            entry, error, entry.update(previous=entry.status, terminal=True, error=error)
        )

    async def _finish(
        self, entry: _Entry, outcome: Task | AnyFastError, update: TaskUpdate
    ) -> None:
        if entry.done:
            return
        entry.done = True
        entry.outcome = outcome
        if self._entries.get(entry.task_id) is entry:
            del self._entries[entry.task_id]
        self._by_status[_UNSEEN if entry.status is None else entry.status.value] -= 1
        if isinstance(outcome, Task):
            self._outcomes["succeeded"] += 1
        elif isinstance(outcome, TaskFailedError):
            self._outcomes["failed"] += 1
        elif isinstance(outcome, WaitTimeoutError):
            self._outcomes["timed_out"] += 1
        else:
            self._outcomes["errored"] += 1
        if entry.waiters is not None:
            entry.waiters.set()
        await self._emit(update)
        if not self._entries:
            self._wake_up()

    async def _emit(self, update: TaskUpdate) -> None:
        if not self._subscribers:
            return
        for stream in list(self._subscribers):
            try:
                try:
                    stream.send_nowait(update)  # no event-loop turn when there is room
                except anyio.WouldBlock:
                    await stream.send(update)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.remove(stream)

    # -- observing -------------------------------------------------------------------------

    def subscribe(self, buffer: int) -> MemoryObjectReceiveStream[TaskUpdate]:
        """A stream of every update from now on."""
        send, receive = anyio.create_memory_object_stream[TaskUpdate](buffer)
        if self._closed:
            send.close()
        else:
            self._subscribers.append(send)
        return receive

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._entries

    def statistics(self) -> WatcherStatistics:
        return WatcherStatistics(
            polls=self._polls,
            errors=self._errors,
            throttles=self._throttles,
            watching=len(self._entries),
            succeeded=self._outcomes["succeeded"],
            failed=self._outcomes["failed"],
            errored=self._outcomes["errored"],
            timed_out=self._outcomes["timed_out"],
            by_status={k: v for k, v in self._by_status.items() if v > 0},
            in_flight=self._in_flight,
            rate_cap=self._client._pacer.rate_cap,
        )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


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
    ) -> None:
        self._scheduler = scheduler
        self._receive = scheduler.subscribe(buffer)
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

    def __init__(self, entry: _Entry) -> None:
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
        """The task as last seen, or ``None`` before the first answer."""
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
        if not entry.done:
            if entry.waiters is None:
                entry.waiters = anyio.Event()
            await entry.waiters.wait()
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

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def __repr__(self) -> str:
        return f"<Watcher watching={len(self._scheduler)}>"

    async def __aenter__(self) -> Watcher:
        self._scheduler.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop polling; waiters of unfinished tasks get a ``RuntimeError``."""
        await self._scheduler.aclose()

    def add(self, task_id: str, *, timeout: float | _Unset | None = UNSET) -> TaskHandle:
        """Start watching ``task_id`` and return its handle.

        Adding a task that is already watched returns a handle to the same watch.

        Args:
            task_id: The task's id.
            timeout: Seconds from now until the task's deadline; defaults to the watcher's.
                ``None``: no deadline.

        Raises:
            TypeError: the id is not a string.
            ValueError: the id is empty, or ``timeout`` is not > 0.
            RuntimeError: the watcher is not running (not entered yet, or closed).
        """
        if self._scheduler._runner is None:
            raise RuntimeError("the watcher is not running: use `async with client.watcher()`")
        return TaskHandle(self._scheduler.add(task_id, timeout))

    def add_many(
        self, task_ids: Iterable[str], *, timeout: float | _Unset | None = UNSET
    ) -> list[TaskHandle]:
        """:meth:`add` each id; returns the handles in the same order.

        Args:
            task_ids: The tasks' ids.
            timeout: As for :meth:`add`, for each of them.

        Raises:
            TypeError, ValueError, RuntimeError: as for :meth:`add`, for the first id that
                fails (the ids before it are watched).
        """
        return [self.add(task_id, timeout=timeout) for task_id in task_ids]

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
