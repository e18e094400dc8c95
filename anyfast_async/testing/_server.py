"""The fake gateway itself: :class:`FakeAnyFast`, its router and its answers."""

from __future__ import annotations

import asyncio
import collections
import time
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote

import msgspec
from aiohttp import web

from ._create_check import check_create_body
from ._faults import Fault, FaultQueue, deliver
from ._files import ResultFile, serve_file, signed_url
from ._lifecycle import DEFAULT_RESULT_URL, FakeTask, Plan, Stage, early_stages, serve_task
from ._providers import failure, upstream_error
from ._wire import (
    CREATE_PATH,
    ERROR_CT,
    FILES_PREFIX,
    JSON_CT,
    QUERY_PREFIX,
    auth_error,
    drop_connection,
    envelope_error,
    fake_video,
    go_json,
    invalid_url_error,
    make_response,
    new_request_id,
    openai_error,
    random_task_ids,
    rate_limit_error,
)

KeyState = Literal["ok", "quota_exhausted", "forbidden"]


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


class LoopClock:
    """The running event loop's clock. Read with no loop running, it is :func:`time.monotonic`,
    and once :meth:`bind` is called in the loop the loop's clock continues from there."""

    __slots__ = ("offset", "outside")

    def __init__(self) -> None:
        self.offset = 0.0
        self.outside = False  # read with no loop running since the last bind()

    def __call__(self) -> float:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.outside = True
            return time.monotonic() - self.offset
        return loop.time() + self.offset

    def bind(self, keep_readings: bool) -> None:
        """In the loop: go on from readings made outside it (``keep_readings``), else start
        afresh on the loop's clock."""
        if self.outside:
            self.outside = False
            now = asyncio.get_running_loop().time()
            self.offset = time.monotonic() - self.offset - now if keep_readings else 0.0


