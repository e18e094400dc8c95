"""The create calls of :class:`~anyfast_async.AnyFast`: typed requests in, task ids out.

A part of the public client (it reaches the API through the client's engine): the bodies are
built and validated by the request types, sent by the engine, and the create-then-wait forms
hand over to the watch streams.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import msgspec

from ._config import DEFAULT_WAIT_TIMEOUT, PollPolicy
from ._engine import Engine
from ._models import CreatedTask, Task
from ._phases import PhaseLimits
from ._requests import (
    DEFAULT_MAX_IMAGES,
    CreateRequest,
    ImageToVideo,
    Ratio,
    RawCreate,
    ReferenceToVideo,
    Resolution,
    TextToVideo,
    VideoEdit,
)
from ._watch import CreateAndWatchStream, follow, one_task_scheduler, wait_for

__all__ = ["CreateCalls"]


class CreateCalls:
    """The create methods of :class:`~anyfast_async.AnyFast`."""

    _engine: Engine

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
        the task may or may not exist, and the error says so (``error.sent`` is ``True``, and
        its message says to look for the task before creating it again). Every error it
        raises has ``sent``: ``False`` when the task surely was not created (a 4xx answer, a
        connection never made).

        Args:
            request: What to create: :class:`TextToVideo`, :class:`ImageToVideo`,
                :class:`ReferenceToVideo`, :class:`VideoEdit` or :class:`RawCreate`.

        Returns:
            The :class:`CreatedTask`: its ``task_id`` is what to keep.

        Raises:
            BadRequestError: the server refused the body.
            AuthenticationError: the key was refused (401).
            PermissionDeniedError: the key may not create this (403).
            RateLimitError: HTTP 429, and the retries ran out.
            ServerError: HTTP 5xx: at once, or for a 503 once the retries ran out.
            APIConnectionError: no answer (APITimeoutError on a timeout).
            ResponseDecodeError: the answer holds no task id.
            RuntimeError: the client is not open.
        """
        self._engine.check_open()
        body = request.body()
        model = body.get("model")
        return await self._engine.create(
            msgspec.json.encode(body), model=model if isinstance(model, str) else ""
        )

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
        """Create a HappyHorse 1.0 text-to-video task: ``create(TextToVideo(...))``.

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
            ValueError: an argument outside the documented limits (nothing is sent).
            TypeError: an argument of the wrong type (nothing is sent).
            RuntimeError: the client is not open.
            AnyFastError: the server's answer, as for :meth:`create`.
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
        """Create a HappyHorse 1.0 image-to-video task: ``create(ImageToVideo(...))``.

        Arguments left as ``None`` are not sent.

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
            ValueError: an argument outside the documented limits (nothing is sent).
            TypeError: an argument of the wrong type (nothing is sent).
            RuntimeError: the client is not open.
            AnyFastError: the server's answer, as for :meth:`create`.
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
        """Create a HappyHorse 1.0 reference-to-video task: ``create(ReferenceToVideo(...))``.

        Arguments left as ``None`` are not sent.

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
            ValueError: an argument outside the documented limits (nothing is sent).
            TypeError: an argument of the wrong type (nothing is sent).
            RuntimeError: the client is not open.
            AnyFastError: the server's answer, as for :meth:`create`.
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
        """Create a HappyHorse 1.0 video-edit task: ``create(VideoEdit(...))``.

        Arguments left as ``None`` are not sent; ``ratio`` and ``duration`` do not apply to an
        edit (the output follows the video).

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
            ValueError: an argument outside the documented limits (nothing is sent).
            TypeError: an argument of the wrong type (nothing is sent).
            RuntimeError: the client is not open.
            AnyFastError: the server's answer, as for :meth:`create`.
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
            RuntimeError: the client is not open.
            AnyFastError: the server's answer, as for :meth:`create`.
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
        queue_timeout: float | None = None,
        run_timeout: float | None = None,
        stall_timeout: float | None = None,
        upstream_error_timeout: float | None = None,
    ) -> Task:
        """Create a task, then wait for it; return the finished :class:`Task`.

        ``on_created`` (a function or a coroutine function) is called with the
        :class:`CreatedTask` before the wait begins: persist the id there, so that a crash
        while waiting never loses a paid task. An exception raised by ``on_created``
        propagates (the task exists: its id is in the ``CreatedTask``).

        Args:
            request: What to create, as for :meth:`create`.
            on_created: Called with the :class:`CreatedTask` before the wait begins; awaited
                if it returns an awaitable.
            timeout: Seconds from the start of the wait (after ``on_created`` returned) until
                the deadline (default 1800); ``None`` for none.
            poll: When to poll, as for :meth:`watch`.
            poll_interval: Shortcut for a fixed interval, as for :meth:`watch`.
            queue_timeout: Phase deadline, as for :meth:`watch`.
            run_timeout: Phase deadline, as for :meth:`watch`.
            stall_timeout: Phase deadline, as for :meth:`watch`.
            upstream_error_timeout: Phase deadline, as for :meth:`watch`.

        Returns:
            The final :class:`Task`, whose status is SUCCESS.

        Raises:
            ValueError: ``timeout`` or ``poll_interval`` is not > 0, or both ``poll`` and
                ``poll_interval`` are given (nothing is sent).
            RuntimeError: the client is not open, or was closed during the wait.
            AnyFastError: the errors of :meth:`create`, then those of :meth:`wait` (a
                :class:`TaskFailedError` or :class:`WaitTimeoutError` carries the id).
        """
        scheduler = one_task_scheduler(
            self._engine,
            timeout=timeout,
            poll=poll,
            poll_interval=poll_interval,
            phases=PhaseLimits.of(
                queue_timeout=queue_timeout,
                run_timeout=run_timeout,
                stall_timeout=stall_timeout,
                upstream_error_timeout=upstream_error_timeout,
            ),
        )
        created = await self.create(request)
        if on_created is not None:
            result = on_created(created)
            if inspect.isawaitable(result):
                await result
        scheduler.add(created.task_id, model=created.model)
        return await wait_for(follow(scheduler), created.task_id)

    def create_and_watch(
        self,
        request: CreateRequest,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
        queue_timeout: float | None = None,
        run_timeout: float | None = None,
        stall_timeout: float | None = None,
        upstream_error_timeout: float | None = None,
    ) -> CreateAndWatchStream:
        """Create a task and watch it: yields the :class:`CreatedTask` first, then updates.

        ::

            async with client.create_and_watch(TextToVideo(prompt="...")) as events:
                async for event in events:
                    if isinstance(event, CreatedTask):
                        save(event.task_id)          # before any waiting
                    else:
                        print(event.status, event.progress)

        The arguments are checked at the call, as :meth:`watch` checks them; the create call
        is sent when iteration starts. The updates are those of :meth:`watch`.

        Args:
            request: What to create, as for :meth:`create`.
            timeout: Seconds from the start of the watch (the step after the
                :class:`CreatedTask`) until the deadline (default 1800); ``None`` for none.
            poll: When to poll, as for :meth:`watch`.
            poll_interval: Shortcut for a fixed interval, as for :meth:`watch`.
            queue_timeout: Phase deadline, as for :meth:`watch`.
            run_timeout: Phase deadline, as for :meth:`watch`.
            stall_timeout: Phase deadline, as for :meth:`watch`.
            upstream_error_timeout: Phase deadline, as for :meth:`watch`.

        Returns:
            A :class:`CreateAndWatchStream`, to iterate (and enter with ``async with``).

        Raises:
            ValueError: ``timeout`` or ``poll_interval`` is not > 0, or both ``poll`` and
                ``poll_interval`` are given (at the call).
            RuntimeError: the client is not open (at the call), or was closed during the
                watch.
            AnyFastError: while iterating, the errors of :meth:`create`, then those of
                :meth:`watch`.
        """
        scheduler = one_task_scheduler(
            self._engine,
            timeout=timeout,
            poll=poll,
            poll_interval=poll_interval,
            phases=PhaseLimits.of(
                queue_timeout=queue_timeout,
                run_timeout=run_timeout,
                stall_timeout=stall_timeout,
                upstream_error_timeout=upstream_error_timeout,
            ),
        )
        return CreateAndWatchStream(lambda: self.create(request), scheduler)
