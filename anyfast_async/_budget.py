"""The shared polling budget: pauses and a rate cap that react to HTTP 429.

One :class:`Pacer` belongs to each client. Every poll of every scheduler of that client takes a
slot from it before it is sent and reports how it was answered. See
:class:`~anyfast_async.Throttle` for the rules.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Final

from ._config import Throttle

__all__ = ["Pacer"]


class Pacer:
    """The client's shared polling budget: pauses and a rate cap that react to HTTP 429.

    Every poll of every scheduler of one client calls :meth:`acquire` before it is sent, and
    reports :meth:`succeeded` or :meth:`throttled` afterwards. See
    :class:`~anyfast_async.Throttle` for the rules. The clock is the event loop's monotonic
    clock; the waits use the client's ``sleep``.
    """

    __slots__ = (
        "_clock",
        "_last_throttle",
        "_max_rate",
        "_next",
        "_paused_until",
        "_penalty",
        "_rate",
        "_sleep",
        "_throttle",
        "_window_count",
        "_window_rate",
        "_window_start",
        "throttles",
    )

    _CEILING: Final = 10_000.0

    def __init__(
        self,
        throttle: Throttle,
        *,
        max_rate: float | None,
        sleep: Callable[[float], Awaitable[object]],
        clock: Callable[[], float],
    ) -> None:
        if max_rate is not None and not max_rate > 0:
            raise ValueError(f"max_rate must be > 0 or None, got {max_rate!r}")
        self._throttle = throttle
        self._max_rate = max_rate
        self._rate: float | None = max_rate
        self._sleep = sleep
        self._clock = clock
        self._next = 0.0
        self._paused_until = 0.0
        self._penalty = 0.0
        self._last_throttle = -math.inf
        self._window_start = 0.0
        self._window_count = 0
        self._window_rate = 0.0
        self.throttles = 0

    @property
    def rate_cap(self) -> float | None:
        """The current cap in requests per second, or ``None``."""
        return self._rate

    @property
    def max_pause(self) -> float:
        """The longest pause a 429 can cause, in seconds."""
        return self._throttle.max_pause

    @property
    def paused_until(self) -> float:
        """Clock time before which no poll starts."""
        return self._paused_until

    def try_acquire(self) -> bool:
        """Take one request from the budget if that needs no wait (the common case)."""
        now = self._clock()
        if self._rate is not None or self._paused_until > now:
            return False
        self._count(now)
        return True

    def _count(self, now: float) -> None:
        """Count a request start in the one-second window used to estimate the rate."""
        if now - self._window_start >= 1.0:
            elapsed = now - self._window_start
            self._window_rate = self._window_count / elapsed if elapsed < 10 else 0.0
            self._window_start = now
            self._window_count = 0
        self._window_count += 1

    async def acquire(self) -> None:
        """Wait until the budget allows one more request, and take it.

        A pause is waited out (again if a new one begins meanwhile, also while waiting for a
        slot); under a rate cap, a start time is reserved at least ``1 / rate`` after the
        previous one. A waiter that is cancelled gives its reserved slot back.
        """
        waited_for = -math.inf
        now = self._clock()
        while True:
            paused = self._paused_until
            if paused > now and paused > waited_for:
                waited_for = paused
                await self._sleep(paused - now)
                now = self._clock()
                continue
            rate = self._rate
            if rate is None:
                break
            step = 1.0 / rate
            start = self._next if self._next > now else now
            self._next = start + step
            if start <= now:
                break
            try:
                await self._sleep(start - now)
            except BaseException:
                self._next -= step  # give the slot back
                raise
            now = self._clock()
            if self._paused_until > now and self._paused_until > waited_for:
                self._next -= step  # a pause began while we waited: queue again after it
                continue
            break
        self._count(now)

    def succeeded(self) -> None:
        """A request was answered without throttling: let the cap climb back."""
        rate = self._rate
        if rate is None:
            return
        rate *= 1.0 + self._throttle.recovery
        ceiling = self._max_rate if self._max_rate is not None else self._CEILING
        if rate >= ceiling:
            self._rate = self._max_rate
            self._penalty = 0.0
        else:
            self._rate = rate

    def throttled(self, retry_after: float | None) -> None:
        """A request was answered with 429: pause, and halve the rate (once per episode)."""
        now = self._clock()
        self.throttles += 1
        throttle = self._throttle
        if now < self._paused_until:
            if retry_after is not None:
                pause = min(retry_after, throttle.max_pause)
                self._paused_until = max(self._paused_until, now + pause)
            return
        if now - self._last_throttle > 4 * throttle.max_pause:
            self._penalty = 0.0  # not consecutive: a 429 long after the last starts afresh
        self._last_throttle = now
        self._penalty = (
            min(throttle.max_pause, self._penalty * 2) if self._penalty else throttle.initial_pause
        )
        pause = self._penalty if retry_after is None else min(retry_after, throttle.max_pause)
        self._paused_until = now + pause
        observed = max(self._window_rate, self._window_count / max(now - self._window_start, 1.0))
        halved = max(throttle.min_rate, observed / 2)
        if self._rate is not None:
            halved = max(throttle.min_rate, min(self._rate, halved))
        if self._max_rate is not None:
            halved = min(halved, self._max_rate)
        self._rate = halved
