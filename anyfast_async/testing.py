"""An in-process fake of the AnyFast task-query endpoint, for your tests.

:class:`FakeAnyFast` is a real :mod:`aiohttp` server bound to ``127.0.0.1`` on an ephemeral port.
It answers ``GET /v1/video/generations/{task_id}`` the way the AnyFast gateway does: the
``{"code","message","data"}`` envelope, Go-style JSON bytes (``&``, ``<``, ``>`` escaped as
``\\u0026`` ...), an ``X-Oneapi-Request-Id`` header on every answer, HTTP 401/403 auth errors in the
OpenAI error shape, HTTP 400 ``task_not_exist`` for unknown ids and HTTP 404 for malformed paths.
Each task walks through a list of :class:`Stage` objects, either one stage per poll or by elapsed
time on an injectable clock, and :class:`Fault` objects make chosen answers misbehave (HTTP
errors, HTML pages, slow answers, dropped connections, truncated bodies...).

Example::

    import aiohttp
    from anyfast_async.testing import FakeAnyFast, Fault

    async def test_polling() -> None:
        async with FakeAnyFast(api_key="test-key") as server:
            task = server.add_task("asyntask_demo")  # NOT_START -> ... -> SUCCESS
            server.inject(Fault.rate_limited(retry_after=2), times=1)
            headers = {"Authorization": f"Bearer {server.api_key}"}
            async with aiohttp.ClientSession() as session:
                async with session.get(server.url_for(task.task_id), headers=headers) as resp:
                    assert resp.status == 429 and resp.headers["Retry-After"] == "2"
                async with session.get(server.url_for(task.task_id), headers=headers) as resp:
                    body = await resp.json()
            assert body["data"]["status"] == "NOT_START"
            assert server.polls("asyntask_demo") == 2

The module depends only on the standard library, :mod:`aiohttp` and :mod:`msgspec`.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import datetime as dt
import http
import itertools
import os
import random
import string
import time
import types
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, unquote

import msgspec
from aiohttp import web

__all__ = ["FakeAnyFast", "FakeTask", "Fault", "RecordedRequest", "Stage"]

FILES_PREFIX = "/files/"
"""Path prefix of result files served by :meth:`FakeAnyFast.add_file`."""
CREATE_PATH = "/v1/video/generations"
"""Path of the create endpoint (``POST``)."""
QUERY_PREFIX = "/v1/video/generations/"
"""Path prefix of the task-query endpoint; the task id is the one segment that follows."""
TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE"})
"""Statuses after which ``finish_time`` is set."""
DEFAULT_RESULT_URL = (
    "https://dashscope-result.oss-accelerate.aliyuncs.com/fake/asyntask_video.mp4"
    "?Expires=1777430361&OSSAccessKeyId=LTAIfake&Signature=fake%2Bsignature%3D"
)
"""Result URL of :meth:`FakeAnyFast.default_success_stages`; it contains ``&`` on purpose."""

JSON_CT = "application/json"
ERROR_CT = "application/json; charset=utf-8"
_RNG = random.Random()
_ENCODER = msgspec.json.Encoder()
_GO_ESCAPES = (
    (b"&", b"\\u0026"),
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)
_UTC8 = dt.timezone(dt.timedelta(hours=8))
KeyState = Literal["ok", "quota_exhausted", "forbidden"]


def go_json(obj: Any) -> bytes:
    """Encode ``obj`` as compact JSON with the escaping of Go's ``encoding/json``."""
    raw = _ENCODER.encode(obj)
    for needle, escaped in _GO_ESCAPES:
        if needle in raw:
            raw = raw.replace(needle, escaped)
    return raw


