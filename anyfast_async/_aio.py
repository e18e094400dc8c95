"""Small asyncio helpers shared by the engine, the scheduler and the watch streams."""

from __future__ import annotations

import asyncio
import sys

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["BaseExceptionGroup", "loop_time", "resolve", "unwrap"]


def loop_time() -> float:
    """The running event loop's monotonic clock (what ``anyio.current_time()`` reads, cheaper).

    Every time the SDK measures (deadlines, backoff, the polling budget) is read here or from
    the loop directly, so a loop with a virtual clock moves all of them together.
    """
    return asyncio.get_running_loop().time()


def resolve(future: asyncio.Future[None]) -> None:
    """Complete ``future`` unless something else already did (a timer's callback)."""
    if not future.done():
        future.set_result(None)


def unwrap(exc: BaseException) -> BaseException:
    """The one error inside nested single-member exception groups (a task group's)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
