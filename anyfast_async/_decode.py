"""Bytes to models, or to the right error: task records, create answers, error bodies.

The success path is one call to a module-level :class:`msgspec.json.Decoder`. Everything else
(error bodies in three shapes, HTML from proxies, empty or truncated bodies, JSON of the wrong
shape) is read by the slower, lenient path here and turned into an :class:`AnyFastError`
carrying the request id and a short excerpt of the body.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from datetime import timezone
from typing import Any, Final

import msgspec

from ._exceptions import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    TaskNotFoundError,
)
from ._models import CreatedTask, Task

__all__ = [
    "body_error",
    "decode_created",
    "decode_task",
    "excerpt",
    "loads_any",
    "parse_retry_after",
    "status_error",
]

#: Characters of a body kept on an error.
EXCERPT_CHARS: Final = 200

TASK_NOT_EXIST: Final = "task_not_exist"


class _Envelope(msgspec.Struct, frozen=True):
    code: str = ""
    message: str = ""
    data: Task | None = None


_ENVELOPE_DECODER: Final = msgspec.json.Decoder(_Envelope)
_ANY_DECODER: Final = msgspec.json.Decoder()
_PATH_RE: Final = re.compile(r" - at `(\$[^`]*)`$")
_REQUEST_ID_RE: Final = re.compile(r"\s*\(request id: ([^)]*)\)\s*$")


def excerpt(body: bytes, limit: int = EXCERPT_CHARS) -> str:
    """Return the first ``limit`` characters of ``body`` as text, for an error message."""
    text = body[: limit * 4].decode("utf-8", errors="replace")
    if len(text) > limit:
        return text[:limit] + "…"
    return text


def body_error(
    message: str,
    body: bytes,
    *,
    status_code: int,
    request_id: str | None,
    path: str | None = None,
) -> ResponseDecodeError:
    """A :class:`ResponseDecodeError` for ``body``, carrying a short excerpt of it."""
    return ResponseDecodeError(
        message, status_code=status_code, path=path, request_id=request_id, body=excerpt(body)
    )


def loads_any(body: bytes) -> Any:
    """Decode any JSON, or ``None`` when the body is not JSON (or absurdly nested)."""
    try:
        return _ANY_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None


def decode_task(body: bytes, *, status_code: int = 200, request_id: str | None = None) -> Task:
    """Decode a 2xx task-query body into a :class:`Task`.

    The fast path is one typed decode. Only when it fails is the body read again, leniently:
    an error envelope becomes an :class:`APIStatusError`, and a task record whose cosmetic
    fields have the wrong type (``"message": null``, a number where a string belongs) is
    still returned, without those fields. The status must be a string.

    Raises:
        APIStatusError: the envelope's ``code`` is not ``"success"`` (subclass chosen by
            :func:`status_error`).
        ResponseDecodeError: the body is not JSON, or not an envelope holding a task.
    """
    try:
        envelope = _ENVELOPE_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        return _decode_slowly(body, exc, status_code, request_id)
    if envelope.code == "success":
        if envelope.data is not None:
            return envelope.data
        raise body_error(
            "answer has code 'success' but no task in 'data'",
            body,
            status_code=status_code,
            request_id=request_id,
            path="$.data",
        )
    doc = loads_any(body)
    if isinstance(doc, dict) and not doc.get("code") and "error" not in doc:
        raise body_error(
            "answer has no 'code': it is not a task-query envelope",
            body,
            status_code=status_code,
            request_id=request_id,
            path="$.code",
        )
    raise status_error(status_code, body, request_id=request_id, parsed_doc=doc)


_TEXT_FIELDS: Final = (
    "task_id",
    "action",
    "result_url",
    "original_result_url",
    "fail_reason",
    "request_id",
    "url",
)
_TIME_FIELDS: Final = ("submit_time", "start_time", "finish_time")


def _decode_slowly(
    body: bytes, exc: BaseException, status_code: int, request_id: str | None
) -> Task:
    doc = loads_any(body)
    if isinstance(doc, dict):
        code = doc.get("code")
        data = doc.get("data")
        if code == "success" and isinstance(data, dict) and isinstance(data.get("status"), str):
            clean: dict[str, Any] = {
                "status": data["status"],
                "progress": data.get("progress"),
                "data": data.get("data"),
            }
            for key in _TEXT_FIELDS:
                value = data.get(key)
                if isinstance(value, str):
                    clean[key] = value
            for key in _TIME_FIELDS:
                value = data.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    clean[key] = value
            try:
                return msgspec.convert(clean, Task)
            except msgspec.ValidationError:  # pragma: no cover - clean is well-typed
                pass
        elif (isinstance(code, str) and code and code != "success") or (
            "error" in doc and "data" not in doc
        ):
            raise status_error(status_code, body, request_id=request_id, parsed_doc=doc)
    raise _decode_error(exc, body, status_code, request_id)


def _decode_error(
    exc: BaseException, body: bytes, status_code: int, request_id: str | None
) -> ResponseDecodeError:
    text = str(exc)
    path = None
    match = _PATH_RE.search(text)
    if match:
        path = match.group(1)
        text = text[: match.start()]
    if not body.strip():
        what = "empty body"
    elif isinstance(exc, RecursionError):
        what = "JSON nested too deeply"
    elif isinstance(exc, msgspec.ValidationError):
        what = f"unexpected JSON shape: {text}" + (f" at {path}" if path else "")
    elif body.lstrip()[:1] == b"<":
        what = "body is HTML, not JSON"
    else:
        what = f"body is not valid JSON ({text})"
    return body_error(
        f"could not decode the task answer: {what}",
        body,
        status_code=status_code,
        request_id=request_id,
        path=path,
    )


def decode_created(
    body: bytes, *, status_code: int = 200, request_id: str | None = None
) -> CreatedTask:
    """Read a 2xx create answer (a flat object, not the query envelope).

    Raises:
        APIStatusError: the body is an error (an ``error`` object, or an envelope whose
            ``code`` is not ``"success"``).
        ResponseDecodeError: no task id in the answer, or not JSON.
    """
    doc = loads_any(body)
    if not isinstance(doc, dict):
        raise body_error(
            "could not decode the create answer: not a JSON object",
            body,
            status_code=status_code,
            request_id=request_id,
        )
    code = doc.get("code")
    if "error" in doc or (isinstance(code, str) and code not in ("", "success")):
        raise status_error(status_code, body, request_id=request_id, parsed_doc=doc)
    inner = doc.get("data")
    data: dict[str, Any] = inner if isinstance(inner, dict) and code == "success" else doc
    task_id = data.get("task_id") or data.get("id")
    if not isinstance(task_id, str) or not task_id.strip():
        raise body_error(
            "the create answer has no task id ('task_id' or 'id')",
            body,
            status_code=status_code,
            request_id=request_id,
            path="$.task_id",
        )
    created = data.get("created_at")
    model = data.get("model")
    status = data.get("status")
    return CreatedTask(
        task_id=task_id,
        model=model if isinstance(model, str) else "",
        status=status if isinstance(status, str) else "",
        created_time=created
        if isinstance(created, (int, float)) and not isinstance(created, bool)
        else None,
    )


_TITLE_RE: Final = re.compile(rb"<title[^>]{0,100}>([^<]{0,200})", re.IGNORECASE)


def _describe_non_json(body: bytes) -> str:
    stripped = body.strip()
    if not stripped:
        return "empty body"
    if stripped[:1] == b"<":
        title = _TITLE_RE.search(stripped[:4096])
        if title:
            name = title.group(1).decode("utf-8", errors="replace").strip()[:100]
            return f"HTML page: {name!r}"
        return "HTML page"
    return "non-JSON body"


def status_error(
    status_code: int,
    body: bytes,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
    parsed_doc: Any = None,
    oversize: bool = False,
) -> APIStatusError:
    """Build the :class:`APIStatusError` subclass for an error answer.

    Understands the three error shapes the gateway sends (the task envelope
    ``{"code", "message", "data"}``, the OpenAI-style ``{"error": {"message", "type",
    "code"}}``, and a panic ``{"error": {"message", "type"}}``) and non-JSON bodies (HTML from
    a proxy, an empty body).
    """
    code = ""
    message = ""
    if oversize:
        message = "error body larger than the size limit; it was not read"
    else:
        doc = parsed_doc if parsed_doc is not None else loads_any(body)
        if isinstance(doc, dict):
            error = doc.get("error")
            if isinstance(error, dict):
                code = _text(error.get("code")) or _text(error.get("type"))
                message = _text(error.get("message"))
            elif isinstance(error, str):
                message = error
            else:
                code = _text(doc.get("code"))
                message = _text(doc.get("message"))
        if not message and not code:
            message = _describe_non_json(body) if not isinstance(doc, dict) else "no message"
    match = _REQUEST_ID_RE.search(message)
    if match:
        request_id = request_id or match.group(1).strip() or None
        message = message[: match.start()]
    if message == code:
        message = message.replace("_", " ")
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "code": code,
        "request_id": request_id,
        "body": excerpt(body),
        "retry_after": retry_after,
    }
    if code == TASK_NOT_EXIST or status_code == 404:
        return TaskNotFoundError(message or "task not found", **kwargs)
    if status_code == 429:
        return RateLimitError(message or "rate limited", **kwargs)
    cls: type[APIStatusError] = _CLASS_BY_STATUS.get(status_code, APIStatusError)
    if cls is APIStatusError and status_code >= 500:
        cls = ServerError
    return cls(message, **kwargs)


_CLASS_BY_STATUS: Final[dict[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
}


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


_SECONDS_RE: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Read a ``Retry-After`` header: delay seconds or an HTTP date. Junk gives ``None``.

    Seconds are ASCII digits with an optional fraction. Dates in any of the three HTTP forms
    (IMF-fixdate, RFC 850, asctime) are read as GMT; a date in the past means "now".

    >>> parse_retry_after("2.5")
    2.5
    >>> parse_retry_after("soon") is None, parse_retry_after("-3") is None
    (True, True)
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _SECONDS_RE.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isinf(seconds):
        return None
    return max(seconds, 0.0)
