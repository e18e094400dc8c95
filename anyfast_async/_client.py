"""The public session object, :class:`AnyFast`: configuration resolved, then delegation.

The client resolves its arguments (the key, the base URL, the policies) into an
:class:`~anyfast_async._engine.Engine` and hands every call to the layer that does the work:
the engine for one request, the scheduler and the watch streams for watching, the download
module for files. What is left is the public signatures and their documentation, in three
parts: this module (configuration, lifecycle, one task, downloads), the create calls
(:mod:`anyfast_async._client_create`) and the watch calls (:mod:`anyfast_async._client_watch`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import anyio

from ._client_create import CreateCalls
from ._client_watch import WatchCalls
from ._config import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_RETRY,
    DEFAULT_THROTTLE,
    DEFAULT_TIMEOUT,
    UNSET,
    Limits,
    RetryPolicy,
    Throttle,
    Timeout,
    UnsetType,
    resolve_api_key,
    resolve_base_url,
)
from ._download import DOWNLOAD_READ_TIMEOUT, download
from ._engine import Engine
from ._models import Task
from ._requests import task_path
from ._store import TaskStore
from ._telemetry import telemetry_for
from ._transport import default_user_agent

__all__ = ["AnyFast"]


class AnyFast(CreateCalls, WatchCalls):
    """An asyncio client for the AnyFast video task API.

    Use it as an async context manager; it owns one aiohttp session for its whole life::

        async with AnyFast() as client:
            task = await client.get_task("asyntask_...")
            print(task.status, task.progress, task.result_url)

    Args:
        api_key: The API key. Defaults to the ``ANYFAST_API_KEY`` environment variable.
            Surrounding whitespace is stripped; a key with whitespace or control characters
            inside is refused.
        base_url: The API origin. Defaults to ``ANYFAST_BASE_URL``, then
            ``https://www.anyfast.ai``. The China host ``https://www.anyfast.com.cn`` is the
            documented alternative (:data:`~anyfast_async.CHINA_BASE_URL`). Query a task on
            the host that created it.
        timeout: Per-request timeouts (:class:`Timeout`).
        limits: Connection pool limits (:class:`Limits`), used when the client creates its own
            session.
        retry: How each request is retried (:class:`RetryPolicy`).
        max_retries: Shortcut that overrides ``retry.max_retries``.
        user_agent_suffix: Appended to the default ``User-Agent``
            (``anyfast-async/<version> Python/<version> aiohttp/<version>``), e.g. your
            application's name and version.
        session: An aiohttp session to use instead of creating one. It is never closed by the
            client; its connector limits apply.
        max_response_bytes: Largest response body read into memory; a larger one raises
            :class:`ResponseDecodeError` without being read.
        max_rate: A cap on polls per second across every watch of this client (``None``:
            no cap besides the concurrency limits).
        throttle: How the shared polling budget reacts to HTTP 429 (:class:`Throttle`).
        sleep: The coroutine function used to wait between retries and for the polling
            budget. Defaults to :func:`anyio.sleep`; tests can pass one that does not really
            wait.
        store: A task store (:class:`SQLiteStore`, or your own :class:`TaskStore`): what
            the client learns about its tasks is recorded there, so that a watcher can
            :meth:`Watcher.resume` after a crash. The client opens it and closes it with
            itself.
        jitter_seed: Seeds the random jitter of retries and poll schedules, so that a test
            on virtual time (:class:`anyfast_async.testing.VirtualTimeLoop`) sees the same
            schedule on every run. ``None`` (the default): unpredictable.
        tracer_provider: The OpenTelemetry ``TracerProvider`` of the client's spans (one per
            watched task and per create call), or ``None`` (the default): the global one.
            Nothing is recorded while that records nothing, and without the ``otel`` extra
            installed nothing of OpenTelemetry runs (see the Observability page).
        meter_provider: The OpenTelemetry ``MeterProvider`` of the client's metrics, or
            ``None`` (the default): the global one.

    Raises:
        ValueError: no API key was given or found, or an argument is invalid. The message names
            ``ANYFAST_API_KEY`` and never contains the key.
        TypeError: ``timeout``, ``limits``, ``retry`` or ``throttle`` is not of its type
            (``None`` included: leave an argument out for its default; ``Timeout(total=None)``
            turns a limit off).

    The API key is sent only to the ``base_url`` origin, never appears in ``repr()``, log
    records or exception messages, and redirects are not followed.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        limits: Limits = DEFAULT_LIMITS,
        retry: RetryPolicy = DEFAULT_RETRY,
        max_retries: int | UnsetType = UNSET,
        user_agent_suffix: str | None = None,
        session: aiohttp.ClientSession | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_rate: float | None = None,
        throttle: Throttle = DEFAULT_THROTTLE,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        store: TaskStore | None = None,
        jitter_seed: int | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        _check_types(timeout=timeout, limits=limits, retry=retry, throttle=throttle)
        if not isinstance(max_retries, UnsetType):
            retry = dataclasses.replace(retry, max_retries=max_retries)
        self._engine = Engine(
            api_key=resolve_api_key(api_key),
            base_url=resolve_base_url(base_url),
            timeout=timeout,
            limits=limits,
            retry=retry,
            user_agent=default_user_agent(user_agent_suffix),
            max_response_bytes=max_response_bytes,
            max_rate=max_rate,
            throttle=throttle,
            sleep=sleep if sleep is not None else anyio.sleep,
            session=session,
            jitter_seed=jitter_seed,
            store=store,
            telemetry=telemetry_for(tracer_provider, meter_provider),
        )

    def with_options(
        self,
        *,
        timeout: Timeout | UnsetType = UNSET,
        retry: RetryPolicy | UnsetType = UNSET,
        max_retries: int | UnsetType = UNSET,
        max_retry_after: float | UnsetType = UNSET,
    ) -> AnyFast:
        """This client with other per-request options, for some calls.

        ::

            # In a request handler: fail fast instead of sleeping through a Retry-After.
            quick = client.with_options(max_retries=0, timeout=Timeout(connect=2, total=10))
            created = await quick.create_text_to_video("A cat on grass")

        The client returned shares this one's connection pool, polling budget and lifecycle:
        it is open while this one is, and closes with it (do not enter it, nor close it). A
        timeout raises :class:`APITimeoutError`, which says whether the request may have been
        sent (``error.sent``); unlike a deadline of your own around the call
        (``anyio.fail_after``), which cannot.

        Args:
            timeout: Per-request timeouts for its calls (default: this client's).
            retry: Its retry policy (default: this client's).
            max_retries: Shortcut that overrides the policy's ``max_retries`` (``0``: no
                retry).
            max_retry_after: Shortcut that overrides the policy's cap on a server-requested
                ``Retry-After`` wait, in seconds.

        Returns:
            A client for the calls that need these options.

        Raises:
            TypeError: ``timeout`` or ``retry`` is not of its type.
            ValueError: ``max_retries`` or ``max_retry_after`` is negative.
        """
        engine = self._engine
        timeout = engine.timeout if isinstance(timeout, UnsetType) else timeout
        retry = engine.retry if isinstance(retry, UnsetType) else retry
        _check_types(timeout=timeout, retry=retry)
        if not isinstance(max_retries, UnsetType):
            retry = dataclasses.replace(retry, max_retries=max_retries)
        if not isinstance(max_retry_after, UnsetType):
            retry = dataclasses.replace(retry, max_retry_after=max_retry_after)
        view = object.__new__(type(self))
        view._engine = engine.derive(timeout=timeout, retry=retry)
        return view

    # -- lifecycle -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<AnyFast base_url={self.base_url!r} {self._engine.state}>"

    @property
    def base_url(self) -> str:
        """The API origin requests go to."""
        return self._engine.base_url

    @property
    def timeout(self) -> Timeout:
        """The per-request timeouts."""
        return self._engine.timeout

    @property
    def retry(self) -> RetryPolicy:
        """The per-request retry policy."""
        return self._engine.retry

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` has run."""
        return self._engine.is_closed

    @property
    def store(self) -> TaskStore | None:
        """The task store given to the client, or ``None``."""
        return self._engine.store

    async def __aenter__(self) -> AnyFast:
        await self._engine.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client and its own aiohttp session (an injected one is left open).

        Every watch, fan-out and watcher still running on it stops first. Safe to call more
        than once.
        """
        await self._engine.aclose()

    # -- one task --------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task:
        """Fetch a task's current state once.

        Transient failures (connection errors, timeouts, 408, 429, 5xx) are retried per the
        client's :class:`RetryPolicy`; when the retries run out the last error is raised.

        Args:
            task_id: The id returned by the create call. Treated as an opaque string and sent
                as one percent-encoded path segment.

        Returns:
            The :class:`Task`. A task that failed is returned, not raised: check
            :attr:`Task.status`.

        Raises:
            TypeError: ``task_id`` is not a string.
            ValueError: ``task_id`` is empty or whitespace (nothing is sent).
            TaskNotFoundError: no such task for this key.
            AuthenticationError: the key is invalid, expired, or out of quota.
            PermissionDeniedError: the key may not read this task.
            RateLimitError: throttled, and the retries ran out.
            ServerError: the server failed, and the retries ran out.
            APIConnectionError: no usable answer (APITimeoutError on a timeout).
            ResponseDecodeError: the answer is not a task record.
            RuntimeError: the client is not open.
        """
        path = task_path(task_id)
        self._engine.check_open()
        return await self._engine.get_task(path)

    # -- downloading -----------------------------------------------------------------------

    async def download(
        self,
        task_or_id: Task | str,
        dest: str | os.PathLike[str] = ".",
        *,
        progress: Callable[[int, int | None], Awaitable[object] | object] | None = None,
        read_timeout: float | None = DOWNLOAD_READ_TIMEOUT,
        skip_existing: bool = False,
    ) -> Path:
        """Download a finished task's video to ``dest``; return the file's path.

        The body is streamed to a temporary file in the destination folder, its size checked
        against ``Content-Length``, then renamed into place: memory stays bounded whatever
        the size, and a failed download leaves no file behind. A ``dest`` that is a folder
        gets a file named from the task id (``asyntask_....mp4``).

        The API key is sent only when the URL has the API's origin (the gateway's own
        ``/v1/videos/{id}/content`` proxy needs it); a signed storage URL of any other origin,
        or a redirect to one, gets no ``Authorization`` header. Only http(s) URLs are
        followed. Connection errors are retried per the client's :class:`RetryPolicy`
        (starting the file again).

        Args:
            task_or_id: A finished :class:`Task`, or a task id to fetch first.
            dest: A folder or a file path (default: the current folder).
            progress: Called as ``progress(bytes_so_far, total_or_None)`` after each piece;
                may be a coroutine function.
            read_timeout: Longest wait for the next piece, in seconds.
            skip_existing: Keep a file already where this one would go, fetching nothing
                (a download only ever leaves a whole file there). Safe for a folder, where the
                name comes from the task id; for a file path, only if nothing else writes it.

        Raises:
            ResultExpiredError: the storage refused the URL (403/404/410): signed URLs
                expire 24 hours after the task finished.
            TaskFailedError: the task failed; it has no video.
            ValueError: the task has not finished yet.
            APIConnectionError: the download broke off, and the retries ran out.
            RuntimeError: the client is not open.
        """
        self._engine.check_open()
        task = task_or_id if isinstance(task_or_id, Task) else await self.get_task(task_or_id)
        return await download(
            self._engine,
            task,
            dest,
            progress=progress,
            read_timeout=read_timeout,
            skip_existing=skip_existing,
        )


def _check_types(**values: object) -> None:
    """Refuse a configuration value of the wrong type, ``None`` included: "no timeouts" and
    "the defaults" are both plausible readings of ``None``, and the wrong one would fail far
    from here."""
    kinds: dict[str, type] = {
        "timeout": Timeout,
        "limits": Limits,
        "retry": RetryPolicy,
        "throttle": Throttle,
    }
    for name, value in values.items():
        kind = kinds[name]
        if not isinstance(value, kind):
            raise TypeError(
                f"{name} must be a {kind.__name__} (leave it out for the default), "
                f"not {type(value).__name__}"
            )
