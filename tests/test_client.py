"""AnyFast.get_task through real sockets to FakeAnyFast: decoding, errors, retries, safety."""

from __future__ import annotations

import email.utils
import logging
import socket
import time

import aiohttp
import pytest

from anyfast_async import (
    AnyFast,
    AnyFastError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Limits,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    TaskNotFoundError,
    TaskStatus,
    Timeout,
)
from anyfast_async.testing import FakeAnyFast, Fault, Stage

from .conftest import RecordingSleep, load

pytestmark = pytest.mark.anyio


def polls(server: FakeAnyFast) -> int:
    return sum(1 for r in server.requests if r.method == "GET")


# -- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["NOT_START", "SUBMITTED", "QUEUED", "IN_PROGRESS", "SUCCESS", "FAILURE", "UNKNOWN"]
)
async def test_every_status(server: FakeAnyFast, client: AnyFast, raw: str) -> None:
    """Each platform status decodes to its TaskStatus."""
    server.add_task("t1", stages=[Stage(status=raw, progress="30%")])
    task = await client.get_task("t1")
    assert task.status is TaskStatus(raw)
    assert task.raw_status == raw
    assert task.task_id == "t1"


async def test_unknown_status_is_kept(server: FakeAnyFast, client: AnyFast) -> None:
    """An unknown status maps to UNKNOWN, non-terminal, with the raw string kept."""
    server.add_task("t1", stages=[Stage(status="WARMING_UP")])
    task = await client.get_task("t1")
    assert task.status is TaskStatus.UNKNOWN
    assert not task.is_terminal
    assert task.raw_status == "WARMING_UP"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [("50%", 50), (75, 75), ("", None), (None, None), ("junk", None), ("100%", 100)],
)
async def test_progress_forms(
    server: FakeAnyFast, client: AnyFast, sent: str | int | None, expected: int | None
) -> None:
    """Progress as '50%', an int, '', missing or junk is read without error."""
    server.add_task("t1", stages=[Stage(status="IN_PROGRESS", progress=sent)])
    task = await client.get_task("t1")
    assert task.progress == expected
    assert task.raw_progress == sent


async def test_lifecycle_as_seen_by_client(server: FakeAnyFast, client: AnyFast) -> None:
    """The default lifecycle runs NOT_START to SUCCESS and the result URL appears at the end."""
    server.add_task("t1")
    seen = []
    for _ in range(10):
        task = await client.get_task("t1")
        seen.append(task.status)
        if task.is_terminal:
            break
    assert seen[0] is TaskStatus.NOT_START
    assert seen[-1] is TaskStatus.SUCCESS
    assert task.result_url is not None
    assert task.error is None


async def test_failure_is_returned_not_raised(server: FakeAnyFast, client: AnyFast) -> None:
    """A FAILURE task is an HTTP 200 answer: get_task returns it with its reason."""
    server.add_task("t1", stages=[Stage(status="FAILURE", fail_reason="moderation")])
    task = await client.get_task("t1")
    assert task.status is TaskStatus.FAILURE
    assert task.error == "moderation"
    assert task.result_url is None


@pytest.mark.parametrize(
    "name",
    [
        "query_happyhorse_success.json",
        "query_happyhorse_success_cn_mirror.json",
        "query_seedance_success.json",
        "other_endpoint_query_kling_success.json",
    ],
)
async def test_documented_examples_decode(server: FakeAnyFast, client: AnyFast, name: str) -> None:
    """Each documented query example, served as-is, decodes into a successful Task."""
    server.add_task("t1")
    server.inject(Fault.http(200, body=load(name)))
    task = await client.get_task("t1")
    assert task.status is TaskStatus.SUCCESS
    assert task.progress == 100
    assert task.error is None
    assert task.submitted_at is not None


