"""The exceptions raised by anyfast-async.

Every error the SDK raises is an :class:`AnyFastError`. The first split is between
"no usable response arrived" (transport) and "the server answered, and the answer was no"
(status)::

    AnyFastError
    ├── APIConnectionError          no usable response (DNS, refused, reset, TLS)
    │   └── APITimeoutError         also a builtin TimeoutError
    ├── APIStatusError              .status_code .code .message .request_id .body (excerpt)
    │   ├── BadRequestError         400
    │   ├── AuthenticationError     401
    │   ├── PermissionDeniedError   403
    │   ├── TaskNotFoundError       404, or any status whose body code is "task_not_exist"
    │   ├── RateLimitError          429, .retry_after
    │   ├── ServerError             5xx
    │   └── ResultExpiredError      403/404/410 from the storage behind a result URL
    ├── ResponseDecodeError         2xx whose body is not the expected JSON (.body excerpt, .path)
    ├── TaskFailedError             the task ended in FAILURE (.task, .reason, .kind)
    └── WaitTimeoutError            the wait's deadline passed (.task_id, .last_task);
        │                           also a builtin TimeoutError
        └── TaskStalledError        a phase deadline passed (.reason, .task, .elapsed)

A 200 answer whose envelope ``code`` is not ``"success"`` is an :class:`APIStatusError`
(of the class its status and code select). Every error has ``sent``: for one from a create
call, whether the task may have been created. No exception message, ``repr`` or attribute ever
holds the API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._failures import FailureKind

if TYPE_CHECKING:
    from ._models import Task

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AnyFastError",
    "AuthenticationError",
    "BadRequestError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseDecodeError",
    "ResultExpiredError",
    "ServerError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskStalledError",
    "WaitTimeoutError",
]


class AnyFastError(Exception):
    """Base class of every error raised by anyfast-async.

    Attributes:
        sent: Whether the request behind the error may have reached the server: ``False``
            only when it surely did not (the connection could not be made). On an error from
            a create call it says whether the task may have been created: ``False`` also when
            the server refused the request (a 4xx answer); ``True`` after a 5xx answer, a
            timeout or a dropped connection once the request was sent, or an answer that could
            not be read, and the message then says to look for the task before creating it
            again. ``True`` unless set otherwise.
    """

    sent: bool = True


class APIConnectionError(AnyFastError):
    """No usable response arrived: DNS failure, refused or reset connection, TLS error.

    Attributes:
        method: The HTTP method of the request.
        path: The path of the request (never the full URL with credentials).
        retryable: ``False`` when trying again cannot help (a refused TLS certificate, an
            answer that is not valid HTTP, a create call that may have created its task).
        sent: ``False`` when the request provably never reached the server (the connection
            could not be made); ``True`` when it may have. A create call whose request may
            have been sent may have created the task (see :class:`AnyFastError`).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        retryable: bool = True,
        sent: bool = True,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.retryable = retryable
        self.sent = sent


class APITimeoutError(APIConnectionError, TimeoutError):
    """The request timed out (connect, read or total). Also a builtin :class:`TimeoutError`."""


class APIStatusError(AnyFastError):
    """The server answered with an error.

    Raised for a non-2xx answer, and for a 200 answer whose envelope ``code`` is not
    ``"success"``.

    Attributes:
        status_code: The HTTP status of the answer.
        code: The error code from the body (``"task_not_exist"``, ``"invalid_api_key"``, ...);
            for an OpenAI-style body with an empty code, its ``type`` (``"new_api_error"``);
            ``""`` when the body had neither.
        message: The error text from the body, or a description of the body when it was not
            JSON (an HTML page, an empty body).
        request_id: The gateway's request id (``X-Oneapi-Request-Id`` header, else from the
            body), or ``None``. Quote it when you contact support.
        body: A short excerpt of the raw body, for diagnostics.
        retry_after: Seconds the server asked to wait (``Retry-After``, on a 429 or a 503 from
            a proxy, say), or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str = "",
        request_id: str | None = None,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"HTTP {self.status_code}"]
        if self.code:
            parts.append(f"[{self.code}]")
        text = " ".join(parts) + (f": {self.message}" if self.message else "")
        if self.request_id:
            text += f" (request id: {self.request_id})"
        return text


class BadRequestError(APIStatusError):
    """HTTP 400: the request was invalid."""


class AuthenticationError(APIStatusError):
    """HTTP 401: the API key is missing, unknown, disabled, expired, or out of quota."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403: the key may not do this (banned account, IP allow-list, model restriction)."""


