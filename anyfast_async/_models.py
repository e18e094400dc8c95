"""Typed views of AnyFast responses. No I/O happens here.

A task record decodes into :class:`Task` in one pass. Fields the server may leave out have
defaults; unknown fields are ignored. Values that need interpretation (status, progress, the
result URL, timestamps) are exposed as properties computed from the raw fields, which are kept.
"""

from __future__ import annotations

import enum
import math
from datetime import datetime, timezone
from typing import Any, Final, TypeVar

import msgspec

from ._failures import FailureKind, UpstreamError, failure_kind_of, upstream_error_of

__all__ = [
    "CreatedTask",
    "DashScopeOutput",
    "DashScopePayload",
    "DashScopeUsage",
    "SeedanceContent",
    "SeedancePayload",
    "SeedanceUsage",
    "Task",
    "TaskStatus",
    "parse_progress",
]


class TaskStatus(str, enum.Enum):
    """The platform status of a task.

    ``SUCCESS`` and ``FAILURE`` are terminal; every other value, ``UNKNOWN`` included, means
    "keep polling". A status string the SDK does not know maps to ``UNKNOWN`` (the raw string is
    kept in :attr:`Task.raw_status`), so a new status on the server never breaks a client.
    """

    NOT_START = "NOT_START"
    SUBMITTED = "SUBMITTED"
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def is_terminal(self) -> bool:
        """Whether the task has finished (``SUCCESS`` or ``FAILURE``)."""
        return self is TaskStatus.SUCCESS or self is TaskStatus.FAILURE

    @classmethod
    def parse(cls, raw: str) -> TaskStatus:
        """Map a raw status string to a :class:`TaskStatus`; never raises.

        Matching ignores case and surrounding space. Besides the platform's own words, a few
        aliases used by providers that pass their own vocabulary through are understood:
        ``FAILED``, ``CANCELED`` and ``CANCELLED`` (FAILURE), ``SUCCEEDED`` and ``COMPLETED``
        (SUCCESS), ``PROCESSING`` and ``RUNNING`` (IN_PROGRESS), ``PENDING`` (QUEUED).
        Anything else is ``UNKNOWN``.

        >>> TaskStatus.parse("IN_PROGRESS")
        <TaskStatus.IN_PROGRESS: 'IN_PROGRESS'>
        >>> TaskStatus.parse("warming_up")
        <TaskStatus.UNKNOWN: 'UNKNOWN'>
        """
        found = _STATUS_BY_RAW.get(raw)
        if found is not None:
            return found
        return _STATUS_BY_RAW.get(raw.strip().upper(), cls.UNKNOWN)


_STATUS_BY_RAW: Final[dict[str, TaskStatus]] = {
    **{s.value: s for s in TaskStatus},
    "FAILED": TaskStatus.FAILURE,
    "CANCELED": TaskStatus.FAILURE,
    "CANCELLED": TaskStatus.FAILURE,
    "SUCCEEDED": TaskStatus.SUCCESS,
    "COMPLETED": TaskStatus.SUCCESS,
    "PROCESSING": TaskStatus.IN_PROGRESS,
    "RUNNING": TaskStatus.IN_PROGRESS,
    "PENDING": TaskStatus.QUEUED,
}


def parse_progress(raw: object) -> int | None:
    """Parse a progress value (``"50%"``, ``50``, ``"50"``, ``""``, junk) into 0..100 or None.

    >>> parse_progress("75%"), parse_progress(30), parse_progress(""), parse_progress("n/a")
    (75, 30, None, None)
    """
    if type(raw) is str:  # the common case, "50%": one dict look-up
        known = _PROGRESS_BY_RAW.get(raw, _UNPARSED)
        if known is not _UNPARSED:
            return known  # type: ignore[return-value]
        value = _parse_progress(raw)
        if len(_PROGRESS_BY_RAW) < _PROGRESS_CACHE_SIZE:
            _PROGRESS_BY_RAW[raw] = value
        return value
    return _parse_progress(raw)


_UNPARSED: Final = object()
_PROGRESS_CACHE_SIZE: Final = 512
#: Progress strings already parsed (there are about a hundred that occur: "0%" to "100%").
_PROGRESS_BY_RAW: dict[str, int | None] = {}


