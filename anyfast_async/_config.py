"""Configuration values: timeouts, connection limits, the retry policy, and their defaults.

Each is a small frozen, keyword-only value. Defaults are named module constants, so the numbers
in the docs and in the code are the same numbers.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
import random
import warnings
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from ._models import TaskStatus

__all__ = [
    "CHINA_BASE_URL",
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_POLL",
    "DEFAULT_RETRY",
    "DEFAULT_THROTTLE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WAIT_TIMEOUT",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "UNSET",
    "InsecureBaseURLWarning",
    "Limits",
    "PollPolicy",
    "RetryPolicy",
    "Throttle",
    "Timeout",
    "UnsetType",
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


class UnsetType(enum.Enum):
    """The type of :data:`UNSET`, for annotations: ``timeout: float | UnsetType | None``."""

    UNSET = enum.auto()

    def __repr__(self) -> str:
        return "UNSET"


#: Sentinel for "argument omitted: use the client's default", as distinct from ``None``.
UNSET: Final = UnsetType.UNSET


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeout:
    """Per-request timeouts, in seconds.

    Args:
        connect: Time to establish a TCP/TLS connection.
        read: Longest gap between two chunks of the response.
        total: The whole request, from sending to the last byte of the body.

    ``None`` disables a limit. The defaults (connect 10 s, total 60 s, no separate read limit)
    suit a status GET: the gateway answers it in well under a second, so a request that takes
    a minute is broken and is better retried than waited for. A read limit is off by default
    because the total limit already bounds an answer of a few KiB, and aiohttp re-arms a
    timer on every piece read, which costs about a tenth of the client's CPU per poll.
    Downloads use their own read limit (30 s) and no total limit.
    """

    connect: float | None = 10.0
    read: float | None = None
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

    When the answer carries ``Retry-After`` (seconds or an HTTP date), the wait is at least
    that value, capped at ``max_retry_after``. With the defaults the waits are at most 0.5 s,
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

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The computed wait before retry number ``attempt`` (1 for the first retry).

        Args:
            attempt: The retry about to be made, from 1.
            rng: The source of the jitter.

        Examples:
            >>> import random
            >>> 0 <= RetryPolicy().backoff(3, random.Random(0)) <= 2.0
            True
        """
        return rng.uniform(0.0, min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1)))


#: Default deadline of a wait, in seconds. Generation takes 1 to 5 minutes; queues can add to
#: that. The gateway itself fails a task after 24 hours.
DEFAULT_WAIT_TIMEOUT: Final = 1800.0

_WAITING = frozenset({TaskStatus.NOT_START, TaskStatus.SUBMITTED, TaskStatus.QUEUED})


@dataclass(frozen=True, kw_only=True, slots=True)
class PollPolicy:
    """When to poll a watched task again.

    The first poll is immediate. After it, a task that is running (``IN_PROGRESS``, or a status
    the SDK does not know) is polled every ``interval`` seconds. The gateway refreshes a task
    from its provider about every 15 s, so polling faster than that sees nothing new; 15 s is
    also the documented cadence.

    A task that is still waiting (``NOT_START``, ``SUBMITTED``, ``QUEUED``) starts at
    ``waiting_interval`` and each further poll that finds it still waiting multiplies the wait
    by ``waiting_ramp``, up to ``max_waiting_interval``: a task that has sat in a queue for
    minutes is in a long queue, and polling it at the full rate only spends the request budget.
    As soon as it moves, the interval drops back.

    Every wait is multiplied by a random factor in ``[1 - jitter, 1 + jitter]`` so that
    thousands of tasks started together do not poll in lockstep, and no wait runs past the
    watch's deadline.

    A poll that fails with a transient error (connection error, timeout, 429, 5xx) is tried
    again after ``error_backoff`` seconds, doubling per consecutive failure up to
    ``max_error_backoff`` (each wait drawn between half and all of that; a longer
    ``Retry-After`` wins). ``task_not_exist``
    within ``not_found_grace`` seconds of the start of a watch is treated as transient: the
    gateway can answer it for a moment after a create.

    Args:
        interval: Seconds between polls of a running task (default 15).
        waiting_interval: First wait for a task that has not started (default 15).
        waiting_ramp: Growth of the wait per poll that finds the task still waiting (1.25).
        max_waiting_interval: Largest wait for a task that has not started (default 30).
        jitter: Relative jitter of every wait, 0 to 1 (default 0.1).
        error_backoff: First wait after a failed poll (default 2).
        max_error_backoff: Largest wait after failed polls (default 60).
        not_found_grace: Seconds after the start during which "not found" is retried (15).
    """

    interval: float = 15.0
    waiting_interval: float = 15.0
    waiting_ramp: float = 1.25
    max_waiting_interval: float = 30.0
    jitter: float = 0.1
    error_backoff: float = 2.0
    max_error_backoff: float = 60.0
    not_found_grace: float = 15.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not value >= 0:
                raise ValueError(f"PollPolicy.{field.name} must be >= 0, got {value!r}")
        if self.jitter > 1:
            raise ValueError(f"PollPolicy.jitter must be between 0 and 1, got {self.jitter!r}")
        if self.waiting_ramp < 1:
            raise ValueError("PollPolicy.waiting_ramp must be >= 1")

    @classmethod
    def fixed(cls, seconds: float, **changes: Any) -> PollPolicy:
        """A policy that polls every ``seconds`` whatever the status, with no jitter.

        Failed polls are retried after ``seconds`` too, doubling up to ``8 * seconds`` (at
        most 60 s). Other fields can be set by keyword.

        Args:
            seconds: The interval between polls, > 0.
            **changes: Other fields of the policy, e.g. ``not_found_grace=30``.

        Raises:
            ValueError: ``seconds`` is not > 0.

        Examples:
            >>> policy = PollPolicy.fixed(2)
            >>> policy.interval, policy.waiting_interval, policy.jitter
            (2.0, 2.0, 0.0)
        """
        seconds = float(seconds)
        if not seconds > 0:
            raise ValueError(f"poll interval must be > 0, got {seconds!r}")
        values: dict[str, Any] = {
            "interval": seconds,
            "waiting_interval": seconds,
            "waiting_ramp": 1.0,
            "max_waiting_interval": seconds,
            "jitter": 0.0,
            "error_backoff": seconds,
            "max_error_backoff": max(seconds, min(60.0, 8 * seconds)),
        }
        values.update(changes)
        return cls(**values)

    def next_delay(self, status: TaskStatus, same_polls: int, rng: random.Random) -> float:
        """Seconds until the next poll of a task seen ``same_polls`` times in ``status``.

        Args:
            status: The task's status at the last poll.
            same_polls: How many polls in a row found it in that status (1 for the first).
            rng: The source of the jitter.

        Examples:
            A waiting task's interval ramps up; a running one's stays at ``interval``:

            >>> import random
            >>> from anyfast_async import TaskStatus
            >>> policy, rng = PollPolicy(jitter=0), random.Random(0)
            >>> [policy.next_delay(TaskStatus.QUEUED, n, rng) for n in (1, 2, 3, 9)]
            [15.0, 18.75, 23.4375, 30.0]
            >>> policy.next_delay(TaskStatus.IN_PROGRESS, 9, rng)
            15.0
        """
        if status in _WAITING:
            delay = min(
                self.max_waiting_interval,
                self.waiting_interval * self.waiting_ramp ** max(same_polls - 1, 0),
            )
        else:
            delay = self.interval
        if self.jitter:
            delay *= rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return delay

    def error_delay(self, streak: int, rng: random.Random) -> float:
        """Seconds until the next poll after ``streak`` consecutive failed polls.

        Drawn between half and all of a ceiling that doubles with each failure, from
        ``error_backoff`` up to ``max_error_backoff``.

        Args:
            streak: Failed polls in a row (1 for the first).
            rng: The source of the jitter.

        Examples:
            >>> import random
            >>> rng = random.Random(0)
            >>> sorted({PollPolicy().error_delay(2, rng) // 1 for _ in range(100)})  # 2 s to 4 s
            [2.0, 3.0]
        """
        ceiling = min(self.max_error_backoff, self.error_backoff * 2 ** max(streak - 1, 0))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, kw_only=True, slots=True)
