"""The engine: sends one request to the API and turns the answer into a result or an error.

Every request of the SDK goes through an :class:`Engine`: a task query (once, or retried) and
a create call, whose answers it decodes or turns into the error they stand for (a poll's 429
is reported to the shared polling budget; a single get's and a create's are not), and a
download's stream, which
it opens under its retry policy (the download module reads the storage's answer itself). It
owns the transport, the client's shared polling budget, the per-request retry policy and the
open/closed state; the schedulers, the downloads and the public
:class:`~anyfast_async.AnyFast` are given the engine and use nothing else.
"""

from __future__ import annotations

import copy
import enum
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

import aiohttp
import anyio
import yarl

from ._aio import loop_time
from ._budget import Pacer
from ._config import Limits, RetryPolicy, Throttle, Timeout
from ._decode import decode_created, decode_task, parse_retry_after, status_error
from ._exceptions import (
    AnyFastError,
    APIConnectionError,
    APIStatusError,
    RateLimitError,
    ResponseDecodeError,
)
from ._models import CreatedTask, Task
from ._requests import TASKS_PATH
from ._retry import Sleep, is_create_retryable, is_retryable, retrying
from ._store import TaskStore, describe_error
from ._telemetry import TaskTrace, Telemetry
from ._transport import Response, Stream, Transport

__all__ = ["Engine"]

logger = logging.getLogger("anyfast_async")

T = TypeVar("T")


class _Closeable(Protocol):
    async def aclose(self) -> None: ...


class _State(enum.Enum):
    NEW = "not opened"
    OPEN = "open"
    CLOSED = "closed"


class _Lifecycle:
    """The open/closed state of a client, shared by the engines derived from its own."""

    __slots__ = ("dependents", "state")

    def __init__(self) -> None:
        self.state = _State.NEW
        self.dependents: weakref.WeakSet[_Closeable] = weakref.WeakSet()