async def test_happyhorse_example_fields(server: FakeAnyFast, client: AnyFast) -> None:
    """The HappyHorse example's URL, timestamps and usage view come through."""
    server.add_task("t1")
    server.inject(Fault.http(200, body=load("query_happyhorse_success.json")))
    task = await client.get_task("t1")
    assert task.result_url is not None
    assert task.result_url.startswith("https://dashscope-a717.oss-accelerate.aliyuncs.com/")
    assert task.request_id == "20260428023742441081000FMrSbjcs"
    assert task.finished_at is not None
    assert task.started_at is not None
    assert (task.finished_at - task.started_at).total_seconds() == 95
    assert task.dashscope is not None
    assert task.dashscope.usage is not None
    assert task.dashscope.usage.sr == 720


async def test_seedance_example_fields(server: FakeAnyFast, client: AnyFast) -> None:
    """The Seedance example: empty fail_reason on success, token usage view."""
    server.add_task("t1")
    server.inject(Fault.http(200, body=load("query_seedance_success.json")))
    task = await client.get_task("t1")
    assert task.fail_reason == ""
    assert task.original_result_url is not None
    assert task.seedance is not None
    assert task.seedance.usage is not None
    assert task.seedance.usage.super_resolution_tokens == 245025


# -- error shapes ------------------------------------------------------------------------------


async def test_unknown_task_is_task_not_found(server: FakeAnyFast, client: AnyFast) -> None:
    """The gateway's 400 task_not_exist maps to TaskNotFoundError with the request id."""
    with pytest.raises(TaskNotFoundError) as info:
        await client.get_task("asyntask_missing")
    err = info.value
    assert err.status_code == 400
    assert err.code == "task_not_exist"
    assert err.request_id
    assert err.request_id in str(err)
    assert polls(server) == 1, "a missing task is not retried"


async def test_http_404_is_task_not_found(server: FakeAnyFast, client: AnyFast) -> None:
    """A bare 404 also maps to TaskNotFoundError, without retry."""
    server.add_task("t1")
    server.inject(Fault.http(404, body={"error": {"message": "not found", "type": "x"}}))
    with pytest.raises(TaskNotFoundError):
        await client.get_task("t1")
    assert polls(server) == 1


async def test_wrong_key_is_authentication_error(
    server: FakeAnyFast, sleep: RecordingSleep
) -> None:
    """A wrong key gives a 401 OpenAI-style body: AuthenticationError, request id, no retry."""
    server.add_task("t1")
    async with AnyFast("sk-wrong-key", base_url=server.base_url, sleep=sleep) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_task("t1")
    err = info.value
    assert err.status_code == 401
    assert err.request_id
    assert "(request id:" not in err.message, "the suffix is lifted into request_id"
    assert "sk-wrong-key" not in str(err)
    assert polls(server) == 1
    assert sleep.calls == []


async def test_quota_exhausted_and_forbidden(server: FakeAnyFast, client: AnyFast) -> None:
    """An exhausted key gives 401, a restricted one 403; neither is retried."""
    server.add_task("t1")
    server.set_key_state("quota_exhausted")
    with pytest.raises(AuthenticationError):
        await client.get_task("t1")
    server.set_key_state("forbidden")
    with pytest.raises(PermissionDeniedError) as info:
        await client.get_task("t1")
    assert info.value.status_code == 403
    assert polls(server) == 2


