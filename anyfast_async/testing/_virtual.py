"""Virtual time: an asyncio event loop whose clock skips ahead whenever the program only waits.

A watch at the default cadence sleeps 15 s between polls and a generation takes minutes.
:class:`VirtualTimeLoop` makes such waits free: when no callback is ready, no socket has
anything to read or write and no executor job is running, the loop does not block until its
next timer is due: it moves its clock to that timer at once. Everything that takes its time
from the loop follows: ``asyncio.sleep``, anyio's sleeps and cancel scopes
(``fail_after``), aiohttp's timeouts, the SDK's poll schedule, backoff, budget and deadlines,
and :class:`FakeAnyFast`'s lifecycles (``advance="time"``).

What it relies on: every wait of the code under test is a timer, a socket of the same loop or
a ``loop.run_in_executor`` job. Loopback traffic between a client and a server on the same loop
lands within the few zero-timeout polls the loop makes before it skips ahead; an executor job
makes time pass as in reality until it is done. A peer the loop cannot see (a server in another
thread or process, ``anyio.to_thread``, a raw thread) lets time skip while it works, so a timeout
pending meanwhile fires at once; run such tests in real time.
"""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import selectors
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike


class _SkippingSelector(selectors.BaseSelector):
    """The loop's selector: waits only as long as something real may still arrive."""

    def __init__(self, loop: VirtualTimeLoop, real: selectors.BaseSelector, polls: int) -> None:
        self._loop = loop
        self._real = real
        self._polls = polls

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
        loop = self._loop
        if loop.executor_jobs or timeout is None:
            # A job in a thread (its end wakes the loop) or no timer at all: wait for real,
            # and let the clock follow the time that really passed.
            started = time.monotonic()
            events = real.select(timeout)
            waited = time.monotonic() - started
            loop.advance(waited if timeout is None else min(waited, timeout))
            return events
        loop.advance(timeout)
        return []


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

    :meth:`time` starts at ``start`` and moves only when the loop would otherwise wait, by the
    time to its next timer (in real time while an executor job runs). A selector event loop
    underneath, so no uvloop.

    Args:
        start: what :meth:`time` returns at first.
        idle_polls: zero-timeout looks for I/O before the clock skips ahead.
    """

    def __init__(self, *, start: float = 0.0, idle_polls: int = 16) -> None:
        super().__init__(_SkippingSelector(self, selectors.DefaultSelector(), idle_polls))
        self._now = float(start)
        self._jobs = 0
        if idle_polls < 1:
            self.close()
            raise ValueError("idle_polls must be >= 1")

    def time(self) -> float:
        """The virtual clock, in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (timers now due run on the next iteration)."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._now += seconds

    @property
    def executor_jobs(self) -> int:
        """Executor jobs started with :meth:`run_in_executor` and not yet done."""
        return self._jobs

    def run_in_executor(  # type: ignore[override]
        self,
        executor: concurrent.futures.Executor | None,
        func: collections.abc.Callable[..., Any],
        *args: Any,
    ) -> asyncio.Future[Any]:
        """:meth:`asyncio.loop.run_in_executor`, counted in :attr:`executor_jobs` until done.

        Args:
            executor: Where ``func`` runs (``None``: the loop's default executor).
            func: The function to call in a thread; ``args`` are passed to it.
        """
        future = super().run_in_executor(executor, func, *args)
        self._jobs += 1
        future.add_done_callback(self._job_done)
        return future

    def _job_done(self, _future: asyncio.Future[Any]) -> None:
        self._jobs -= 1