class Engine:
    """One client's connection to the API: transport, polling budget, retries, lifecycle.

    Args:
        api_key: The resolved API key (sent only to ``base_url``'s origin).
        base_url: The resolved API origin.
        timeout: Per-request timeouts.
        limits: Connection pool limits of a session the engine creates.
        retry: How each request is retried.
        user_agent: The ``User-Agent`` header.
        max_response_bytes: Largest body read into memory.
        max_rate: Cap on polls per second, or ``None``.
        throttle: How the polling budget reacts to HTTP 429.
        sleep: How to wait between retries and for the budget.
        session: An aiohttp session to use (never closed by the engine), or ``None``.
        jitter_seed: Seed of the retry jitter and of the schedulers' poll jitter, or ``None``.
        store: Where what the engine learns about tasks is recorded, or ``None``.
        telemetry: The client's OpenTelemetry tracer and metrics, or ``None`` (not
            installed).
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: Timeout,
        limits: Limits,
        retry: RetryPolicy,
        user_agent: str,
        max_response_bytes: int,
        max_rate: float | None,
        throttle: Throttle,
        sleep: Sleep,
        session: aiohttp.ClientSession | None,
        jitter_seed: int | None = None,
        store: TaskStore | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be >= 1")
        self.timeout = timeout
        self.retry = retry
        self.sleep = sleep
        self._seeded = jitter_seed is not None
        self.store = store
        self.telemetry = telemetry
        self.rng = random.Random(jitter_seed)
        self.budget = Pacer(throttle, max_rate=max_rate, sleep=sleep, clock=loop_time)
        self._max_bytes = max_response_bytes
        self._transport = Transport(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            limits=limits,
            user_agent=user_agent,
            max_response_bytes=max_response_bytes,
            session=session,
        )
        self._life = _Lifecycle()
        self._owner = True  # False for an engine derived with other options
        self._request_timeout: aiohttp.ClientTimeout | None = None  # None: the transport's

    def new_rng(self) -> random.Random:
        """A source of jitter for a scheduler: drawn from this engine's when it was seeded
        (each scheduler its own sequence, the same on every run), else unpredictable."""
        return random.Random(self.rng.getrandbits(64) if self._seeded else None)

    def derive(self, *, timeout: Timeout, retry: RetryPolicy) -> Engine:
        """An engine with other per-request options, sharing this one's transport (its
        connection pool), polling budget and open/closed state. It opens and closes with this
        one, never by itself."""
        view = copy.copy(self)
        view.timeout = timeout
        view.retry = retry
        view._owner = False
        view._request_timeout = (
            self._request_timeout
            if timeout == self.timeout
            else self._transport.client_timeout(timeout)
        )
        return view

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API origin requests go to."""
        return self._transport.base_url

    @property
    def state(self) -> str:
        """``"not opened"``, ``"open"`` or ``"closed"``."""
        return self._life.state.value

    @property
    def is_closed(self) -> bool:
        return self._life.state is _State.CLOSED

    async def open(self) -> None:
        """Open the transport. An engine opens once; a derived one never by itself."""
        if not self._owner:
            raise RuntimeError(
                "a client from with_options() opens and closes with the client it came from"
            )
        if self._life.state is _State.OPEN:
            raise RuntimeError("this AnyFast client is already open")
        if self._life.state is _State.CLOSED:
            raise RuntimeError("this AnyFast client is closed; create a new one")
        await self._transport.open()
        if self.store is not None:
            try:
                await self.store.open()
            except BaseException:
                await self._transport.close()
                raise
        self._life.state = _State.OPEN

    async def aclose(self) -> None:
        """Close every scheduler still running on this engine, then the transport. Idempotent;
        nothing for a derived engine (its client closes it)."""
        if not self._owner or self._life.state is _State.CLOSED:
            return
        self._life.state = _State.CLOSED
        try:
            for dependent in list(self._life.dependents):
                await dependent.aclose()
        finally:
            try:
                if self.store is not None:
                    await self.store.aclose()
            finally:
                await self._transport.close()

    def check_open(self) -> None:
        """Raise ``RuntimeError`` unless the engine is open."""
        if self._life.state is not _State.OPEN:
            if self._life.state is _State.NEW:
                raise RuntimeError(
                    "this AnyFast client is not open: use `async with AnyFast(...) as client:`"
                )
            raise RuntimeError("this AnyFast client is closed; create a new one")

    def track(self, dependent: _Closeable) -> None:
        """Close ``dependent`` (a running scheduler) when the engine closes."""
        self._life.dependents.add(dependent)

    def untrack(self, dependent: _Closeable) -> None:
        self._life.dependents.discard(dependent)

    # -- what the schedulers need ----------------------------------------------------------

    def poller_limit(self, concurrency: int) -> int:
        """Pollers to run: ``concurrency``, but never more than the connection pool holds."""
        pool = self._transport.connection_limit
        return concurrency if not pool else min(concurrency, pool)

    @property
    def longest_poll(self) -> float:
        """The longest one poll can take: a full budget pause, then a request to its total
        timeout (``inf`` without a total timeout)."""
        total = self.timeout.total
        return float("inf") if total is None else total + self.budget.max_pause

    # -- requests --------------------------------------------------------------------------

    async def fetch_task(
        self, path: str, attempt: int = 1, *, polled: bool = True, sent: float | None = None
    ) -> Task:
        """One GET of one task, decoded; no retry. A poll's 429 (``polled``: it took a slot
        of the shared budget) is reported to the budget, with ``sent``, the loop time of the
        send (now, unless the caller has read the clock already)."""
        if sent is None:
            sent = loop_time()
        if logger.isEnabledFor(logging.DEBUG):
            response = await self._send("GET", path, attempt)
        else:  # the hot path of every poll: one coroutine level less
            response = await self._transport.request("GET", path, timeout=self._request_timeout)
        if 200 <= response.status < 300 and not response.oversize:
            # The common case, decoded here: one call less.
            return decode_task(
                response.body, status_code=response.status, request_id=response.request_id
            )
        return self._task_of(response, polled=polled, sent=sent)

    async def fetch_traced(self, path: str, trace: TaskTrace, *, sent: float) -> Task:
        """:meth:`fetch_task` of a poll whose task has a span: the answer's request id goes
        to ``trace`` (its events carry it)."""
        response = await self._send("GET", path)
        trace.request_id = response.request_id
        return self._task_of(response, polled=True, sent=sent)

    def _task_of(self, response: Response, *, polled: bool, sent: float) -> Task:
        """A task-query answer as the task, or the error it stands for; a poll's 429 is
        reported to the budget."""
        try:
            return self._result(response, decode_task)
        except RateLimitError as exc:  # the query route is throttled: every poll slows down
            if polled:
                self.budget.throttled(exc.retry_after, sent_at=sent)
            raise

    async def get_task(self, path: str) -> Task:
        """The task at ``path``, with transient failures retried per the retry policy."""
        # Not paced by the budget (it has its own retries), so not reported to it either:
        # its sends are not counted there.
        try:  # the first attempt directly: the retry loop only for a failure
            return await self.fetch_task(path, polled=False)
        except AnyFastError as exc:
            failed = exc
        return await retrying(
            lambda attempt: self.fetch_task(path, attempt, polled=False),
            policy=self.retry,
            sleep=self.sleep,
            rng=self.rng,
            what=f"GET {path}",
            failed=failed,
        )

    async def create(self, body: bytes, *, model: str = "") -> CreatedTask:
        """POST a create body; retried only when the request cannot have created a task.

        With a store, the intent is committed before the request is sent, and the task id
        (or a failure that may have created a task) after. With telemetry, the call has a
        span (``model``: the model named in the body)."""
        trace = None if self.telemetry is None else self.telemetry.creating(model)
        if trace is None:
            return await self._create_recorded(body)
        ids: list[str | None] = []
        try:
            created = await self._create_recorded(body, ids)
        except BaseException as exc:
            sent = exc.sent if isinstance(exc, AnyFastError) else _maybe_created(exc)
            request_id = getattr(exc, "request_id", None)
            trace.end(task_id=None, sent=sent, request_id=request_id, error=exc)
            raise
        trace.end(task_id=created.task_id, sent=True, request_id=ids[-1] if ids else None)
        return created

    async def _create_recorded(
        self, body: bytes, ids: list[str | None] | None = None
    ) -> CreatedTask:
        """The create call, recorded in the store if there is one; ``ids`` gets the request
        id of each answer."""
        store = self.store
        if store is None:
            return await self._create(body, ids)
        with anyio.CancelScope(shield=True):  # recorded whole, then settled below
            intent = await store.intend(body)
        sending = False
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
            sending = True
            created = await self._create(body, ids)
        except BaseException as exc:
            # Cancelled before the request went out: surely no task (forgotten).
            maybe = sending and _maybe_created(exc)
            with anyio.CancelScope(shield=True):
                await store.create_failed(intent, maybe_created=maybe, error=describe_error(exc))
            raise
        with anyio.CancelScope(shield=True):
            await store.created(intent, created.task_id)
        return created

    async def _create(self, body: bytes, ids: list[str | None] | None = None) -> CreatedTask:
        """The create call under its retry rule; the error it ends with says whether the task
        may have been created (see :func:`_mark_create_failure`)."""
        try:
            return await self.retrying(
                lambda attempt: self._post_create(body, attempt, ids),
                what=f"POST {TASKS_PATH}",
                retryable=is_create_retryable,
            )
        except AnyFastError as exc:
            _mark_create_failure(exc)
            raise

    async def _post_create(
        self, body: bytes, attempt: int, ids: list[str | None] | None = None
    ) -> CreatedTask:
        response = await self._send("POST", TASKS_PATH, attempt, json_body=body)
        if ids is not None:
            ids.append(response.request_id)
        return self._result(response, decode_created)

    def _result(self, response: Response, decode: Callable[..., T]) -> T:
        """A 2xx answer decoded by ``decode``, or the error the answer stands for."""
        if 200 <= response.status < 300:
            if response.oversize:
                raise ResponseDecodeError(
                    f"answer body is larger than the {self._max_bytes}-byte limit; it was not read",
                    status_code=response.status,
                    request_id=response.request_id,
                )
            result: T = decode(
                response.body, status_code=response.status, request_id=response.request_id
            )
            return result
        raise status_error(
            response.status,
            response.body,
            request_id=response.request_id,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            oversize=response.oversize,
        )

    async def retrying(
        self,
        call: Callable[[int], Awaitable[T]],
        *,
        what: str,
        retryable: Callable[[BaseException], bool] = is_retryable,
    ) -> T:
        """``call(attempt)`` under the engine's retry policy (see :func:`retrying`)."""
        return await retrying(
            call,
            policy=self.retry,
            sleep=self.sleep,
            rng=self.rng,
            what=what,
            retryable=retryable,
        )

    def stream(
        self, url: yarl.URL, *, read_timeout: float | None
    ) -> AbstractAsyncContextManager[Stream]:
        """GET ``url`` for a download; see :meth:`Transport.stream`."""
        return self._transport.stream(url, read_timeout=read_timeout)

    async def _send(
        self, method: str, path: str, attempt: int = 1, *, json_body: bytes | None = None
    ) -> Response:
        if not logger.isEnabledFor(logging.DEBUG):
            return await self._transport.request(
                method, path, json_body=json_body, timeout=self._request_timeout
            )
        started = time.perf_counter()
        try:
            response = await self._transport.request(
                method, path, json_body=json_body, timeout=self._request_timeout
            )
        except AnyFastError as exc:
            logger.debug(
                "%s %s attempt %d failed after %.1f ms: %s",
                method,
                path,
                attempt,
                (time.perf_counter() - started) * 1000,
                type(exc).__name__,
            )
            raise
        logger.debug(
            "%s %s -> %d attempt %d in %.1f ms (request id %s)",
            method,
            path,
            response.status,
            attempt,
            (time.perf_counter() - started) * 1000,
            response.request_id,
        )
        return response


def _maybe_created(exc: BaseException) -> bool:
    """Whether a create that failed with ``exc`` may still have created a task: unless the
    request surely never arrived, or was refused (4xx, or 503: the gateway refuses before
    processing, which is why a create is retried on it), it may have."""
    if isinstance(exc, APIConnectionError):
        return exc.sent
    if isinstance(exc, APIStatusError):
        return not (400 <= exc.status_code < 500 or exc.status_code == 503)
    return True  # cancelled, or an answer that could not be read


_LOOK_FIRST = "the task may or may not have been created: look for it before creating it again"


def _mark_create_failure(exc: AnyFastError) -> None:
    """Make the error a create call ends with say whether the task may exist: ``sent`` is
    :func:`_maybe_created`'s answer, and when it may, the message says to look for the task
    before creating it again (and a connection error is no longer ``retryable``)."""
    exc.sent = _maybe_created(exc)
    if not exc.sent:
        return
    if isinstance(exc, APIConnectionError):
        exc.retryable = False
        exc.message = f"{exc.message}; the request may have reached the server, so {_LOOK_FIRST}"
        text = exc.message
    else:
        text = f"{exc}; {_LOOK_FIRST}"
    exc.args = (text,)