@pytest.mark.parametrize(
    ("fault", "cls", "status", "fragment"),
    [
        (Fault.server_error(500, code="get_task_failed"), ServerError, 500, "get_task_failed"),
        (Fault.panic(), ServerError, 500, "new_api_panic"),
        (Fault.html(502, "<html><title>502 Bad Gateway</title></html>"), ServerError, 502, "Bad G"),
        (Fault.empty(503), ServerError, 503, "empty body"),
        (Fault.rate_limited(shape="html"), RateLimitError, 429, "HTML"),
        (
            Fault.http(400, body={"error": {"message": "bad", "code": "x"}}),
            BadRequestError,
            400,
            "bad",
        ),
        (Fault.envelope(code="some_error", message="nope"), APIStatusError, 200, "some_error"),
    ],
)
async def test_error_shapes(
    server: FakeAnyFast,
    client: AnyFast,
    fault: Fault,
    cls: type[APIStatusError],
    status: int,
    fragment: str,
) -> None:
    """Each error body shape (envelope, OpenAI, panic, HTML, empty) gives the right class."""
    server.add_task("t1")
    server.inject(fault, times=10)
    with pytest.raises(cls) as info:
        await client.get_task("t1")
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert fragment in str(err)
    assert err.request_id, "every gateway answer carries a request id"


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [
        (Fault.not_json(), "not valid JSON"),
        (Fault.truncated_json(), "not valid JSON"),
        (Fault.wrong_shape(), "unexpected JSON shape"),
        (Fault.html(200, "<html>hi</html>"), "HTML"),
        (Fault.empty(200), "empty body"),
    ],
)
async def test_bad_success_bodies(
    server: FakeAnyFast, client: AnyFast, fault: Fault, fragment: str
) -> None:
    """A 200 whose body is not a task record raises ResponseDecodeError, not retried."""
    server.add_task("t1")
    server.inject(fault, times=10)
    with pytest.raises(ResponseDecodeError) as info:
        await client.get_task("t1")
    assert fragment in str(info.value)
    assert info.value.request_id
    assert polls(server) == 1


async def test_decode_error_carries_json_path(server: FakeAnyFast, client: AnyFast) -> None:
    """A wrong type inside the task names the JSON path and quotes the body."""
    server.add_task("t1")
    server.inject(Fault.http(200, body={"code": "success", "message": "", "data": {"status": 7}}))
    with pytest.raises(ResponseDecodeError) as info:
        await client.get_task("t1")
    assert info.value.path == "$.data.status"
    assert '"status":7' in info.value.body


# -- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.empty(500),
        Fault.html(502, "<html>bad gateway</html>"),
        Fault.empty(503),
        Fault.empty(504),
        Fault.empty(408),
        Fault.rate_limited(),
        Fault.truncated_body(),
    ],
)
async def test_transient_errors_are_retried(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep, fault: Fault
) -> None:
    """Two transient failures, then success: the third request answers."""
    server.add_task("t1")
    server.inject(fault, times=2)
    task = await client.get_task("t1")
    assert task.status is TaskStatus.NOT_START
    assert polls(server) == 3
    assert len(sleep.calls) == 2
    assert all(0 <= s <= 1.0 for s in sleep.calls), "full jitter below the 0.5 s / 1 s caps"


async def test_dropped_connections_are_retried(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep
) -> None:
    """Connections dropped without an answer are retried until one answers.

    aiohttp itself resends a GET once when a reused connection drops, so each failure the
    client sees costs one or two drops; three drops are at least two failed attempts.
    """
    server.add_task("t1")
    await client.get_task("t1")  # a pooled connection exists now
    server.inject(Fault.drop_connection(), times=3)
    task = await client.get_task("t1")
    assert task.status is TaskStatus.QUEUED
    assert 1 <= len(sleep.calls) <= 2
    assert server.polls("t1") == 5


async def test_dropped_connections_raise_when_retries_run_out(
    server: FakeAnyFast, sleep: RecordingSleep
) -> None:
    """A server that always drops the connection gives APIConnectionError."""
    server.add_task("t1")
    server.inject(Fault.drop_connection(), times=100)
    async with AnyFast(
        server.api_key, base_url=server.base_url, max_retries=2, sleep=sleep
    ) as client:
        with pytest.raises(APIConnectionError):
            await client.get_task("t1")
    assert len(sleep.calls) == 2


@pytest.mark.parametrize(
    "fault", [Fault.http(400, body={}), Fault.empty(401), Fault.empty(403), Fault.empty(404)]
)
async def test_client_errors_are_not_retried(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep, fault: Fault
) -> None:
    """400/401/403/404 are raised after one request."""
    server.add_task("t1")
    server.inject(fault, times=5)
    with pytest.raises(APIStatusError):
        await client.get_task("t1")
    assert polls(server) == 1
    assert sleep.calls == []