class FakeAnyFast:
    """A fake AnyFast gateway on loopback: ``GET /v1/video/generations/{task_id}`` and the
    create call ``POST /v1/video/generations``.

    Use it as ``async with FakeAnyFast() as server:`` (or :meth:`start` / :meth:`close`).

    Args:
        api_key: the only key accepted, sent as ``Authorization: Bearer <api_key>``.
        advance: ``"poll"``: each answered GET consumes one poll of the current stage;
            ``"time"``: stages last :attr:`Stage.seconds` from the task's creation on ``clock``
            (a task keeps the mode that was current when it was added).
        clock: monotonic clock in seconds; it also stamps :attr:`RecordedRequest.time` and
            the ``start_time`` / ``finish_time`` fields. ``None`` (the default): the running
            event loop's clock, so that on a
            :class:`~anyfast_async.testing.VirtualTimeLoop` lifecycles run on virtual time.
        latency: seconds added before every answer (lets concurrency build up).
        host: the address to listen on (a loopback address: it serves anyone who can reach
            it, with no TLS).
        port: the port to listen on; 0 for an ephemeral one (:attr:`port` then tells which).
        max_requests: keep only the latest this many :attr:`requests` (for a server that runs
            for long, as a local stand-in for AnyFast); ``None`` keeps every one.
        rate_limit: answer queries and creates beyond this many per second (over the last
            second) with HTTP 429 and a ``Retry-After``, as a rate-limited gateway does.
        serve_results: a task that succeeds with the default result URL gets the URL of a
            small video file served by this server instead, so downloads work with no other
            setup.

    Order of checks for each request: latency; the rate limit (queries and creates only);
    routing (``POST /v1/video/generations`` is a create call, ``GET /files/...`` a result file
    of :meth:`add_file`, ``GET`` of a query path a task query; anything else, such as another
    method, a path outside the query prefix, an empty id or one containing a raw ``/``, gets
    404, never authenticated and never faulted); then queued faults (:meth:`inject`, FIFO) and
    random faults (:meth:`inject_rate`); then auth (401/403); then the task lookup (400
    ``task_not_exist``) or the create body's validation (400).
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        advance: Literal["poll", "time"] = "poll",
        clock: Callable[[], float] | None = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        max_requests: int | None = None,
        rate_limit: float | None = None,
        serve_results: bool = False,
    ) -> None:
        if advance not in ("poll", "time"):
            raise ValueError("advance must be 'poll' or 'time'")
        if latency < 0:
            raise ValueError("latency must be >= 0")
        if max_requests is not None and max_requests < 1:
            raise ValueError("max_requests must be >= 1 or None")
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError("rate_limit must be > 0 or None")
        self.host = host
        """The address it listens on."""
        self.port = port
        """The port it listens on (0 until started with the default: an ephemeral port)."""
        self.max_requests = max_requests
        """Most requests :attr:`requests` keeps (the latest), or ``None`` for all."""
        self.rate_limit = rate_limit
        """Requests per second answered before the rest get 429, or ``None``."""
        self.serve_results = serve_results
        """Whether the default result URL is replaced by a file this server serves."""
        self._arrivals: collections.deque[float] = collections.deque()
        self.api_key = api_key
        """The accepted API key."""
        self.advance = advance
        self.latency = latency
        self._loop_clock: LoopClock | None = None
        if clock is None:
            clock = self._loop_clock = LoopClock()
        self._clock = clock
        self._wall0 = time.time()
        self._clock0 = self._clock()
        self._tasks: dict[str, FakeTask] = {}
        self._requests: list[RecordedRequest] = []
        self._polls: dict[str, int] = {}
        self._in_flight = 0
        self._max_in_flight = 0
        self._key_state: KeyState = "ok"
        self._faults = FaultQueue()
        self._sleepers: set[asyncio.Future[bool]] = set()
        self._closing = False
        self._runner: web.ServerRunner | None = None
        self._base_url: str | None = None
        self.create_stages: Sequence[Stage] | Callable[[dict[str, Any]], Sequence[Stage]] | None
        self.create_stages = None
        """Stages of tasks made by create calls: a list, a function of the request body
        returning one, or ``None`` for :meth:`default_success_stages`."""
        self._files: dict[str, ResultFile] = {}
        self.faults_served = 0
        """How many answers were faults (queued or random), since start."""
        self.created: list[FakeTask] = []
        """The tasks made by create calls, in order."""
        self.max_reference_images = 9
        """The most reference images a reference-to-video body may hold (the upstream
        model's limit; AnyFast documents 3)."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening on :attr:`host` and :attr:`port` (127.0.0.1 and an ephemeral port
        by default)."""
        if self._runner is not None:
            raise RuntimeError("FakeAnyFast is already started")
        self._closing = False
        if self._loop_clock is not None and self._loop_clock.outside:
            # Made outside the loop: go on on the loop's clock, virtual or not, from the
            # readings made so far (the tasks' creation times), if any.
            kept = bool(self._tasks or self._requests)
            self._loop_clock.bind(keep_readings=kept)
            if not kept:
                self._wall0, self._clock0 = time.time(), self._clock()
        runner = web.ServerRunner(web.Server(self._handle, access_log=None), shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._base_url = f"http://{host}:{self.port}"

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
        """``http://HOST:PORT`` (no trailing slash); only while started."""
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
        bytes_per_second: float | None = None,
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
            bytes_per_second: Send the body no faster than this (in pieces of a tenth of a
                second), so that a download can be interrupted midway.
        """
        if bytes_per_second is not None and not bytes_per_second > 0:
            raise ValueError("bytes_per_second must be > 0 or None")
        self._files[name] = ResultFile(
            content, expired, drop_after, wrong_length, redirect_to, bytes_per_second
        )
        return signed_url(self.base_url, name)

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
        return [*early_stages(polls, seconds, 4), done]

    @staticmethod
    def failure_stages(
        reason: str | None = None,
        *,
        kind: str | None = None,
        provider: str = "dashscope",
        polls: int = 1,
        seconds: float = 0.0,
    ) -> list[Stage]:
        """NOT_START 0% -> QUEUED 20% -> IN_PROGRESS 50% -> FAILURE 100% with ``fail_reason``.

        Args:
            reason: The ``fail_reason`` of the last stage (default ``"content moderation"``,
                or the one ``kind`` gives).
            kind: A failure as a provider really reports it: ``"content_policy"``,
                ``"invalid_input"``, ``"upstream_error"``, ``"quota"``, ``"timed_out"`` (the
                gateway's 24-hour limit) or ``"unknown"`` (a ``FailureKind`` value). The last
                stage then carries the provider's documented code and message in ``data``
                and the ``fail_reason`` the gateway makes of them.
            provider: Whose failure: ``"dashscope"`` (HappyHorse, Wan), ``"seedance"``
                (Volcengine Ark) or ``"kling"``.
            polls: How many answers each stage but the last lasts (``advance="poll"``).
            seconds: How long each stage but the last lasts (``advance="time"``).

        Raises:
            ValueError: an unknown ``kind`` or ``provider``.
        """
        extra = None
        if kind is not None:
            made, data = failure(provider, str(getattr(kind, "value", kind)))
            reason = made if reason is None else reason
            extra = {"data": data}
        failed = Stage(
            status="FAILURE",
            progress="100%",
            fail_reason="content moderation" if reason is None else reason,
            extra=extra,
        )
        return [*early_stages(polls, seconds, 3), failed]

    @staticmethod
    def upstream_error_stages(
        provider: str = "dashscope",
        *,
        code: str | None = None,
        message: str | None = None,
        then: Literal["clears", "persists", "times_out"] = "clears",
        polls: int = 1,
        seconds: float = 0.0,
        error_polls: int = 3,
        error_seconds: float = 0.0,
        result_url: str = DEFAULT_RESULT_URL,
    ) -> list[Stage]:
        """A task whose provider answers the gateway's poll with an error while it waits: the
        gateway keeps it QUEUED at 20 % with the provider's error object as ``data``.

        NOT_START 0% -> QUEUED 20% with the error (``error_polls`` answers or
        ``error_seconds``), then, by ``then``: ``"clears"``, QUEUED without it ->
        IN_PROGRESS 50% -> SUCCESS; ``"persists"``, the error for ever; ``"times_out"``,
        FAILURE with the gateway's 24-hour reason.

        Args:
            provider: ``"dashscope"`` (``{"code", "message", "request_id"}``), ``"seedance"``
                (``{"error": {...}}``) or ``"kling"`` (a non-zero ``code``).
            code: The provider's code (default: a revoked key for DashScope and Seedance, a
                maintenance for Kling).
            message: The provider's message (default: the one it documents for ``code``).
            then: What follows the error.
            polls: How many answers each other stage lasts (``advance="poll"``).
            seconds: How long each other stage lasts (``advance="time"``).
            error_polls: How many answers the error lasts (``advance="poll"``).
            error_seconds: How long the error lasts (``advance="time"``).
            result_url: The video of a task whose error clears.

        Raises:
            ValueError: an unknown ``provider`` or ``then``.
        """
        data = upstream_error(provider, code, message)
        erring = Stage(
            status="QUEUED",
            progress="20%",
            polls=error_polls,
            seconds=error_seconds,
            fail_reason="",
            extra={"data": data},
        )
        start = Stage(status="NOT_START", progress="0%", polls=polls, seconds=seconds)
        if then == "persists":
            return [start, erring]
        if then == "times_out":
            reason, _ = failure(provider, "timed_out")
            ended = Stage(
                status="FAILURE", progress="100%", fail_reason=reason, extra={"data": data}
            )
            return [start, erring, ended]
        if then != "clears":
            raise ValueError(f"then must be 'clears', 'persists' or 'times_out', got {then!r}")
        queued, running = early_stages(polls, seconds, 3)[1:]
        done = Stage(
            status="SUCCESS", progress="100%", fail_reason=result_url, result_url=result_url
        )
        return [start, erring, queued, running, done]

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
        return self._add([task_id or random_task_ids(1)[0]], stages)[0]

    def add_tasks(self, n: int, stages: Sequence[Stage] | None = None) -> list[FakeTask]:
        """Add ``n`` tasks with random ids sharing the same stages (fast: 100,000 in ~0.1 s)."""
        return self._add(random_task_ids(n), stages)

    def _add(self, ids: Iterable[str], stages: Sequence[Stage] | None) -> list[FakeTask]:
        plan = Plan(
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
        self._faults.add(fault, times, task_id)

    def inject_rate(
        self, fault: Fault, probability: float, *, seed: int | str | None = None
    ) -> None:
        """Answer each query with ``fault`` with the given probability (reproducible with ``seed``).

        Consulted when no queued fault applies; several rules are tried in the order added.
        """
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        self._faults.add_rate(fault, probability, seed)

    def clear_faults(self) -> None:
        """Remove every queued fault and random-fault rule."""
        self._faults.clear()

    def set_key_state(self, state: KeyState) -> None:
        """How the server treats the right key from now on.

        Args:
            state: ``"ok"``; ``"quota_exhausted"`` (401 with a quota message, as the gateway
                answers a key whose quota ran out) or ``"forbidden"`` (403).
        """
        if state not in ("ok", "quota_exhausted", "forbidden"):
            raise ValueError(f"unknown key state {state!r}")
        self._key_state = state

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
                return drop_connection(request)
            limited = self._over_rate(arrived) if (creating or task_id is not None) else None
            if limited is not None:
                status = 429
                return make_response(
                    429, rid, ERROR_CT, rate_limit_error(), {"Retry-After": limited}
                )
            if request.method == "GET" and path.startswith(FILES_PREFIX):
                fault = self._faults.take(None)
                if fault is not None and not fault.answers_normally:
                    resp, status = await self._faulted(request, None, rid, fault)
                    return resp
                name = unquote(path[len(FILES_PREFIX) :])
                resp, status = await serve_file(request, self._files.get(name), self._sleep)
                return resp
            if creating:
                fault = self._faults.take(None)
                if fault is None:
                    status, ctype, body = self._create_answer(request, sent, rid)
                    return make_response(status, rid, ctype, body)
                resp, status = await self._faulted(request, None, rid, fault)
                return resp
            if task_id is None:
                status = 404
                return make_response(404, rid, ERROR_CT, invalid_url_error(request.method, path))
            fault = self._faults.take(task_id)
            if fault is None:
                status, ctype, body = self._answer(request, task_id, rid, advance=True)
                return make_response(status, rid, ctype, body)
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
            if self.max_requests is not None and len(self._requests) > 2 * self.max_requests:
                del self._requests[: -self.max_requests]  # trimmed in batches: cheap

    async def _faulted(
        self, request: web.BaseRequest, task_id: str | None, rid: str, fault: Fault
    ) -> tuple[web.StreamResponse, int]:
        self.faults_served += 1
        if await self._sleep(fault.delay) or fault.drop:
            return drop_connection(request), 0
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
        resp = await deliver(fault, request, rid, (status, ctype, body), self._sleep)
        return resp, status

    def _refused(self, request: web.BaseRequest, rid: str) -> tuple[int, str, bytes] | None:
        """The 401/403 answer when the key is missing, wrong, exhausted or forbidden."""
        auth = request.headers.get("Authorization", "")
        if not auth:
            return auth_error(401, "No token provided", rid)
        if auth != f"Bearer {self.api_key}":
            return auth_error(401, "Invalid token", rid)
        if self._key_state == "quota_exhausted":
            return auth_error(401, "The token quota has been exhausted", rid)
        if self._key_state == "forbidden":
            return auth_error(403, "This token is not allowed to access this resource", rid)
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
            error = openai_error(
                f"{problem} (request id: {rid})", "invalid_request_error", "invalid_parameter"
            )
            return 400, ERROR_CT, go_json(error)
        assert isinstance(doc, dict)
        model = doc["model"]
        stages = self.create_stages
        if callable(stages):
            stages = stages(doc)
        task = self._add(random_task_ids(1), stages)[0]
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
            return 400, ERROR_CT, go_json(envelope_error("task_not_exist", "task_not_exist"))
        data = serve_task(task, self._unix_now(), advance)
        if self.serve_results and data.get("result_url") == DEFAULT_RESULT_URL:
            self._serve_result(task_id, data)
        return 200, JSON_CT, go_json({"code": "success", "message": "", "data": data})

    def _serve_result(self, task_id: str, data: dict[str, Any]) -> None:
        """Point ``data``'s result URLs at a file this server serves, made on first use."""
        name = f"{task_id}.mp4"
        if name not in self._files:
            self._files[name] = ResultFile(fake_video(task_id), False, None, False)
        url = signed_url(self.base_url, name)
        data["result_url"] = url
        if data.get("fail_reason") == DEFAULT_RESULT_URL:
            data["fail_reason"] = url
        upstream = data.get("data")
        output = upstream.get("output") if isinstance(upstream, dict) else None
        if isinstance(output, dict) and "video_url" in output:
            output["video_url"] = url

    def _over_rate(self, now: float) -> str | None:
        """The ``Retry-After`` for a request over :attr:`rate_limit` per second, else None."""
        if self.rate_limit is None:
            return None
        arrivals = self._arrivals
        while arrivals and arrivals[0] <= now - 1.0:
            arrivals.popleft()
        if len(arrivals) < self.rate_limit:
            arrivals.append(now)
            return None
        wait = max(arrivals[0] + 1.0 - now, 0.001)
        return f"{wait:.3f}"


def _resolve(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)
