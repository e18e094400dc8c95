"""Faults: misbehaving answers (:class:`Fault` and its factories), the queue that decides which
request gets which (queued faults first, in FIFO order, then random-fault rules) and the way a
faulty answer is sent."""

from __future__ import annotations

import http
import itertools
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from ._wire import (
    ERROR_CT,
    JSON_CT,
    envelope_error,
    go_json,
    make_response,
    openai_error,
    response_headers,
)

_SAMPLE_SUCCESS: dict[str, Any] = {
    "code": "success",
    "message": "",
    "data": {"task_id": "asyntask_" + "0" * 32, "status": "SUCCESS", "progress": "100%"},
}


def _to_bytes(body: object) -> bytes:
    """Turn a fault body given as bytes, str or a JSON-able object into bytes."""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    return go_json(body)


def _status_line(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


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
            body = openai_error(_status_line(status), "upstream_error")
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
            base = cls.http(429, openai_error(msg, "rate_limit_error", "rate_limit_exceeded"))
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
        return cls.http(status, envelope_error(code, code if message is None else message))

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
        return cls.http(status, envelope_error(code, message))

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


class FaultQueue:
    """The faults waiting to be served: queued ones (one FIFO order across the global queue and
    the per-task queues) and random-fault rules, consulted when no queued fault applies."""

    __slots__ = ("_global_faults", "_rate_rules", "_seq", "_task_faults")

    def __init__(self) -> None:
        self._seq = itertools.count()
        self._global_faults: list[_Pending] = []
        self._task_faults: dict[str, list[_Pending]] = {}
        self._rate_rules: list[_RateRule] = []

    def add(self, fault: Fault, times: int, task_id: str | None) -> None:
        """Queue ``fault`` for the next ``times`` answers (for ``task_id`` only, if given)."""
        pending = _Pending(next(self._seq), fault, times)
        if task_id is None:
            self._global_faults.append(pending)
        else:
            self._task_faults.setdefault(task_id, []).append(pending)

    def add_rate(self, fault: Fault, probability: float, seed: int | str | None) -> None:
        """Serve ``fault`` with ``probability`` when no queued fault applies."""
        self._rate_rules.append(_RateRule(fault, probability, random.Random(seed)))

    def clear(self) -> None:
        """Forget every queued fault and random-fault rule."""
        self._global_faults.clear()
        self._task_faults.clear()
        self._rate_rules.clear()

    def take(self, task_id: str | None) -> Fault | None:
        """The fault for the next answer (about ``task_id``, if any), consuming it; or ``None``."""
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


async def deliver(
    fault: Fault,
    request: web.BaseRequest,
    rid: str,
    answer: tuple[int, str | None, bytes],
    sleep: Callable[[float], Awaitable[bool]],
) -> web.StreamResponse:
    """Send ``answer`` (status, content type, body) the way ``fault`` says.

    Trickled, chunked, whole, or cut in half (the connection then closes); ``sleep`` waits
    between trickled pieces and returns True when the server is closing.
    """
    status, ctype, body = answer
    headers = response_headers(rid, ctype, fault.headers)
    if fault.trickle:
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        for start in range(0, len(body), 16):
            await resp.write(body[start : start + 16])
            if await sleep(fault.trickle):
                break
        else:
            await resp.write_eof()
        return resp
    if fault.chunked:
        resp = web.StreamResponse(status=status, headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, len(body), 64 * 1024):
            await resp.write(body[start : start + 64 * 1024])
        await resp.write_eof()
        return resp
    if not fault.truncate:
        return make_response(status, rid, ctype, body, fault.headers)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = max(len(body), 1)
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()
    return resp