def new_request_id() -> str:
    """A gateway-style request id: UTC ``YYYYMMDDHHMMSS``, 9 nanosecond digits, 8 letters."""
    ns = time.time_ns()
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(ns // 1_000_000_000))
    return f"{stamp}{ns % 1_000_000_000:09d}{''.join(_RNG.choices(string.ascii_letters, k=8))}"


def _random_task_ids(n: int) -> list[str]:
    """Return ``n`` ids of the form ``asyntask_`` + 32 alphanumerics (one urandom call)."""
    blob = base64.b64encode(os.urandom(24 * n)).translate(bytes.maketrans(b"+/", b"Xz")).decode()
    return ["asyntask_" + blob[i : i + 32] for i in range(0, 32 * n, 32)]


def _to_bytes(body: object) -> bytes:
    """Turn a fault body given as bytes, str or a JSON-able object into bytes."""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    return go_json(body)


def _openai_error(message: str, type_: str, code: str = "") -> dict[str, Any]:
    """The gateway's middleware error shape (a Go map, hence the sorted keys)."""
    return {"error": {"code": code, "message": message, "type": type_}}


def _status_line(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


def _early_stages(polls: int, seconds: float, count: int) -> list[Stage]:
    """The first ``count`` non-terminal stages of the default lifecycles."""
    steps = [("NOT_START", "0%"), ("QUEUED", "20%"), ("IN_PROGRESS", "50%"), ("IN_PROGRESS", "75%")]
    return [
        Stage(status=s, progress=p, polls=polls, seconds=seconds, fail_reason="")
        for s, p in steps[:count]
    ]


def _envelope_error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "data": None}


@dataclass(frozen=True, kw_only=True, slots=True)
class Stage:
    """One step of a fake task's life.

    ``status`` is sent verbatim (any string, known or not). ``progress`` is sent as given (``None``
    omits the key). The stage lasts ``polls`` answers with ``advance="poll"`` or ``seconds`` with
    ``advance="time"``; a duration of 0 skips the stage, and the last stage lasts forever.
    ``fail_reason`` / ``result_url`` are omitted when ``None``. ``extra`` keys are merged into
    the task's ``data`` object last, so they can add fields or override standard ones (including
    the upstream payload under ``"data"``).
    """

    status: str
    progress: str | int | None = None
    polls: int = 1
    seconds: float = 0.0
    fail_reason: str | None = None
    result_url: str | None = None
    extra: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.polls < 0 or self.seconds < 0:
            raise ValueError("Stage.polls and Stage.seconds must be >= 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class Fault:
    """A misbehaving answer, see :meth:`FakeAnyFast.inject` and :meth:`FakeAnyFast.inject_rate`.

    The server waits ``delay`` seconds (plus the server latency), then:

    * ``drop``: closes the connection without any response (recorded with status 0);
    * ``body`` given: answers ``status`` with that body and ``content_type`` (``None``: no
      ``Content-Type`` header);
    * ``body`` is ``None``: answers what it would normally answer (task body, 401, 400...), with
      the status replaced by ``status`` unless that is ``None``; this answer advances the task;
    * ``truncate``: announces the full ``Content-Length`` but sends only half the body (the normal
      body when ``body`` is ``None``), then closes the connection;
    * ``chunked``: sends the body with chunked transfer encoding (no ``Content-Length``), in
      64 KiB pieces;
    * ``trickle``: sends the body 16 bytes at a time, ``trickle`` seconds apart.

    Only faults that deliver the normal body in full (``body is None`` and neither ``drop`` nor
    ``truncate``) advance a task's lifecycle. ``headers`` are added to the answer and may override
    ``X-Oneapi-Request-Id``.
    """

    status: int | None = 500
    body: bytes | None = None
    content_type: str | None = ERROR_CT
    headers: Mapping[str, str] | None = None
    delay: float = 0.0
    drop: bool = False
    truncate: bool = False
    chunked: bool = False
    trickle: float = 0.0

    def __post_init__(self) -> None:
        if self.truncate and self.chunked:
            raise ValueError("a Fault cannot be both truncated and chunked")
        if self.delay < 0:
            raise ValueError("Fault.delay must be >= 0")
        if self.body is not None and self.status is None:
            raise ValueError("a Fault with a body needs a status")

    @property
    def answers_normally(self) -> bool:
        """True when the fault delivers the normal answer in full (and so advances the task)."""
        return self.body is None and not self.drop and not self.truncate

    @classmethod
    def http(
        cls,
        status: int,
        body: object = None,
        *,
        content_type: str | None = ERROR_CT,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """An answer with ``status`` and ``body``.

        Args:
            status: The HTTP status.
            body: bytes or str sent verbatim, anything else as JSON; ``None``: an
                OpenAI-style error body.
            content_type: The ``Content-Type`` header; ``None`` sends none.
            headers: More headers.
            delay: Seconds to wait before answering.
        """
        if body is None:
            body = _openai_error(_status_line(status), "upstream_error")
        return cls(
            status=status,
            body=_to_bytes(body),
            content_type=content_type,
            headers=headers,
            delay=delay,
        )

    @classmethod
    def html(cls, status: int = 502, html: str | None = None) -> Fault:
        """An HTML page (``text/html``), as a proxy or load balancer would send.

        Args:
            status: The HTTP status.
            html: The page; default: nginx's page for that status.
        """
        if html is None:
            title = _status_line(status)
            html = (
                f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
                f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
                "</body>\r\n</html>\r\n"
            )
        return cls(status=status, body=html.encode(), content_type="text/html")

    @classmethod
    def empty(cls, status: int = 502) -> Fault:
        """``status`` with an empty body and no ``Content-Type``."""
        return cls(status=status, body=b"", content_type=None)

    @classmethod
    def not_json(cls, status: int = 200) -> Fault:
        """``status`` with the body ``not json`` although it claims ``application/json``."""
        return cls(status=status, body=b"not json", content_type=JSON_CT)

    @classmethod
    def truncated_json(cls, status: int = 200) -> Fault:
        """A complete HTTP answer whose JSON body stops in the middle (syntactically broken).

        Args:
            status: The HTTP status.
        """
        full = go_json(_SAMPLE_SUCCESS)
        return cls(status=status, body=full[: len(full) // 2], content_type=JSON_CT)

    @classmethod
    def rate_limited(
        cls,
        retry_after: str | float | None = None,
        shape: Literal["openai", "html", "empty"] = "openai",
    ) -> Fault:
        """HTTP 429, as a rate-limiting proxy or gateway answers.

        Args:
            retry_after: The ``Retry-After`` header, if any: a str verbatim (an HTTP date, or
                junk), a number as ``2`` or ``1.5``.
            shape: The body: ``"openai"`` (the gateway's JSON error), ``"html"`` (a proxy's
                page) or ``"empty"``.
        """
        headers: dict[str, str] = {}
        if retry_after is not None:
            if isinstance(retry_after, str):
                headers["Retry-After"] = retry_after
            else:
                value = float(retry_after)
                headers["Retry-After"] = str(int(value)) if value.is_integer() else str(value)
        if shape == "html":
            base = cls.html(429)
        elif shape == "empty":
            base = cls.empty(429)
        else:
            msg = "Rate limit reached for requests, please try again later"
            base = cls.http(429, _openai_error(msg, "rate_limit_error", "rate_limit_exceeded"))
        return cls(
            status=429, body=base.body, content_type=base.content_type, headers=headers or None
        )

    @classmethod
    def server_error(
        cls, status: int = 500, code: str = "get_task_failed", message: str | None = None
    ) -> Fault:
        """A handler error in the task envelope: ``{"code": code, "message", "data": null}``.

        Args:
            status: The HTTP status.
            code: The envelope's ``code``.
            message: The envelope's ``message``; default: ``code`` itself.
        """
        return cls.http(status, _envelope_error(code, code if message is None else message))

    @classmethod
    def task_not_exist(cls) -> Fault:
        """HTTP 400 ``task_not_exist`` (as seen right after creation, before the row is stored)."""
        return cls.server_error(400, "task_not_exist")

    @classmethod
    def panic(cls) -> Fault:
        """A recovered panic: HTTP 500 ``{"error": {"message", "type": "new_api_panic"}}``."""
        msg = (
            "Panic detected, error: runtime error: invalid memory address or nil pointer "
            "dereference. Please submit a issue here: https://github.com/QuantumNous/new-api"
        )
        return cls.http(500, {"error": {"message": msg, "type": "new_api_panic"}})

    @classmethod
    def envelope(cls, code: str = "some_error", message: str = "", status: int = 200) -> Fault:
        """An envelope with a non-``success`` code (HTTP 200 by default).

        Args:
            code: The envelope's ``code``.
            message: The envelope's ``message``.
            status: The HTTP status.
        """
        return cls.http(status, _envelope_error(code, message))

    @classmethod
    def drop_connection(cls, delay: float = 0.0) -> Fault:
        """Close the connection without answering (after ``delay`` seconds).

        Note that aiohttp clients silently retry an idempotent request once after a server
        disconnect: inject this fault with ``times=2`` for such a client to see the error.
        """
        return cls(status=None, drop=True, delay=delay)

    @classmethod
    def truncated_body(cls) -> Fault:
        """The normal answer, cut in half: ``Content-Length`` promises more than is sent."""
        return cls(status=None, truncate=True)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """The normal answer (same status, advances the task) after ``delay`` seconds."""
        return cls(status=None, delay=delay)

    @classmethod
    def trickle_body(cls, seconds_per_piece: float = 0.05) -> Fault:
        """The normal answer, its body sent 16 bytes at a time with pauses in between.

        Args:
            seconds_per_piece: The pause before each piece.
        """
        return cls(status=None, trickle=seconds_per_piece)

    @classmethod
    def wrong_shape(
        cls,
        kind: Literal["status_type", "array", "null_data", "no_data", "string"] = "status_type",
    ) -> Fault:
        """HTTP 200 with valid JSON of the wrong shape.

        Args:
            kind: ``"status_type"`` (``status`` is a number), ``"array"`` (a JSON array),
                ``"null_data"`` (``data`` is null), ``"no_data"`` (no ``data``) or
                ``"string"`` (a JSON string).
        """
        bodies: dict[str, Any] = {
            "status_type": {"code": "success", "message": "", "data": {"status": 123}},
            "array": [1, 2],
            "null_data": {"code": "success", "message": "", "data": None},
            "no_data": {"code": "success", "message": ""},
            "string": "success",
        }
        return cls.http(200, go_json(bodies[kind]), content_type=JSON_CT)

    @classmethod
    def huge(cls, size_bytes: int, *, chunked: bool = False) -> Fault:
        """HTTP 200 with exactly ``size_bytes`` of valid JSON (an envelope with a padding field).

        With ``chunked=True`` the body is streamed without a ``Content-Length``, so a client
        learns its size only while reading.
        """
        head, tail = b'{"code":"success","message":"","data":{"padding":"', b'"}}'
        pad = size_bytes - len(head) - len(tail)
        if pad < 0:
            raise ValueError(f"size_bytes must be >= {len(head) + len(tail)}")
        return cls(status=200, body=head + b"x" * pad + tail, content_type=JSON_CT, chunked=chunked)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server saw it.

    ``method`` is the HTTP method, ``path`` the raw request target (still percent-encoded),
    ``task_id`` the decoded id when the path is a well-formed query path (else ``None``),
    ``headers`` the headers with the case they were sent in, ``time`` the server clock at
    arrival, ``status`` the HTTP status answered (0 when the connection was dropped) and
    ``body`` the request body (for a create call).
    """

    method: str
    path: str
    task_id: str | None
    headers: dict[str, str]
    time: float
    status: int
    body: bytes = b""


class _Plan:
    """Stages shared by the tasks of one ``add_task(s)`` call, with cumulative stage end times."""

    __slots__ = ("by_time", "clock", "ends", "stages")

    def __init__(self, stages: Sequence[Stage], by_time: bool, clock: Callable[[], float]) -> None:
        if not stages or not all(isinstance(s, Stage) for s in stages):
            raise ValueError("stages must be a non-empty sequence of Stage")
        self.stages: tuple[Stage, ...] = tuple(stages)
        self.ends = list(itertools.accumulate(s.seconds for s in self.stages))
        self.by_time = by_time
        self.clock = clock


class FakeTask:
    """The server-side state of one fake task (see :meth:`FakeAnyFast.add_task`)."""

    __slots__ = (
        "_created",
        "_idx",
        "_left",
        "_plan",
        "_request_id",
        "finish_time",
        "start_time",
        "submit_time",
        "task_id",
    )

    def __init__(self, task_id: str, plan: _Plan, created: float, submit_time: int) -> None:
        self.task_id = task_id
        """The raw task id (clients percent-encode it, see :meth:`FakeAnyFast.url_for`)."""
        self._plan = plan
        self._created = created
        self.submit_time = submit_time
        """Unix seconds when the task was added."""
        self.start_time = 0
        """Unix seconds when IN_PROGRESS was first served, else 0."""
        self.finish_time = 0
        """Unix seconds when a terminal status was first served, else 0."""
        self._request_id = ""
        self._idx = 0
        self._left = plan.stages[0].polls
        if self._left <= 0:
            self._skip_empty()

    def __repr__(self) -> str:
        return f"FakeTask({self.task_id!r}, status={self.status!r}, stage={self.stage_index})"

    @property
    def stages(self) -> tuple[Stage, ...]:
        """All stages of this task."""
        return self._plan.stages

    @property
    def stage_index(self) -> int:
        """Index of the stage the next answer will show."""
        plan = self._plan
        if plan.by_time:
            elapsed = plan.clock() - self._created
            return min(bisect.bisect_right(plan.ends, elapsed), len(plan.stages) - 1)
        return self._idx

    @property
    def stage(self) -> Stage:
        """The stage the next answer will show."""
        return self._plan.stages[self.stage_index]

    @property
    def status(self) -> str:
        """The status the next answer will show."""
        return self.stage.status

    @property
    def request_id(self) -> str:
        """The task's ``request_id`` field (fixed per task)."""
        if not self._request_id:
            self._request_id = new_request_id()
        return self._request_id

    def _skip_empty(self) -> None:
        last = len(self._plan.stages) - 1
        while self._left <= 0 and self._idx < last:
            self._idx += 1
            self._left = self._plan.stages[self._idx].polls

    def _serve(self, unix_now: int, advance: bool) -> dict[str, Any]:
        """Return the ``data`` object of the current stage; count one poll if ``advance``."""
        stage = self.stage
        if advance and not self._plan.by_time:
            self._left -= 1
            self._skip_empty()
        status = stage.status
        if status == "IN_PROGRESS" and not self.start_time:
            self.start_time = unix_now
        if status in TERMINAL_STATUSES and not self.finish_time:
            self.finish_time = unix_now
        data: dict[str, Any] = {"task_id": self.task_id, "action": "generate", "status": status}
        if stage.result_url is not None:
            data["result_url"] = stage.result_url
        if stage.fail_reason is not None:
            data["fail_reason"] = stage.fail_reason
        data["submit_time"] = self.submit_time
        data["start_time"] = self.start_time
        data["finish_time"] = self.finish_time
        if stage.progress is not None:
            data["progress"] = stage.progress
        data["request_id"] = self.request_id
        data["data"] = self._upstream(stage)
        if stage.extra:
            data.update(stage.extra)
        return data

    def _upstream(self, stage: Stage) -> dict[str, Any] | None:
        """A DashScope-shaped upstream payload for terminal stages, else ``None``."""
        if stage.status not in TERMINAL_STATUSES:
            return None

        def fmt(unix: int) -> str:
            return dt.datetime.fromtimestamp(unix, _UTC8).strftime("%Y-%m-%d %H:%M:%S.000")

        output: dict[str, Any] = {
            "task_id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.task_id)),
            "task_status": "SUCCEEDED" if stage.status == "SUCCESS" else "FAILED",
            "submit_time": fmt(self.submit_time),
            "scheduled_time": fmt(self.start_time or self.submit_time),
            "end_time": fmt(self.finish_time),
        }
        payload: dict[str, Any] = {
            "output": output,
            "request_id": str(uuid.uuid5(uuid.NAMESPACE_OID, self.task_id)),
        }
        if stage.status == "SUCCESS":
            output["video_url"] = stage.result_url
            output["orig_prompt"] = "A cat running on grass"
            payload["usage"] = {
                "SR": 720,
                "duration": 5,
                "input_video_duration": 0,
                "output_video_duration": 5,
                "ratio": "16:9",
                "video_count": 1,
            }
        else:
            output["code"] = "InternalError"
            output["message"] = stage.fail_reason or "task failed"
        return payload


_SAMPLE_SUCCESS: dict[str, Any] = {
    "code": "success",
    "message": "",
    "data": {"task_id": "asyntask_" + "0" * 32, "status": "SUCCESS", "progress": "100%"},
}


@dataclass(frozen=True, slots=True)
class _File:
    content: bytes
    expired: bool
    drop_after: int | None
    wrong_length: bool
    redirect_to: str | None = None


@dataclass(slots=True)
class _Pending:
    seq: int
    fault: Fault
    remaining: int


@dataclass(slots=True)
class _RateRule:
    fault: Fault
    probability: float
    rng: random.Random = field(repr=False)


_HAPPYHORSE = ("happyhorse-1.0-t2v", "happyhorse-1.0-i2v", "happyhorse-1.0-r2v")
_EDIT = "happyhorse-1.0-video-edit"
_KNOB_RULES: dict[str, Callable[[Any], bool]] = {
    "resolution": lambda v: v in ("720P", "1080P"),
    "ratio": lambda v: v in ("16:9", "9:16", "1:1", "4:3", "3:4"),
    "duration": lambda v: type(v) is int and 3 <= v <= 15,
    "watermark": lambda v: type(v) is bool,
    "seed": lambda v: type(v) is int and 0 <= v <= 2_147_483_647,
}


def _is_http_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) > 8


def check_create_body(doc: object, *, max_images: int = 9) -> str | None:
    """What the documented server would refuse in a create body, or ``None`` if it is valid.

    HappyHorse 1.0 bodies are checked against the documented limits (knobs at the top level or
    in ``parameters``; video-edit in the native ``input.media`` form). Other models only need a
    ``model``.
    """
    if not isinstance(doc, dict):
        return "request body must be a JSON object"
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        return "model is required"
    if model not in (*_HAPPYHORSE, _EDIT):
        return None
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        return "parameters must be an object"
    knobs = {**{k: doc[k] for k in _KNOB_RULES if k in doc}, **parameters}
    for name, value in knobs.items():
        rule = _KNOB_RULES.get(name)
        if rule is not None and not rule(value):
            return f"invalid {name}: {value!r}"
    if model == _EDIT:
        payload = doc.get("input")
        if not isinstance(payload, dict):
            return "input is required for happyhorse-1.0-video-edit"
        prompt = payload.get("prompt")
        media = payload.get("media")
        if not isinstance(media, list) or len(media) != 2:
            return "input.media must hold exactly one video and one reference_image"
        kinds = sorted(str(m.get("type")) for m in media if isinstance(m, dict))
        if kinds != ["reference_image", "video"]:
            return "input.media must hold exactly one video and one reference_image"
        if not all(isinstance(m, dict) and _is_http_url(m.get("url")) for m in media):
            return "input.media[].url must be an http(s) URL"
    else:
        prompt = doc.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    if model == "happyhorse-1.0-i2v":
        image = doc.get("image")
        if image is None and isinstance(doc.get("images"), list) and doc["images"]:
            image = doc["images"][0]
        if not _is_http_url(image):
            return "image must be an http(s) URL"
    if model == "happyhorse-1.0-r2v":
        images = doc.get("images")
        if not isinstance(images, list) or not 1 <= len(images) <= max_images:
            return f"images must hold 1 to {max_images} URLs"
        if not all(_is_http_url(url) for url in images):
            return "images must be http(s) URLs"
    return None


class FakeAnyFast:
    """A fake AnyFast gateway on 127.0.0.1: ``GET /v1/video/generations/{task_id}`` and the
    create call ``POST /v1/video/generations``.

    Use it as ``async with FakeAnyFast() as server:`` (or :meth:`start` / :meth:`close`).

    Args:
        api_key: the only key accepted, sent as ``Authorization: Bearer <api_key>``.
        advance: ``"poll"``: each answered GET consumes one poll of the current stage;
            ``"time"``: stages last :attr:`Stage.seconds` from the task's creation on ``clock``
            (a task keeps the mode that was current when it was added).
        clock: monotonic clock in seconds, injectable for time-based tests; it also stamps
            :attr:`RecordedRequest.time` and the ``start_time`` / ``finish_time`` fields.
        latency: seconds added before every answer (lets concurrency build up).

    Order of checks for each request: latency; routing (any method other than GET, a path
    outside the query prefix, an empty id or one containing a raw ``/`` -> 404, never
    authenticated and never faulted); then queued faults (:meth:`inject`, FIFO) and random faults
    (:meth:`inject_rate`); then auth (401/403); then the task lookup (400 ``task_not_exist``).
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        advance: Literal["poll", "time"] = "poll",
        clock: Callable[[], float] = time.monotonic,
        latency: float = 0.0,
    ) -> None:
        if advance not in ("poll", "time"):
            raise ValueError("advance must be 'poll' or 'time'")
        if latency < 0:
            raise ValueError("latency must be >= 0")
        self.api_key = api_key
        """The accepted API key."""
        self.advance = advance
        self.latency = latency
        self._clock = clock
        self._wall0 = time.time()
        self._clock0 = clock()
        self._tasks: dict[str, FakeTask] = {}
        self._requests: list[RecordedRequest] = []
        self._polls: dict[str, int] = {}
        self._in_flight = 0
        self._max_in_flight = 0
        self._key_state: KeyState = "ok"
        self._seq = itertools.count()
        self._global_faults: list[_Pending] = []
        self._task_faults: dict[str, list[_Pending]] = {}
        self._rate_rules: list[_RateRule] = []
        self._sleepers: set[asyncio.Future[bool]] = set()
        self._closing = False
        self._runner: web.ServerRunner | None = None
        self._base_url: str | None = None
        self.create_stages: Sequence[Stage] | Callable[[dict[str, Any]], Sequence[Stage]] | None
        self.create_stages = None
        """Stages of tasks made by create calls: a list, a function of the request body
        returning one, or ``None`` for :meth:`default_success_stages`."""
        self._files: dict[str, _File] = {}
        self.faults_served = 0
        """How many answers were faults (queued or random), since start."""
        self.created: list[FakeTask] = []
        """The tasks made by create calls, in order."""
        self.max_reference_images = 9
        """The most reference images a reference-to-video body may hold (the upstream
        model's limit; AnyFast documents 3)."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening on 127.0.0.1 and an ephemeral port."""
        if self._runner is not None:
            raise RuntimeError("FakeAnyFast is already started")
        self._closing = False
        runner = web.ServerRunner(web.Server(self._handle, access_log=None), shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def close(self) -> None:
        """Stop the server; delayed answers still sleeping are cut short (connection dropped)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        self._base_url = None
        for fut in self._sleepers:
            if not fut.done():
                fut.set_result(True)
        await runner.cleanup()

    async def __aenter__(self) -> FakeAnyFast:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash); only while started."""
        if self._base_url is None:
            raise RuntimeError("FakeAnyFast is not started")
        return self._base_url

    def url_for(self, task_id: str) -> str:
        """The full query URL of ``task_id``, percent-encoded as a single path segment."""
        return f"{self.base_url}{QUERY_PREFIX}{quote(task_id, safe='')}"

    # -- result files ----------------------------------------------------------------------

    def add_file(
        self,
        name: str,
        content: bytes,
        *,
        expired: bool = False,
        drop_after: int | None = None,
        wrong_length: bool = False,
        redirect_to: str | None = None,
    ) -> str:
        """Serve ``content`` as a result file, like object storage; return its signed URL.

        Files need no API key (they are public signed URLs). Queued faults that are not aimed at
        a task id (and carry their own answer) apply to file requests too.

        Args:
            name: The file name in the URL.
            content: The bytes to serve.
            expired: Answer HTTP 403 ``Request has expired``, as storage does for a signed
                URL past its expiry.
            drop_after: Close the connection after sending this many bytes of the body.
            wrong_length: Announce one byte more than is sent (the connection then closes).
            redirect_to: Answer ``302 Found`` to this URL instead.
        """
        self._files[name] = _File(content, expired, drop_after, wrong_length, redirect_to)
        return f"{self.base_url}{FILES_PREFIX}{quote(name)}?Expires=1777430361&Signature=fake"

    async def _serve_file(
        self, request: web.BaseRequest, name: str
    ) -> tuple[web.StreamResponse, int]:
        rid = new_request_id()
        served = self._files.get(name)
        if served is not None and served.redirect_to is not None:
            headers = {"Location": served.redirect_to}
            return _response(302, rid, None, b"", headers), 302
        if served is None or served.expired:
            code, message = ("NoSuchKey", "The specified key does not exist.")
            if served is not None:
                code, message = ("AccessDenied", "Request has expired")
            status = 404 if served is None else 403
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{message}</Message><RequestId>{rid}</RequestId></Error>"
            )
            return _response(status, rid, "application/xml", xml.encode()), status
        content = served.content
        resp = web.StreamResponse(status=200, headers=_headers(rid, "video/mp4", None))
        resp.content_length = len(content) + (1 if served.wrong_length else 0)
        await resp.prepare(request)
        limit = len(content) if served.drop_after is None else served.drop_after
        try:
            for start in range(0, limit, 64 * 1024):
                await resp.write(content[start : min(start + 64 * 1024, limit)])
        except ConnectionError:  # the client went away mid-file: nothing to report
            return resp, 0
        if served.drop_after is not None or served.wrong_length:
            if request.transport is not None:
                request.transport.close()
            return resp, 200
        await resp.write_eof()
        return resp, 200

    # -- tasks ---------------------------------------------------------------------------------

    @staticmethod
    def default_success_stages(
        result_url: str = DEFAULT_RESULT_URL, *, polls: int = 1, seconds: float = 0.0
    ) -> list[Stage]:
        """NOT_START 0% -> QUEUED 20% -> IN_PROGRESS 50% -> IN_PROGRESS 75% -> SUCCESS 100%.

        SUCCESS carries ``result_url`` and, like the legacy gateway, the same URL in
        ``fail_reason``. Earlier stages send ``fail_reason: ""``. Every stage but the last lasts
        ``polls`` answers / ``seconds`` seconds.
        """
        url = result_url
        done = Stage(status="SUCCESS", progress="100%", fail_reason=url, result_url=url)
        return [*_early_stages(polls, seconds, 4), done]

    @staticmethod
    def failure_stages(
        reason: str = "content moderation", *, polls: int = 1, seconds: float = 0.0
    ) -> list[Stage]:
        """NOT_START 0% -> QUEUED 20% -> IN_PROGRESS 50% -> FAILURE 100% with ``fail_reason``.

        Args:
            reason: The ``fail_reason`` of the last stage.
            polls: How many answers each stage but the last lasts (``advance="poll"``).
            seconds: How long each stage but the last lasts (``advance="time"``).
        """
        failed = Stage(status="FAILURE", progress="100%", fail_reason=reason)
        return [*_early_stages(polls, seconds, 3), failed]

    def add_task(
        self, task_id: str | None = None, stages: Sequence[Stage] | None = None
    ) -> FakeTask:
        """Add one task and return it.

        Args:
            task_id: Its id; default: ``asyntask_`` and 32 random alphanumerics.
            stages: Its lifecycle; default: :meth:`default_success_stages`.

        Raises:
            ValueError: ``task_id`` is empty.
        """
        if task_id == "":
            raise ValueError("task_id must not be empty")
        return self._add([task_id or _random_task_ids(1)[0]], stages)[0]

    def add_tasks(self, n: int, stages: Sequence[Stage] | None = None) -> list[FakeTask]:
        """Add ``n`` tasks with random ids sharing the same stages (fast: 100,000 in ~0.1 s)."""
        return self._add(_random_task_ids(n), stages)

    def _add(self, ids: Iterable[str], stages: Sequence[Stage] | None) -> list[FakeTask]:
        plan = _Plan(
            self.default_success_stages() if stages is None else stages,
            self.advance == "time",
            self._clock,
        )
        created, unix = self._clock(), self._unix_now()
        new = [FakeTask(tid, plan, created, unix) for tid in ids]
        fresh = {t.task_id: t for t in new}
        if len(fresh) != len(new) or not fresh.keys().isdisjoint(self._tasks):
            raise ValueError("duplicate task id")
        self._tasks.update(fresh)
        return new

    def remove_task(self, task_id: str) -> None:
        """Forget a task: later queries answer 400 ``task_not_exist``.

        Args:
            task_id: The task's id.

        Raises:
            KeyError: no such task.
        """
        del self._tasks[task_id]

    @property
    def tasks(self) -> Mapping[str, FakeTask]:
        """Read-only view of the tasks by id."""
        return types.MappingProxyType(self._tasks)

    # -- faults and key state -------------------------------------------------------------------

    def inject(self, fault: Fault, times: int = 1, task_id: str | None = None) -> None:
        """Make the next ``times`` query answers (for ``task_id`` only, if given) be ``fault``.

        Faults form one FIFO queue; each matching request consumes one answer of the oldest
        matching entry. 404 answers (malformed paths) never consume faults.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        pending = _Pending(next(self._seq), fault, times)
        if task_id is None:
            self._global_faults.append(pending)
        else:
            self._task_faults.setdefault(task_id, []).append(pending)

    def inject_rate(
        self, fault: Fault, probability: float, *, seed: int | str | None = None
    ) -> None:
        """Answer each query with ``fault`` with the given probability (reproducible with ``seed``).

        Consulted when no queued fault applies; several rules are tried in the order added.
        """
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        self._rate_rules.append(_RateRule(fault, probability, random.Random(seed)))

    def clear_faults(self) -> None:
        """Remove every queued fault and random-fault rule."""
        self._global_faults.clear()
        self._task_faults.clear()
        self._rate_rules.clear()

    def set_key_state(self, state: KeyState) -> None:
        """How the server treats the right key from now on.

        Args:
            state: ``"ok"``; ``"quota_exhausted"`` (401 with a quota message, as the gateway
                answers a key whose quota ran out) or ``"forbidden"`` (403).
        """
        if state not in ("ok", "quota_exhausted", "forbidden"):
            raise ValueError(f"unknown key state {state!r}")
        self._key_state = state

    def _take_fault(self, task_id: str | None) -> Fault | None:
        own = self._task_faults.get(task_id) if task_id is not None else None
        queues = [q for q in (own, self._global_faults) if q]
        if queues:
            queue = min(queues, key=lambda q: q[0].seq)
            head = queue[0]
            head.remaining -= 1
            if head.remaining <= 0:
                # Lists hold few entries in practice; pop(0) keeps FIFO order simply.
                queue.pop(0)
                if queue is not self._global_faults and not queue and task_id is not None:
                    del self._task_faults[task_id]
            return head.fault
        for rule in self._rate_rules:
            if rule.rng.random() < rule.probability:
                return rule.fault
        return None

    # -- statistics ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered (or dropped) so far, in completion order."""
        return self._requests

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """Highest :attr:`in_flight` since start or :meth:`reset_stats`."""
        return self._max_in_flight

    def polls(self, task_id: str) -> int:
        """Requests received for ``task_id`` on the query path (any outcome, faults included)."""
        return self._polls.get(task_id, 0)

    def reset_stats(self) -> None:
        """Clear :attr:`requests` and poll counts; restart :attr:`max_in_flight` from now."""
        self._requests.clear()
        self._polls.clear()
        self._max_in_flight = self._in_flight

    # -- request handling ----------------------------------------------------------------------

    def _unix_now(self) -> int:
        return int(self._wall0 + (self._clock() - self._clock0))

    async def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``; return True (at once) if the server is closing meanwhile."""
        if self._closing:
            return True
        if seconds <= 0:
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        handle = loop.call_later(seconds, _resolve, fut)
        self._sleepers.add(fut)
        try:
            return await fut
        finally:
            handle.cancel()
            self._sleepers.discard(fut)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        arrived = self._clock()
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        rid = new_request_id()
        task_id: str | None = None
        status = 0
        sent = b""
        try:
            path = request.raw_path.partition("?")[0]
            segment = path[len(QUERY_PREFIX) :] if path.startswith(QUERY_PREFIX) else ""
            creating = request.method == "POST" and path == CREATE_PATH
            if creating:
                sent = await request.read()
            if request.method == "GET" and segment and "/" not in segment:
                task_id = unquote(segment)
                self._polls[task_id] = self._polls.get(task_id, 0) + 1
            if await self._sleep(self.latency):
                return _drop(request)
            if request.method == "GET" and path.startswith(FILES_PREFIX):
                fault = self._take_fault(None)
                if fault is not None and not fault.answers_normally:
                    resp, status = await self._faulted(request, None, rid, fault)
                    return resp
                resp, status = await self._serve_file(request, unquote(path[len(FILES_PREFIX) :]))
                return resp
            if creating:
                fault = self._take_fault(None)
                if fault is None:
                    status, ctype, body = self._create_answer(request, sent, rid)
                    return _response(status, rid, ctype, body)
                resp, status = await self._faulted(request, None, rid, fault)
                return resp
            if task_id is None:
                message = f"Invalid URL ({request.method} {unquote(path)})"
                error = {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": "",
                    "code": "",
                }
                status = 404
                return _response(404, rid, ERROR_CT, go_json({"error": error}))
            fault = self._take_fault(task_id)
            if fault is None:
                status, ctype, body = self._answer(request, task_id, rid, advance=True)
                return _response(status, rid, ctype, body)
            resp, status = await self._faulted(request, task_id, rid, fault)
            return resp
        finally:
            self._in_flight -= 1
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.raw_headers}
            self._requests.append(
                RecordedRequest(
                    request.method, request.raw_path, task_id, headers, arrived, status, sent
                )
            )

    async def _faulted(
        self, request: web.BaseRequest, task_id: str | None, rid: str, fault: Fault
    ) -> tuple[web.StreamResponse, int]:
        self.faults_served += 1
        if await self._sleep(fault.delay) or fault.drop:
            return _drop(request), 0
        ctype: str | None
        if fault.body is None and task_id is None:  # a create call, answered late
            status, ctype, body = self._create_answer(request, await request.read(), rid)
            status = status if fault.status is None else fault.status
        elif fault.body is None:
            assert task_id is not None
            status, ctype, body = self._answer(request, task_id, rid, fault.answers_normally)
            status = status if fault.status is None else fault.status
        else:
            status = 500 if fault.status is None else fault.status  # never None with a body
            ctype, body = fault.content_type, fault.body
        if fault.trickle:
            resp = web.StreamResponse(status=status, headers=_headers(rid, ctype, fault.headers))
            resp.content_length = len(body)
            await resp.prepare(request)
            for start in range(0, len(body), 16):
                await resp.write(body[start : start + 16])
                if await self._sleep(fault.trickle):
                    break
            else:
                await resp.write_eof()
            return resp, status
        if fault.chunked:
            resp = web.StreamResponse(status=status, headers=_headers(rid, ctype, fault.headers))
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for start in range(0, len(body), 64 * 1024):
                await resp.write(body[start : start + 64 * 1024])
            await resp.write_eof()
            return resp, status
        if not fault.truncate:
            return _response(status, rid, ctype, body, fault.headers), status
        resp = web.StreamResponse(status=status, headers=_headers(rid, ctype, fault.headers))
        resp.content_length = max(len(body), 1)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return resp, status

    def _refused(self, request: web.BaseRequest, rid: str) -> tuple[int, str, bytes] | None:
        """The 401/403 answer when the key is missing, wrong, exhausted or forbidden."""
        auth = request.headers.get("Authorization", "")
        if not auth:
            return self._auth_error(401, "No token provided", rid)
        if auth != f"Bearer {self.api_key}":
            return self._auth_error(401, "Invalid token", rid)
        if self._key_state == "quota_exhausted":
            return self._auth_error(401, "The token quota has been exhausted", rid)
        if self._key_state == "forbidden":
            return self._auth_error(403, "This token is not allowed to access this resource", rid)
        return None

    def _create_answer(
        self, request: web.BaseRequest, sent: bytes, rid: str
    ) -> tuple[int, str, bytes]:
        """Validate a create body like the gateway would; add the task; answer like it."""
        refused = self._refused(request, rid)
        if refused is not None:
            return refused
        try:
            doc = msgspec.json.decode(sent)
        except msgspec.DecodeError:
            doc = None
        problem = check_create_body(doc, max_images=self.max_reference_images)
        if problem is not None:
            error = _openai_error(
                f"{problem} (request id: {rid})", "invalid_request_error", "invalid_parameter"
            )
            return 400, ERROR_CT, go_json(error)
        assert isinstance(doc, dict)
        model = doc["model"]
        stages = self.create_stages
        if callable(stages):
            stages = stages(doc)
        task = self._add(_random_task_ids(1), stages)[0]
        self.created.append(task)
        answer = {
            "id": task.task_id,
            "task_id": task.task_id,
            "object": "video",
            "model": model,
            "status": "queued" if model.startswith("happyhorse") else "",
            "progress": 0,
            "created_at": task.submit_time,
        }
        return 200, JSON_CT, go_json(answer)

    def _answer(
        self, request: web.BaseRequest, task_id: str, rid: str, advance: bool
    ) -> tuple[int, str, bytes]:
        """The normal (status, content type, body) for a query of ``task_id``."""
        refused = self._refused(request, rid)
        if refused is not None:
            return refused
        task = self._tasks.get(task_id)
        if task is None:
            return 400, ERROR_CT, go_json(_envelope_error("task_not_exist", "task_not_exist"))
        data = task._serve(self._unix_now(), advance)
        return 200, JSON_CT, go_json({"code": "success", "message": "", "data": data})

    @staticmethod
    def _auth_error(status: int, text: str, rid: str) -> tuple[int, str, bytes]:
        message = f"{text} (request id: {rid})"
        return status, ERROR_CT, go_json(_openai_error(message, "new_api_error"))


def _resolve(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


def _headers(rid: str, content_type: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"X-Oneapi-Request-Id": rid}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if extra:
        headers.update(extra)
    return headers


def _response(
    status: int, rid: str, ctype: str | None, body: bytes, extra: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(status=status, body=body, headers=_headers(rid, ctype, extra))


def _drop(request: web.BaseRequest) -> web.Response:
    """Close the connection without a response; aiohttp then quietly skips writing one."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)