async def test_retries_run_out_and_last_error_is_raised(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep
) -> None:
    """After max_retries the last error is raised as itself, with a note of the attempts."""
    server.add_task("t1")
    server.inject(Fault.empty(503), times=10)
    with pytest.raises(ServerError) as info:
        await client.get_task("t1")
    assert polls(server) == 4
    assert len(sleep.calls) == 3
    notes = getattr(info.value, "__notes__", [])
    assert any("4 attempts" in n for n in notes)


async def test_retry_after_seconds_honoured(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep
) -> None:
    """Retry-After in seconds is the wait."""
    server.add_task("t1")
    server.inject(Fault.rate_limited(retry_after="2"))
    await client.get_task("t1")
    assert sleep.calls == [2.0]


async def test_retry_after_http_date_honoured(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep
) -> None:
    """Retry-After as an HTTP date is turned into a wait."""
    server.add_task("t1")
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.inject(Fault.rate_limited(retry_after=when))
    await client.get_task("t1")
    assert len(sleep.calls) == 1
    assert 25 <= sleep.calls[0] <= 31


async def test_retry_after_capped_and_junk_ignored(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep
) -> None:
    """A huge Retry-After is capped; junk falls back to jittered backoff."""
    server.add_task("t1")
    server.inject(Fault.rate_limited(retry_after="86400"))
    server.inject(Fault.rate_limited(retry_after="soon"))
    await client.get_task("t1")
    assert sleep.calls[0] == client.retry.max_retry_after
    assert 0 <= sleep.calls[1] <= client.retry.initial_backoff * 2


async def test_rate_limit_error_carries_retry_after(
    server: FakeAnyFast, sleep: RecordingSleep
) -> None:
    """With retries off, RateLimitError exposes retry_after."""
    server.add_task("t1")
    server.inject(Fault.rate_limited(retry_after="7"))
    async with AnyFast(
        server.api_key, base_url=server.base_url, max_retries=0, sleep=sleep
    ) as client:
        with pytest.raises(RateLimitError) as info:
            await client.get_task("t1")
    assert info.value.retry_after == 7.0
    assert info.value.status_code == 429


@pytest.mark.virtual_time
async def test_timeout_raises_api_timeout(server: FakeAnyFast, sleep: RecordingSleep) -> None:
    """A server that does not answer in time gives APITimeoutError, also a TimeoutError."""
    server.add_task("t1")
    server.inject(Fault.slow(5.0))
    async with AnyFast(
        server.api_key,
        base_url=server.base_url,
        timeout=Timeout(total=0.2),
        max_retries=0,
        sleep=sleep,
    ) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.get_task("t1")
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, APIConnectionError)


