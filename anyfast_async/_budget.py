"""The shared polling budget: a rate cap that reacts to HTTP 429, and pauses.

One :class:`Pacer` belongs to each client. Every poll of every scheduler of that client takes
a slot from it before it is sent, and a 429 answer to a poll is reported to it. Single
``get_task`` calls and create calls are not paced (they have their own retries) and are not
reported: the gateway's create and query routes need not share a limit, so a throttled create
must not slow polling down.

The rules, from how TCP and botocore's adaptive retry mode share a link they cannot see
(additive or multiplicative increase over time, multiplicative decrease on a congestion
signal), are those of :class:`~anyfast_async.Throttle`:

* A 429 brings the rate down to what the server accepts: the cap becomes the rate of polls
  measured over the last second (or the cap in force, if lower) times the share of them that
  were not refused, and at least halves it when most are refused; never below ``min_rate``.
  So a rare 429 (a share of 1 %) costs about 1 % of the rate, and a hard limit that refuses
  half the polls halves it. 429s answering polls sent before the last decrease are the same
  signal, and decrease nothing more (TCP's "once per round trip"); scattered ones (fewer than
  half the polls since the last decrease) decrease the cap at most once a second.
* A 429 among too few polls to measure a rate (a fresh client's first answers) sets no cap:
  one refusal says nothing about a rate.
* The cap then grows with time, by ``recovery`` (100 %) per second, whatever the traffic, and
  is lifted once it is twice the rate that drew the 429: a throttle that has ended is forgotten
  within a few seconds.
* A pause stops every poll: for the ``Retry-After`` the server sent (capped at ``max_pause``),
  or, when most polls are refused and the cap cannot come down below ``min_rate``, for
  ``initial_pause``, doubling up to ``max_pause``.

The clock is the event loop's monotonic clock; the waits use the client's ``sleep``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Final

from ._config import Throttle

__all__ = ["Pacer"]

#: Scattered 429s decrease the cap at most once in this many seconds; and when the send time
#: of a throttled poll is not known, 429s within it of a decrease are taken as answers to polls
#: sent before it.
_EPISODE: Final = 1.0
#: Fewest polls (this window and the last) that make a measured rate worth capping to.
_SAMPLE: Final = 10
#: The shortest span a rate is measured over, in seconds.
_SPAN: Final = 0.01
#: Longest single sleep of the waiter at the head of the queue, so that a cap that grows while
#: it sleeps is seen.
_RECHECK: Final = 0.25
#: Seconds of the rate the token bucket holds: at a high rate polls go out in small bursts
#: rather than one timer each (a timer is coarser than a millisecond).
_BURST: Final = 0.1


class Pacer:
    """The client's shared polling budget: pauses and a rate cap that react to HTTP 429.

    Every poll calls :meth:`try_acquire` (no wait needed, the common case) or :meth:`acquire`
    before it is sent, and :meth:`throttled` when it is answered with 429.
    """

    __slots__ = (
        "_cap",
        "_cap_since",
        "_ceiling",
        "_clock",
        "_decreased_at",
        "_filled_at",
        "_lift_at",
        "_lock",
        "_max_rate",
        "_paused_until",
        "_penalty",
        "_previous_count",
        "_previous_refused",
        "_refused_since",
        "_sent_since",
        "_sleep",
        "_throttle",
        "_tokens",
        "_window_count",
        "_window_rate",
        "_window_refused",
        "_window_start",
        "throttles",
    )

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
        self._sleep = sleep
        self._clock = clock
        self._cap: float | None = None  # the 429 cap where it started, or None (lifted)
        self._cap_since = 0.0  # when the cap started growing
        self._ceiling = math.inf  # the cap is lifted once it grows to this ...
        self._lift_at = math.inf  # ... which is then
        self._decreased_at = -math.inf
        self._tokens = 1.0  # a token bucket under a rate, refilled at the rate
        self._filled_at = -math.inf
        self._paused_until = 0.0
        self._penalty = 0.0
        self._lock = asyncio.Lock()  # one waiter at the head; the others queue in order
        self._window_start = 0.0
        self._window_count = 0
        self._window_refused = 0
        self._window_rate = 0.0
        self._previous_count = 0  # the last window's polls and refusals, if it just ended
        self._previous_refused = 0
        self._sent_since = 0  # polls sent, and refused, since the last decrease
        self._refused_since = 0
        self.throttles = 0

    @property
    def max_pause(self) -> float:
        """The longest pause a 429 can cause, in seconds."""
        return self._throttle.max_pause

    @property
    def paused_until(self) -> float:
        """Clock time before which no poll starts."""
        return self._paused_until

    def pause_for(self, seconds: float) -> None:
        """Start no poll for ``seconds`` from now (a pause another process of a fleet was
        asked for), unless a longer pause is on already."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def pause_left(self) -> float:
        """Seconds until polls may start again (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    @property
    def rate_cap(self) -> float | None:
        """The rate polls are held to now, in polls per second (the 429 cap or ``max_rate``,
        whichever is lower), or ``None``."""
        return self._limit(self._clock())

    def _limit(self, now: float) -> float | None:
        cap = self._cap
        if cap is not None:
            if now < self._lift_at:  # so the growth below stays finite, however long idle
                grown: float = cap * math.pow(
                    1.0 + self._throttle.recovery, max(now - self._cap_since, 0.0)
                )
                return grown if self._max_rate is None else min(grown, self._max_rate)
            self._cap = None  # recovered: the throttle is over
            self._penalty = 0.0
        return self._max_rate

    def _set_cap(self, cap: float, since: float) -> None:
        """Cap the rate at ``cap`` from ``since`` on; it is lifted when grown to the ceiling."""
        self._cap = cap
        self._cap_since = since
        growth = math.log1p(self._throttle.recovery)
        self._lift_at = since + max(math.log(self._ceiling / cap), 0.0) / growth

    def try_acquire(self, now: float | None = None) -> bool:
        """Take one slot if that needs no wait (no pause, nobody queued, a token at hand).
        ``now``: the clock's reading, if the caller has just read it."""
        if now is None:
            now = self._clock()
        if self._paused_until > now:
            return False
        if self._cap is not None or self._max_rate is not None:
            if self._lock.locked():
                return False  # others are waiting: keep their order
            rate = self._limit(now)
            if rate is not None and not self._take(now, rate):
                return False
        self._count(now)
        return True

    def _take(self, now: float, rate: float) -> bool:
        """Take a token of the bucket (it holds a tenth of a second's worth, at least one)."""
        burst = max(1.0, rate * _BURST)
        tokens = min(burst, self._tokens + (now - self._filled_at) * rate)
        self._filled_at = now
        if tokens >= 1.0 - 1e-9:  # a hair short is rounding, not a reason to wait
            self._tokens = max(tokens - 1.0, 0.0)
            return True
        self._tokens = tokens
        return False

    def _count(self, now: float) -> None:
        """Count a poll start in the one-second window used to measure the rate."""
        if now - self._window_start >= 1.0:
            self._roll(now)
        self._window_count += 1
        self._sent_since += 1

    def _roll(self, now: float) -> None:
        """Start a new one-second window, keeping the last one's rate and refused share."""
        elapsed = now - self._window_start
        contiguous = elapsed < 2.0
        self._window_rate = self._window_count / elapsed if contiguous else 0.0
        self._previous_count = self._window_count if contiguous else 0
        self._previous_refused = self._window_refused if contiguous else 0
        self._window_start = now
        self._window_count = 0
        self._window_refused = 0

    def _refused_share(self) -> float:
        """The share of polls refused over this window and the last (so that a window just
        begun, with few polls in it, does not decide alone)."""
        refused = self._window_refused + self._previous_refused
        return min(refused / max(self._window_count + self._previous_count, 1), 1.0)

    def _measured(self, now: float) -> float:
        """Polls per second over about the last second."""
        current = self._window_count / max(now - self._window_start, _SPAN)
        recent = self._window_rate if now - self._window_start < 2.0 else 0.0
        return max(current, recent)

    async def acquire(self) -> None:
        """Wait until the budget allows one more poll, and take it.

        Under a rate, polls take tokens from a bucket refilled at that rate (holding a tenth of
        a second's worth). Waiters queue in order; only the first waits for the clock, and it
        re-reads the cap and the pause as it goes, so a cap that grows, or a pause that begins,
        while it waits is obeyed. A waiter that is cancelled leaves the queue and takes nothing.
        """
        async with self._lock:
            while True:
                now = self._clock()
                if self._paused_until > now:
                    await self._sleep(self._paused_until - now)
                    continue
                rate = self._limit(now)
                if rate is None or self._take(now, rate):
                    break
                await self._sleep(min((1.0 - self._tokens) / rate, _RECHECK))
            self._count(now)

    def throttled(self, retry_after: float | None, *, sent_at: float | None = None) -> None:
        """A poll sent at ``sent_at`` (clock time) was answered with 429: decrease the rate,
        and pause if asked to."""
        now = self._clock()
        self.throttles += 1
        if now - self._window_start >= 1.0:
            self._roll(now)
        self._window_refused += 1
        throttle = self._throttle
        if retry_after is not None:
            until = now + min(retry_after, throttle.max_pause)
            self._paused_until = max(self._paused_until, until)
        if (sent_at if sent_at is not None else now - _EPISODE) < self._decreased_at:
            return  # an answer to a poll sent before the last decrease took effect
        self._refused_since += 1
        # Most polls refused since the last decrease: a limit, to follow round trip by round
        # trip. Otherwise scattered refusals: one decrease a second, by their share (applied
        # at every refusal, a small share would compound into a collapse at high rates).
        persists = 2 * self._refused_since >= self._sent_since
        if not persists and now - self._decreased_at < _EPISODE:
            return
        cap = self._limit(now)
        measured = self._measured(now)
        if self._window_count + self._previous_count < _SAMPLE:
            return  # too few polls to measure a rate: the pause (if asked) is the answer
        base = measured if cap is None else min(cap, measured)
        # A limit is judged by the polls since the last decrease, scattered refusals by the
        # last second's.
        refused = (
            self._refused_since / max(self._sent_since, 1) if persists else self._refused_share()
        )
        accepted = 1.0 - refused
        target = base * (accepted if accepted > 0.5 else 0.5)
        self._decreased_at = now
        self._sent_since = self._refused_since = 0
        if self._cap is not None and target < throttle.min_rate and persists:
            # Most polls refused, and the rate cannot come down further: the throttle
            # persists, and only a pause can slow polling more.
            self._penalty = (
                min(throttle.max_pause, self._penalty * 2)
                if self._penalty
                else throttle.initial_pause
            )
            self._paused_until = max(self._paused_until, now + self._penalty)
            self._set_cap(throttle.min_rate, self._paused_until)
            return
        low = max(throttle.min_rate, target)
        if self._max_rate is not None:
            low = min(low, self._max_rate)
        if self._cap is None:
            self._ceiling = 2 * measured  # lifted once back at twice the demand of now
        self._set_cap(low, max(now, self._paused_until))  # it grows once the pause is over
        self._tokens = min(self._tokens, 1.0)  # a decrease takes effect now, not after a burst
        self._filled_at = now
