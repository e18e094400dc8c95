"""A watcher shared by many processes through a :class:`~anyfast_async.RedisStore`.

Every process of a fleet runs a watcher on the same store. A task added in any process is
recorded in Redis, due at once, and waited for in the process that added it; it is polled by
whichever process holds its lease:

- **claiming**: a polling process takes due tasks (up to ``RedisStore.hold`` at a time) and
  polls them with its own scheduler, as if they had been added there;
- **renewing**: every third of a lease it extends the leases of the tasks it holds; a task
  whose lease it lost (it was too slow, and another process took it) it stops polling;
- **outcomes**: the holder records a task's outcome, runs ``on_terminal``, and tells the
  process that added it, through that process's inbox in Redis (a stream), whose reader wakes
  the task's waiters and readers there.

A process that dies stops renewing: its tasks are due again when their leases end, and the
other processes take them over. A process that closes gives its tasks back at once.

A 429 that pauses one process's polling pauses the whole fleet's: the pause is kept in Redis
(with its expiry), published by the process that was answered it and taken by the others at
their next look for due tasks (within a quarter of a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

import anyio
import msgspec

from ._budget import Pacer
from ._config import UnsetType
from ._exceptions import AnyFastError, TaskFailedError, TaskStalledError, WaitTimeoutError
from ._models import Task
from ._redis import Claim, RedisStore
from ._scheduler import Entry, Scheduler

__all__ = ["Fleet"]

logger = logging.getLogger("anyfast_async")

#: Most tasks taken in one claim.
_CLAIM_BATCH: Final = 256
#: Seconds between looks for due tasks while there is room for more.
_CLAIM_EVERY: Final = 0.25
#: Seconds a read of the inbox waits for news.
_INBOX_WAIT: Final = 5.0
#: Seconds until an outcome whose on_terminal failed is delivered again.
_REDELIVER_AFTER: Final = 60.0


class _Outcome(msgspec.Struct, omit_defaults=True):
    """How a task ended, as told to the process that added it."""

    task: Task | None = None
    error: str | None = None
    message: str = ""
    timeout: float | None = None
    reason: str | None = None  # of a TaskStalledError
    elapsed: float | None = None


def encode_outcome(outcome: Task | AnyFastError) -> bytes:
    if isinstance(outcome, Task):
        return msgspec.json.encode(_Outcome(task=outcome))
    task = getattr(outcome, "task", None) or getattr(outcome, "last_task", None)
    return msgspec.json.encode(
        _Outcome(
            task=task if isinstance(task, Task) else None,
            error=type(outcome).__name__,
            message=str(outcome),
            timeout=getattr(outcome, "timeout", None),
            reason=outcome.reason if isinstance(outcome, TaskStalledError) else None,
            elapsed=outcome.elapsed if isinstance(outcome, TaskStalledError) else None,
        )
    )


def decode_outcome(task_id: str, raw: bytes) -> Task | AnyFastError:
    told = msgspec.json.decode(raw, type=_Outcome)
    if told.error is None and told.task is not None:
        return told.task
    if told.error == "TaskFailedError" and told.task is not None:
        return TaskFailedError(told.task)
    if told.error == "TaskStalledError" and told.task is not None and told.reason:
        return TaskStalledError(
            task_id,
            task=told.task,
            reason=told.reason,
            timeout=told.timeout or 0.0,
            elapsed=told.elapsed or 0.0,
        )
    if told.error == "WaitTimeoutError":
        return WaitTimeoutError(task_id, last_task=told.task, timeout=told.timeout or 0.0)
    return AnyFastError(f"{told.error}: {told.message}" if told.error else told.message)


class Fleet:
    """One process's part in a fleet: it adds tasks to the store, takes due ones to poll
    (unless the store says ``poll=False``), renews what it holds, and hands the outcomes told
    to it to its scheduler."""

    def __init__(self, scheduler: Scheduler, store: RedisStore, budget: Pacer) -> None:
        self._scheduler = scheduler
        self._store = store
        self._budget = budget
        self._published = 0.0  # the pause this process last asked of the fleet (clock time)
        self._renewed = 0.0  # clock time of the last renewal that went through
        self._held: dict[str, Claim] = {}
        self._added: set[str] = set()
        self._wanted = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        scheduler.on_finished = self._finished
        scheduler.on_undelivered = self._undelivered

    def add(self, task_id: str, timeout: float | UnsetType | None) -> Entry:
        """Watch ``task_id`` from this process: recorded for the fleet, waited for here."""
        entry = self._scheduler.add(task_id, timeout, remote=True)
        self._added.add(task_id)
        self._wanted.set()
        return entry

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name="anyfast-async fleet"
            )

    async def stop(self) -> None:
        """Stop taking tasks, renewing and reading news (before the scheduler stops)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([runner])

    async def give_back(self) -> None:
        """Give back the tasks held (after the scheduler stopped polling them): the others
        take them at once."""
        held, self._held = list(self._held.values()), {}
        if held:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self._store.give_back(held)

    async def _run(self) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._read_inbox)
            if self._store.poll:
                group.start_soon(self._claim)
                group.start_soon(self._renew)

    async def _share_pause(self) -> None:
        """A 429's pause, seen here or anywhere in the fleet, pauses every process: a pause
        of this process's budget longer than the fleet's is published; the fleet's is taken."""
        budget = self._budget
        left = budget.pause_left()
        ends = budget.paused_until
        publish = left > 0 and ends > self._published + 0.05
        fleet = await self._store.pause(left if publish else 0.0)
        if publish:
            self._published = ends
        if fleet > left + 0.05:
            budget.pause_for(fleet)
            self._published = budget.paused_until  # taken from the fleet: not news

    async def _claim(self) -> None:
        store = self._store
        while True:
            try:
                await self._share_pause()
            except Exception:
                logger.exception("sharing the fleet's pause failed")
            room = store.hold - len(self._held)
            taken: list[Claim] = []
            if room > 0:
                try:
                    taken = await store.claim(min(room, _CLAIM_BATCH))
                except AnyFastError:
                    raise
                except Exception:
                    logger.exception("claiming due tasks failed; trying again")
            for claim in taken:
                self._held[claim.task_id] = claim
                if not self._scheduler.hold(
                    claim.task_id, claim.deadline, redeliver=claim.redeliver
                ):  # the scheduler has stopped: nothing is polled here any more
                    await self.give_back()
                    return
            if len(taken) == _CLAIM_BATCH:
                await anyio.lowlevel.checkpoint()
                continue  # more may be due
            self._wanted.clear()
            with anyio.move_on_after(_CLAIM_EVERY):
                await self._wanted.wait()

    async def _renew(self) -> None:
        store = self._store
        loop = asyncio.get_running_loop()
        self._renewed = loop.time()
        while True:
            await anyio.sleep(store.lease / 3)
            held = list(self._held.values())
            if not held:
                self._renewed = loop.time()
                continue
            try:
                with anyio.fail_after(store.lease / 3):
                    lost = await store.renew(held)
            except Exception as exc:
                logger.warning("renewing the leases of %d tasks failed: %r", len(held), exc)
                if loop.time() - self._renewed > store.lease * 2 / 3:
                    # The leases may have run out meanwhile, and others taken the tasks.
                    lost = list(self._held)
                else:
                    continue
            else:
                self._renewed = loop.time()
            for task_id in lost:
                if self._held.pop(task_id, None) is not None:
                    self._scheduler.let_go(task_id, waited_here=task_id in self._added)

    async def _read_inbox(self) -> None:
        last = "0"
        while True:
            try:
                news = await self._store.inbox(last, block=_INBOX_WAIT)
            except Exception:
                logger.exception("reading the outcomes of this process's tasks failed")
                await anyio.sleep(1.0)
                continue
            for message_id, task_id, raw in news:
                try:
                    outcome = decode_outcome(task_id, raw)
                except Exception:
                    logger.exception("an unreadable outcome for task %s was skipped", task_id)
                else:
                    self._added.discard(task_id)
                    await self._scheduler.settle(task_id, outcome)
                last = message_id
            if news:
                with contextlib.suppress(Exception):
                    await self._store.read(last)

    async def _undelivered(self, task_id: str) -> None:
        """``on_terminal`` failed for a task polled here: it is given back, to be delivered
        again (by whichever process takes it) a minute from now."""
        claim = self._held.pop(task_id, None)
        if claim is not None:
            with contextlib.suppress(Exception):
                await self._store.give_back([claim], after=_REDELIVER_AFTER)

    async def _finished(self, task_id: str, outcome: Task | AnyFastError) -> bool:
        """A task polled here ended: the process that added it (if another) is told; whether
        its outcome is delivered here. Not if this process no longer holds the task's lease
        (it was paused past it, and another process took the task over: that one delivers).
        The lease is renewed until the outcome is handled, so that nobody else delivers it
        meanwhile."""
        self._added.discard(task_id)
        await self._store.notify(task_id, encode_outcome(outcome))
        claim = self._held.get(task_id)
        if claim is None:
            return True  # added and polled here, never claimed (not yet recorded as due)
        try:
            lost = await self._store.renew([claim])
        except Exception:
            return True  # Redis away: deliver (at least once)
        if lost:
            self._held.pop(task_id, None)
            return False
        return True
