"""Configuration values: timeouts, connection limits, the retry policy, and their defaults.

Each is a small frozen, keyword-only value. Defaults are named module constants, so the numbers
in the docs and in the code are the same numbers.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "CHINA_BASE_URL",
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "UNSET",
    "Limits",
    "RetryPolicy",
    "Timeout",
]

ENV_API_KEY: Final = "ANYFAST_API_KEY"
ENV_BASE_URL: Final = "ANYFAST_BASE_URL"

#: The international API host.
DEFAULT_BASE_URL: Final = "https://www.anyfast.ai"
#: The mainland-China API host, a documented alternative.
CHINA_BASE_URL: Final = "https://www.anyfast.com.cn"

#: Largest response body read into memory. A task record is a few KiB; anything past this
#: is refused with ResponseDecodeError without being read.
DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024


class _Unset(enum.Enum):
    UNSET = enum.auto()

    def __repr__(self) -> str:
        return "UNSET"


#: Sentinel for "argument omitted: use the client's default", as distinct from ``None``.
UNSET: Final = _Unset.UNSET


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeout:
    """Per-request timeouts, in seconds.

    Args:
        connect: Time to establish a TCP/TLS connection.
        read: Longest gap between two chunks of the response.
        total: The whole request, from sending to the last byte of the body.

    ``None`` disables a limit. The defaults (10 s, 30 s, 60 s) suit a status GET: the gateway
    answers it in well under a second, so a request that takes a minute is broken and is better
    retried than waited for.
    """

    connect: float | None = 10.0
    read: float | None = 30.0
    total: float | None = 60.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"Timeout.{name} must be > 0 or None, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Connection pool limits.

    Args:
        max_connections: Most open connections at once (aiohttp's ``TCPConnector(limit=...)``).
            Keep any concurrency limit you give the SDK at or below this, so that queued
            requests wait in the SDK's limiter and not inside aiohttp's connect timeout.
        keepalive_expiry: Seconds an idle pooled connection is kept open.
    """

    max_connections: int = 100
    keepalive_expiry: float = 30.0

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"Limits.max_connections must be >= 1, got {self.max_connections}")
        if not self.keepalive_expiry > 0:
            raise ValueError(f"Limits.keepalive_expiry must be > 0, got {self.keepalive_expiry}")


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How one request is retried.

    Retried: connection errors, timeouts, and HTTP 408, 429, 500, 502, 503, 504. Never retried:
    400, 401, 403, 404 and a task that does not exist.

    Attempt ``n`` (``n = 1`` is the first retry) waits a random time with full jitter::

        wait = uniform(0, min(max_backoff, initial_backoff * 2 ** (n - 1)))

    When the answer carries ``Retry-After`` (seconds or an HTTP date), the wait is that value
    instead, capped at ``max_retry_after``. With the defaults the waits are at most 0.5 s,
    1 s and 2 s. When the retries run out the last error is raised as itself.

    Args:
        max_retries: Retries after the first attempt (so ``max_retries + 1`` requests at most).
        initial_backoff: Upper bound of the first wait, in seconds.
        max_backoff: Upper bound of any computed wait, in seconds.
        max_retry_after: Cap on a server-requested ``Retry-After`` wait, in seconds.
    """

    max_retries: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"RetryPolicy.max_retries must be >= 0, got {self.max_retries}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy waits must be >= 0")


DEFAULT_TIMEOUT: Final = Timeout()
DEFAULT_LIMITS: Final = Limits()
DEFAULT_RETRY: Final = RetryPolicy()


def resolve_api_key(api_key: str | None) -> str:
    """Return the API key to use: the argument, else ``ANYFAST_API_KEY``.

    Surrounding whitespace (a trailing newline from a secrets file) is stripped. A key that is
    empty, or holds whitespace or control characters inside, is refused: it could not be a
    valid key, and in a header it could inject another header. The error never repeats the key.
    """
    source = "api_key"
    if api_key is None:
        api_key = os.environ.get(ENV_API_KEY)
        source = ENV_API_KEY
        if api_key is None:
            raise ValueError(
                f"no API key: pass api_key=... or set the {ENV_API_KEY} environment variable"
            )
    if not isinstance(api_key, str):
        raise TypeError(f"api_key must be a str, not {type(api_key).__name__}")
    key = api_key.strip()
    if not key:
        raise ValueError(f"the API key from {source} is empty")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise ValueError(
            f"the API key from {source} contains whitespace or control characters; "
            "check how it was copied"
        )
    return key


def resolve_base_url(base_url: str | None) -> str:
    """Return the normalised base URL: the argument, else ``ANYFAST_BASE_URL``, else the default.

    The URL needs an ``http`` or ``https`` scheme and a host. A trailing slash is removed. A path
    prefix is kept (for a gateway mounted behind a proxy path), but a path ending in ``/v1`` is
    refused, because the SDK adds ``/v1/...`` itself.
    """
    if base_url is None:
        base_url = os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    url = base_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"base_url must be an absolute http(s) URL such as {DEFAULT_BASE_URL!r}, got {url!r}"
        )
    if parts.username or parts.password:
        raise ValueError("base_url must not contain credentials; pass api_key instead")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not have a query or fragment, got {url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        raise ValueError(
            f"base_url should not end in /v1 (the SDK adds it), got {url!r}; "
            f"use {parts.scheme}://{parts.netloc}{path[:-3]!s}"
        )
    try:
        parts.port  # noqa: B018 - validates the port number
    except ValueError as exc:
        raise ValueError(f"base_url has an invalid port: {url!r}") from exc
    return f"{parts.scheme}://{parts.netloc}{path}"