async def test_connection_refused(sleep: RecordingSleep) -> None:
    """Nothing listening: APIConnectionError after the retries."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with AnyFast(
        "sk-x", base_url=f"http://127.0.0.1:{port}", max_retries=2, sleep=sleep
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.get_task("t1")
    assert not isinstance(info.value, APITimeoutError)
    assert "cannot connect" in str(info.value)
    assert len(sleep.calls) == 2


# -- safety ------------------------------------------------------------------------------------


HOSTILE_IDS = ["a/b", "../x", "..", ".", "?q=1", "#frag", "a b", "ünï", "%2F", "a;b", "x\\y"]


@pytest.mark.parametrize("task_id", HOSTILE_IDS)
async def test_hostile_ids_are_one_segment(
    server: FakeAnyFast, client: AnyFast, task_id: str
) -> None:
    """Odd characters in an id cannot change the URL: the server sees exactly that id."""
    server.add_task(task_id, stages=[Stage(status="QUEUED")])
    task = await client.get_task(task_id)
    assert task.task_id == task_id
    assert server.requests[-1].task_id == task_id
    assert server.requests[-1].path.startswith("/v1/video/generations/")


@pytest.mark.parametrize("task_id", ["", " ", "\n\t"])
async def test_empty_ids_rejected_before_sending(
    server: FakeAnyFast, client: AnyFast, task_id: str
) -> None:
    """An empty or whitespace id raises ValueError and sends nothing."""
    with pytest.raises(ValueError, match="task_id"):
        await client.get_task(task_id)
    assert server.requests == []


async def test_non_string_id_rejected(client: AnyFast) -> None:
    """A non-string id is a TypeError."""
    with pytest.raises(TypeError):
        await client.get_task(123)  # type: ignore[arg-type]


async def test_oversize_body_refused(server: FakeAnyFast, sleep: RecordingSleep) -> None:
    """A body over the cap is refused with ResponseDecodeError and not read."""
    server.add_task("t1")
    server.inject(Fault.huge(3_000_000))
    async with AnyFast(
        server.api_key, base_url=server.base_url, max_response_bytes=1_000_000, sleep=sleep
    ) as client:
        with pytest.raises(ResponseDecodeError, match="1000000-byte limit"):
            await client.get_task("t1")


async def test_oversize_chunked_body_refused(server: FakeAnyFast, sleep: RecordingSleep) -> None:
    """A streamed body without Content-Length is cut off once it passes the cap."""
    server.add_task("t1")
    server.inject(Fault.huge(3_000_000, chunked=True))
    async with AnyFast(
        server.api_key, base_url=server.base_url, max_response_bytes=1_000_000, sleep=sleep
    ) as client:
        with pytest.raises(ResponseDecodeError, match="1000000-byte limit"):
            await client.get_task("t1")


async def test_chunked_body_under_the_cap_is_read(server: FakeAnyFast, client: AnyFast) -> None:
    """A streamed body under the cap decodes normally."""
    server.add_task("t1")
    server.inject(Fault(status=None, chunked=True))
    task = await client.get_task("t1")
    assert task.status is TaskStatus.NOT_START


async def test_redirects_not_followed(server: FakeAnyFast, client: AnyFast) -> None:
    """A redirect is an error: the key is never carried to another origin."""
    async with FakeAnyFast() as other:
        other.add_task("t1")
        server.add_task("t1")
        server.inject(Fault(status=302, body=b"", headers={"Location": other.url_for("t1")}))
        with pytest.raises(APIStatusError) as info:
            await client.get_task("t1")
        assert info.value.status_code == 302
        assert other.requests == []


async def test_headers_sent(server: FakeAnyFast, sleep: RecordingSleep) -> None:
    """Bearer auth and a User-Agent naming the SDK, with the caller's suffix."""
    server.add_task("t1")
    async with AnyFast(
        server.api_key, base_url=server.base_url, user_agent_suffix="myapp/2.0", sleep=sleep
    ) as client:
        await client.get_task("t1")
    headers = server.requests[-1].headers
    assert headers["Authorization"] == f"Bearer {server.api_key}"
    assert headers["User-Agent"].startswith("anyfast-async/")
    assert headers["User-Agent"].endswith(" myapp/2.0")


SECRET = "sk-SECRET-do-not-leak-1234567890"


