"""What watching produces: updates of a task, a watcher's counters, the outcomes of a batch.

Plain values, no I/O: the scheduler makes them, the watch streams and handles hand them out.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from ._exceptions import AnyFastError, TaskFailedError, TaskStalledError, WaitTimeoutError
from ._failures import FailureKind
from ._models import Task, TaskStatus

__all__ = ["Outcomes", "Tally", "TaskUpdate", "WatcherStatistics", "outcome_of"]


def outcome_of(outcome: Task | BaseException) -> str:
    """How a watch ended: ``succeeded``, ``failed``, ``timed_out`` (a deadline, or a phase
    deadline) or ``errored``."""
    if isinstance(outcome, Task):
        return "succeeded"
    if isinstance(outcome, TaskFailedError):
        return "failed"
    if isinstance(outcome, WaitTimeoutError):
        return "timed_out"
    return "errored"


class TaskUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A change in a watched task, as yielded by ``watch()``, ``watch_many()`` and a watcher.

    A watch yields one update for the first observation of a task, then one each time its status
    or its progress changes; identical polls yield nothing. The last update of a task has
    ``is_terminal=True``: the task reached SUCCESS or FAILURE, or watching it ended with an
    error (``error`` says which); :meth:`outcome` reads it.

    Attributes:
        task_id: The task's id.
        task: The task as last seen, or ``None`` if no poll of it ever succeeded.
        previous_status: The status of the previous update, ``None`` for the first.
        status: The status now (``None`` only if no poll of it ever succeeded).
        progress: Progress in percent now, or ``None``.
        is_terminal: This is the last update of this task.
        error: Why the watch of this task ended without success: a
            :class:`~anyfast_async.TaskFailedError` for FAILURE, a
            :class:`~anyfast_async.WaitTimeoutError` at the deadline, or the error that made
            polling impossible (:class:`~anyfast_async.TaskNotFoundError`,
            :class:`~anyfast_async.ResponseDecodeError`, ...), or, for a watcher that
            downloads, why the video of a task that succeeded could not be saved
            (:class:`~anyfast_async.ResultExpiredError`, ...). ``None`` otherwise.
        redelivered: This terminal update may have been given to ``on_terminal`` before: a
            watcher with a task store found it finished but not handled (a crash while the
            callback ran, or a callback that raised) and :meth:`Watcher.resume` delivers it
            again.
        download_path: Where a watcher with ``download_to`` saved the task's video, or
            ``None``.
    """

    task_id: str
    task: Task | None
    previous_status: TaskStatus | None
    status: TaskStatus | None
    progress: int | None
    is_terminal: bool = False
    error: AnyFastError | None = None
    redelivered: bool = False
    download_path: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether this is the final update of a task that reached SUCCESS."""
        return self.is_terminal and self.error is None and self.status is TaskStatus.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        """The update as JSON-ready values (what ``anyfast watch --jsonl`` prints).

        Returns:
            ``task_id``, ``previous_status``, ``status``, ``progress``, ``is_terminal``,
            ``error_type`` and ``error`` (the class name and message of :attr:`error`, or
            ``None``), ``failure_kind`` (the :class:`~anyfast_async.FailureKind` value of a
            FAILURE), ``stalled`` (the reason of a
            :class:`~anyfast_async.TaskStalledError`), ``upstream_error`` (the provider's
            error while the task waits, as text), ``result_url``, ``redelivered`` and
            ``download_path``.
        """
        error = self.error
        task = self.task
        upstream = task.upstream_error if task is not None else None
        return {
            "task_id": self.task_id,
            "previous_status": self.previous_status.value if self.previous_status else None,
            "status": self.status.value if self.status else None,
            "progress": self.progress,
            "is_terminal": self.is_terminal,
            "error_type": type(error).__name__ if error is not None else None,
            "error": str(error) if error is not None else None,
            "failure_kind": error.kind.value if isinstance(error, TaskFailedError) else None,
            "stalled": error.reason if isinstance(error, TaskStalledError) else None,
            "upstream_error": str(upstream) if upstream is not None else None,
            "result_url": task.result_url if task is not None else None,
            "redelivered": self.redelivered,
            "download_path": self.download_path,
        }

    def outcome(self) -> Task | AnyFastError:
        """What the task ended with: the finished :class:`~anyfast_async.Task` (SUCCESS), or
        the error that ended its watch (:attr:`error`).

        This is the value :meth:`AnyFast.wait_many <anyfast_async.AnyFast.wait_many>` maps a
        task to, so a loop over ``watch_many()`` can build the same mapping::

            outcomes = {u.task_id: u.outcome() async for u in updates if u.is_terminal}

        Raises:
            ValueError: this update is not the last of its task (:attr:`is_terminal` is
                ``False``).
        """
        if not self.is_terminal:
            raise ValueError(f"task {self.task_id!r} has not ended: this update is not terminal")
        if self.error is not None:
            return self.error
        assert self.task is not None  # a terminal update without an error carries the task
        return self.task


class WatcherStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable snapshot of a scheduler's counters (``watcher.statistics()``).

    Attributes:
        polls: Poll requests answered with a task record.
        errors: Polls that failed (any error, including throttling).
        throttles: Polls answered with HTTP 429.
        watching: Tasks being watched now.
        succeeded: Tasks that reached SUCCESS.
        failed: Tasks that reached FAILURE.
        errored: Tasks whose watch ended with an error other than FAILURE or the deadline.
        timed_out: Tasks whose deadline passed.
        by_status: Watched tasks by their last known status (``"UNSEEN"`` before the first
            answer).
        in_flight: Polls under way now.
        rate_cap: The shared polling budget's current cap in polls per second, or ``None``
            when uncapped.
        queue_time_p50: The median :attr:`Task.queue_time <anyfast_async.Task.queue_time>`
            (seconds from submission to start, by the gateway's times) of the tasks that
            reached SUCCESS or FAILURE here, or ``None`` if none had both times.
        queue_time_p95: Its 95th percentile.
        run_time_p50: The median :attr:`Task.run_time <anyfast_async.Task.run_time>`
            (seconds from start to finish) of those tasks, or ``None``.
        run_time_p95: Its 95th percentile.
        polls_per_task: The mean number of polls (answered or failed) each task that reached
            SUCCESS or FAILURE here took, or ``None`` if none has.

    The percentiles are nearest-rank, of every such task since the watcher started, kept as
    counts of each duration to a tenth of a second (the gateway's times are whole seconds),
    so they cost memory for each distinct duration, not for each task.
    """

    polls: int
    errors: int
    throttles: int
    watching: int
    succeeded: int
    failed: int
    errored: int
    timed_out: int
    by_status: dict[str, int]
    in_flight: int
    rate_cap: float | None
    queue_time_p50: float | None = None
    queue_time_p95: float | None = None
    run_time_p50: float | None = None
    run_time_p95: float | None = None
    polls_per_task: float | None = None


