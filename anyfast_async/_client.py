"""The public session object, :class:`AnyFast`."""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import os
import random
import sys
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import aiohttp
import anyio
import msgspec

from ._config import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_POLL,
    DEFAULT_RETRY,
    DEFAULT_THROTTLE,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    UNSET,
    Limits,
    PollPolicy,
    RetryPolicy,
    Throttle,
    Timeout,
    _Unset,
    resolve_api_key,
    resolve_base_url,
)
from ._create import (
    DEFAULT_MAX_IMAGES,
    CreatedTask,
    CreateRequest,
    ImageToVideo,
    Ratio,
    RawCreate,
    ReferenceToVideo,
    Resolution,
    TextToVideo,
    VideoEdit,
    decode_created,
)
from ._decode import decode_task, parse_retry_after, status_error
from ._exceptions import AnyFastError, APIConnectionError, RateLimitError, ResponseDecodeError
from ._models import Task, TaskUpdate, terminal_outcome
from ._retry import Pacer, Sleep, is_create_retryable, retrying
from ._scheduler import _unwrap
from ._transport import Response, Transport, default_user_agent

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    from ._download import Progress
    from ._scheduler import Scheduler, UpdateStream, Watcher

__all__ = ["AnyFast", "task_path"]

logger = logging.getLogger("anyfast_async")

TASKS_PATH: Final = "/v1/video/generations"
#: Longest wait for the next piece of a download, in seconds.
DOWNLOAD_READ_TIMEOUT: Final = 30.0


class _State(enum.Enum):
    NEW = "not opened"
    OPEN = "open"
    CLOSED = "closed"


def task_path(task_id: str) -> str:
    """The query path of ``task_id``, sent as one percent-encoded path segment.

    ``/``, ``?``, ``#``, spaces and dot segments cannot change which URL is requested.

    Raises:
        TypeError: ``task_id`` is not a string.
        ValueError: ``task_id`` is empty or only whitespace.
    """
    if not isinstance(task_id, str):
        raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
    if not task_id.strip():
        raise ValueError("task_id must be a non-empty string")
    try:
        segment = quote(task_id, safe="")
    except UnicodeEncodeError:
        raise ValueError("task_id must be valid Unicode text (it has a lone surrogate)") from None
    if segment in (".", ".."):
        segment = segment.replace(".", "%2E")
    return f"{TASKS_PATH}/{segment}"