class TaskNotFoundError(APIStatusError):
    """The task does not exist, or belongs to another account.

    The gateway answers HTTP 400 with code ``task_not_exist`` for an unknown id; an HTTP 404
    is mapped here too.
    """


class RateLimitError(APIStatusError):
    """HTTP 429: too many requests. ``retry_after`` holds the server's ``Retry-After``."""


class ServerError(APIStatusError):
    """HTTP 5xx: the gateway or a proxy in front of it failed."""


class ResultExpiredError(APIStatusError):
    """The storage behind a result URL refused it (HTTP 403, 404 or 410).

    Signed result URLs expire 24 hours after the task finished; fetch the task again for a
    fresh URL only if the gateway still has it, otherwise the video is gone.
    """


class ResponseDecodeError(AnyFastError):
    """A successful answer whose body is not the expected JSON.

    Attributes:
        status_code: The HTTP status of the answer.
        path: The JSON path where decoding failed (``$.data.status``), or ``None``.
        request_id: The gateway's request id, or ``None``.
        body: A short excerpt of the raw body.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 200,
        path: str | None = None,
        request_id: str | None = None,
        body: str = "",
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.path = path
        self.request_id = request_id
        self.body = body
        text = message
        if request_id:
            text += f" (request id: {request_id})"
        if body:
            text += f"; body starts: {body!r}"
        super().__init__(text)


class TaskFailedError(AnyFastError):
    """The task ended with status FAILURE.

    Attributes:
        task: The final :class:`~anyfast_async.Task`.
        reason: The failure reason reported by the gateway (may be empty).
        kind: What kind of failure it was (:class:`~anyfast_async.FailureKind`), sorted from
            the reason and the provider's code: whether to change the prompt, fix the
            request, or create the task again.
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        self.reason = task.error or ""
        self.kind: FailureKind = task.failure_kind or FailureKind.UNKNOWN
        tag = f" ({self.kind.value})"
        super().__init__(
            f"task {task.task_id!r} failed{tag}: {self.reason}"
            if self.reason
            else f"task {task.task_id!r} failed{tag}"
        )


class WaitTimeoutError(AnyFastError, TimeoutError):
    """The wait's deadline passed before the task reached a terminal status.

    Also a builtin :class:`TimeoutError`.

    Attributes:
        task_id: The task that was being waited for.
        last_task: The last :class:`~anyfast_async.Task` seen, or ``None`` if no poll succeeded.
        timeout: The deadline, in seconds, that passed.
    """

    def __init__(self, task_id: str, *, last_task: Task | None, timeout: float) -> None:
        self.task_id = task_id
        self.last_task = last_task
        self.timeout = timeout
        seen = f"; last status {last_task.raw_status}" if last_task is not None else ""
        super().__init__(f"task {task_id!r} did not finish within {timeout:g} s{seen}")


_PHASE_WORDS = {
    "queue_timeout": "waited",
    "run_timeout": "ran",
    "stall_timeout": "showed no change",
    "upstream_error": "had a provider error",
}


class TaskStalledError(WaitTimeoutError):
    """A phase deadline passed: the task waited, ran, went without news, or sat on a
    provider's error for longer than allowed (``queue_timeout``, ``run_timeout``,
    ``stall_timeout``, ``upstream_error_timeout``).

    A :class:`WaitTimeoutError` (and so a builtin :class:`TimeoutError`): code that handles
    deadlines handles it. The phases are measured on the client's clock, from the polls it
    saw.

    Attributes:
        reason: ``"queue_timeout"``, ``"run_timeout"``, ``"stall_timeout"`` or
            ``"upstream_error"``.
        task: The last :class:`~anyfast_async.Task` seen (also :attr:`last_task`).
        elapsed: Seconds the task had spent in what the limit measures: waiting, running,
            unchanged, or with a provider error.
        timeout: The limit that passed, in seconds.
    """

    def __init__(
        self, task_id: str, *, task: Task, reason: str, timeout: float, elapsed: float
    ) -> None:
        self.reason = reason
        self.task = task
        self.elapsed = elapsed
        self.task_id = task_id
        self.last_task = task
        self.timeout = timeout
        detail = f"last status {task.raw_status}"
        error = task.upstream_error
        if error is not None:
            detail += f", provider error {str(error)[:200]!r}"
        AnyFastError.__init__(
            self,
            f"task {task_id!r} {_PHASE_WORDS.get(reason, reason)} for {elapsed:.0f} s"
            f" ({reason} {timeout:g} s); {detail}",
        )
