"""The watch calls of :class:`~anyfast_async.AnyFast`: one task, many tasks, a watcher.

A part of the public client (it reaches the API through the client's engine): each method
builds a scheduler on the engine, checking its arguments at the call, and returns the stream,
the result or the watcher of :mod:`anyfast_async._watch`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable

from ._config import DEFAULT_WAIT_TIMEOUT, PollPolicy
from ._engine import Engine
from ._fleet import Fleet
from ._models import Task
from ._phases import PhaseLimits
from ._redis import RedisStore
from ._updates import Outcomes, TaskUpdate
from ._watch import (
    UpdateStream,
    Watcher,
    downloading,
    follow,
    new_scheduler,
    one_task_scheduler,
    wait_for,
    wait_many,
)

__all__ = ["WatchCalls"]


class WatchCalls:
    """The watch methods of :class:`~anyfast_async.AnyFast`."""

    _engine: Engine

    # -- watching --------------------------------------------------------------------------

    def watch(
        self,
        task_id: str,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
        queue_timeout: float | None = None,
        run_timeout: float | None = None,
        stall_timeout: float | None = None,
        upstream_error_timeout: float | None = None,
    ) -> UpdateStream:
        """Watch one task: an async iterator of its :class:`TaskUpdate` s.

        ::

            async for update in client.watch(task_id, timeout=600):
                print(update.status, update.progress)

        The first poll is immediate. An update is yielded for the first observation and then
        only when the status or the progress changes; after the terminal update (SUCCESS or
        FAILURE, with ``update.error`` a :class:`TaskFailedError` for FAILURE) the iteration
        ends. Transient errors (connection errors, timeouts, 429, 5xx) do not end the watch:
        polling goes on with backoff until the deadline.

        Breaking out of the loop, closing the stream (``async with client.watch(...) as
        updates:``) or cancelling the surrounding task stops polling at once.

        Args:
            task_id: The task to watch.
            timeout: Seconds until the deadline (default 1800); ``None`` for none.
            poll: When to poll (:class:`PollPolicy`); default: ``PollPolicy()``.
            poll_interval: Shortcut for ``poll=PollPolicy.fixed(poll_interval)``.
            queue_timeout: Longest time the task may wait (NOT_START, SUBMITTED, QUEUED)
                before it ends with :class:`TaskStalledError`; ``None`` (default): no limit.
            run_timeout: Longest time it may run (IN_PROGRESS, or a status the SDK does not
                know); ``None``: no limit.
            stall_timeout: Longest time it may run with neither its status nor its progress
                changing; ``None``: no limit.
            upstream_error_timeout: Longest time the provider's error
                (:attr:`Task.upstream_error`) may persist; ``None``: no limit.

        Raises:
            TypeError: ``task_id`` is not a string (at the call).
            ValueError: ``task_id`` is empty, ``timeout`` or ``poll_interval`` is not > 0, or
                both ``poll`` and ``poll_interval`` are given (at the call).
            RuntimeError: the client is not open (at the call), or was closed during the
                watch.
            WaitTimeoutError: the deadline passed (carries the last task seen).
            TaskNotFoundError: the task does not exist (after a short grace period).
            AuthenticationError: the key was refused (401).
            PermissionDeniedError: the key may not read this task (403).
            BadRequestError: the server refused the query for another reason.
            ResponseDecodeError: an answer could not be read as a task.
        """
        scheduler = one_task_scheduler(
            self._engine,
            timeout=timeout,
            poll=poll,
            poll_interval=poll_interval,
            phases=PhaseLimits.of(
                queue_timeout=queue_timeout,
                run_timeout=run_timeout,
                stall_timeout=stall_timeout,
                upstream_error_timeout=upstream_error_timeout,
            ),
        )
        scheduler.add(task_id)
        return follow(scheduler)

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
        queue_timeout: float | None = None,
        run_timeout: float | None = None,
        stall_timeout: float | None = None,
        upstream_error_timeout: float | None = None,
    ) -> Task:
        """Wait for one task to finish and return it.

        ::

            try:
                task = await client.wait(task_id, timeout=900)
            except TaskFailedError as exc:
                print("failed:", exc.reason)

        Args:
            task_id: The task to wait for.
            timeout: Seconds until the deadline (default 1800); ``None`` for none.
            poll: When to poll, as for :meth:`watch`.
            poll_interval: Shortcut for a fixed interval, as for :meth:`watch`.
            queue_timeout: Phase deadline, as for :meth:`watch`.
            run_timeout: Phase deadline, as for :meth:`watch`.
            stall_timeout: Phase deadline, as for :meth:`watch`.
            upstream_error_timeout: Phase deadline, as for :meth:`watch`.

        Returns:
            The final :class:`Task`, whose status is SUCCESS.

        Raises:
            TaskFailedError: the task ended in FAILURE (``.task``, ``.reason``).
            TypeError, ValueError, RuntimeError, AnyFastError: as for :meth:`watch`.
        """
        return await wait_for(
            self.watch(
                task_id,
                timeout=timeout,
                poll=poll,
                poll_interval=poll_interval,
                queue_timeout=queue_timeout,
                run_timeout=run_timeout,
                stall_timeout=stall_timeout,
                upstream_error_timeout=upstream_error_timeout,
            ),
            task_id,
        )

    def watch_many(
        self,
        task_ids: Iterable[str],
        *,
        concurrency: int = 64,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
        queue_timeout: float | None = None,
        run_timeout: float | None = None,
        stall_timeout: float | None = None,
        upstream_error_timeout: float | None = None,
    ) -> UpdateStream:
        """Watch many tasks at once: an async iterator of all their updates, merged.

        ::

            async for update in client.watch_many(task_ids, concurrency=64, timeout=900):
                if update.is_terminal:
                    print(update.task_id, update.outcome())

        One scheduler polls every task, with at most ``concurrency`` requests in flight
        whatever the number of tasks. Each task yields the updates :meth:`watch` would, and
        its last update has ``is_terminal=True``. A task whose watch ends without success does
        not raise: its last update carries the error (:class:`TaskFailedError`,
        :class:`WaitTimeoutError`, :class:`TaskNotFoundError`, ...) and the others go on.
        Duplicate ids are watched once.

        Args:
            task_ids: The tasks to watch.
            concurrency: Most requests in flight at once (capped at the connection pool size).
            timeout: Seconds until each task's deadline (default 1800); ``None`` for none.
            poll: When to poll, as for :meth:`watch`.
            poll_interval: Shortcut for a fixed interval, as for :meth:`watch`.
            queue_timeout: Phase deadline, as for :meth:`watch`.
            run_timeout: Phase deadline, as for :meth:`watch`.
            stall_timeout: Phase deadline, as for :meth:`watch`.
            upstream_error_timeout: Phase deadline, as for :meth:`watch`.

        Raises:
            TypeError: an id is not a string (at the call).
            ValueError: an id is empty, ``concurrency`` < 1, or ``timeout`` or
                ``poll_interval`` is not > 0 (at the call, before anything is sent).
            RuntimeError: the client is not open, or was closed during the watch.
            AuthenticationError: the key was refused (401); no task can succeed, so
                everything stops.
            PermissionDeniedError: likewise, for a 403.
        """
        phases = PhaseLimits.of(
            queue_timeout=queue_timeout,
            run_timeout=run_timeout,
            stall_timeout=stall_timeout,
            upstream_error_timeout=upstream_error_timeout,
        )
        return self._many(task_ids, concurrency, timeout, poll, poll_interval, phases)

    def _many(
        self,
        task_ids: Iterable[str],
        concurrency: int,
        timeout: float | None,
        poll: PollPolicy | None,
        poll_interval: float | None,
        phases: PhaseLimits | None,
        *,
        terminal_only: bool = False,
    ) -> UpdateStream:
        scheduler = new_scheduler(
            self._engine,
            concurrency=concurrency,
            timeout=timeout,
            poll=poll,
            poll_interval=poll_interval,
            close_when_idle=True,
            phases=phases,
        )
        try:
            for task_id in task_ids:
                scheduler.add(task_id)
        except BaseException:  # a bad id: the tasks added before it are not watched either
            scheduler.cancel_soon()
            raise
        return UpdateStream(
            scheduler,
            buffer=max(64, concurrency),
            owns_scheduler=True,
            raise_errors=False,
            terminal_only=terminal_only,
        )

    async def wait_many(
        self,
        task_ids: Iterable[str],
        *,
        concurrency: int = 64,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
        queue_timeout: float | None = None,
        run_timeout: float | None = None,
        stall_timeout: float | None = None,
        upstream_error_timeout: float | None = None,
        download_to: str | os.PathLike[str] | None = None,
        download_concurrency: int = 4,
        skip_existing: bool = True,
        results: Outcomes | None = None,
    ) -> Outcomes:
        """Wait for many tasks; map each id to its final :class:`Task` or the error that ended it.

        Takes the arguments of :meth:`watch_many`. One task's failure never cancels the
        others: its value in the result is the :class:`TaskFailedError`,
        :class:`WaitTimeoutError`, :class:`TaskNotFoundError`, ... that ended it. The result,
        a ``dict`` (:class:`Outcomes`), keeps the order of ``task_ids`` (duplicates once).

        With ``download_to`` (a folder), each result is downloaded as soon as its task
        succeeds, at most ``download_concurrency`` at a time, to
        ``download_to/<task id>.mp4`` (see :meth:`download`), while the others are still
        being watched; ``result.files`` maps each id to the file written. A failed download
        makes that task's value the download's error. A video already in ``download_to``
        under the name this task's gets is kept, not fetched again (``skip_existing``): a
        download puts a file there only once it is whole, so running the same call again
        after an interruption fetches only what is missing.

        To keep what an interrupted call (cancelled, or stopped by Ctrl-C) had learned, pass
        ``results=Outcomes()``: it is filled as each task ends, in the order they end.

        Args:
            task_ids: The tasks to wait for.
            concurrency: Most polls in flight at once (capped at the connection pool size).
            timeout: Seconds until each task's deadline (default 1800); ``None`` for none.
            poll: When to poll, as for :meth:`watch`.
            poll_interval: Shortcut for a fixed interval, as for :meth:`watch`.
            queue_timeout: Phase deadline, as for :meth:`watch`.
            run_timeout: Phase deadline, as for :meth:`watch`.
            stall_timeout: Phase deadline, as for :meth:`watch`.
            upstream_error_timeout: Phase deadline, as for :meth:`watch`.
            download_to: A folder to download each result into as soon as it succeeds.
            download_concurrency: Most downloads at once.
            skip_existing: Keep a video already saved in ``download_to`` for a task
                (default ``True``); ``False`` fetches it again.
            results: An :class:`Outcomes` to fill as each task ends.

        Returns:
            The :class:`Outcomes`: task id to :class:`Task` or error, and ``files``.

        Raises:
            ValueError: ``download_concurrency`` < 1, or as for :meth:`watch_many`.
            TypeError, RuntimeError, AnyFastError: as for :meth:`watch_many`.
        """
        if download_concurrency < 1:
            raise ValueError(f"download_concurrency must be >= 1, got {download_concurrency!r}")
        ids = list(dict.fromkeys(task_ids))
        # Only outcomes are read: the reader is never woken for a progress change.
        phases = PhaseLimits.of(
            queue_timeout=queue_timeout,
            run_timeout=run_timeout,
            stall_timeout=stall_timeout,
            upstream_error_timeout=upstream_error_timeout,
        )
        updates = self._many(
            ids, concurrency, timeout, poll, poll_interval, phases, terminal_only=True
        )
        return await wait_many(
            self._engine,
            updates,
            ids,
            download_to=download_to,
            download_concurrency=download_concurrency,
            skip_existing=skip_existing,
            results=results,
        )

    def watcher(
        self,
        *,
        concurrency: int = 64,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
        queue_timeout: float | None = None,
        run_timeout: float | None = None,
        stall_timeout: float | None = None,
        upstream_error_timeout: float | None = None,
        on_terminal: Callable[[TaskUpdate], Awaitable[object] | object] | None = None,
        download_to: str | os.PathLike[str] | None = None,
        download_concurrency: int = 4,
        skip_existing: bool = True,
    ) -> Watcher:
        """A long-lived scheduler to add tasks to while it runs, for web apps and workers.

        ::

            async with client.watcher(concurrency=64, on_terminal=save) as watcher:
                handle = watcher.add(task_id)          # from any coroutine
                task = await handle.wait()

        An authentication error ends every task being watched at that moment (their waiters
        get it), but the watcher keeps running.

        A finished task leaves the watcher (adding it again starts a new watch): keep its
        outcome where your application keeps its state, with ``on_terminal``. It is called with
        each task's terminal :class:`TaskUpdate` (success, failure, or the error that ended the
        watch: see :meth:`TaskUpdate.outcome`) before the task's waiters wake, so a request
        waiting on the task finds your store up to date. It runs in the watcher's poller: keep
        it short (a write to your store), or hand longer work to a task group of your own. An
        exception it raises is logged (logger ``anyfast_async``) and watching goes on. Tasks
        still watched when the watcher closes are not finished, and are not passed to it.

        Args:
            concurrency: Most polls in flight at once, for all the tasks of the watcher
                (capped at the connection pool size).
            timeout: The default deadline of each added task, in seconds from its
                :meth:`Watcher.add` (default 1800); ``None`` for none.
            poll: When to poll, as for :meth:`watch`.
            poll_interval: Shortcut for a fixed interval, as for :meth:`watch`.
            queue_timeout: Phase deadline, as for :meth:`watch`.
            run_timeout: Phase deadline, as for :meth:`watch`.
            stall_timeout: Phase deadline, as for :meth:`watch`.
            upstream_error_timeout: Phase deadline, as for :meth:`watch`.
            on_terminal: A function or coroutine function called with each task's terminal
                update (awaited if it returns an awaitable). With a task store, an outcome is
                recorded as handled once it returns; after a crash :meth:`Watcher.resume`
                delivers again the outcomes it had not returned from
                (:attr:`TaskUpdate.redelivered`).
            download_to: A folder (created if missing) into which the video of each task that
                succeeds is saved before ``on_terminal`` is called, as :meth:`download` saves
                it; the update then has :attr:`~TaskUpdate.download_path`, or, if the video
                could not be saved, the error (an expired URL gives
                :class:`ResultExpiredError`). With a task store the path is recorded.
            download_concurrency: Most downloads at once.
            skip_existing: Keep a video already saved in ``download_to`` for a task (a
                download puts a file there only once it is whole) instead of fetching it
                again (default ``True``).

        Returns:
            A :class:`Watcher`, to enter with ``async with``.

        Raises:
            ValueError: ``concurrency`` or ``download_concurrency`` < 1, ``timeout`` or
                ``poll_interval`` is not > 0, or both ``poll`` and ``poll_interval`` are given.
            RuntimeError: the client is not open.
        """
        if download_to is not None:
            on_terminal = downloading(
                self._engine,
                on_terminal,
                download_to,
                download_concurrency,
                skip_existing=skip_existing,
            )
        scheduler = new_scheduler(
            self._engine,
            concurrency=concurrency,
            timeout=timeout,
            poll=poll,
            poll_interval=poll_interval,
            close_when_idle=False,
            on_terminal=on_terminal,
            phases=PhaseLimits.of(
                queue_timeout=queue_timeout,
                run_timeout=run_timeout,
                stall_timeout=stall_timeout,
                upstream_error_timeout=upstream_error_timeout,
            ),
        )
        store = self._engine.store
        fleet = None
        if isinstance(store, RedisStore):
            fleet = Fleet(scheduler, store, self._engine.budget)
        return Watcher(scheduler, fleet)
