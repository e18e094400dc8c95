"""Hostile and odd answers: compression bombs, deep nesting, echoed keys, odd error bodies."""

from __future__ import annotations

import gzip
import logging

import anyio
import pytest

from anyfast_async import (
    AnyFast,
    AnyFastError,
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    ResponseDecodeError,
    ServerError,
    TaskStatus,
)
from anyfast_async._decode import parse_retry_after
from anyfast_async.testing import FakeAnyFast, Fault, Stage

from .conftest import RecordingSleep, everything_shown

pytestmark = pytest.mark.anyio

SECRET = "sk-ECHOED-secret-0123456789"


async def test_gzip_bomb_is_refused(server: FakeAnyFast, sleep: RecordingSleep) -> None:
    """A small compressed body that inflates past the cap is refused while inflating."""
    server.add_task("t1")
    bomb = gzip.compress(b'{"code":"success","data":{"status":"' + b"A" * 5_000_000 + b'"}}')
    assert len(bomb) < 100_000
    server.inject(Fault.http(200, bomb, headers={"Content-Encoding": "gzip"}))
    async with AnyFast(
        server.api_key, base_url=server.base_url, max_response_bytes=1_000_000, sleep=sleep
    ) as client:
        with pytest.raises(ResponseDecodeError, match="limit"):
            await client.get_task("t1")


async def test_small_gzip_body_decodes(server: FakeAnyFast, client: AnyFast) -> None:
    """A compressed body under the cap is read normally."""
    server.add_task("t1")
    body = gzip.compress(b'{"code":"success","message":"","data":{"status":"QUEUED"}}')
    server.inject(Fault.http(200, body, headers={"Content-Encoding": "gzip"}))
    task = await client.get_task("t1")
    assert task.status is TaskStatus.QUEUED


async def test_pathological_html_does_not_stall(server: FakeAnyFast, client: AnyFast) -> None:
    """An HTML error page built to make a regex backtrack is described quickly."""
    server.add_task("t1")
    server.inject(Fault.html(502, "<" + "<title" * 200_000), times=10)
    with anyio.fail_after(10):
        with pytest.raises(ServerError, match="HTML page"):
            await client.get_task("t1")


async def test_html_title_is_named(server: FakeAnyFast, client: AnyFast) -> None:
    """The <title> of a proxy's error page is in the message."""
    server.add_task("t1")
    server.inject(Fault.html(503, "<html><title>Service Unavailable</title></html>"), times=10)
    with pytest.raises(ServerError, match="'Service Unavailable'"):
        await client.get_task("t1")


@pytest.mark.parametrize(("status", "error"), [(200, ResponseDecodeError), (502, ServerError)])
async def test_deeply_nested_json(
    server: FakeAnyFast, client: AnyFast, status: int, error: type[AnyFastError]
) -> None:
    """JSON nested thousands deep gives our error, never RecursionError."""
    server.add_task("t1")
    deep = b'{"code":"success","data":{"status":"QUEUED","data":' + b"[" * 5000 + b"]" * 5000
    server.inject(Fault.http(status, deep + b"}}"), times=10)
    with pytest.raises(error):
        await client.get_task("t1")


async def test_200_without_code_is_a_decode_error(server: FakeAnyFast, client: AnyFast) -> None:
    """A 200 that is not an envelope (another endpoint's shape) is a ResponseDecodeError."""
    server.add_task("t1")
    server.inject(Fault.http(200, {"id": "video_1", "status": "queued"}))
    with pytest.raises(ResponseDecodeError, match="no 'code'") as info:
        await client.get_task("t1")
    assert info.value.path == "$.code"


async def test_200_with_openai_error_body(server: FakeAnyFast, client: AnyFast) -> None:
    """A 200 carrying an OpenAI-style error keeps its code, message and the body's request id."""
    server.add_task("t1")
    body = {"error": {"message": "Invalid token (request id: BODYRID)", "code": "bad_key"}}
    server.inject(Fault.http(200, body, headers={"X-Oneapi-Request-Id": ""}))
    with pytest.raises(APIStatusError) as info:
        await client.get_task("t1")
    assert info.value.code == "bad_key"
    assert info.value.message == "Invalid token"
    assert info.value.request_id == "BODYRID"


