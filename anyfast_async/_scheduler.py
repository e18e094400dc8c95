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

A scheduler is given the :class:`~anyfast_async._engine.Engine` (not the client): it polls with
:meth:`Engine.fetch_task`, under the engine's shared budget, and is closed with the engine.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import math
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from sys import intern
from typing import Final

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._aio import resolve, unwrap
from ._config import UNSET, PollPolicy, UnsetType
from ._engine import Engine
from ._exceptions import (
    AnyFastError,
    AuthenticationError,
    PermissionDeniedError,
    RateLimitError,
    TaskFailedError,
    TaskNotFoundError,
    TaskStalledError,
    WaitTimeoutError,
)
from ._failures import UpstreamError, upstream_error_of
from ._models import Task, TaskStatus
from ._phases import PhaseClock, PhaseLimits
from ._redis import RedisStore
from ._requests import TASKS_PATH, task_path
from ._retry import is_retryable, retry_delay
from ._telemetry import TaskTrace
from ._updates import Tally, TaskUpdate, WatcherStatistics, outcome_of

__all__ = ["Entry", "Scheduler", "summary"]

logger = logging.getLogger("anyfast_async")

_UNSEEN: Final = "UNSEEN"
_NEVER: Final = math.inf
#: Timer slack: work due within this many seconds is done now, which spares a timer and an
#: event-loop turn when intervals are tiny, and changes nothing at the 15 s cadence.
_SLACK: Final = 0.001
_PREFIX: Final = TASKS_PATH + "/"
# The timeout of a resumed task whose recorded deadline has passed: it ends at once.
_PAST_DEADLINE: Final = 1e-6
#: A task whose next poll would come after its deadline is polled once more at the deadline,
#: unless its last answer is younger than this many seconds; that poll has as long to answer.
_LAST_POLL_MARGIN: Final = 1.0
#: A task polled by another process of a fleet ends here with WaitTimeoutError if no news of
#: it came this many seconds after its deadline (no process polls it).
_REMOTE_GRACE: Final = 5.0
_SUCCESS: Final = TaskStatus.SUCCESS
_FAILURE: Final = TaskStatus.FAILURE


def summary(task: Task, task_id: str, upstream: UpstreamError | None = None) -> Task:
    """What a scheduler keeps of a task that is not finished: the record without the
    provider's payload (``data``, most of the record, which nothing reads while a task runs;
    of a provider's error, only ``{"error": {"code", "message"}}`` is kept, which
    :attr:`Task.upstream_error` reads), with the id, status, action and progress strings
    shared between tasks rather than held once per task. It keeps a watched task well under
    1 KB."""
    progress = task.raw_progress
    return msgspec.structs.replace(
        task,
        task_id=task_id if task.task_id == task_id else task.task_id,
        raw_status=intern(task.raw_status),
        action=intern(task.action),
        raw_progress=intern(progress) if type(progress) is str else progress,
        data=None if upstream is None else {"error": msgspec.structs.asdict(upstream)},
    )


_REQUEST_ID: Final = re.compile(
    r"\s*[(\uff08]?\s*request ?id[:\uff1a]?\s*[\w-]+\s*[)\uff09]?", re.IGNORECASE
)


def same_error(one: UpstreamError | None, other: UpstreamError | None) -> bool:
    """Whether two answers carry the same provider error: the same code, or, with no code,
    the same message but for a request id (which changes from one answer to the next)."""
    if one is None or other is None:
        return one is other
    if one.code or other.code:
        return one.code == other.code
    return _REQUEST_ID.sub("", one.message) == _REQUEST_ID.sub("", other.message)


