"""Virtual time: an asyncio event loop whose clock skips ahead whenever the program only waits.

A watch at the default cadence sleeps 15 s between polls and a generation takes minutes.
:class:`VirtualTimeLoop` makes such waits free: when no callback is ready, no socket has
anything to read or write and no executor job is running, the loop does not block until its
next timer is due: it moves its clock to that timer at once. Everything that takes its time
from the loop follows: ``asyncio.sleep``, anyio's sleeps and cancel scopes
(``fail_after``), aiohttp's timeouts, the SDK's poll schedule, backoff, budget and deadlines,
and :class:`FakeAnyFast`'s lifecycles (``advance="time"``).

What it relies on: every wait of the code under test is a timer, a socket of the same loop or
a ``loop.run_in_executor`` job (``asyncio.to_thread`` is one). Loopback traffic between a client
and a server on the same loop lands within the few zero-timeout polls the loop makes before it
skips ahead; an executor job makes time pass as in reality until its function has returned,
even if its future was cancelled. A peer the loop cannot see (a server in another thread or
process, ``anyio.to_thread`` and what uses it, a raw thread) lets time skip while it works, so
a timeout pending meanwhile fires at once; run such tests in real time.
"""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import contextlib
import math
import selectors
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike


class _SkippingSelector(selectors.BaseSelector):
    """The loop's selector: waits only as long as something real may still arrive."""

    def __init__(
        self,
        real: selectors.BaseSelector,
        polls: int,
        busy: collections.abc.Callable[[], bool],
        advance: collections.abc.Callable[[float], None],
    ) -> None:
        self._real = real
        self._polls = polls
        self._busy = busy  # whether an executor job is running
        self._advance = advance

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        real = self._real
        if timeout is not None and timeout <= 0:
            return real.select(0)
        # The loop has nothing ready and would block. Look a few times for I/O first: bytes
        # written to a loopback socket of this loop are readable on the other end at once.
        for _ in range(self._polls):
            events = real.select(0)
            if events:
                return events
        if timeout is None or self._busy():
            # A job in a thread (its end wakes the loop) or no timer at all: wait for real,
            # and let the clock follow the time that really passed.
            started = time.perf_counter()
            events = real.select(timeout)
            waited = time.perf_counter() - started
            self._advance(waited if timeout is None else min(waited, timeout))
            return events
        self._advance(timeout)
        return []


class _Job:
    """A function run in an executor, counted from its submission until its result is in the
    loop, or, if its future is cancelled, until it returns in its thread (a cancelled future
    does not stop the thread) or is dropped before it started."""

    __slots__ = ("_args", "_ended", "_func", "_lock", "_notify", "_state")

    _WAITING, _RUNNING, _DROPPED, _ORPHANED, _RETURNED = range(5)

    def __init__(
        self,
        func: collections.abc.Callable[..., Any],
        args: Any,
        ended: collections.abc.Callable[[], None],
        notify: collections.abc.Callable[[collections.abc.Callable[[], None]], object],
    ) -> None:
        self._func = func
        self._args = args
        self._ended = ended  # called in the loop's thread, once
        self._notify = notify  # the loop's call_soon_threadsafe
        self._lock = threading.Lock()
        self._state = self._WAITING

    def __call__(self) -> Any:
        with self._lock:
            if self._state != self._WAITING:
                return None
            self._state = self._RUNNING
        try:
            return self._func(*self._args)
        finally:
            with self._lock:
                orphaned = self._state == self._ORPHANED
                self._state = self._RETURNED
            if orphaned:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to count
                    self._notify(self._ended)

    def settled(self, future: asyncio.Future[Any]) -> None:
        """The future's done callback. Its result, if any, is in the loop now; a cancelled
        one may leave its function running."""
        if future.cancelled():
            with self._lock:
                state = self._state
                if state == self._RUNNING:
                    self._state = self._ORPHANED
                    return  # counted until it returns
                if state == self._WAITING:
                    self._state = self._DROPPED
        self._ended()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on a virtual clock that skips waits (see the module docs).

    Use it wherever an event loop factory is accepted::

        # pytest with anyio's plugin
        @pytest.fixture
        def anyio_backend():
            return ("asyncio", {"loop_factory": VirtualTimeLoop})

        # a script (Python 3.11+; asyncio.run(main(), loop_factory=...) on 3.12+)
        with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
            runner.run(main())

    :meth:`time` starts at ``start`` and moves only when the loop would otherwise wait: to its
    next timer at once, or with real time while a :meth:`run_in_executor` job runs (which
    ``asyncio.to_thread`` and ``loop.getaddrinfo`` use). A selector event loop underneath, so
    no uvloop.

    Args:
        start: what :meth:`time` returns at first.
        idle_polls: zero-timeout looks for I/O before the clock skips ahead.
    """

    def __init__(self, *, start: float = 0.0, idle_polls: int = 16) -> None:
        self._now = float(start)
        self._jobs = 0
        super().__init__(
            _SkippingSelector(selectors.DefaultSelector(), idle_polls, self._busy, self._advance)
        )
        if idle_polls < 1:
            self.close()
            raise ValueError("idle_polls must be >= 1")

    def time(self) -> float:
        """The virtual clock, in seconds."""
        return self._now

    # asyncio runs the timers due before time() + _clock_resolution. The clock's own
    # resolution (15.6 ms on Windows) would run timers early; 1 ns alone is lost in rounding
    # once the clock is past 2**24 s, and a timer the clock stands on would never run.
    @property
    def _clock_resolution(self) -> float:
        return max(1e-9, 2 * math.ulp(self._now))

    @_clock_resolution.setter
    def _clock_resolution(self, value: float) -> None:
        pass

    def _advance(self, seconds: float) -> None:
        self._now += seconds

    def _busy(self) -> bool:
        return self._jobs > 0

    def _job_ended(self) -> None:
        self._jobs -= 1

    def run_in_executor(  # type: ignore[override]
        self,
        executor: concurrent.futures.Executor | None,
        func: collections.abc.Callable[..., Any],
        *args: Any,
    ) -> asyncio.Future[Any]:
        """:meth:`asyncio.loop.run_in_executor`; the clock follows real time until ``func``
        has returned in its thread.

        Args:
            executor: Where ``func`` runs (``None``: the loop's default executor).
            func: The function to call in a thread; ``args`` are passed to it.
        """
        job = _Job(func, args, self._job_ended, self.call_soon_threadsafe)
        future = super().run_in_executor(executor, job)
        self._jobs += 1
        future.add_done_callback(job.settled)
        return future

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """:meth:`asyncio.loop.shutdown_default_executor`, in real time (its threads are
        joined by a thread of its own, which the clock must wait for).

        Args:
            timeout: Real seconds to wait for the threads (Python 3.12+; ignored before).
        """
        self._jobs += 1
        try:
            if sys.version_info >= (3, 12):
                await super().shutdown_default_executor(timeout)
            else:
                await super().shutdown_default_executor()
        finally:
            self._jobs -= 1
