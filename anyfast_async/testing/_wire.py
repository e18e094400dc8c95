"""The AnyFast gateway's wire format: paths, JSON bytes, request ids, error bodies, answers."""

from __future__ import annotations

import base64
import os
import random
import string
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import msgspec
from aiohttp import web

FILES_PREFIX = "/files/"
"""Path prefix of result files served by :meth:`FakeAnyFast.add_file`."""
CREATE_PATH = "/v1/video/generations"
"""Path of the create endpoint (``POST``)."""
QUERY_PREFIX = "/v1/video/generations/"
"""Path prefix of the task-query endpoint; the task id is the one segment that follows."""

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


def random_task_ids(n: int) -> list[str]:
    """Return ``n`` ids of the form ``asyntask_`` + 32 alphanumerics (one urandom call)."""
    blob = base64.b64encode(os.urandom(24 * n)).translate(bytes.maketrans(b"+/", b"Xz")).decode()
    return ["asyntask_" + blob[i : i + 32] for i in range(0, 32 * n, 32)]


def openai_error(message: str, type_: str, code: str = "") -> dict[str, Any]:
    """The gateway's middleware error shape (a Go map, hence the sorted keys)."""
    return {"error": {"code": code, "message": message, "type": type_}}


def envelope_error(code: str, message: str) -> dict[str, Any]:
    """A handler error in the task envelope: ``{"code", "message", "data": null}``."""
    return {"code": code, "message": message, "data": None}


def auth_error(status: int, text: str, rid: str) -> tuple[int, str, bytes]:
    """The gateway's 401/403 answer (status, content type, body) saying ``text``."""
    message = f"{text} (request id: {rid})"
    return status, ERROR_CT, go_json(openai_error(message, "new_api_error"))


def rate_limit_error() -> bytes:
    """The body of the gateway's 429 (its OpenAI-style error)."""
    message = "Rate limit reached for requests, please try again later"
    return go_json(openai_error(message, "rate_limit_error", "rate_limit_exceeded"))


def fake_video(task_id: str, size: int = 64 * 1024) -> bytes:
    """Bytes standing for a video: an MP4 ``ftyp`` box, then filler naming ``task_id``."""
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    filler = f"fake video of {task_id}\n".encode()
    body = head + filler * (size // len(filler) + 1)
    return body[:size]


def invalid_url_error(method: str, path: str) -> bytes:
    """The body of the gateway's 404 for a request outside its routes (``path`` still encoded)."""
    message = f"Invalid URL ({method} {unquote(path)})"
    error = {"message": message, "type": "invalid_request_error", "param": "", "code": ""}
    return go_json({"error": error})


def response_headers(
    rid: str, content_type: str | None, extra: Mapping[str, str] | None
) -> dict[str, str]:
    """The headers of an answer: the request id, the content type if any, then ``extra``."""
    result = {"X-Oneapi-Request-Id": rid}
    if content_type is not None:
        result["Content-Type"] = content_type
    if extra:
        result.update(extra)
    return result


def make_response(
    status: int, rid: str, ctype: str | None, body: bytes, extra: Mapping[str, str] | None = None
) -> web.Response:
    """A complete answer with the gateway's headers."""
    return web.Response(status=status, body=body, headers=response_headers(rid, ctype, extra))


def drop_connection(request: web.BaseRequest) -> web.Response:
    """Close the connection without a response; aiohttp then quietly skips writing one."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)