async def test_string_error_body(server: FakeAnyFast, client: AnyFast) -> None:
    """{"error": "text"} gives that text."""
    server.add_task("t1")
    server.inject(Fault.http(400, {"error": "model not allowed"}))
    with pytest.raises(APIStatusError, match="model not allowed"):
        await client.get_task("t1")


async def test_odd_field_types_are_tolerated(server: FakeAnyFast, client: AnyFast) -> None:
    """Cosmetic fields of the wrong type are dropped; the task still decodes."""
    server.add_task("t1")
    body = {
        "code": "success",
        "message": None,
        "data": {
            "status": "SUCCESS",
            "task_id": 42,
            "fail_reason": {"nested": True},
            "submit_time": "yesterday",
            "finish_time": 1777343961,
            "result_url": "https://cdn.example/v.mp4",
            "progress": [1],
        },
    }
    server.inject(Fault.http(200, body))
    task = await client.get_task("t1")
    assert task.status is TaskStatus.SUCCESS
    assert task.task_id == ""
    assert task.fail_reason is None
    assert task.submitted_at is None
    assert task.finished_at is not None
    assert task.result_url == "https://cdn.example/v.mp4"
    assert task.progress is None


async def test_retry_after_on_503_is_honoured(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep
) -> None:
    """A proxy's 503 with Retry-After is waited out like a 429's."""
    server.add_task("t1")
    server.inject(Fault(status=503, body=b"", headers={"Retry-After": "7"}))
    await client.get_task("t1")
    assert sleep.calls == [7.0]
    assert server.polls("t1") == 2


async def test_oversize_error_body_is_named(server: FakeAnyFast, sleep: RecordingSleep) -> None:
    """A huge error body is refused unread and said to be too large, not empty."""
    server.add_task("t1")
    server.inject(Fault.http(500, b"x" * 2_000_000), times=10)
    async with AnyFast(
        server.api_key,
        base_url=server.base_url,
        max_response_bytes=1_000_000,
        max_retries=0,
        sleep=sleep,
    ) as client:
        with pytest.raises(ServerError, match="larger than the size limit"):
            await client.get_task("t1")


async def test_echoed_key_is_redacted(
    caplog: pytest.LogCaptureFixture, sleep: RecordingSleep
) -> None:
    """A server that repeats the key in its error bodies does not leak it through us."""
    caplog.set_level(logging.DEBUG)
    async with FakeAnyFast(api_key=SECRET) as server:
        server.add_task("t1")
        echo = {"error": {"message": f"Incorrect API key provided: {SECRET}", "code": "x"}}
        server.inject(Fault.http(503, echo))
        server.inject(Fault.http(401, echo))
        async with AnyFast(SECRET, base_url=server.base_url, sleep=sleep) as client:
            with pytest.raises(AuthenticationError) as info:
                await client.get_task("t1")
    text = everything_shown(info.value) + "\n".join(r.getMessage() for r in caplog.records)
    assert "Incorrect API key provided: [redacted]" in text
    assert SECRET not in text


async def test_invalid_http_answer_is_not_retried_nor_leaks(
    server: FakeAnyFast, sleep: RecordingSleep
) -> None:
    """An answer aiohttp cannot parse is not retried, and its chain holds no key."""
    secret = "sk-header-secret-987654321"
    async with FakeAnyFast(api_key=secret) as fake:
        fake.add_task("t1")
        fake.inject(Fault(status=None, headers={"X-Big": "a" * 20_000}), times=5)
        async with AnyFast(secret, base_url=fake.base_url, sleep=sleep) as client:
            with pytest.raises(APIConnectionError, match="invalid HTTP answer") as info:
                await client.get_task("t1")
    assert info.value.retryable is False
    assert sleep.calls == []
    assert secret not in everything_shown(info.value)


