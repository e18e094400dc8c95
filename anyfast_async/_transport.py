"""HTTP transport: owns the aiohttp session, and is the one place aiohttp errors are translated.

This module knows nothing of tasks. It sends one request to the configured API origin and hands
back the status, headers and body (read with a size cap), or raises an
:class:`~anyfast_async.APIConnectionError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Final

import aiohttp
import yarl

from ._config import Limits, Timeout
from ._exceptions import APIConnectionError, APITimeoutError
from ._version import __version__

__all__ = ["REQUEST_ID_HEADER", "Response", "Stream", "Transport", "default_user_agent"]

REQUEST_ID_HEADER: Final = "X-Oneapi-Request-Id"
_CHUNK: Final = 64 * 1024


def default_user_agent(suffix: str | None = None) -> str:
    """The User-Agent sent with every request: the SDK, its version, Python and aiohttp."""
    agent = (
        f"anyfast-async/{__version__} Python/{platform.python_version()} "
        f"aiohttp/{aiohttp.__version__}"
    )
    if suffix:
        if any(ch in suffix for ch in "\r\n\0"):
            raise ValueError("user_agent_suffix must not contain line breaks or NUL")
        agent = f"{agent} {suffix.strip()}"
    return agent


class Response:
    """A complete HTTP answer: status, headers and the body bytes (possibly cut at the cap)."""

    __slots__ = ("body", "headers", "oversize", "request_id", "status")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        oversize: bool = False,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.oversize = oversize
        self.request_id: str | None = headers.get(REQUEST_ID_HEADER) or None


def _translate(exc: BaseException, method: str, path: str) -> APIConnectionError:
    """Our error for an aiohttp or socket exception, with the most specific class.

    The aiohttp exception is kept as ``__cause__``, except for ``ClientResponseError``, whose
    ``request_info`` holds the request headers (the API key among them).
    """
    where = f"{method} {path}"
    error: APIConnectionError
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        error = APITimeoutError(
            f"{where}: timed out connecting", method=method, path=path, sent=False
        )
    elif isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        error = APITimeoutError(
            f"{where} timed out ({type(exc).__name__})", method=method, path=path
        )
    elif isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        error = APIConnectionError(
            f"{where}: TLS error, the server's certificate or handshake was refused ({exc})",
            method=method,
            path=path,
            retryable=False,
        )
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = APIConnectionError(
            f"{where}: cannot connect to {exc.host}:{exc.port} ({exc.os_error})",
            method=method,
            path=path,
            sent=False,
        )
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        error = APIConnectionError(
            f"{where}: server closed the connection without a complete answer",
            method=method,
            path=path,
        )
    elif isinstance(exc, aiohttp.ClientPayloadError):
        error = APIConnectionError(
            f"{where}: the answer's body was cut off ({exc})", method=method, path=path
        )
    elif isinstance(exc, aiohttp.ClientResponseError):
        return APIConnectionError(
            f"{where}: the server sent an invalid HTTP answer ({exc.message})",
            method=method,
            path=path,
            retryable=False,
        )
    else:
        error = APIConnectionError(
            f"{where}: {type(exc).__name__}: {exc}", method=method, path=path
        )
    error.__cause__ = exc
    return error


#: Whether a task can take back one cancellation (``Task.uncancel``, Python 3.11+), which
#: :class:`Deadlines` needs to turn its own cancellation into a timeout.
_CAN_UNCANCEL: Final = sys.version_info >= (3, 11)
#: Longest time between two checks of the deadlines; shorter when a total timeout is short.
_MAX_TICK: Final = 0.5


def _without_total(timeout: aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeout.connect,
        sock_connect=timeout.sock_connect,
        sock_read=timeout.sock_read,
        ceil_threshold=timeout.ceil_threshold,
    )


class Deadlines:
    """The total timeouts of the requests in flight, enforced by one timer.

    aiohttp's own ``total`` timeout arms a timer per request: a heap push, a cancel, and a
    cancelled entry left in the event loop's heap, several microseconds per request at high
    rates. Here a request only notes its deadline in a dict (keyed by its task: a task has at
    most one request of ours in flight), and a single timer, which runs only while requests
    are in flight, cancels the tasks whose deadline has passed. The task takes that
    cancellation back (``Task.uncancel``) and the request raises
    :class:`~anyfast_async.APITimeoutError`, as it would with aiohttp's timer. A deadline
    fires at most one tick late: a tenth of the shortest total timeout in flight, at most
    half a second.
    """

    __slots__ = ("_due", "_expired", "_loop", "_tick", "_timer")

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tick = _MAX_TICK

    def add(self, task: asyncio.Task[object], total: float) -> None:
        loop = self._loop
        if loop is None:  # the first request (a client lives in one loop: it cannot reopen)
            loop = self._loop = asyncio.get_running_loop()
        self._due[task] = loop.time() + total
        tick = total / 10
        if tick < self._tick:
            self._tick = tick
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._timer is None:
            self._timer = loop.call_at(loop.time() + self._tick, self._check)

    def discard(self, task: asyncio.Task[object]) -> bool:
        """Forget ``task``'s request; whether its deadline had passed (it was cancelled)."""
        self._due.pop(task, None)
        if self._expired and task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _check(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        if not self._due:
            self._tick = _MAX_TICK
            return
        now = loop.time()
        for task, due in list(self._due.items()):
            if due <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._timer = loop.call_at(now + self._tick, self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due.clear()
        self._expired.clear()
        self._tick = _MAX_TICK


class Stream:
    """A response whose body is read piece by piece (for downloads)."""

    __slots__ = ("_response", "_secret", "content_length", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, secret: bytes) -> None:
        self._response = response
        self._secret = secret
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self.content_length = response.content_length

    async def chunks(self, size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """The body, in pieces of at most ``size`` bytes."""
        url = self._response.url
        error: APIConnectionError | None = None
        try:
            async for chunk in self._response.content.iter_chunked(size):
                yield chunk
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = _translate(exc, "GET", url.path)
        if error is not None:
            raise error

    async def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body (for an error message)."""
        try:
            body = await self._response.content.read(limit)
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError):
            return b""
        return body.replace(self._secret, b"[redacted]")


class Transport:
    """Sends requests to one API origin with one aiohttp session.

    The session is created by :meth:`open` (inside the running loop) and closed by
    :meth:`close`, unless it was passed in, in which case it is used but never closed.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: Timeout,
        limits: Limits,
        user_agent: str,
        max_response_bytes: int,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url
        self._timeout = self.client_timeout(timeout)
        self._limits = limits
        self._user_agent = user_agent
        self._max_bytes = max_response_bytes
        self._session = session
        self._owns_session = session is None
        self._secret = api_key.encode()
        api = yarl.URL(base_url)
        self._origin = (api.scheme, api.host, api.port)
        self._deadlines = Deadlines()
        #: aiohttp timeouts as given, each without its ``total`` (enforced by _deadlines).
        self._untimed: dict[aiohttp.ClientTimeout, aiohttp.ClientTimeout] = {}
        self._headers: Final = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }

    def __repr__(self) -> str:
        return f"<Transport {self.base_url}>"

    @staticmethod
    def client_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
        """aiohttp's form of ``timeout``, for :meth:`request`."""
        return aiohttp.ClientTimeout(
            total=timeout.total,
            connect=timeout.connect,
            sock_connect=timeout.connect,
            sock_read=timeout.read,
        )

    @property
    def connection_limit(self) -> int:
        """Most connections the pool opens at once (0: no limit)."""
        if self._owns_session:
            return self._limits.max_connections
        assert self._session is not None
        return self._session.connector.limit if self._session.connector is not None else 0

    async def open(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections,
                keepalive_timeout=self._limits.keepalive_expiry,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                raise_for_status=False,
                # The API sets no cookies: nothing to store, nothing to filter per request.
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def close(self) -> None:
        self._deadlines.close()
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def same_origin(self, url: yarl.URL) -> bool:
        """Whether ``url`` has the API's scheme, host and port (and so may carry the key)."""
        return (url.scheme, url.host, url.port) == self._origin

    @contextlib.asynccontextmanager
    async def stream(self, url: yarl.URL, *, read_timeout: float | None) -> AsyncIterator[Stream]:
        """GET ``url`` and hand back the response before its body is read.

        The API key is sent only when ``url`` has the API's origin. Redirects are not
        followed (the caller decides where to go, and with which headers). There is no total
        timeout: a large file takes as long as it takes, but every read has ``read_timeout``.
        """
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("this AnyFast client is closed")
        headers = {"User-Agent": self._user_agent}
        if self.same_origin(url):
            headers["Authorization"] = self._headers["Authorization"]
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._timeout.connect,
            sock_connect=self._timeout.sock_connect,
            sock_read=read_timeout,
        )
        error: APIConnectionError | None = None
        try:
            response = await session.get(
                url, headers=headers, allow_redirects=False, timeout=timeout
            )
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = _translate(exc, "GET", url.path)
        if error is not None:
            raise error
        try:
            yield Stream(response, self._secret)
        finally:
            if response.content.at_eof():
                response.release()  # fully read: the connection can be reused
            else:
                response.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: bytes | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Response:
        """Send one request to the API origin and read the whole answer, within ``timeout``
        (default: the transport's).

        Redirects are not followed: the API key must never travel to another origin, and the
        API does not redirect. A body larger than the cap is not read; the answer comes back
        with ``oversize=True`` and an empty body.

        Raises:
            APIConnectionError: no usable answer (refused, reset, cut-off body).
            APITimeoutError: a timeout fired.
        """
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("this AnyFast client is closed")
        headers = self._headers
        if json_body is not None:
            headers = {**headers, "Content-Type": "application/json"}
        timeout = timeout or self._timeout
        total = timeout.total
        task = asyncio.current_task() if total and _CAN_UNCANCEL else None
        if task is not None:
            assert total is not None
            cancelling = task.cancelling()  # type: ignore[attr-defined,unused-ignore]
            untimed = self._untimed.get(timeout)
            if untimed is None:
                untimed = self._untimed[timeout] = _without_total(timeout)
            timeout = untimed
            self._deadlines.add(task, total)
        try:
            async with session.request(
                method,
                yarl.URL(self.base_url + path, encoded=True),
                headers=headers,
                data=json_body,
                allow_redirects=False,
                timeout=timeout,
            ) as resp:
                limit = self._max_bytes
                length = resp.content_length
                if length is not None and length > limit:
                    resp.close()
                    return Response(resp.status, resp.headers, b"", oversize=True)
                if length is not None and "Content-Encoding" not in resp.headers:
                    body = await resp.read()
                else:
                    # Chunked or compressed: count what is actually produced.
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        if size > limit:
                            resp.close()
                            return Response(resp.status, resp.headers, b"", oversize=True)
                        chunks.append(chunk)
                    body = b"".join(chunks)
                if self._secret in body:  # never carry the key into an error or a log
                    body = body.replace(self._secret, b"[redacted]")
                return Response(resp.status, resp.headers, body)
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = _translate(exc, method, path)
        except asyncio.CancelledError:
            if task is not None and self._deadlines.discard(task):
                ours, task = task, None  # discarded already
                if ours.uncancel() <= cancelling:  # type: ignore[attr-defined,unused-ignore]
                    error = _translate(asyncio.TimeoutError(), method, path)
                    raise error from error.__cause__
            raise
        finally:
            if task is not None:
                self._deadlines.discard(task)
        raise error