class Tally:
    """The values of one measure (seconds, polls) over many tasks, as counts of each value
    rounded to a tenth: memory for each distinct value, not for each task."""

    __slots__ = ("_counts", "count", "total")

    def __init__(self) -> None:
        self._counts: Counter[float] = Counter()
        self.count = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        self._counts[round(value, 1)] += 1
        self.count += 1
        self.total += value

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def percentile(self, p: float) -> float | None:
        """The nearest-rank ``p``-th percentile (``0 < p <= 100``), or ``None`` if empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for value in sorted(self._counts):
            seen += self._counts[value]
            if seen >= rank:
                return value
        raise AssertionError("unreachable: the counts add up to count")


class Outcomes(dict[str, "Task | AnyFastError"]):
    """What :meth:`AnyFast.wait_many <anyfast_async.AnyFast.wait_many>` returns: a ``dict``
    from each task id to its final :class:`~anyfast_async.Task` or the error that ended it,
    in the order the ids were given, and where each downloaded video went.

    Attributes:
        files: The path of each downloaded video, by task id (empty without
            ``download_to``). A task whose download failed has no entry here; its outcome
            is the download's error.
    """

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, Path] = {}

    def __repr__(self) -> str:
        return f"Outcomes({dict.__repr__(self)}, files={self.files!r})"

    def by_kind(self) -> dict[FailureKind, list[str]]:
        """The ids of the tasks that failed, by :class:`~anyfast_async.FailureKind`, most
        common first: what to retry, what to report::

            for task_id in outcomes.by_kind().get(FailureKind.UPSTREAM_ERROR, []):
                ...

        Tasks whose watch ended otherwise (a deadline, an error) are not in it.
        """
        found: dict[FailureKind, list[str]] = {}
        for task_id, outcome in self.items():
            if isinstance(outcome, TaskFailedError):
                found.setdefault(outcome.kind, []).append(task_id)
        return dict(sorted(found.items(), key=lambda item: -len(item[1])))