@pytest.mark.virtual_time
async def test_close_during_a_request(server: FakeAnyFast) -> None:
    """Closing the client while a request is in flight ends it with a clear error."""
    server.add_task("t1")
    server.inject(Fault.slow(5.0))
    client = AnyFast(server.api_key, base_url=server.base_url)
    async with client:
        outcome: list[BaseException] = []

        async def fetch() -> None:
            try:
                await client.get_task("t1")
            except (RuntimeError, AnyFastError) as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch)
            await anyio.sleep(0.1)
            await client.aclose()
    assert len(outcome) == 1
    assert "closed" in str(outcome[0])


async def test_key_stripped_and_sent_as_bearer() -> None:
    """Surrounding whitespace is removed from the key that is sent."""
    async with FakeAnyFast(api_key="sk-x") as server:
        server.add_task("asyntask_k")
        async with AnyFast("  sk-x\n", base_url=server.base_url) as client:
            await client.get_task("asyntask_k")
    assert server.requests[0].headers["Authorization"] == "Bearer sk-x"


async def test_key_from_environment_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """ANYFAST_API_KEY is the key sent when none is passed."""
    monkeypatch.setenv("ANYFAST_API_KEY", "sk-from-env")
    async with FakeAnyFast(api_key="sk-from-env") as server:
        server.add_task("asyntask_k")
        async with AnyFast(base_url=server.base_url) as client:
            await client.get_task("asyntask_k")
    assert server.requests[0].headers["Authorization"] == "Bearer sk-from-env"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0.25", 0.25),
        (" 5 ", 5.0),
        ("-3", None),
        ("+5", None),
        ("1_000", None),
        ("١٢", None),
        ("inf", None),
        ("", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_retry_after_forms(header: str, expected: float | None) -> None:
    """Only plain seconds or HTTP dates are understood; dates in the past mean now."""
    assert parse_retry_after(header) == expected


@pytest.mark.parametrize(
    "date",
    [
        "Thu, 26 Nov 2026 10:05:30 GMT",
        "Thursday, 26-Nov-26 10:05:30 GMT",
        "Thu Nov 26 10:05:30 2026",
        "Thu, 26 Nov 2026 10:05:30 -0000",
    ],
)
def test_retry_after_http_date_forms(date: str) -> None:
    """The three HTTP date forms are read as GMT."""
    from datetime import datetime, timezone

    now = datetime(2026, 11, 26, 10, 5, 0, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after(date, now=now) == 30.0


def test_status_prints_as_its_value() -> None:
    """str() and f-strings of a TaskStatus give the bare value on every Python."""
    assert str(TaskStatus.SUCCESS) == "SUCCESS"
    assert f"{TaskStatus.IN_PROGRESS}" == "IN_PROGRESS"
    assert f"{TaskStatus.QUEUED:>8}" == "  QUEUED"


def test_lone_surrogate_id() -> None:
    """An id that is not valid Unicode text is a ValueError, not an encoding crash."""
    from anyfast_async._requests import task_path

    with pytest.raises(ValueError, match="surrogate"):
        task_path("a\udc80b")


async def test_relative_result_url_only_single_slash(server: FakeAnyFast, client: AnyFast) -> None:
    """A protocol-relative //host URL is not taken as a path on the API host."""
    server.add_task("t1", stages=[Stage(status="SUCCESS", result_url="//evil.example/x")])
    task = await client.get_task("t1")
    assert task.result_url is None


async def test_gemini_url_fallback(server: FakeAnyFast, client: AnyFast) -> None:
    """Providers that put the video in `url` still give a result URL."""
    server.add_task(
        "t1",
        stages=[Stage(status="succeeded", extra={"url": "https://cdn.example/g.mp4"})],
    )
    task = await client.get_task("t1")
    assert task.status is TaskStatus.SUCCESS
    assert task.result_url == "https://cdn.example/g.mp4"


@pytest.mark.parametrize("name", ["timeout", "limits", "retry", "throttle"])
def test_none_for_a_configuration_value_is_a_clear_type_error(name: str) -> None:
    """timeout=None, limits=None, retry=None and throttle=None all fail the same way, at
    once, naming the argument and how to get the default (not an AttributeError later)."""
    with pytest.raises(TypeError, match=rf"^{name} must be a \w+ \(leave it out for the default\)"):
        AnyFast("sk-x", base_url="http://127.0.0.1:1", **{name: None})  # type: ignore[arg-type]