class AnyFast:
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

    Raises:
        ValueError: no API key was given or found, or an argument is invalid. The message names
            ``ANYFAST_API_KEY`` and never contains the key.

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
        max_retries: int | _Unset = UNSET,
        user_agent_suffix: str | None = None,
        session: aiohttp.ClientSession | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_rate: float | None = None,
        throttle: Throttle = DEFAULT_THROTTLE,
        sleep: Sleep | None = None,
    ) -> None:
        key = resolve_api_key(api_key)
        self._base_url = resolve_base_url(base_url)
        if not isinstance(max_retries, _Unset):
            retry = RetryPolicy(
                max_retries=max_retries,
                initial_backoff=retry.initial_backoff,
                max_backoff=retry.max_backoff,
                max_retry_after=retry.max_retry_after,
            )
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be >= 1")
        self._timeout = timeout
        self._limits = limits
        self._max_response_bytes = max_response_bytes
        self._retry = retry
        self._sleep: Sleep = sleep if sleep is not None else anyio.sleep
        self._rng = random.Random()
        self._state = _State.NEW
        self._pacer = Pacer(throttle, max_rate=max_rate, sleep=self._sleep, clock=_loop_time)
        self._pacer_max_pause = throttle.max_pause
        self._schedulers: weakref.WeakSet[Scheduler] = weakref.WeakSet()
        self._transport = Transport(
            base_url=self._base_url,
            api_key=key,
            timeout=timeout,
            limits=limits,
            user_agent=default_user_agent(user_agent_suffix),
            max_response_bytes=max_response_bytes,
            session=session,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<AnyFast base_url={self._base_url!r} {self._state.value}>"

    @property
    def base_url(self) -> str:
        """The API origin requests go to."""
        return self._base_url

    @property
    def timeout(self) -> Timeout:
        """The per-request timeouts."""
        return self._timeout

    @property
    def retry(self) -> RetryPolicy:
        """The per-request retry policy."""
        return self._retry

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` has run."""
        return self._state is _State.CLOSED

    async def __aenter__(self) -> AnyFast:
        if self._state is _State.OPEN:
            raise RuntimeError("this AnyFast client is already open")
        if self._state is _State.CLOSED:
            raise RuntimeError("this AnyFast client is closed; create a new one")
        await self._transport.open()
        self._state = _State.OPEN
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

        Safe to call more than once.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        for scheduler in list(self._schedulers):
            await scheduler.aclose()
        await self._transport.close()

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            if self._state is _State.NEW:
                raise RuntimeError(
                    "this AnyFast client is not open: use `async with AnyFast(...) as client:`"
                )
            raise RuntimeError("this AnyFast client is closed; create a new one")

    # -- requests --------------------------------------------------------------------------

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
        self._check_open()
        return await self._get_task_at(path)

    async def _get_task_at(self, path: str) -> Task:
        return await retrying(
            lambda attempt: self._fetch_task(path, attempt),
            policy=self._retry,
            sleep=self._sleep,
            rng=self._rng,
            what=f"GET {path}",
        )

    async def _fetch_task(self, path: str, attempt: int = 1) -> Task:
        """One GET of one task, decoded; no retry. Reports throttling to the shared budget."""
        if logger.isEnabledFor(logging.DEBUG):
            response = await self._send("GET", path, attempt)
        else:  # the hot path of every poll: one coroutine level less
            response = await self._transport.request("GET", path)
        if 200 <= response.status < 300:
            self._pacer.succeeded()
            if response.oversize:
                raise _oversize(response, self._max_response_bytes)
            return decode_task(
                response.body, status_code=response.status, request_id=response.request_id
            )
        error = _error_from(response)
        if isinstance(error, RateLimitError):
            self._pacer.throttled(error.retry_after)
        raise error

    # -- creating --------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> CreatedTask:
        """Create a task from a typed request; return its id at once (generation then starts).

        ::

            created = await client.create(TextToVideo(prompt="A cat on grass", duration=5))
            save(created.task_id)

        **A create call is not idempotent**, so it is not retried blindly: it is sent again
        only when the request provably never reached the server (the connection could not be
        made) or the server refused it before processing it (HTTP 429 or 503, honouring
        ``Retry-After``), up to the client's ``RetryPolicy.max_retries``. Any other failure
        after the request was sent (a timeout, a dropped connection, a 500) is raised at once:
        the task may or may not exist, and the :class:`APIConnectionError` says so
        (``error.sent`` is ``True``). Look for it before creating it again.

        Raises:
            BadRequestError: the server refused the body.
            AuthenticationError, PermissionDeniedError: the key was refused.
            RateLimitError: HTTP 429, and the retries ran out.
            ServerError: HTTP 5xx: at once, or for a 503 once the retries ran out.
            APIConnectionError, APITimeoutError: no answer (see above).
            ResponseDecodeError: the answer holds no task id.
            RuntimeError: the client is not open.
        """
        self._check_open()
        body = msgspec.json.encode(request.body())
        return await retrying(
            lambda attempt: self._post_create(body, attempt),
            policy=self._retry,
            sleep=self._sleep,
            rng=self._rng,
            what=f"POST {TASKS_PATH}",
            retryable=is_create_retryable,
        )

    async def _post_create(self, body: bytes, attempt: int) -> CreatedTask:
        try:
            response = await self._send("POST", TASKS_PATH, attempt, json_body=body)
        except APIConnectionError as exc:
            if not exc.sent:
                raise
            error = type(exc)(
                f"{exc.message}; the request may have reached the server, so the task may "
                "or may not have been created: look for it before creating it again",
                method=exc.method,
                path=exc.path,
                retryable=False,
            )
            raise error from exc
        if 200 <= response.status < 300:
            if response.oversize:
                raise _oversize(response, self._max_response_bytes)
            return decode_created(
                response.body, status_code=response.status, request_id=response.request_id
            )
        failure = _error_from(response)
        if isinstance(failure, RateLimitError):
            self._pacer.throttled(failure.retry_after)
        raise failure

    async def create_text_to_video(
        self,
        prompt: str,
        *,
        resolution: Resolution | None = None,
        ratio: Ratio | None = None,
        duration: int | None = None,
        watermark: bool | None = None,
        seed: int | None = None,
    ) -> CreatedTask:
        """Create a HappyHorse 1.0 text-to-video task. See :class:`TextToVideo`.

        ::

            created = await client.create_text_to_video("A cat running on grass", duration=5)

        Arguments left as ``None`` are not sent, so the server's defaults apply (1080P, 16:9,
        5 s, watermark on). Values are validated before anything is sent.

        Args:
            prompt: What to generate (not empty).
            resolution: ``"720P"`` or ``"1080P"`` (server default ``1080P``).
            ratio: ``"16:9"``, ``"9:16"``, ``"1:1"``, ``"4:3"`` or ``"3:4"`` (default ``16:9``).
            duration: Seconds, 3 to 15 (default 5).
            watermark: ``False`` removes the mark (default ``True``).
            seed: 0 to 2147483647.

        Returns:
            The :class:`CreatedTask`: its ``task_id`` is what to keep.

        Raises:
            ValueError, TypeError: an argument outside the documented limits (nothing is
                sent).
            BadRequestError: the server refused the body.
            AuthenticationError, PermissionDeniedError: the key was refused.
            RateLimitError, ServerError: throttled or failed (see :meth:`create` for when a
                create call is retried).
            APIConnectionError: no answer; ``error.sent`` says whether the task may exist.
            ResponseDecodeError: the answer holds no task id.
            RuntimeError: the client is not open.
        """
        return await self.create(
            TextToVideo(
                prompt=prompt,
                resolution=resolution,
                ratio=ratio,
                duration=duration,
                watermark=watermark,
                seed=seed,
            )
        )

    async def create_image_to_video(
        self,
        image: str,
        prompt: str,
        *,
        resolution: Resolution | None = None,
        ratio: Ratio | None = None,
        duration: int | None = None,
        watermark: bool | None = None,
        seed: int | None = None,
    ) -> CreatedTask:
        """Create a HappyHorse 1.0 image-to-video task from a first-frame image URL.

        See :class:`ImageToVideo`. Arguments left as ``None`` are not sent.

        Args:
            image: The first frame: an ``http(s)`` URL.
            prompt: What happens in the video (not empty).
            resolution: ``"720P"`` or ``"1080P"`` (server default ``1080P``).
            ratio: ``"16:9"``, ``"9:16"``, ``"1:1"``, ``"4:3"`` or ``"3:4"`` (default ``16:9``).
            duration: Seconds, 3 to 15 (default 5).
            watermark: ``False`` removes the mark (default ``True``).
            seed: 0 to 2147483647.

        Returns:
            The :class:`CreatedTask`: its ``task_id`` is what to keep.

        Raises:
            ValueError, TypeError: an argument outside the documented limits (nothing is
                sent).
            BadRequestError: the server refused the body.
            AuthenticationError, PermissionDeniedError: the key was refused.
            RateLimitError, ServerError: throttled or failed (see :meth:`create` for when a
                create call is retried).
            APIConnectionError: no answer; ``error.sent`` says whether the task may exist.
            ResponseDecodeError: the answer holds no task id.
            RuntimeError: the client is not open.
        """
        return await self.create(
            ImageToVideo(
                image=image,
                prompt=prompt,
                resolution=resolution,
                ratio=ratio,
                duration=duration,
                watermark=watermark,
                seed=seed,
            )
        )

    async def create_reference_to_video(
        self,
        images: Sequence[str],
        prompt: str,
        *,
        resolution: Resolution | None = None,
        ratio: Ratio | None = None,
        duration: int | None = None,
        watermark: bool | None = None,
        seed: int | None = None,
        max_images: int = DEFAULT_MAX_IMAGES,
    ) -> CreatedTask:
        """Create a HappyHorse 1.0 reference-to-video task from 1 to 3 image URLs.

        See :class:`ReferenceToVideo`. Arguments left as ``None`` are not sent.

        Args:
            images: 1 to ``max_images`` reference images, as ``http(s)`` URLs.
            prompt: What to generate (not empty).
            resolution: ``"720P"`` or ``"1080P"`` (server default ``1080P``).
            ratio: ``"16:9"``, ``"9:16"``, ``"1:1"``, ``"4:3"`` or ``"3:4"`` (default ``16:9``).
            duration: Seconds, 3 to 15 (default 5).
            watermark: ``False`` removes the mark (default ``True``).
            seed: 0 to 2147483647.
            max_images: The most images accepted (AnyFast documents 3; the upstream model
                takes up to 9).

        Returns:
            The :class:`CreatedTask`: its ``task_id`` is what to keep.

        Raises:
            ValueError, TypeError: an argument outside the documented limits (nothing is
                sent).
            BadRequestError: the server refused the body.
            AuthenticationError, PermissionDeniedError: the key was refused.
            RateLimitError, ServerError: throttled or failed (see :meth:`create` for when a
                create call is retried).
            APIConnectionError: no answer; ``error.sent`` says whether the task may exist.
            ResponseDecodeError: the answer holds no task id.
            RuntimeError: the client is not open.
        """
        return await self.create(
            ReferenceToVideo(
                images=images,
                prompt=prompt,
                resolution=resolution,
                ratio=ratio,
                duration=duration,
                watermark=watermark,
                seed=seed,
                max_images=max_images,
            )
        )

    async def create_video_edit(
        self,
        video: str,
        reference_image: str,
        prompt: str,
        *,
        resolution: Resolution | None = None,
        watermark: bool | None = None,
        seed: int | None = None,
    ) -> CreatedTask:
        """Create a HappyHorse 1.0 video-edit task: one video, one reference image.

        See :class:`VideoEdit`. Arguments left as ``None`` are not sent.

        Args:
            video: The video to edit: an ``http(s)`` URL.
            reference_image: The reference image: an ``http(s)`` URL.
            prompt: The edit to make (not empty).
            resolution: ``"720P"`` or ``"1080P"`` (server default ``1080P``).
            watermark: ``False`` removes the mark (default ``True``).
            seed: 0 to 2147483647.

        Returns:
            The :class:`CreatedTask`: its ``task_id`` is what to keep.

        Raises:
            ValueError, TypeError: an argument outside the documented limits (nothing is
                sent).
            BadRequestError: the server refused the body.
            AuthenticationError, PermissionDeniedError: the key was refused.
            RateLimitError, ServerError: throttled or failed (see :meth:`create` for when a
                create call is retried).
            APIConnectionError: no answer; ``error.sent`` says whether the task may exist.
            ResponseDecodeError: the answer holds no task id.
            RuntimeError: the client is not open.
        """
        return await self.create(
            VideoEdit(
                video=video,
                reference_image=reference_image,
                prompt=prompt,
                resolution=resolution,
                watermark=watermark,
                seed=seed,
            )
        )

    async def create_task(self, model: str, body: Mapping[str, Any]) -> CreatedTask:
        """Create a task of any model on the same endpoint (Seedance, Wan, ...).

        ::

            created = await client.create_task("wan2.2-t2v", {"prompt": "A cat", "duration": 5})

        Args:
            model: The model's name, as the create page of its provider gives it.
            body: The rest of the JSON body, sent as given with ``model`` added; nothing is
                validated client-side.

        Returns:
            The :class:`CreatedTask`.

        Raises:
            ValueError: ``model`` is empty.
            TypeError: ``body`` is not a mapping.
            BadRequestError: the server refused the body.
            AuthenticationError, PermissionDeniedError: the key was refused.
            RateLimitError, ServerError: throttled or failed (see :meth:`create`).
            APIConnectionError: no answer; ``error.sent`` says whether the task may exist.
            ResponseDecodeError: the answer holds no task id.
            RuntimeError: the client is not open.
        """
        return await self.create(RawCreate(model, body))

    async def create_and_wait(
        self,
        request: CreateRequest,
        *,
        on_created: Callable[[CreatedTask], Awaitable[object] | object] | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
    ) -> Task:
        """Create a task, then wait for it; return the finished :class:`Task`.

        ``on_created`` (a function or a coroutine function) is called with the
        :class:`CreatedTask` before the wait begins: persist the id there, so that a crash
        while waiting never loses a paid task. The errors of :meth:`create` and :meth:`wait`
        are raised; a :class:`TaskFailedError` or :class:`WaitTimeoutError` carries the id.

        Args:
            request: What to create: :class:`TextToVideo`, :class:`ImageToVideo`,
                :class:`ReferenceToVideo` or :class:`VideoEdit`.
            on_created: Called with the :class:`CreatedTask` before the wait begins; awaited
                if it returns an awaitable.
            timeout: Seconds from the create until the deadline (default 1800); ``None``
                for none.
            poll: When to poll, as for :meth:`watch`.
            poll_interval: Shortcut for a fixed interval, as for :meth:`watch`.

        An exception raised by ``on_created`` propagates (the task exists: its id is in the
        ``CreatedTask``).

        Raises:
            TaskFailedError: the task ended in FAILURE.
            WaitTimeoutError: the deadline passed.
            BadRequestError, RateLimitError, ServerError, APIConnectionError: the create call
                failed (see :meth:`create`).
            TaskNotFoundError: the task does not exist (after a short grace period).
            AuthenticationError, PermissionDeniedError: the key was refused.
            BadRequestError: the server refused the query for another reason.
            ResponseDecodeError: an answer could not be read as a task.
            ValueError, TypeError: an argument of the request is out of bounds, ``timeout``
                is not > 0, or both ``poll`` and ``poll_interval`` are given.
            RuntimeError: the client is not open, or was closed during the wait.
        """
        created = await self.create(request)
        if on_created is not None:
            result = on_created(created)
            if inspect.isawaitable(result):
                await result
        return await self.wait(
            created.task_id, timeout=timeout, poll=poll, poll_interval=poll_interval
        )

    async def create_and_watch(
        self,
        request: CreateRequest,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
    ) -> AsyncIterator[CreatedTask | TaskUpdate]:
        """Create a task and watch it: yields the :class:`CreatedTask` first, then updates.

        ::

            async for event in client.create_and_watch(TextToVideo(prompt="...")):
                if isinstance(event, CreatedTask):
                    save(event.task_id)          # before any waiting
                else:
                    print(event.status, event.progress)

        Args:
            request: What to create, as for :meth:`create_and_wait`.
            timeout: Seconds until the deadline (default 1800); ``None`` for none.
            poll: When to poll, as for :meth:`watch`.
            poll_interval: Shortcut for a fixed interval, as for :meth:`watch`.

        Raises:
            WaitTimeoutError: the deadline passed.
            BadRequestError, RateLimitError, ServerError, APIConnectionError: the create call
                failed (see :meth:`create`).
            TaskNotFoundError: the task does not exist (after a short grace period).
            AuthenticationError, PermissionDeniedError: the key was refused.
            BadRequestError: the server refused the query for another reason.
            ResponseDecodeError: an answer could not be read as a task.
            ValueError, TypeError: an argument of the request is out of bounds, ``timeout``
                is not > 0, or both ``poll`` and ``poll_interval`` are given.
            RuntimeError: the client is not open, or was closed during the wait.
        """
        created = await self.create(request)
        yield created
        async with self.watch(
            created.task_id, timeout=timeout, poll=poll, poll_interval=poll_interval
        ) as updates:
            async for update in updates:
                yield update

    # -- downloading -----------------------------------------------------------------------

    async def download(
        self,
        task_or_id: Task | str,
        dest: str | os.PathLike[str] = ".",
        *,
        progress: Progress | None = None,
        read_timeout: float | None = DOWNLOAD_READ_TIMEOUT,
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

        Raises:
            ResultExpiredError: the storage refused the URL (403/404/410): signed URLs
                expire 24 hours after the task finished.
            TaskFailedError: the task failed; it has no video.
            ValueError: the task has not finished yet.
            APIConnectionError: the download broke off, and the retries ran out.
        """
        self._check_open()
        task = task_or_id if isinstance(task_or_id, Task) else await self.get_task(task_or_id)
        return await self._download(task, dest, progress=progress, read_timeout=read_timeout)

    async def _download(
        self,
        task: Task,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        read_timeout: float | None = DOWNLOAD_READ_TIMEOUT,
        folder: bool = False,
    ) -> Path:
        from ._download import download_result

        return await retrying(
            lambda attempt: download_result(
                self, task, dest, progress=progress, read_timeout=read_timeout, folder=folder
            ),
            policy=self._retry,
            sleep=self._sleep,
            rng=self._rng,
            what=f"download of {task.task_id}",
        )

    # -- watching --------------------------------------------------------------------------

    def _poller_limit(self, concurrency: int) -> int:
        """Pollers to run: ``concurrency``, but never more than the connection pool holds."""
        pool = self._transport.connection_limit
        return concurrency if not pool else min(concurrency, pool)

    def _scheduler(
        self,
        *,
        concurrency: int,
        timeout: float | None,
        poll: PollPolicy | None,
        poll_interval: float | None,
        close_when_idle: bool,
    ) -> Scheduler:
        from ._scheduler import Scheduler

        self._check_open()
        if poll is not None and poll_interval is not None:
            raise ValueError("pass poll= or poll_interval=, not both")
        policy = PollPolicy.fixed(poll_interval) if poll_interval is not None else poll
        return Scheduler(
            self,
            concurrency=concurrency,
            poll=policy or DEFAULT_POLL,
            timeout=timeout,
            close_when_idle=close_when_idle,
            stop_on_fatal=close_when_idle,
        )

    def watch(
        self,
        task_id: str,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
    ) -> UpdateStream:
        """Watch one task: an async iterator of its :class:`TaskUpdate` s.

        ::

            async for update in client.watch(task_id, timeout=600):
                print(update.status, update.progress)

        The first poll is immediate. An update is yielded for the first observation and then
        only when the status or the progress changes; after the terminal update (SUCCESS or
        FAILURE, with ``update.error`` a :class:`TaskFailedError` for FAILURE) the iteration
        ends. Transient errors (connection errors, timeouts, 429, 5xx) do not end the watch:
        polling goes on with backoff until the deadline.

        Args:
            task_id: The task to watch.
            timeout: Seconds until the deadline (default 1800); ``None`` for none.
            poll: When to poll (:class:`PollPolicy`); default: ``PollPolicy()``.
            poll_interval: Shortcut for ``poll=PollPolicy.fixed(poll_interval)``.

        Raises:
            WaitTimeoutError: the deadline passed (carries the last task seen).
            TaskNotFoundError: the task does not exist (after a short grace period).
            AuthenticationError, PermissionDeniedError: the key was refused.
            BadRequestError: the server refused the query for another reason.
            ResponseDecodeError: an answer could not be read as a task.
            TypeError: ``task_id`` is not a string.
            ValueError: ``task_id`` is empty, ``timeout`` or ``poll_interval`` is not > 0, or
                both ``poll`` and ``poll_interval`` are given.
            RuntimeError: the client is not open, or was closed during the watch.

        Breaking out of the loop, closing the stream (``async with client.watch(...) as
        updates:``) or cancelling the surrounding task stops polling at once.
        """
        from ._scheduler import UpdateStream

        scheduler = self._scheduler(
            concurrency=1,
            timeout=timeout,
            poll=poll,
            poll_interval=poll_interval,
            close_when_idle=True,
        )
        scheduler.add(task_id)
        return UpdateStream(scheduler, buffer=16, owns_scheduler=True, raise_errors=True)

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
    ) -> Task:
        """Wait for one task to finish and return it.

        ::

            try:
                task = await client.wait(task_id, timeout=900)
            except TaskFailedError as exc:
                print("failed:", exc.reason)

        Args:
            task_id: The task to wait for.
            timeout: Seconds until the deadline (default 1800); ``None`` for none.
            poll: When to poll (:class:`PollPolicy`); default: ``PollPolicy()``.
            poll_interval: Shortcut for ``poll=PollPolicy.fixed(poll_interval)``.

        Returns:
            The final :class:`Task`, whose status is SUCCESS.

        Raises:
            TaskFailedError: the task ended in FAILURE (``.task``, ``.reason``).
            WaitTimeoutError: the deadline passed (``.last_task``).
            TaskNotFoundError: the task does not exist (after a short grace period).
            AuthenticationError, PermissionDeniedError: the key was refused.
            BadRequestError: the server refused the query for another reason.
            ResponseDecodeError: an answer could not be read as a task.
            ValueError: ``task_id`` is empty, ``timeout`` is not > 0, or both ``poll`` and
                ``poll_interval`` are given.
            RuntimeError: the client is not open, or was closed during the wait.
        """
        last = None
        async with self.watch(
            task_id, timeout=timeout, poll=poll, poll_interval=poll_interval
        ) as updates:
            async for update in updates:
                last = update
        if last is None or not last.is_terminal or (last.task is None and last.error is None):
            raise RuntimeError(f"the watch of task {task_id!r} ended before the task did")
        if last.error is not None:
            raise last.error
        assert last.task is not None
        return last.task

    def watch_many(
        self,
        task_ids: Iterable[str],
        *,
        concurrency: int = 64,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
    ) -> UpdateStream:
        """Watch many tasks at once: an async iterator of all their updates, merged.

        ::

            async for update in client.watch_many(task_ids, concurrency=64, timeout=900):
                if update.is_terminal:
                    print(update.task_id, update.status, update.error)

        One scheduler polls every task, with at most ``concurrency`` requests in flight
        whatever the number of tasks. Each task yields the updates :meth:`watch` would, and
        its last update has ``is_terminal=True``. A task whose watch ends without success does
        not raise: its last update carries the error (:class:`TaskFailedError`,
        :class:`WaitTimeoutError`, :class:`TaskNotFoundError`, ...) and the others go on.
        Duplicate ids are watched once.

        Args:
            task_ids: The tasks to watch.
            concurrency: Most requests in flight at once (capped at the connection pool size).
            timeout: Seconds until each task's deadline (default 1800); ``None`` for none.
            poll: When to poll, as for :meth:`watch`.
            poll_interval: Shortcut for a fixed interval, as for :meth:`watch`.

        Raises:
            AuthenticationError, PermissionDeniedError: the key was refused; no task can
                succeed, so everything stops.
            TypeError: an id is not a string.
            ValueError: an id is empty, ``concurrency`` < 1, or ``timeout`` or
                ``poll_interval`` is not > 0 (before anything is sent).
            RuntimeError: the client is not open, or was closed during the watch.
        """
        from ._scheduler import UpdateStream

        scheduler = self._scheduler(
            concurrency=concurrency,
            timeout=timeout,
            poll=poll,
            poll_interval=poll_interval,
            close_when_idle=True,
        )
        for task_id in task_ids:
            scheduler.add(task_id)
        return UpdateStream(
            scheduler, buffer=max(64, concurrency), owns_scheduler=True, raise_errors=False
        )

    async def wait_many(
        self,
        task_ids: Iterable[str],
        *,
        concurrency: int = 64,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
        download_to: str | os.PathLike[str] | None = None,
        download_concurrency: int = 4,
    ) -> dict[str, Task | AnyFastError]:
        """Wait for many tasks; map each id to its final :class:`Task` or the error that ended it.

        Takes the arguments of :meth:`watch_many`. One task's failure never cancels the
        others: its value in the result is the :class:`TaskFailedError`,
        :class:`WaitTimeoutError`, :class:`TaskNotFoundError`, ... that ended it. The result
        keeps the order of ``task_ids`` (duplicates once).

        With ``download_to`` (a folder), each result is downloaded as soon as its task
        succeeds, at most ``download_concurrency`` at a time, to
        ``download_to/<task id>.mp4`` (see :meth:`download`), while the others are still
        being watched. A failed download makes that task's value the download's error.

        Args:
            task_ids: The tasks to wait for.
            concurrency: Most polls in flight at once (capped at the connection pool size).
            timeout: Seconds until each task's deadline (default 1800); ``None`` for none.
            poll: When to poll, as for :meth:`watch`.
            poll_interval: Shortcut for a fixed interval, as for :meth:`watch`.
            download_to: A folder to download each result into as soon as it succeeds.
            download_concurrency: Most downloads at once.

        Raises:
            AuthenticationError, PermissionDeniedError: the key was refused.
            TypeError: an id is not a string.
            ValueError: an id is empty, ``concurrency`` < 1, or ``timeout`` or
                ``poll_interval`` is not > 0 (before anything is sent).
            RuntimeError: the client is not open, or was closed during the wait.
        """
        ids = list(dict.fromkeys(task_ids))
        outcomes: dict[str, Task | AnyFastError] = {}
        limiter = anyio.CapacityLimiter(download_concurrency) if download_to else None

        async def fetch(task: Task) -> None:
            assert limiter is not None
            assert download_to is not None
            async with limiter:
                try:
                    await self._download(task, download_to, folder=True)
                except AnyFastError as exc:
                    outcomes[task.task_id] = exc

        if download_to is not None:
            await anyio.Path(download_to).mkdir(parents=True, exist_ok=True)

        try:
            async with (
                anyio.create_task_group() as downloads,
                self.watch_many(
                    ids,
                    concurrency=concurrency,
                    timeout=timeout,
                    poll=poll,
                    poll_interval=poll_interval,
                ) as updates,
            ):
                async for update in updates:
                    if not update.is_terminal:
                        continue
                    outcome = outcomes[update.task_id] = terminal_outcome(update)
                    if limiter is not None and isinstance(outcome, Task) and outcome.result_url:
                        downloads.start_soon(fetch, outcome)
        except BaseExceptionGroup as group:  # raise the error itself, as documented
            raise _unwrap(group) from None
        return {task_id: outcomes[task_id] for task_id in ids}

    def watcher(
        self,
        *,
        concurrency: int = 64,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
    ) -> Watcher:
        """A long-lived scheduler to add tasks to while it runs, for web apps and workers.

        ::

            async with client.watcher(concurrency=64) as watcher:
                handle = watcher.add(task_id)          # from any coroutine
                task = await handle.wait()

        An authentication error ends every task being watched at that moment (their waiters
        get it), but the watcher keeps running.

        Args:
            concurrency: Most polls in flight at once, for all the tasks of the watcher
                (capped at the connection pool size).
            timeout: The default deadline of each added task, in seconds from its
                :meth:`Watcher.add` (default 1800); ``None`` for none.
            poll: When to poll, as for :meth:`watch`.
            poll_interval: Shortcut for a fixed interval, as for :meth:`watch`.

        Returns:
            A :class:`Watcher`, to enter with ``async with``.

        Raises:
            ValueError: ``concurrency`` < 1, ``timeout`` or ``poll_interval`` is not > 0, or
                both ``poll`` and ``poll_interval`` are given.
            RuntimeError: the client is not open.
        """
        from ._scheduler import Watcher

        return Watcher(
            self._scheduler(
                concurrency=concurrency,
                timeout=timeout,
                poll=poll,
                poll_interval=poll_interval,
                close_when_idle=False,
            )
        )

    async def _send(
        self, method: str, path: str, attempt: int = 1, *, json_body: bytes | None = None
    ) -> Response:
        if not logger.isEnabledFor(logging.DEBUG):
            return await self._transport.request(method, path, json_body=json_body)
        started = time.perf_counter()
        try:
            response = await self._transport.request(method, path, json_body=json_body)
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


def _loop_time() -> float:
    """The running event loop's monotonic clock (what anyio.current_time() reads, cheaper)."""
    return asyncio.get_running_loop().time()


def _oversize(response: Response, limit: int) -> ResponseDecodeError:
    return ResponseDecodeError(
        f"answer body is larger than the {limit}-byte limit; it was not read",
        status_code=response.status,
        request_id=response.request_id,
    )


def _error_from(response: Response) -> AnyFastError:
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return status_error(
        response.status,
        response.body,
        request_id=response.request_id,
        retry_after=retry_after,
        oversize=response.oversize,
    )