async def test_key_never_in_logs_reprs_or_errors(
    caplog: pytest.LogCaptureFixture, sleep: RecordingSleep
) -> None:
    """Run success and error paths with DEBUG logging: the key appears nowhere."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with FakeAnyFast(api_key=SECRET) as server:
        server.add_task("t1")
        client = AnyFast(SECRET, base_url=server.base_url, sleep=sleep)
        texts.append(repr(client))
        async with client:
            texts.append(repr(client))
            texts.append(repr(vars(client)))
            await client.get_task("t1")
            for fault in (Fault.empty(503), Fault.rate_limited(), Fault.drop_connection()):
                server.inject(fault, times=2)
                await client.get_task("t1")
            for fault in (Fault.empty(401), Fault.not_json(), Fault.panic()):
                server.clear_faults()
                server.inject(fault, times=5)
                with pytest.raises(AnyFastError) as info:
                    await client.get_task("t1")
                texts += [str(info.value), repr(info.value), repr(vars(info.value))]
            server.clear_faults()
            with pytest.raises(TaskNotFoundError) as info2:
                await client.get_task("missing")
            texts += [str(info2.value), repr(info2.value)]
        texts.append(repr(client))
    texts += [record.getMessage() for record in caplog.records]
    assert any("GET /v1/video/generations/t1" in t for t in texts), "DEBUG log lines exist"
    assert any("attempt 2" in t for t in texts)
    leaked = [t for t in texts if SECRET in t]
    assert leaked == []


async def test_debug_log_line(
    server: FakeAnyFast, client: AnyFast, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG logging records method, path, status, attempt and elapsed time."""
    caplog.set_level(logging.DEBUG, logger="anyfast_async")
    server.add_task("t1")
    await client.get_task("t1")
    lines = [r.getMessage() for r in caplog.records if r.name == "anyfast_async"]
    assert any(
        "GET /v1/video/generations/t1 -> 200 attempt 1 in " in line and " ms" in line
        for line in lines
    )


# -- lifecycle & configuration -----------------------------------------------------------------


async def test_use_before_open_and_after_close(server: FakeAnyFast) -> None:
    """Using the client outside `async with` is a clear RuntimeError."""
    server.add_task("t1")
    client = AnyFast(server.api_key, base_url=server.base_url)
    with pytest.raises(RuntimeError, match="not open"):
        await client.get_task("t1")
    async with client:
        await client.get_task("t1")
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_task("t1")
    with pytest.raises(RuntimeError, match="closed"):
        await client.__aenter__()
    await client.aclose()  # idempotent


async def test_double_enter_refused(server: FakeAnyFast) -> None:
    """Entering an open client again is an error."""
    async with AnyFast(server.api_key, base_url=server.base_url) as client:
        with pytest.raises(RuntimeError, match="already open"):
            await client.__aenter__()


async def test_injected_session_is_used_and_left_open(server: FakeAnyFast) -> None:
    """An injected aiohttp session serves the requests and is not closed by the client."""
    server.add_task("t1")
    async with aiohttp.ClientSession() as session:
        async with AnyFast(server.api_key, base_url=server.base_url, session=session) as client:
            task = await client.get_task("t1")
        assert task.status is TaskStatus.NOT_START
        assert not session.closed


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """ANYFAST_API_KEY and ANYFAST_BASE_URL are the fallbacks."""
    monkeypatch.setenv("ANYFAST_API_KEY", "sk-env")
    monkeypatch.setenv("ANYFAST_BASE_URL", "https://www.anyfast.com.cn/")
    client = AnyFast()
    assert client.base_url == "https://www.anyfast.com.cn"


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ANYFAST_BASE_URL the international host is used."""
    monkeypatch.delenv("ANYFAST_BASE_URL", raising=False)
    assert AnyFast("sk-x").base_url == "https://www.anyfast.ai"


def test_missing_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key anywhere: a ValueError naming ANYFAST_API_KEY."""
    monkeypatch.delenv("ANYFAST_API_KEY", raising=False)
    with pytest.raises(ValueError, match="ANYFAST_API_KEY"):
        AnyFast()


@pytest.mark.parametrize("key", ["", "   ", "sk-a\nX-Evil: 1", "sk a", "sk-\x00"])
def test_bad_keys_rejected_without_echo(key: str) -> None:
    """Empty keys and keys with whitespace or control characters inside are refused."""
    with pytest.raises(ValueError, match="API key") as info:
        AnyFast(key)
    if key.strip():
        assert key.strip() not in str(info.value)


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://www.anyfast.ai/", "https://www.anyfast.ai"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://proxy.example/anyfast/", "https://proxy.example/anyfast"),
    ],
)
def test_base_url_normalised(url: str, normalised: str) -> None:
    """Trailing slashes are removed; a path prefix is kept."""
    assert AnyFast("sk-x", base_url=url).base_url == normalised


