"""Downloading a finished task's video: streamed to a temporary file, then renamed.

Memory stays bounded whatever the file size (the body is written piece by piece), and a failed
download leaves no file behind. The API key goes only to the API's own origin (its
``/v1/videos/{id}/content`` proxy); a signed storage URL of any other origin gets no
``Authorization`` header, and neither does a redirect to one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Final

import anyio
import yarl

from ._decode import excerpt, status_error
from ._engine import Engine
from ._exceptions import APIConnectionError, ResultExpiredError, TaskFailedError
from ._models import Task, TaskStatus
from ._transport import REQUEST_ID_HEADER, Stream

__all__ = ["DOWNLOAD_READ_TIMEOUT", "Progress", "download"]

#: Longest wait for the next piece of a download, in seconds.
DOWNLOAD_READ_TIMEOUT: Final = 30.0

#: Called with (bytes written so far, total bytes or None when the server did not say).
Progress = Callable[[int, "int | None"], "Awaitable[object] | object"]

MAX_REDIRECTS: Final = 5
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS: Final = (".mp4", ".mov", ".webm", ".mkv")


def result_path(
    task_id: str, url: str, dest: str | os.PathLike[str], *, folder: bool = False
) -> Path:
    """Where a download of ``task_id`` from ``url`` goes when ``dest`` is given.

    A ``dest`` that is a folder (``folder=True``, an existing folder, or a path ending with a
    separator) gets a file named from the task id (characters other than letters, digits,
    ``.``, ``_`` and ``-`` replaced) with the URL's video extension, ``.mp4`` by default. Any
    other ``dest`` is the file itself.
    """
    target = Path(dest)
    if folder or target.is_dir() or str(dest).endswith((os.sep, "/")):
        suffix = Path(yarl.URL(url).path).suffix.lower()
        name = _UNSAFE.sub("_", task_id).strip(".") or "task"
        return target / f"{name}{suffix if suffix in _EXTENSIONS else '.mp4'}"
    return target


async def download(
    engine: Engine,
    task: Task,
    dest: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    read_timeout: float | None = DOWNLOAD_READ_TIMEOUT,
    folder: bool = False,
    skip_existing: bool = False,
) -> Path:
    """Stream ``task``'s result to ``dest`` atomically; return the final path.

    Connection errors are retried per the engine's retry policy, starting the file again.
    With ``skip_existing``, a file already at the final path is kept and nothing is fetched
    (files get there only whole: they are renamed into place once complete).
    """
    if skip_existing and task.status is TaskStatus.SUCCESS and task.result_url is not None:
        final = result_path(task.task_id, task.result_url, dest, folder=folder)
        if await anyio.Path(final).is_file():
            return final
    return await engine.retrying(
        lambda attempt: _download_once(engine, task, dest, progress, read_timeout, folder),
        what=f"download of {task.task_id}",
    )


async def _download_once(
    engine: Engine,
    task: Task,
    dest: str | os.PathLike[str],
    progress: Progress | None,
    read_timeout: float | None,
    folder: bool,
) -> Path:
    if task.status is TaskStatus.FAILURE:
        raise TaskFailedError(task)
    if task.status is not TaskStatus.SUCCESS or task.result_url is None:
        raise ValueError(
            f"task {task.task_id!r} has no result to download (status {task.raw_status})"
        )
    url = yarl.URL(task.result_url)
    if not url.is_absolute():
        url = yarl.URL(engine.base_url).join(url)
    final = result_path(task.task_id, task.result_url, dest, folder=folder)
    final.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(MAX_REDIRECTS + 1):
        if url.scheme not in ("http", "https"):
            raise APIConnectionError(
                f"the result URL led to a {url.scheme!r} URL; only http(s) is followed",
                method="GET",
                retryable=False,
            )
        async with engine.stream(url, read_timeout=read_timeout) as response:
            if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                url = url.join(yarl.URL(response.headers["Location"]))
                continue
            if not 200 <= response.status < 300:
                raise _refused(response.status, await response.read(2048), response.headers)
            await _write(response, final, task.task_id, progress)
            return final
    raise APIConnectionError(f"result URL redirected more than {MAX_REDIRECTS} times")


def _refused(status: int, body: bytes, headers: Mapping[str, str]) -> Exception:
    request_id = headers.get(REQUEST_ID_HEADER) or headers.get("x-oss-request-id")
    if status in (403, 404, 410):
        return ResultExpiredError(
            f"the storage refused the result URL (HTTP {status}): signed result URLs expire "
            "24 hours after the task finished",
            status_code=status,
            request_id=request_id,
            body=excerpt(body),
        )
    return status_error(status, body, request_id=request_id)


# A temporary download: mkstemp's name from _write (".<final name>.<8 characters>.part").
_PARTIAL = re.compile(r"\..+\.[a-z0-9_]{8}\.part")


def remove_partial_files(folder: str | os.PathLike[str]) -> int:
    """Remove the temporary files that downloads killed midway left in ``folder`` (only
    names of the form downloads give them); how many there were."""
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if _PARTIAL.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


async def _in_thread(
    loop: asyncio.AbstractEventLoop, func: Callable[..., object], *args: object
) -> None:
    """Run ``func`` in the loop's executor. Cancelled, it still waits for ``func`` to return
    (a write cannot be stopped midway) before the file it writes to is closed."""
    future = loop.run_in_executor(None, func, *args)
    try:
        await asyncio.shield(future)
    except asyncio.CancelledError:
        with anyio.CancelScope(shield=True):
            await asyncio.wait([future])
        raise


async def _write(response: Stream, final: Path, task_id: str, progress: Progress | None) -> None:
    total = response.content_length
    fd, temp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    temp = Path(temp_name)
    written = 0
    try:
        # Writes go to the loop's executor (not anyio's worker threads): an event loop that
        # tracks its executor jobs, such as a virtual-time test loop, then knows one is running.
        loop = asyncio.get_running_loop()
        with os.fdopen(fd, "wb", closefd=True) as out:
            async for chunk in response.chunks():
                await _in_thread(loop, out.write, chunk)
                written += len(chunk)
                if progress is not None:
                    result = progress(written, total)
                    if inspect.isawaitable(result):
                        await result
            await _in_thread(loop, out.flush)
        if total is not None and written != total:
            raise APIConnectionError(
                f"download of task {task_id!r} stopped at {written} of {total} bytes",
                method="GET",
            )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp made it 0600; a download is an ordinary file
        os.replace(temp, final)
    except BaseException:
        # Synchronous on purpose: a cancelled download must still leave nothing behind.
        temp.unlink(missing_ok=True)  # noqa: ASYNC240
        raise
