"""The one retry loop: which errors are retried, how long to wait, and when to give up.

See :class:`~anyfast_async.RetryPolicy` for the defaults and the backoff formula.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from ._config import RetryPolicy, Throttle
from ._exceptions import (
    AnyFastError,
    APIConnectionError,
    APIStatusError,
    TaskNotFoundError,
)

__all__ = [
    "RETRYABLE_STATUS",
    "Pacer",
    "Sleep",
    "backoff_delay",
    "is_create_retryable",
    "is_retryable",
    "retrying",
]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[object]]

#: HTTP statuses worth another try: the server or a proxy in front of it was busy or broken.
RETRYABLE_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})

logger = logging.getLogger("anyfast_async")


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is transient: a connection error, a timeout, or a retryable status."""
    if isinstance(exc, APIConnectionError):
        return exc.retryable
    if isinstance(exc, TaskNotFoundError):
        return False
    return isinstance(exc, APIStatusError) and exc.status_code in RETRYABLE_STATUS


def is_create_retryable(exc: BaseException) -> bool:
    """Whether a failed create call may be sent again without risking a second task.

    Only when the request provably never reached the server (the connection could not be
    made), or the server refused it before processing (429, 503).
    """
    if isinstance(exc, APIConnectionError):
        return exc.retryable and not exc.sent
    return isinstance(exc, APIStatusError) and exc.status_code in (429, 503)


def backoff_delay(
    policy: RetryPolicy, attempt: int, exc: BaseException | None = None, *, rng: random.Random
) -> float:
    """The wait before retry number ``attempt`` (1-based).

    A ``Retry-After`` sent with the error wins, capped at ``policy.max_retry_after``;
    otherwise full jitter: ``uniform(0, min(max_backoff, initial_backoff * 2 ** (attempt - 1)))``.
    """
    if isinstance(exc, APIStatusError) and exc.retry_after is not None:
        return min(exc.retry_after, policy.max_retry_after)
    ceiling = min(policy.max_backoff, policy.initial_backoff * 2 ** (attempt - 1))
    return rng.uniform(0.0, ceiling)


def _note(exc: BaseException, text: str) -> None:
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes.append(text)
    else:
        exc.__notes__ = [text]  # type: ignore[attr-defined,unused-ignore]  # add_note() on 3.11+


async def retrying(
    call: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    sleep: Sleep,
    rng: random.Random,
    what: str = "request",
    on_retry: Callable[[AnyFastError], object] | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
) -> T:
    """Await ``call(attempt)`` until it succeeds, retrying transient errors per ``policy``.

    ``attempt`` is 1 for the first try, 2 for the first retry, and so on.

    When the retries run out, or the error is not transient, the last error is raised as
    itself, with a note of how many attempts were made.
    """
    attempt = 0
    while True:
        try:
            return await call(attempt + 1)
        except AnyFastError as exc:
            if not retryable(exc):
                raise
            if attempt >= policy.max_retries:
                if attempt:
                    _note(exc, f"gave up after {attempt + 1} attempts")
                raise
            attempt += 1
            delay = backoff_delay(policy, attempt, exc, rng=rng)
            if on_retry is not None:
                on_retry(exc)
            logger.debug(
                "retrying %s in %.3f s (retry %d of %d) after %s: %s",
                what,
                delay,
                attempt,
                policy.max_retries,
                type(exc).__name__,
                exc,
            )
            await sleep(delay)


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
        sleep: Sleep,
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