@pytest.mark.parametrize(
    "url",
    [
        "www.anyfast.ai",
        "ftp://www.anyfast.ai",
        "https://",
        "https://www.anyfast.ai/v1",
        "https://user:pw@www.anyfast.ai",
        "https://www.anyfast.ai?x=1",
        "http://host:99999",
    ],
)
def test_bad_base_urls_rejected(url: str) -> None:
    """A base URL without scheme or host, ending in /v1, with credentials or a query is refused."""
    with pytest.raises(ValueError, match="base_url"):
        AnyFast("sk-x", base_url=url)


def test_bad_user_agent_suffix() -> None:
    """A User-Agent suffix with a line break is refused."""
    with pytest.raises(ValueError, match="user_agent_suffix"):
        AnyFast("sk-x", user_agent_suffix="a\r\nX: y")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Timeout(total=0),
        lambda: Timeout(connect=-1),
        lambda: RetryPolicy(max_retries=-1),
        lambda: RetryPolicy(initial_backoff=-1),
        lambda: Limits(max_connections=0),
        lambda: Limits(keepalive_expiry=0),
    ],
)
def test_bad_config_values(make: object) -> None:
    """Config values are validated when built."""
    with pytest.raises(ValueError, match="must be"):
        make()  # type: ignore[operator]


async def test_with_options_changes_retries_for_its_calls_only(server: FakeAnyFast) -> None:
    """with_options(max_retries=0) raises a 429 at once, while the client it came from still
    retries it; both share one pool and one lifecycle."""
    server.add_task("t1")
    sleep = RecordingSleep()
    async with AnyFast(server.api_key, base_url=server.base_url, sleep=sleep) as client:
        quick = client.with_options(max_retries=0)
        assert quick.retry.max_retries == 0
        assert client.retry.max_retries == 3
        server.inject(Fault.rate_limited(retry_after="30"))
        with pytest.raises(RateLimitError):
            await quick.get_task("t1")
        server.inject(Fault.rate_limited(retry_after="30"))
        assert (await client.get_task("t1")).task_id == "t1"
        assert sleep.calls == [30.0]
        capped = client.with_options(max_retry_after=0.5)
        server.inject(Fault.rate_limited(retry_after="30"))
        await capped.get_task("t1")
        assert sleep.calls[-1] <= 0.5
        with pytest.raises(RuntimeError, match="opens and closes with the client"):
            await quick.__aenter__()
        await quick.aclose()  # does not close the client it came from
        assert not client.is_closed
        await client.get_task("t1")
    assert quick.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        await quick.get_task("t1")


@pytest.mark.virtual_time
async def test_with_options_timeout_says_whether_the_request_was_sent(
    server: FakeAnyFast,
) -> None:
    """A per-call timeout ends a slow create with APITimeoutError carrying sent=True (the
    task may exist), which a deadline around the call could not say."""
    server.inject(Fault.slow(5.0))
    async with AnyFast(server.api_key, base_url=server.base_url) as client:
        # Chained: the second call keeps the first one's timeout.
        quick = client.with_options(timeout=Timeout(connect=2, total=0.2)).with_options(
            max_retries=0
        )
        with pytest.raises(APITimeoutError) as info:
            await quick.create_text_to_video("x")
    assert info.value.sent is True
    assert "may or may not have been created" in str(info.value)


def test_with_options_checks_its_arguments() -> None:
    """with_options refuses a None or a wrong type the way the constructor does."""
    client = AnyFast("sk-x", base_url="http://127.0.0.1:1")
    with pytest.raises(TypeError, match="timeout must be a Timeout"):
        client.with_options(timeout=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_retries"):
        client.with_options(max_retries=-1)
