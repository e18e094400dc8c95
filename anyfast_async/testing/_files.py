"""Result files served like object storage (see :meth:`FakeAnyFast.add_file`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from ._wire import FILES_PREFIX, make_response, new_request_id, response_headers


@dataclass(frozen=True, slots=True)
class ResultFile:
    """One served file and how it misbehaves (see :meth:`FakeAnyFast.add_file`)."""

    content: bytes
    expired: bool
    drop_after: int | None
    wrong_length: bool
    redirect_to: str | None = None
    bytes_per_second: float | None = None


def signed_url(base_url: str, name: str) -> str:
    """The URL of the file ``name`` on the server at ``base_url``, with a fake signature."""
    return f"{base_url}{FILES_PREFIX}{quote(name)}?Expires=1777430361&Signature=fake"


async def serve_file(
    request: web.BaseRequest,
    served: ResultFile | None,
    sleep: Callable[[float], Awaitable[bool]],
) -> tuple[web.StreamResponse, int]:
    """Answer a request for ``served`` (``None``: no such file) as object storage would;
    ``sleep`` paces a slow file (it returns True when the server is closing).

    Returns the response and the HTTP status to record (0 when the client went away).
    """
    rid = new_request_id()
    if served is not None and served.redirect_to is not None:
        headers = {"Location": served.redirect_to}
        return make_response(302, rid, None, b"", headers), 302
    if served is None or served.expired:
        code, message = ("NoSuchKey", "The specified key does not exist.")
        if served is not None:
            code, message = ("AccessDenied", "Request has expired")
        status = 404 if served is None else 403
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>{rid}</RequestId></Error>"
        )
        return make_response(status, rid, "application/xml", xml.encode()), status
    content = served.content
    resp = web.StreamResponse(status=200, headers=response_headers(rid, "video/mp4", None))
    resp.content_length = len(content) + (1 if served.wrong_length else 0)
    await resp.prepare(request)
    limit = len(content) if served.drop_after is None else served.drop_after
    pace = served.bytes_per_second
    piece = 64 * 1024 if pace is None else max(int(pace / 10), 1)
    try:
        for start in range(0, limit, piece):
            await resp.write(content[start : min(start + piece, limit)])
            if pace is not None and await sleep(piece / pace):
                return resp, 0  # the server is closing
    except ConnectionError:  # the client went away mid-file: nothing to report
        return resp, 0
    if served.drop_after is not None or served.wrong_length:
        if request.transport is not None:
            request.transport.close()
        return resp, 200
    await resp.write_eof()
    return resp, 200