class Throttle:
    """How the client's shared polling budget reacts to HTTP 429.

    One budget is shared by every watch, fan-out and watcher of a client. Single ``get_task``
    calls and create calls are not paced by it and do not count in it (they have their own
    retries; the gateway's create and query routes need not share a limit). The rules are
    those of TCP's congestion control and botocore's adaptive retries, for a limit the client
    cannot see:

    * **Decrease.** A 429 caps the poll rate at the rate measured over the last second (or
      the cap in force) times the share of polls not refused, at least halving it when most
      are refused, never below ``min_rate``: a rare 429 costs about its share of the rate.
      429s answering polls sent before the decrease are the same signal and decrease nothing
      more. A 429 among too few polls to measure a rate (a fresh client's first answers) sets
      no cap.
    * **Recovery.** The cap then grows by ``recovery`` per second (doubling, by default),
      whatever the traffic, and is lifted once it reaches twice the rate that drew the 429 (or
      ``max_rate``): after a throttle ends, polling is back to what is due within seconds.
    * **Pauses.** A ``Retry-After`` pauses every poll for that long (capped at
      ``max_pause``). Without one, a 429 pauses only when throttling persists: most polls
      refused, with the cap already at ``min_rate``; for ``initial_pause``, doubling up to
      ``max_pause``.

    The task that got the 429 also backs off on its own (``PollPolicy.error_backoff``).

    Args:
        initial_pause: First pause of a throttle that persists at ``min_rate``, in seconds (1).
        max_pause: Longest pause, in seconds (60); also caps a ``Retry-After``.
        min_rate: Lowest rate cap, in polls per second (1).
        recovery: Relative growth of the rate cap per second without a decrease (1.0: it
            doubles each second).
    """

    initial_pause: float = 1.0
    max_pause: float = 60.0
    min_rate: float = 1.0
    recovery: float = 1.0

    def __post_init__(self) -> None:
        if not (self.initial_pause >= 0 and self.max_pause >= self.initial_pause):
            raise ValueError("Throttle pauses must satisfy 0 <= initial_pause <= max_pause")
        if not (self.min_rate > 0 and self.recovery > 0):
            raise ValueError("Throttle.min_rate and Throttle.recovery must be > 0")


DEFAULT_TIMEOUT: Final = Timeout()
DEFAULT_LIMITS: Final = Limits()
DEFAULT_RETRY: Final = RetryPolicy()
DEFAULT_POLL: Final = PollPolicy()
DEFAULT_THROTTLE: Final = Throttle()


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
    refused, because the SDK adds ``/v1/...`` itself. Plain ``http`` is accepted for this
    machine (``localhost``, ``127.0.0.0/8``, ``::1``: test servers) and warned about
    (:class:`InsecureBaseURLWarning`) for any other host.
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
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        warnings.warn(
            f"base_url {url!r} is not https: the API key would cross the network unencrypted",
            InsecureBaseURLWarning,
            stacklevel=3,
        )
    return f"{parts.scheme}://{parts.netloc}{path}"


class InsecureBaseURLWarning(UserWarning):
    """The base URL is plain ``http`` to a host other than this machine."""


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