class Entry:
    """One watched task: the scheduler's state of it, read by its handle.

    Kept small, since a scheduler holds one per watched task for as long as it runs: the
    deadline is computed (``started + timeout``), the query path is kept only when it is not
    the plain prefix + id, and the last record seen is kept as a summary (see
    :func:`summary`). ``answered`` is when the poll that brought the last answer was sent
    (``started`` until then).
    """

    __slots__ = (
        "answered",
        "clock",
        "done",
        "due",
        "errors",
        "last_error",
        "outcome",
        "path",
        "polls",
        "progress",
        "remote",
        "same",
        "settled",
        "started",
        "status",
        "task",
        "task_id",
        "timeout",
        "trace",
        "waiters",
    )

    def __init__(self, task_id: str, path: str, started: float, timeout: float | None) -> None:
        self.task_id = task_id
        self.path: str | None = None if path == _PREFIX + task_id else path
        self.started = started
        self.answered = started
        self.remote = False  # polled by another process of a fleet: this one only waits
        self.due: float | None = None  # when its one valid heap item is due (others: stale)
        self.timeout = timeout
        self.task: Task | None = None
        self.status: TaskStatus | None = None
        self.progress: int | None = None
        self.same = 0
        self.errors = 0
        self.last_error: AnyFastError | None = None
        self.done = False  # no more polls
        self.settled = False  # the outcome is delivered (on_terminal returned): waiters go
        self.outcome: Task | BaseException | None = None
        self.waiters: anyio.Event | None = None
        self.clock: PhaseClock | None = None  # with phase deadlines only
        self.polls = 0  # polls sent for it here, answered or failed
        self.trace: TaskTrace | None = None  # its span, while a tracer records

    def __lt__(self, other: Entry) -> bool:
        # Orders heap items (due, entry) whose due times are equal; any fixed order will do.
        return id(self) < id(other)

    def ended(self, error: AnyFastError) -> TaskUpdate:
        """The terminal update of a watch that ended with ``error``, not with an answer."""
        return self.update(self.task, previous=self.status, terminal=True, error=error)

    @property
    def deadline(self) -> float:
        """When the watch ends if the task has not: its deadline, or the first of its phase
        deadlines."""
        timeout = self.timeout
        end = _NEVER if timeout is None else self.started + timeout
        clock = self.clock
        if clock is not None:
            phase_end = clock.deadline()
            if phase_end < end:
                return phase_end
        return end

    @property
    def upstream_error(self) -> UpstreamError | None:
        """The provider's error in the last answer, if any (the summary keeps it)."""
        task = self.task
        return None if task is None or task.data is None else upstream_error_of(task.data)

    @property
    def query_path(self) -> str:
        path = self.path
        return _PREFIX + self.task_id if path is None else path

    async def finished(self) -> None:
        """Wait until the watch of this task has ended and its outcome was delivered to
        ``on_terminal`` (at once if so)."""
        if self.settled:
            return
        if self.waiters is None:
            self.waiters = anyio.Event()
        await self.waiters.wait()

    def update(
        self,
        task: Task | None,
        *,
        previous: TaskStatus | None,
        terminal: bool,
        error: AnyFastError | None = None,
    ) -> TaskUpdate:
        return TaskUpdate(
            task_id=self.task_id,
            task=task,
            previous_status=previous,
            status=self.status,
            progress=self.progress,
            is_terminal=terminal,
            error=error,
        )


