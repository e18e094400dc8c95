"""Retry decisions: which errors are worth another try, how long to wait, and the retry loop.

:func:`retry_delay` is the one place that decides whether a failure is tried again and how long
to wait first. The per-request loop :func:`retrying` uses it with a
:class:`~anyfast_async.RetryPolicy`; the scheduler's poll backoff uses it with a
:class:`~anyfast_async.PollPolicy`. Each keeps its own budget of attempts.
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
    TaskNotFoundError,
)

__all__ = [
    "RETRYABLE_STATUS",
    "Sleep",
    "is_create_retryable",
    "is_retryable",
    "retry_delay",
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


def retry_delay(
    exc: BaseException,
    attempt: int,
    *,
    backoff: Callable[[int, random.Random], float],
    max_retry_after: float,
    rng: random.Random,
    retryable: Callable[[BaseException], bool] = is_retryable,
) -> float | None:
    """Whether ``exc`` is tried again, and after how long: ``None`` when it is not.

    The wait is ``backoff(attempt, rng)``, but never shorter than a ``Retry-After`` the server
    sent with the error, capped at ``max_retry_after``.

    Args:
        exc: The failure.
        attempt: How many failures in a row this one makes (1 for the first).
        backoff: The computed wait for that attempt (a policy's jittered backoff).
        max_retry_after: The cap on a server-requested wait, in seconds.
        rng: The source of the jitter.
        retryable: Which failures are worth another try.
    """
    if not retryable(exc):
        return None
    delay = backoff(attempt, rng)
    if isinstance(exc, APIStatusError) and exc.retry_after is not None:
        delay = max(delay, min(exc.retry_after, max_retry_after))
    return delay


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
    retryable: Callable[[BaseException], bool] = is_retryable,
    failed: AnyFastError | None = None,
) -> T:
    """Await ``call(attempt)`` until it succeeds, retrying transient errors per ``policy``.

    ``attempt`` is 1 for the first try, 2 for the first retry, and so on. The waits are
    :func:`retry_delay`'s. ``failed``: the error of a first attempt the caller made itself
    (its fast path); the retries go on from there.

    When the retries run out, or the error is not transient, the last error is raised as
    itself, with a note of how many attempts were made.
    """
    attempt = 0
    failure = failed
    while True:
        if failure is None:
            try:
                return await call(attempt + 1)
            except AnyFastError as exc:
                failure = exc
        error, failure = failure, None
        if not retryable(error):
            raise error
        if attempt >= policy.max_retries:
            if attempt:
                _note(error, f"gave up after {attempt + 1} attempts")
            raise error
        attempt += 1
        delay = retry_delay(
            error,
            attempt,
            backoff=policy.backoff,
            max_retry_after=policy.max_retry_after,
            rng=rng,
            retryable=retryable,
        )
        assert delay is not None  # retryable, as checked above
        logger.debug(
            "retrying %s in %.3f s (retry %d of %d) after %s: %s",
            what,
            delay,
            attempt,
            policy.max_retries,
            type(error).__name__,
            error,
        )
        await sleep(delay)
