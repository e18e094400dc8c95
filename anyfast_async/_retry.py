"""The one retry loop: which errors are retried, how long to wait, and when to give up.

See :class:`~anyfast_async.RetryPolicy` for the defaults and the backoff formula.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from ._config import RetryPolicy
from ._exceptions import (
    AnyFastError,
    APIConnectionError,
    APIStatusError,
    RateLimitError,
    TaskNotFoundError,
)

__all__ = ["RETRYABLE_STATUS", "Sleep", "backoff_delay", "is_retryable", "retrying"]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[object]]

#: HTTP statuses worth another try: the server or a proxy in front of it was busy or broken.
RETRYABLE_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})

logger = logging.getLogger("anyfast_async")


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is transient: a connection error, a timeout, or a retryable status."""
    if isinstance(exc, APIConnectionError):
        return True
    if isinstance(exc, TaskNotFoundError):
        return False
    return isinstance(exc, APIStatusError) and exc.status_code in RETRYABLE_STATUS


def backoff_delay(
    policy: RetryPolicy, attempt: int, exc: BaseException | None = None, *, rng: random.Random
) -> float:
    """The wait before retry number ``attempt`` (1-based).

    ``Retry-After`` from a 429 wins, capped at ``policy.max_retry_after``; otherwise full
    jitter: ``uniform(0, min(max_backoff, initial_backoff * 2 ** (attempt - 1)))``.
    """
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        return min(exc.retry_after, policy.max_retry_after)
    ceiling = min(policy.max_backoff, policy.initial_backoff * 2 ** (attempt - 1))
    return rng.uniform(0.0, ceiling)


def _note(exc: BaseException, text: str) -> None:
    add_note = getattr(exc, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(text)


async def retrying(
    call: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    sleep: Sleep,
    rng: random.Random,
    what: str = "request",
    on_retry: Callable[[AnyFastError], object] | None = None,
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
            if not is_retryable(exc):
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
