"""Deadlines by phase: how long a task may wait, run, go without news, or sit on a provider's
error, measured on the client's monotonic clock from the polls it saw.

:class:`PhaseLimits` is what a caller asked for (checked once, shared by every task that uses
it); :class:`PhaseClock` is one task's record of when its phase began, when it last changed
and since when its provider has been failing, and says when the first of its limits passes.
"""

from __future__ import annotations

import math
from typing import Final, Literal

import msgspec

from ._failures import UpstreamError
from ._models import TaskStatus

__all__ = ["WAITING", "PhaseClock", "PhaseLimits", "Reason"]

Reason = Literal["queue_timeout", "run_timeout", "stall_timeout", "upstream_error"]

#: The statuses of a task that has not started running.
WAITING: Final = frozenset({TaskStatus.NOT_START, TaskStatus.SUBMITTED, TaskStatus.QUEUED})

_NEVER: Final = math.inf


def _check(name: str, value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be > 0 or None, got {value!r}")
    return value


class PhaseLimits(msgspec.Struct, frozen=True, gc=False):
    """The phase deadlines of a watch, in seconds (``None``: no limit)."""

    queue: float | None = None
    run: float | None = None
    stall: float | None = None
    upstream_error: float | None = None

    @classmethod
    def of(
        cls,
        *,
        queue_timeout: float | None,
        run_timeout: float | None,
        stall_timeout: float | None,
        upstream_error_timeout: float | None,
    ) -> PhaseLimits | None:
        """The limits given, checked; ``None`` when there is none.

        Raises:
            ValueError: a limit is not > 0.
        """
        limits = cls(
            _check("queue_timeout", queue_timeout),
            _check("run_timeout", run_timeout),
            _check("stall_timeout", stall_timeout),
            _check("upstream_error_timeout", upstream_error_timeout),
        )
        return None if limits == _NONE else limits


_NONE: Final = PhaseLimits()


class PhaseClock:
    """One task's phases as its polls showed them.

    The waiting phase is NOT_START, SUBMITTED and QUEUED; the running phase is IN_PROGRESS and
    any status the SDK does not know. A phase's clock starts at the poll that first saw it
    (when that poll was sent); the stall clock restarts at each poll that saw the status or
    the progress change; the upstream-error clock runs from the first poll that saw a
    provider error to the first that saw none.
    """

    __slots__ = ("changed", "erring", "limits", "running", "since")

    def __init__(self, limits: PhaseLimits) -> None:
        self.limits = limits
        self.running: bool | None = None  # None: no answer yet
        self.since = 0.0
        self.changed = 0.0
        self.erring: float | None = None

    def observe(
        self, now: float, status: TaskStatus, changed: bool, error: UpstreamError | None
    ) -> None:
        """Record an answer to the poll sent at ``now``."""
        running = status not in WAITING
        if running is not self.running:
            self.running = running
            self.since = self.changed = now
        elif changed:
            self.changed = now
        if error is None:
            self.erring = None
        elif self.erring is None:
            self.erring = now

    def deadlines(self) -> list[tuple[float, Reason, float]]:
        """(when, reason, limit) of each limit that applies now."""
        limits = self.limits
        found: list[tuple[float, Reason, float]] = []
        if self.running is None:
            return found
        if self.running:
            if limits.run is not None:
                found.append((self.since + limits.run, "run_timeout", limits.run))
            if limits.stall is not None:
                found.append((self.changed + limits.stall, "stall_timeout", limits.stall))
        elif limits.queue is not None:
            found.append((self.since + limits.queue, "queue_timeout", limits.queue))
        if self.erring is not None and limits.upstream_error is not None:
            found.append(
                (self.erring + limits.upstream_error, "upstream_error", limits.upstream_error)
            )
        return found

    def deadline(self) -> float:
        """When the first limit that applies passes (``inf``: none)."""
        found = self.deadlines()
        return min(found)[0] if found else _NEVER

    def passed(self, now: float) -> tuple[Reason, float, float]:
        """The limit that passed first: its reason, its seconds, and how long the task had
        been in what it measures at ``now``."""
        when, reason, limit = min(self.deadlines())
        started = when - limit
        return reason, limit, max(0.0, now - started)