def _parse_progress(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            return None
        value = int(raw)
    elif isinstance(raw, str):
        text = raw.strip().removesuffix("%").strip()
        try:
            number = float(text)
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        value = int(number)
    else:
        return None
    return min(max(value, 0), 100)


def _is_http_url(value: str | None) -> bool:
    return value is not None and value.startswith(("https://", "http://"))


def _is_result_url(value: str | None) -> bool:
    """An absolute http(s) URL, or a path on the API host (the gateway's content proxy)."""
    return value is not None and (
        value.startswith(("https://", "http://"))
        or (value.startswith("/") and not value.startswith("//"))
    )


def _timestamp(value: float | None) -> datetime | None:
    """Unix seconds as an aware UTC datetime; ``None`` for a missing, zero or absurd value."""
    if not value or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _seconds_between(start: float | None, end: float | None) -> float | None:
    """``end - start`` of two Unix times in seconds; ``None`` if either is unknown or
    ``end`` comes first."""
    if start is None or end is None or _timestamp(start) is None or _timestamp(end) is None:
        return None
    return float(end - start) if end >= start else None


class DashScopeOutput(msgspec.Struct, frozen=True, kw_only=True):
    """``data.data.output`` of an Alibaba DashScope task (HappyHorse, Wan).

    Attributes:
        task_id: DashScope's own task id (not the platform's ``asyntask_...``).
        task_status: The upstream status (``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``,
            ...); informative only: decide from :attr:`Task.status`.
        video_url: The upstream video URL, once succeeded.
        orig_prompt: The prompt as the model received it.
        submit_time: When DashScope received the task: ``"YYYY-MM-DD HH:MM:SS.mmm"``, with
            no zone (it appears to be UTC+8); prefer :attr:`Task.submitted_at`.
        scheduled_time: When it started, likewise.
        end_time: When it ended, likewise.
        code: DashScope's error code, on failure.
        message: DashScope's error message, on failure.
    """

    task_id: str | None = None
    task_status: str | None = None
    video_url: str | None = None
    orig_prompt: str | None = None
    submit_time: str | None = None
    scheduled_time: str | None = None
    end_time: str | None = None
    code: str | None = None
    message: str | None = None


class DashScopeUsage(msgspec.Struct, frozen=True, kw_only=True):
    """``data.data.usage`` of a DashScope task; present once the task succeeded.

    Attributes:
        sr: The resolution tier actually produced: ``720`` or ``1080`` (``SR`` in the
            payload).
        duration: Billed seconds.
        input_video_duration: Seconds of input video (video edit).
        output_video_duration: Seconds of video produced.
        ratio: The aspect ratio produced, e.g. ``"16:9"``.
        video_count: Videos produced.
    """

    sr: int | None = msgspec.field(default=None, name="SR")
    duration: float | None = None
    input_video_duration: float | None = None
    output_video_duration: float | None = None
    ratio: str | None = None
    video_count: int | None = None


class DashScopePayload(msgspec.Struct, frozen=True, kw_only=True):
    """The raw upstream payload of a DashScope task (``data.data``), typed.

    Read it through :attr:`Task.dashscope`, which is ``None`` when the payload has another
    shape.

    Attributes:
        output: The task's output and upstream status.
        usage: What was billed, once succeeded.
        request_id: DashScope's request id.
    """

    output: DashScopeOutput | None = None
    usage: DashScopeUsage | None = None
    request_id: str | None = None


class SeedanceContent(msgspec.Struct, frozen=True, kw_only=True):
    """``data.data.content`` of a Seedance task.

    Attributes:
        video_url: The upstream video URL, once succeeded.
    """

    video_url: str | None = None


class SeedanceUsage(msgspec.Struct, frozen=True, kw_only=True):
    """``data.data.usage`` of a Seedance task (token counts, the billing unit).

    Attributes:
        completion_tokens: Tokens of the generation.
        total_tokens: All tokens billed.
        super_resolution_tokens: Tokens of the super-resolution pass, if any.
    """

    completion_tokens: int | None = None
    total_tokens: int | None = None
    super_resolution_tokens: int | None = None


class SeedancePayload(msgspec.Struct, frozen=True, kw_only=True):
    """The raw upstream payload of a ByteDance Seedance task (``data.data``), typed.

    Read it through :attr:`Task.seedance`, which is ``None`` when the payload has another
    shape. Every field is as Seedance sent it.

    Attributes:
        id: Seedance's own task id (``cgt-...``).
        model: The model version, e.g. ``doubao-seedance-2-0-260128``.
        status: The upstream status, lower-case (``succeeded``, ...); informative only.
        content: The output, once succeeded.
        usage: The tokens billed.
        duration: Seconds of video.
        ratio: The aspect ratio, e.g. ``"16:9"``.
        resolution: The resolution rendered upstream (for a super-resolution task, the lower
            one).
        super_resolution: For a super-resolution task, the final resolution.
        framespersecond: Frames per second.
        generate_audio: Whether audio was generated.
        draft: Whether this was a draft generation.
        seed: The seed used.
        service_tier: The service tier.
        created_at: Unix seconds.
        updated_at: Unix seconds.
    """

    id: str | None = None
    model: str | None = None
    status: str | None = None
    content: SeedanceContent | None = None
    usage: SeedanceUsage | None = None
    duration: float | None = None
    ratio: str | None = None
    resolution: str | None = None
    super_resolution: str | None = None
    framespersecond: int | None = None
    generate_audio: bool | None = None
    draft: bool | None = None
    seed: int | None = None
    service_tier: str | None = None
    created_at: int | None = None
    updated_at: int | None = None


class Task(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One video generation task, as ``GET /v1/video/generations/{task_id}`` reports it.

    (Instances are not tracked by the garbage collector: decoded JSON holds no cycles, and a
    scheduler keeps one per watched task.)

    Only ``status`` is required from the server; every other field may be missing. Decide what
    to do from :attr:`status` (or :attr:`is_terminal`), never from the raw upstream
    :attr:`data`.

    ``get_task()``, ``wait()`` and the watches return it; it is a msgspec ``Struct``, so a
    stored ``data`` object can be decoded again:

    >>> import msgspec
    >>> task = msgspec.json.decode(
    ...     b'{"task_id": "asyntask_1", "status": "IN_PROGRESS", "progress": "50%"}', type=Task
    ... )
    >>> task.status, task.progress, task.is_terminal, task.result_url
    (<TaskStatus.IN_PROGRESS: 'IN_PROGRESS'>, 50, False, None)

    Attributes:
        raw_status: The status string exactly as sent.
        task_id: The platform task id (``asyntask_...``), or ``""`` if not sent.
        action: The task sub-type (``generate``, ``referenceGenerate``, ...), an open string.
        raw_result_url: ``result_url`` as sent; see :attr:`result_url` for the usable value.
        original_result_url: For super-resolution tasks, the upstream's pre-enhancement video.
        fail_reason: As sent. On FAILURE the reason; on SUCCESS a legacy copy of the URL.
        submit_time: Unix seconds as sent (``0`` or missing: unknown); see :attr:`submitted_at`.
        start_time: Unix seconds as sent; see :attr:`started_at`.
        finish_time: Unix seconds as sent; see :attr:`finished_at`.
        raw_progress: ``progress`` as sent (normally ``"50%"``); see :attr:`progress`.
        request_id: The platform's trace id for this task.
        url: The video URL of providers whose record uses ``url`` (Gemini, Vertex).
        data: The provider's last raw answer, passed through (a dict, ``None``, or anything).
            See :attr:`dashscope` and :attr:`seedance` for typed views.
    """

    raw_status: str = msgspec.field(name="status")
    task_id: str = ""
    action: str = ""
    raw_result_url: str | None = msgspec.field(default=None, name="result_url")
    original_result_url: str | None = None
    fail_reason: str | None = None
    submit_time: int | float | None = None  # ints stay ints
    start_time: int | float | None = None
    finish_time: int | float | None = None
    raw_progress: Any = msgspec.field(default=None, name="progress")
    request_id: str | None = None
    url: str | None = None
    data: Any = None

    @property
    def status(self) -> TaskStatus:
        """The status as a :class:`TaskStatus` (``UNKNOWN`` for a string the SDK does not know)."""
        return TaskStatus.parse(self.raw_status)

    @property
    def is_terminal(self) -> bool:
        """Whether the task has finished, successfully or not."""
        return self.status.is_terminal

    @property
    def progress(self) -> int | None:
        """Progress in percent (0 to 100), or ``None`` when missing or unreadable."""
        return parse_progress(self.raw_progress)

    @property
    def result_url(self) -> str | None:
        """The URL of the finished video, or ``None``.

        ``None`` whenever the task failed (newer gateways repeat the error text in
        ``result_url``). Otherwise ``result_url`` when it holds a URL; on SUCCESS without one,
        ``fail_reason`` when it holds an http(s) URL (older gateways put it there), then
        ``url`` (Gemini, Vertex), then the upstream ``output.video_url`` (DashScope) or
        ``content.video_url`` (Seedance). The URL is signed and expires 24 hours after the
        task finished. It may also be a path on the API host (``/v1/videos/{id}/content``, the
        gateway's own proxy), which needs the API key to fetch.
        """
        status = self.status
        if status is TaskStatus.FAILURE:
            return None
        if _is_result_url(self.raw_result_url):
            return self.raw_result_url
        if status is not TaskStatus.SUCCESS:
            return None
        for candidate in (self.fail_reason, self.url):
            if _is_http_url(candidate):
                return candidate
        data = self.data
        if isinstance(data, dict):
            for key in ("output", "content"):
                inner = data.get(key)
                if isinstance(inner, dict):
                    url = inner.get("video_url")
                    if isinstance(url, str) and _is_http_url(url):
                        return url
        return None

    @property
    def error(self) -> str | None:
        """The failure reason when the task failed, else ``None``.

        On SUCCESS ``fail_reason`` is a legacy copy of the URL and is never an error.
        """
        if self.status is not TaskStatus.FAILURE:
            return None
        if self.fail_reason:
            return self.fail_reason
        if self.raw_result_url and not _is_result_url(self.raw_result_url):
            return self.raw_result_url
        return ""

    @property
    def upstream_error(self) -> UpstreamError | None:
        """The provider's error while the task is not finished, or ``None``.

        When the provider answers the gateway's poll with an error (a revoked channel key, an
        internal error), the gateway keeps the task QUEUED and puts the provider's answer in
        :attr:`data`; only its 24-hour limit ends such a task. This reads that error:
        DashScope's ``{"code", "message", "request_id"}`` or ``output.code`` and
        ``output.message``, an ``error`` object (Volcengine Ark, OpenAI-style) or string
        (Gemini, Vertex), Kling's non-zero ``code``, MiniMax's ``base_resp``. ``None`` once
        the task has finished: see :attr:`failure_kind`.

        >>> import msgspec
        >>> body = (
        ...     b'{"status": "QUEUED", "progress": "20%", "data": {"code": "InvalidApiKey",'
        ...     b' "message": "Invalid API-key provided.", "request_id": "7e3c"}}'
        ... )
        >>> msgspec.json.decode(body, type=Task).upstream_error
        UpstreamError(code='InvalidApiKey', message='Invalid API-key provided.')
        """
        if self.is_terminal:
            return None
        return upstream_error_of(self.data)

    @property
    def failure_kind(self) -> FailureKind | None:
        """For a FAILURE, what kind of failure it was (a :class:`FailureKind`); else ``None``.

        Sorted from :attr:`fail_reason` and the provider's error code and message in
        :attr:`data`, by the rules listed in the docs (the statuses page); a reason no rule
        knows is :attr:`FailureKind.UNKNOWN`.

        >>> import msgspec
        >>> body = '{"status": "FAILURE", "fail_reason": "任务超时\\uff081440分钟\\uff09"}'
        >>> msgspec.json.decode(body, type=Task).failure_kind
        <FailureKind.TIMED_OUT: 'timed_out'>
        """
        if self.status is not TaskStatus.FAILURE:
            return None
        return failure_kind_of(self.error or "", self.data)

    @property
    def submitted_at(self) -> datetime | None:
        """When the task was submitted (UTC), or ``None`` if unknown."""
        return _timestamp(self.submit_time)

    @property
    def started_at(self) -> datetime | None:
        """When the provider started the task (UTC), or ``None`` if unknown or not yet."""
        return _timestamp(self.start_time)

    @property
    def finished_at(self) -> datetime | None:
        """When the task finished (UTC), or ``None`` if unknown or not yet."""
        return _timestamp(self.finish_time)

    @property
    def queue_time(self) -> float | None:
        """Seconds from submission to the provider's start, by the gateway's own times, or
        ``None`` while either is unknown (``0`` or missing: the gateway sends a ``0``
        ``start_time`` for a task whose running phase it never saw) or they are out of
        order."""
        return _seconds_between(self.submit_time, self.start_time)

    @property
    def run_time(self) -> float | None:
        """Seconds from the provider's start to the task's finish, by the gateway's own
        times, or ``None`` while either is unknown or they are out of order."""
        return _seconds_between(self.start_time, self.finish_time)

    def to_dict(self) -> dict[str, Any]:
        """The task as JSON-ready values, with the interpreted fields a web handler or a log
        line wants (the properties, which ``msgspec.structs.asdict`` leaves out).

        Examples:
            >>> import msgspec
            >>> body = b'{"task_id": "asyntask_1", "status": "IN_PROGRESS", "progress": "50%"}'
            >>> msgspec.json.decode(body, type=Task).to_dict()["progress"]
            50

        Returns:
            ``task_id``, ``status`` (a :class:`TaskStatus` value), ``raw_status``,
            ``progress``, ``result_url``, ``error``, ``failure_kind`` (a
            :class:`FailureKind` value, or ``None``), ``upstream_error`` (``{"code",
            "message"}`` or ``None``), ``submitted_at``, ``started_at``, ``finished_at``
            as ISO 8601 strings (or ``None``), and ``queue_time``, ``run_time`` in seconds
            (or ``None``).
        """
        kind = self.failure_kind
        upstream = self.upstream_error
        return {
            "task_id": self.task_id,
            "status": self.status.value,
            "raw_status": self.raw_status,
            "progress": self.progress,
            "result_url": self.result_url,
            "error": self.error,
            "failure_kind": kind.value if kind is not None else None,
            "upstream_error": msgspec.structs.asdict(upstream) if upstream is not None else None,
            "submitted_at": _iso(self.submitted_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "queue_time": self.queue_time,
            "run_time": self.run_time,
        }

    @property
    def dashscope(self) -> DashScopePayload | None:
        """:attr:`data` read as a DashScope payload (HappyHorse, Wan), or ``None``."""
        data = self.data
        if not isinstance(data, dict) or not isinstance(data.get("output"), dict):
            return None
        return _convert(data, DashScopePayload)

    @property
    def seedance(self) -> SeedancePayload | None:
        """:attr:`data` read as a Seedance payload, or ``None``."""
        data = self.data
        if not isinstance(data, dict) or "output" in data:
            return None
        model = data.get("model")
        ident = data.get("id")
        if (
            "content" in data
            or (isinstance(model, str) and model.startswith(("doubao-seedance", "seedance")))
            or (isinstance(ident, str) and ident.startswith("cgt-"))
        ):
            return _convert(data, SeedancePayload)
        return None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


_S = TypeVar("_S", bound=msgspec.Struct)


def _convert(data: dict[str, Any], kind: type[_S]) -> _S | None:
    try:
        return msgspec.convert(data, kind, strict=False)
    except msgspec.ValidationError:
        return None


class CreatedTask(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a create call.

    Attributes:
        task_id: The id to poll (``task_id`` of the answer, else its ``id``).
        model: The model, as echoed.
        status: The create answer's own lower-case status (``"queued"``, or ``""`` for some
            models): a different vocabulary from :class:`~anyfast_async.TaskStatus`.
        created_time: Unix seconds as sent (``created_at``); see :attr:`created_at`.
    """

    task_id: str
    model: str = ""
    status: str = ""
    created_time: int | float | None = None  # ints stay ints

    @property
    def created_at(self) -> datetime | None:
        """When the task was created (UTC), or ``None`` if not sent."""
        return _timestamp(self.created_time)