class Scheduler:
    """Polls many tasks under one concurrency limit and the engine's shared budget.

    Args:
        engine: What polls go through.
        concurrency: Most polls in flight (capped at the connection pool).
        poll: When to poll.
        timeout: Default deadline of an added task, or ``None``.
        close_when_idle: A scheduler for a fixed set of tasks (``watch``, ``watch_many``): it
            ends when its last task ends, and a refused key (401/403) ends it at once. Without
            it (a watcher), the scheduler keeps running until closed, and a refused key ends
            only the tasks watched at that moment.
        on_terminal: Called with each task's terminal update before its waiters wake (awaited
            if it returns an awaitable); an exception from it is logged, and watching goes on.
        phases: Default phase deadlines of an added task, or ``None``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int,
        poll: PollPolicy,
        timeout: float | None,
        close_when_idle: bool,
        on_terminal: Callable[[TaskUpdate], Awaitable[object] | object] | None = None,
        phases: PhaseLimits | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout!r}")
        self._engine = engine
        self._poll = poll
        self._timeout = timeout
        self._phases = phases
        self._workers = engine.poller_limit(concurrency)
        # Only polls closer than the longest one poll can take to their deadline need a
        # cancel scope around them.
        self._longest_poll = engine.longest_poll
        self._close_when_idle = close_when_idle
        self._on_terminal = on_terminal
        self._rng = engine.new_rng()
        store = engine.store
        if close_when_idle and isinstance(store, RedisStore):
            # A fixed set of tasks (wait, watch_many) is this call's own: recorded in a fleet's
            # store, the fleet's pollers would take them too.
            store = None
        self._store = store
        self._redeliver: set[str] = set()  # resumed: finished before, outcome not handled
        self._heap: list[tuple[float, Entry]] = []
        self._entries: dict[str, Entry] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Future[None] | None = None
        self._sleeping_until = -_NEVER
        self._idle: deque[asyncio.Future[Entry | None]] = deque()
        self._stopping = False
        self._closing = False  # pollers leave at their next turn (see aclose)
        self._ready: deque[Entry] = deque()
        self._subscribers: list[MemoryObjectSendStream[TaskUpdate]] = []
        self._terminal_subscribers: list[MemoryObjectSendStream[TaskUpdate]] = []
        self._runner: asyncio.Task[None] | None = None
        self._cancel: anyio.CancelScope | None = None
        self._closed = False
        self.problem: BaseException | None = None
        #: Called with each task polled here that ends, before its outcome is recorded (a
        #: fleet tells the process that added it).
        #: Whether this process should deliver the outcome (False: it lost the task's lease,
        #: and the process that holds it now delivers it).
        self.on_finished: Callable[[str, Task | AnyFastError], Awaitable[bool]] | None = None
        #: Called with each task polled here whose ``on_terminal`` failed (a fleet gives it
        #: back, to be delivered again later).
        self.on_undelivered: Callable[[str], Awaitable[None]] | None = None
        self._in_flight = 0
        self._polls = 0
        self._errors = 0
        self._throttles = 0
        self._outcomes: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._queue_times = Tally()
        self._run_times = Tally()
        self._task_polls = Tally()
        self._telemetry = engine.telemetry
        self._counts = None
        if engine.telemetry is not None:
            self._counts = engine.telemetry.metrics.counts()
            engine.telemetry.metrics.watching(self)  # its tasks are being watched

    @property
    def phases(self) -> PhaseLimits | None:
        """The default phase deadlines of an added task."""
        return self._phases

    # -- adding tasks ----------------------------------------------------------------------

    def add(
        self,
        task_id: str,
        timeout: float | UnsetType | None = UNSET,
        *,
        remote: bool = False,
        phases: PhaseLimits | UnsetType | None = UNSET,
        record: bool = True,
        model: str = "",
    ) -> Entry:
        """Watch ``task_id`` (once: adding it again returns the same entry). ``remote``: it is
        recorded, and waited for here, but polled by whichever process of a fleet holds it.
        ``phases``: its phase deadlines, if not the scheduler's. Not ``record``: the store
        is not told of a new watch (a finished outcome delivered again stays finished).
        ``model``: the model it was created with, if known (its span says so)."""
        path = task_path(task_id)
        if self._closed:
            raise RuntimeError("this watcher is closed")
        entry = self._entries.get(task_id)
        if entry is not None:
            return entry
        limit = self._timeout if isinstance(timeout, UnsetType) else timeout
        if limit is not None and not limit > 0:
            raise ValueError(f"timeout must be > 0 or None, got {limit!r}")
        now = self._now()
        entry = Entry(task_id, path, now, limit)
        limits = self._phases if isinstance(phases, UnsetType) else phases
        if limits is not None:
            entry.clock = PhaseClock(limits)
        if self._store is not None and record:
            self._store.watching(task_id, None if limit is None else time.time() + limit)
        self._entries[task_id] = entry
        self._by_status[_UNSEEN] += 1
        if self._telemetry is not None:
            entry.trace = self._telemetry.watching(task_id, model)
        if remote:
            entry.remote = True
            self._wait_remote(entry)
        else:
            self._push(entry, now)
        return entry

    # -- a fleet: tasks held here, outcomes from elsewhere -----------------------------------

    @property
    def closed(self) -> bool:
        """Whether it has stopped for good (closed, or ended by an error)."""
        return self._closed

    def _wait_remote(self, entry: Entry) -> None:
        """A task polled elsewhere: looked at again here only at its deadline (and some
        grace for the news to come), to end its waiters' wait if no news came."""
        if entry.timeout is not None:
            due = entry.due = entry.deadline + _REMOTE_GRACE
            heapq.heappush(self._heap, (due, entry))
            if self._idle and due < self._sleeping_until:
                self._wake_up()
        else:
            entry.due = None

    async def _remote_due(self, entry: Entry, now: float) -> None:
        """A task polled elsewhere came up in the heap: past its deadline and grace with no
        news (no process polls it), its watch ends here."""
        if entry.timeout is not None and now >= entry.deadline + _REMOTE_GRACE - _SLACK:
            error = WaitTimeoutError(entry.task_id, last_task=entry.task, timeout=entry.timeout)
            await self._finish(entry, error, entry.ended(error), here=False)
        else:
            self._wait_remote(entry)

    def hold(self, task_id: str, deadline: float | None, *, redeliver: bool = False) -> bool:
        """Poll ``task_id`` here from now on (this process of a fleet holds its lease), until
        it ends or :meth:`let_go`; ``deadline`` in Unix seconds. ``redeliver``: it ended
        before, and its outcome is delivered again. Whether it is polled here now (not if
        the scheduler is closed)."""
        if self._closed:
            return False
        entry = self._entries.get(task_id)
        if entry is not None and not entry.remote:
            return True  # polled here already
        if redeliver:
            self._redeliver.add(task_id)
        now = self._now()
        if entry is None:
            timeout = None if deadline is None else max(deadline - time.time(), _PAST_DEADLINE)
            entry = Entry(task_id, task_path(task_id), now, timeout)
            self._entries[task_id] = entry
            self._by_status[_UNSEEN] += 1
        # The phase deadlines of the process that polls, measured from its own polls.
        entry.clock = None if self._phases is None else PhaseClock(self._phases)
        entry.remote = False
        self._push(entry, now)  # any item it had (a remote wait) is left behind
        return True

    def let_go(self, task_id: str, *, waited_here: bool) -> None:
        """Stop polling ``task_id`` (its lease went to another process): it goes on being
        waited for here if it was added here (``waited_here``), else it is forgotten."""
        entry = self._entries.get(task_id)
        if entry is None or entry.done:
            return
        if waited_here:
            entry.remote = True
            entry.clock = None  # its phases are measured by the process that polls it
            self._wait_remote(entry)  # its poll, if queued, is left behind
            return
        entry.done = entry.settled = True
        del self._entries[task_id]
        self._by_status[_UNSEEN if entry.status is None else entry.status.value] -= 1
        if entry.trace is not None:  # its watch goes on elsewhere
            entry.trace.end("closed", entry.task, None, entry.polls)
            entry.trace = None

    async def settle(self, task_id: str, outcome: Task | AnyFastError) -> None:
        """The outcome of a task another process polled: its waiters and readers get it
        (its holder recorded it and ran ``on_terminal``)."""
        entry = self._entries.get(task_id)
        if entry is None or entry.done:
            return
        previous = entry.status
        if isinstance(outcome, Task):
            entry.status = outcome.status
            entry.task = outcome
            update = entry.update(outcome, previous=previous, terminal=True)
        else:
            task = getattr(outcome, "task", None) or getattr(outcome, "last_task", None)
            if isinstance(task, Task):
                entry.status = task.status
                entry.task = task
            update = entry.update(entry.task, previous=previous, terminal=True, error=outcome)
        if previous is not entry.status:
            self._by_status[_UNSEEN if previous is None else previous.value] -= 1
            self._by_status[_UNSEEN if entry.status is None else entry.status.value] += 1
        await self._finish(entry, outcome, update, here=False)

    async def resume(self) -> list[Entry]:
        """Watch again every task of the client's store that is unfinished (with its recorded
        deadline) or finished with an outcome not yet handled (its outcome is fetched again
        and redelivered)."""
        store = self._store
        if store is None:
            raise RuntimeError(
                "resume() needs a client with a task store: AnyFast(store=SQLiteStore(path))"
            )
        records = await store.tasks(unfinished=True, unhandled=True)
        now = time.time()
        entries = []
        for record in records:
            if record.task_id is None:  # a create whose outcome is unknown: not a task yet
                continue
            timeout: float | UnsetType = UNSET
            if record.unfinished and record.deadline is not None:
                timeout = max(record.deadline - now, _PAST_DEADLINE)
            elif not record.unfinished:
                self._redeliver.add(record.task_id)
            # A finished task delivered again stays recorded as finished and unhandled until
            # its delivery returns: a crash meanwhile finds it to deliver again, as such.
            entries.append(self.add(record.task_id, timeout, record=record.unfinished))
        return entries

    def _push(self, entry: Entry, due: float) -> None:
        deadline = entry.deadline
        if due > deadline:
            due = deadline
        entry.due = due
        heapq.heappush(self._heap, (due, entry))
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

    @property
    def running(self) -> bool:
        """Whether :meth:`start` has run (it may have ended since)."""
        return self._runner is not None

    def start(self) -> None:
        """Start polling in a task of its own (idempotent)."""
        if self._runner is not None:
            return
        if self._closed:
            raise RuntimeError("this watcher is closed")
        self._engine.check_open()
        self._loop = asyncio.get_running_loop()
        loop = self._loop

        def run() -> asyncio.Task[None]:
            return loop.create_task(self._run(), name="anyfast-async scheduler")

        # With telemetry, its polls nest in their tasks' spans, not in the starter's.
        tel = self._telemetry
        self._runner = run() if tel is None else tel.outside_spans(run)
        self._engine.track(self)

    def cancel_soon(self) -> None:
        """Cancel the polling task without waiting for it (for finalizers). A scheduler that
        never started is shut down at once, closing its subscribers' streams."""
        self._closing = True
        if self._runner is None:
            self._shutdown()
        elif not self._runner.done():
            self._runner.cancel()

    async def aclose(self) -> None:
        """Stop polling and wait until the polling task has ended. Idempotent."""
        runner = self._runner
        # Pollers also leave by themselves at their next turn: the cancellation alone can be
        # slow to reach them when answers are always ready before anyio delivers it (it skips
        # a task whose awaited future is already done, and retries on the next loop turn).
        self._closing = True
        if runner is not None and not runner.done():
            runner.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([runner])
        self._shutdown()
        self._engine.untrack(self)

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
            self.problem = unwrap(exc)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        closed = RuntimeError("the watch was closed before the task finished")
        problem = self.problem  # what ended the watch, if it did not just close
        if self._entries and self.problem is None:
            self.problem = closed  # readers of the updates must not take this for an end
        # Closed before the task ended, or ended by what ended the watch (a refused key).
        label = "closed" if problem is None else outcome_of(problem)
        for entry in self._entries.values():
            entry.done = entry.settled = True
            entry.outcome = self.problem or closed
            if entry.waiters is not None:
                entry.waiters.set()
            if self._telemetry is not None and problem is not None and not entry.remote:
                self._telemetry.metrics.ended(label, entry.task)
            if entry.trace is not None:
                entry.trace.end(label, entry.task, problem, entry.polls)
                entry.trace = None
        self._entries.clear()
        self._heap.clear()
        self._ready.clear()
        for stream in (*self._subscribers, *self._terminal_subscribers):
            stream.close()
        self._subscribers.clear()
        self._terminal_subscribers.clear()

    async def _sleep_until(self, when: float) -> None:
        """Sleep until ``when`` (loop time) or until :meth:`_wake_up`, whichever is first."""
        loop = self._loop
        assert loop is not None
        wake = self._wake = loop.create_future()
        timer = None if when == _NEVER else loop.call_at(when, resolve, wake)
        self._sleeping_until = when
        try:
            await wake
        finally:
            self._sleeping_until = -_NEVER
            if timer is not None:
                timer.cancel()

    async def _dispatch(self) -> None:
        """Hand due entries to idle pollers; sleep until the next is due.

        Only while a poller is idle: busy pollers take due entries from the heap themselves
        when they come free, so with every poller busy the dispatcher sleeps without a timer
        (a poller that goes idle wakes it) instead of waking for every entry that falls due.
        """
        heap = self._heap
        idle = self._idle
        ready = self._ready
        while True:
            now = self._now()
            while idle and heap and heap[0][0] <= now + _SLACK:
                due, entry = heapq.heappop(heap)
                if entry.done or due != entry.due:
                    continue  # ended, or an item left behind by a later push
                entry.due = None
                if entry.remote:
                    await self._remote_due(entry, now)
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
            await self._sleep_until(heap[0][0] if heap and idle else _NEVER)

    async def _worker(self) -> None:
        loop = self._loop
        assert loop is not None
        fetch = self._engine.fetch_task
        fetch_traced = self._engine.fetch_traced
        pacer = self._engine.budget
        heap = self._heap
        idle = self._idle
        ready = self._ready
        while True:
            if self._closing:
                return
            # A poller that comes free takes due work itself; it waits (and the dispatcher
            # hands it the next entry when due) only when nothing is due.
            if ready:
                entry = ready.popleft()
            elif heap and heap[0][0] <= loop.time() + _SLACK:
                due, entry = heapq.heappop(heap)
                if due != entry.due:
                    continue  # an item left behind by a later push
                entry.due = None
            elif self._stopping:
                return
            else:
                waiter: asyncio.Future[Entry | None] = loop.create_future()
                idle.append(waiter)
                if heap and heap[0][0] < self._sleeping_until:
                    self._wake_up()  # the dispatcher must time the next due entry for us
                next_entry = await waiter
                if next_entry is None:
                    return
                entry = next_entry
            if entry.done:
                continue
            if entry.remote:
                await self._remote_due(entry, loop.time())
                continue
            now = loop.time()
            timeout = entry.timeout
            remaining = _NEVER if timeout is None else entry.started + timeout - now
            if entry.clock is not None:
                remaining = min(remaining, entry.clock.deadline() - now)
            if remaining <= _SLACK:
                # The deadline. A task whose cadence would have polled it later is polled once
                # more now (given _LAST_POLL_MARGIN to answer), unless its last answer came
                # less than that before the deadline (or after it: this was that poll), or its
                # polls are failing (their backoff and any Retry-After stand).
                if entry.errors or entry.deadline - entry.answered < _LAST_POLL_MARGIN:
                    await self._expire(entry)
                    continue
                remaining = min(_LAST_POLL_MARGIN, self._longest_poll)
            path = entry.path
            if path is None:
                path = _PREFIX + entry.task_id
            self._in_flight += 1
            trace = entry.trace
            token = None if trace is None else trace.enter()  # the HTTP span nests in it
            failure: AnyFastError | None = None
            cut_off = False
            try:
                if remaining > self._longest_poll:
                    if not pacer.try_acquire(now):
                        await pacer.acquire()
                        now = loop.time()
                    if trace is None:
                        task = await fetch(path, sent=now)
                    else:
                        task = await fetch_traced(path, trace, sent=now)
                else:  # this poll could outlast the deadline: cut it off there
                    with anyio.move_on_after(remaining):
                        if not pacer.try_acquire(now):
                            await pacer.acquire()
                            now = loop.time()
                        if trace is None:
                            task = await fetch(path, sent=now)
                        else:
                            task = await fetch_traced(path, trace, sent=now)
                        remaining = -1.0
                    cut_off = remaining >= 0
            except AnyFastError as exc:
                failure = exc
            finally:  # the span is current for the request only, not for what follows
                if token is not None:
                    trace.leave(token)  # type: ignore[union-attr]
            if failure is not None:
                self._in_flight -= 1
                await self._failed(entry, failure)
                continue
            if cut_off:
                self._in_flight -= 1
                await self._expire(entry)
                continue
            self._in_flight -= 1
            entry.answered = now
            # The common case (a running task, seen again) is settled without a coroutine. A
            # task that ended while this poll was in flight (closed, expired) is left alone.
            update = None if entry.done else self._observe(entry, task)
            if update is not None:
                if update.is_terminal:
                    await self._finish(entry, update.error or task, update)
                else:
                    await self._emit(update)

    # -- outcomes --------------------------------------------------------------------------

    def _observe(self, entry: Entry, task: Task) -> TaskUpdate | None:
        """Record a poll's answer; the update it makes, if any (a terminal one is for the
        caller to finish with). A task still running is scheduled for its next poll."""
        self._polls += 1
        entry.polls += 1
        if self._counts is not None:
            self._counts.polls += 1
        status = task.status
        progress = task.progress
        previous = entry.status
        if entry.errors:  # a streak of failed polls ends: its error is no longer the news
            entry.errors = 0
            entry.last_error = None
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
        trace = entry.trace
        if trace is not None:  # a change of the status as sent (two unknown ones differ)
            last = entry.task
            was = None if last is None else last.raw_status
            if task.raw_status != was:
                trace.transition(task.raw_status, was, progress)
        clock = entry.clock
        if status is _SUCCESS:
            entry.task = task
            return entry.update(task, previous=previous, terminal=True)
        if status is _FAILURE:
            entry.task = task
            error = TaskFailedError(task)
            return entry.update(task, previous=previous, terminal=True, error=error)
        if entry.same == 1 and self._store is not None:  # a new status, not a terminal one
            self._store.status(entry.task_id, task.raw_status)
        data = task.data
        upstream = None if data is None else upstream_error_of(data)
        if clock is not None:  # a stall is neither status nor progress changing
            clock.observe(entry.answered, status, changed, upstream)
        if not same_error(upstream, entry.upstream_error):  # appeared, changed, went away
            changed = True
            if trace is not None:
                trace.upstream(upstream)
        entry.task = summary(task, entry.task_id, upstream)
        self._push(entry, self._now() + self._poll.next_delay(status, entry.same, self._rng))
        if changed and self._subscribers:
            return entry.update(task, previous=previous, terminal=False)
        return None

    async def _failed(self, entry: Entry, exc: AnyFastError) -> None:
        self._errors += 1
        if isinstance(exc, RateLimitError):
            self._throttles += 1
        if self._counts is not None:
            self._counts.failed_poll(exc)
        if entry.done:  # ended while this poll was in flight: stale news
            return
        entry.polls += 1
        if entry.trace is not None:
            entry.trace.poll_failed(exc)
        if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
            await self._fatal(exc)
            return
        now = self._now()
        young = now - entry.started < self._poll.not_found_grace
        delay = retry_delay(
            exc,
            entry.errors + 1,
            backoff=self._poll.error_delay,
            max_retry_after=self._engine.retry.max_retry_after,
            rng=self._rng,
            retryable=_retryable_while_young if young else is_retryable,
        )
        if delay is None:
            await self._finish(entry, exc, entry.ended(exc))
            return
        entry.errors += 1
        entry.last_error = exc
        self._push(entry, now + delay)

    async def _fatal(self, exc: AnyFastError) -> None:
        """No task can succeed with this key."""
        if self._close_when_idle:
            if self.problem is None:
                self.problem = exc
            self._closing = True
            if self._cancel is not None:
                self._cancel.cancel()
            return
        for entry in list(self._entries.values()):
            await self._finish(entry, exc, entry.ended(exc))

    async def _expire(self, entry: Entry) -> None:
        timeout = entry.timeout
        clock = entry.clock
        task = entry.task
        error: WaitTimeoutError
        if (
            clock is not None
            and task is not None
            and clock.deadline() < (_NEVER if timeout is None else entry.started + timeout)
        ):
            reason, limit, elapsed = clock.passed(self._now())
            error = TaskStalledError(
                entry.task_id, task=task, reason=reason, timeout=limit, elapsed=elapsed
            )
        else:
            error = WaitTimeoutError(entry.task_id, last_task=task, timeout=timeout or 0.0)
        error.__cause__ = entry.last_error
        await self._finish(entry, error, entry.ended(error))

    async def _finish(
        self,
        entry: Entry,
        outcome: Task | AnyFastError,
        update: TaskUpdate,
        *,
        here: bool = True,
    ) -> None:
        """End a task's watch: record its outcome, hand it to ``on_terminal``, wake its
        waiters, tell the readers. Not ``here``: another process of a fleet polled it and did
        the recording and ``on_terminal``; only the waiting is left."""
        if entry.done:
            return
        entry.done = True
        entry.outcome = outcome
        if self._entries.get(entry.task_id) is entry:
            del self._entries[entry.task_id]
        self._by_status[_UNSEEN if entry.status is None else entry.status.value] -= 1
        label = outcome_of(outcome)
        self._outcomes[label] += 1
        last = outcome.task if isinstance(outcome, TaskFailedError) else outcome
        record: Task | None = entry.task
        if isinstance(last, Task):  # SUCCESS or FAILURE: how long it queued and ran
            record = last
            if here:  # (polled elsewhere: its polls are not this process's)
                self._task_polls.add(entry.polls)
            queued = record.queue_time
            if queued is not None:
                self._queue_times.add(queued)
            ran = record.run_time
            if ran is not None:
                self._run_times.add(ran)
        if self._telemetry is not None and here:  # (else the process that polled it does)
            self._telemetry.metrics.ended(label, record)
        trace = entry.trace
        if trace is not None:
            entry.trace = None
            trace.end(label, record, None if isinstance(outcome, Task) else outcome, entry.polls)
        if self._redeliver and entry.task_id in self._redeliver:
            self._redeliver.discard(entry.task_id)
            update = msgspec.structs.replace(update, redelivered=True)
        try:
            store = self._store if here else None
            if store is not None:
                with anyio.CancelScope(shield=True):  # an outcome is recorded whole
                    await store.finished(
                        entry.task_id,
                        _last_status(entry, outcome),
                        None if isinstance(outcome, Task) else str(outcome),
                        handled=self._on_terminal is None,
                    )
            deliver_here = here
            if here and self.on_finished is not None:  # recorded first, then told
                with anyio.CancelScope(shield=True):
                    deliver_here = await self.on_finished(entry.task_id, outcome)
            if deliver_here and self._on_terminal is not None:
                if await self._deliver(update):
                    if store is not None:
                        with anyio.CancelScope(shield=True):
                            await store.handled(entry.task_id)
                elif self.on_undelivered is not None:
                    await self.on_undelivered(entry.task_id)
        finally:  # a waiter wakes even when the delivery is cancelled (the watcher closing)
            entry.settled = True
            if entry.waiters is not None:
                entry.waiters.set()
        await self._emit(update)
        if not self._entries:
            self._wake_up()

    async def _deliver(self, update: TaskUpdate) -> bool:
        """Hand a terminal update to ``on_terminal``; whether it returned. Its failure is the
        caller's to fix, not a reason to stop watching the other tasks."""
        assert self._on_terminal is not None
        try:
            result = self._on_terminal(update)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_terminal failed for task %s", update.task_id)
            return False
        return True

    async def _emit(self, update: TaskUpdate) -> None:
        if update.is_terminal and self._terminal_subscribers:
            await self._send(self._terminal_subscribers, update)
        if self._subscribers:
            await self._send(self._subscribers, update)

    async def _send(
        self, subscribers: list[MemoryObjectSendStream[TaskUpdate]], update: TaskUpdate
    ) -> None:
        for stream in list(subscribers):
            try:
                try:
                    stream.send_nowait(update)  # no event-loop turn when there is room
                except anyio.WouldBlock:
                    await stream.send(update)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                subscribers.remove(stream)
                stream.close()  # its reader is gone

    # -- observing -------------------------------------------------------------------------

    def subscribe(
        self, buffer: int, *, terminal_only: bool = False
    ) -> MemoryObjectReceiveStream[TaskUpdate]:
        """A stream of every update from now on (only the terminal ones with
        ``terminal_only``: a reader of outcomes is then never woken for a progress change)."""
        send, receive = anyio.create_memory_object_stream[TaskUpdate](buffer)
        if self._closed:
            send.close()
        elif terminal_only:
            self._terminal_subscribers.append(send)
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
            rate_cap=self._engine.budget.rate_cap,
            queue_time_p50=self._queue_times.percentile(50),
            queue_time_p95=self._queue_times.percentile(95),
            run_time_p50=self._run_times.percentile(50),
            run_time_p95=self._run_times.percentile(95),
            polls_per_task=self._task_polls.mean(),
        )


def _retryable_while_young(exc: BaseException) -> bool:
    """Transient for a task just added: "not found" right after a create is the gateway
    catching up (it stores the task after answering the create), not an answer."""
    return is_retryable(exc) or isinstance(exc, TaskNotFoundError)


def _last_status(entry: Entry, outcome: Task | AnyFastError) -> str:
    """The raw status a finished watch last saw (``""`` if none)."""
    if isinstance(outcome, Task):
        return outcome.raw_status
    last = entry.task
    return last.raw_status if last is not None else ""
