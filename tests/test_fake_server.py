"""Tests of the fake AnyFast server (anyfast_async.testing), driven by a plain aiohttp client."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl

from anyfast_async.testing import FakeAnyFast, FakeTask, Fault, RecordedRequest, Stage

from .conftest import now

pytestmark = pytest.mark.anyio

DATA = Path(__file__).parent / "data"
AUTH = {"Authorization": "Bearer test-key"}
REQUEST_ID = re.compile(r"^\d{23}[A-Za-z]{8}$")


@pytest.fixture
async def server() -> AsyncIterator[FakeAnyFast]:
    async with FakeAnyFast(api_key="test-key") as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as sess:
        yield sess


class Answer:
    """What the client saw: status, headers and raw body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


async def get(
    session: aiohttp.ClientSession,
    url: str | yarl.URL,
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> Answer:
    async with session.request(method, url, headers=AUTH if headers is None else headers) as r:
        return Answer(r.status, dict(r.headers), await r.read())


async def poll(session: aiohttp.ClientSession, server: FakeAnyFast, task: FakeTask) -> Answer:
    return await get(session, server.url_for(task.task_id))


async def statuses(
    session: aiohttp.ClientSession, server: FakeAnyFast, task: FakeTask, n: int
) -> list[str]:
    return [(await poll(session, server, task)).json()["data"]["status"] for _ in range(n)]


# -- lifecycle ------------------------------------------------------------------------------


async def test_default_lifecycle_per_poll(
    server: FakeAnyFast, session: aiohttp.ClientSession
) -> None:
    """Each poll shows the next default stage, timestamps fill in, and SUCCESS repeats forever."""
    task = server.add_task("asyntask_lifecycle")
    answers = [await poll(session, server, task) for _ in range(7)]
    datas = [a.json()["data"] for a in answers]
    assert [d["status"] for d in datas] == [
        "NOT_START",
        "QUEUED",
        "IN_PROGRESS",
        "IN_PROGRESS",
        "SUCCESS",
        "SUCCESS",
        "SUCCESS",
    ]
    assert [d["progress"] for d in datas[:5]] == ["0%", "20%", "50%", "75%", "100%"]
    assert all(a.status == 200 and a.headers["Content-Type"] == "application/json" for a in answers)
    assert all(REQUEST_ID.match(a.headers["X-Oneapi-Request-Id"]) for a in answers)
    assert len({a.headers["X-Oneapi-Request-Id"] for a in answers}) == 7
    first, running, done = datas[0], datas[2], datas[4]
    assert first["data"] is None
    assert "result_url" not in first
    assert first["start_time"] == 0
    assert first["finish_time"] == 0
    assert abs(first["submit_time"] - time.time()) < 5
    assert running["start_time"] >= first["submit_time"]
    assert running["finish_time"] == 0
    assert done["finish_time"] >= running["start_time"] > 0
    assert done["result_url"] == done["fail_reason"] == done["data"]["output"]["video_url"]
    assert done["data"]["output"]["task_status"] == "SUCCEEDED"
    assert len({d["request_id"] for d in datas}) == 1
    assert server.polls("asyntask_lifecycle") == 7
    assert task.status == "SUCCESS"


async def test_success_body_has_documented_shape(
    server: FakeAnyFast, session: aiohttp.ClientSession
) -> None:
    """The SUCCESS body has the keys of the documented example, at every level."""
    doc = json.loads((DATA / "query_happyhorse_success.json").read_text())
    task = server.add_task()
    body = (await poll(session, server, task)).json()
    while body["data"]["status"] != "SUCCESS":
        body = (await poll(session, server, task)).json()
    assert body.keys() == doc.keys()
    assert body["code"] == "success"
    assert body["message"] == ""
    assert body["data"].keys() == doc["data"].keys()
    assert body["data"]["data"].keys() == doc["data"]["data"].keys()
    assert body["data"]["data"]["output"].keys() == doc["data"]["data"]["output"].keys()
    assert body["data"]["data"]["usage"] == doc["data"]["data"]["usage"]
    assert body["data"]["task_id"] == task.task_id
    assert re.fullmatch(r"asyntask_[A-Za-z0-9]{32}", task.task_id)


async def test_failure_stages(server: FakeAnyFast, session: aiohttp.ClientSession) -> None:
    """failure_stages() ends in FAILURE with the reason and no result_url."""
    task = server.add_task(stages=FakeAnyFast.failure_stages("content moderation"))
    seen = await statuses(session, server, task, 5)
    assert seen == ["NOT_START", "QUEUED", "IN_PROGRESS", "FAILURE", "FAILURE"]
    data = (await poll(session, server, task)).json()["data"]
    assert data["fail_reason"] == "content moderation"
    assert "result_url" not in data
    assert data["finish_time"] > 0
    assert data["data"]["output"]["task_status"] == "FAILED"


async def test_custom_stages_polls_progress_and_extra(
    server: FakeAnyFast, session: aiohttp.ClientSession
) -> None:
    """Stage.polls, skipped stages, raw progress values, unknown statuses and extra keys apply."""
    stages = [
        Stage(status="SUBMITTED", polls=2),
        Stage(status="SKIPPED", polls=0),
        Stage(status="WEIRD", progress=42, extra={"data": {"error": "upstream"}, "start_time": 7}),
        Stage(status="SUCCESS", progress="100%", result_url="https://x/y?a=1&b=2"),
    ]
    task = server.add_task("t", stages=stages)
    datas = [(await poll(session, server, task)).json()["data"] for _ in range(4)]
    assert [d["status"] for d in datas] == ["SUBMITTED", "SUBMITTED", "WEIRD", "SUCCESS"]
    assert "progress" not in datas[0]
    assert "fail_reason" not in datas[0]
    assert datas[2]["progress"] == 42
    assert datas[2]["data"] == {"error": "upstream"}
    assert datas[2]["start_time"] == 7
    assert datas[3]["start_time"] == 0
    assert datas[3]["result_url"] == "https://x/y?a=1&b=2"
    assert "fail_reason" not in datas[3]


async def test_time_based_advance_with_fake_clock(session: aiohttp.ClientSession) -> None:
    """With advance="time", stages last Stage.seconds on the injected clock, not per poll."""
    now = [1000.0]
    stages = FakeAnyFast.default_success_stages(seconds=10.0)
    async with FakeAnyFast(advance="time", clock=lambda: now[0]) as server:
        task = server.add_task("timed", stages=stages)
        assert await statuses(session, server, task, 3) == ["NOT_START"] * 3
        for offset, expected in [(9.9, "NOT_START"), (10.0, "QUEUED"), (25, "IN_PROGRESS")]:
            now[0] = 1000.0 + offset
            assert await statuses(session, server, task, 1) == [expected]
        now[0] = 1000.0 + 35
        data = (await poll(session, server, task)).json()["data"]
        assert data["status"] == "IN_PROGRESS"
        assert data["progress"] == "75%"
        now[0] = 1000.0 + 40
        data = (await poll(session, server, task)).json()["data"]
        assert data["status"] == "SUCCESS"
        assert data["finish_time"] - data["submit_time"] == 40
        assert data["start_time"] - data["submit_time"] == 25
        assert server.requests[-1].time == 1040.0


# -- auth, routing, errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "No token provided"),
        ({"Authorization": "Bearer wrong"}, "Invalid token"),
        ({"Authorization": "test-key"}, "Invalid token"),
    ],
)
async def test_auth_errors(
    server: FakeAnyFast, session: aiohttp.ClientSession, headers: dict[str, str], message: str
) -> None:
    """Missing or wrong keys give 401 in the OpenAI shape, ending with the header's request id."""
    task = server.add_task()
    answer = await get(session, server.url_for(task.task_id), headers=headers)
    rid = answer.headers["X-Oneapi-Request-Id"]
    assert answer.status == 401
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.json() == {
        "error": {"code": "", "message": f"{message} (request id: {rid})", "type": "new_api_error"}
    }
    assert answer.body.startswith(b'{"error":{"code":"","message":')
    assert task.status == "NOT_START"


@pytest.mark.parametrize(("state", "status"), [("quota_exhausted", 401), ("forbidden", 403)])
async def test_key_states(
    server: FakeAnyFast, session: aiohttp.ClientSession, state: Any, status: int
) -> None:
    """set_key_state() turns a valid key into 401 (quota) or 403 (forbidden), and back."""
    task = server.add_task()
    server.set_key_state(state)
    answer = await poll(session, server, task)
    assert answer.status == status
    assert answer.json()["error"]["type"] == "new_api_error"
    assert answer.json()["error"]["message"].endswith(
        f"(request id: {answer.headers['X-Oneapi-Request-Id']})"
    )
    server.set_key_state("ok")
    assert (await poll(session, server, task)).json()["data"]["status"] == "NOT_START"


async def test_unknown_task_is_400_task_not_exist(
    server: FakeAnyFast, session: aiohttp.ClientSession
) -> None:
    """An unknown (or removed) id gives HTTP 400 with the task_not_exist envelope."""
    server.add_task("gone")
    server.remove_task("gone")
    for tid in ["asyntask_unknown", "gone"]:
        answer = await get(session, server.url_for(tid))
        assert answer.status == 400
        assert answer.body == b'{"code":"task_not_exist","message":"task_not_exist","data":null}'
        assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
        assert "X-Oneapi-Request-Id" in answer.headers


@pytest.mark.parametrize(
    ("method", "path", "shown"),
    [
        ("GET", "/v1/video/generations/", "/v1/video/generations/"),
        ("GET", "/v1/video/generations/a/b", "/v1/video/generations/a/b"),
        ("GET", "/v1/video/generations", "/v1/video/generations"),
        ("GET", "/v1/models", "/v1/models"),
        ("POST", "/v1/video/generations/x", "/v1/video/generations/x"),
    ],
)
async def test_malformed_paths_are_404_unauthenticated(
    server: FakeAnyFast, session: aiohttp.ClientSession, method: str, path: str, shown: str
) -> None:
    """Empty ids, ids with '/', other paths and methods give an OpenAI-style 404, without auth."""
    server.add_task("x")
    server.inject(Fault.empty(503))
    url = yarl.URL(server.base_url + path, encoded=True)
    answer = await get(session, url, headers={}, method=method)
    assert answer.status == 404
    assert "X-Oneapi-Request-Id" in answer.headers
    assert answer.json() == {
        "error": {
            "message": f"Invalid URL ({method} {shown})",
            "type": "invalid_request_error",
            "param": "",
            "code": "",
        }
    }
    assert server.requests[-1].task_id is None
    assert server.requests[-1].status == 404
    assert (await poll(session, server, server.tasks["x"])).status == 503  # fault not consumed


HOSTILE_IDS = ["a/b", "../x", "..%2Fx", "..", "?q=1", "#frag", "a b", "100%", "ü€/", "a&b<c>"]


@pytest.mark.parametrize("task_id", HOSTILE_IDS)
async def test_hostile_ids_round_trip(
    server: FakeAnyFast, session: aiohttp.ClientSession, task_id: str
) -> None:
    """Ids percent-encoded as one segment reach their task and are recorded decoded."""
    server.add_task(task_id)
    url = server.url_for(task_id)
    assert url.startswith(server.base_url + "/v1/video/generations/")
    assert "/" not in url.removeprefix(server.base_url + "/v1/video/generations/")
    answer = await get(session, yarl.URL(url, encoded=True))
    assert answer.status == 200
    assert answer.json()["data"]["task_id"] == task_id
    record = server.requests[-1]
    assert record.task_id == task_id
    assert record.path == url.removeprefix(server.base_url)
    assert server.polls(task_id) == 1


async def test_go_style_escaping(server: FakeAnyFast, session: aiohttp.ClientSession) -> None:
    """'&', '<' and '>' inside strings are sent as \\u0026, \\u003c and \\u003e."""
    url = "https://oss.example/v.mp4?Expires=1&Signature=a<b>"
    task = server.add_task("esc", stages=[Stage(status="SUCCESS", result_url=url)])
    answer = await poll(session, server, task)
    assert b"&" not in answer.body
    assert b"<" not in answer.body
    assert b">" not in answer.body
    assert b"Expires=1\\u0026Signature=a\\u003cb\\u003e" in answer.body
    assert answer.json()["data"]["result_url"] == url
    assert b": " not in answer.body
    assert b", " not in answer.body


# -- faults ---------------------------------------------------------------------------------

OPENAI_429 = {
    "error": {
        "code": "rate_limit_exceeded",
        "message": "Rate limit reached for requests, please try again later",
        "type": "rate_limit_error",
    }
}


@pytest.mark.parametrize(
    ("fault", "status", "content_type", "check"),
    [
        (Fault.http(418, {"a": "<&>"}), 418, "application/json; charset=utf-8", None),
        (Fault.http(500, "plain"), 500, "application/json; charset=utf-8", b"plain"),
        (Fault.http(503, b"\x00raw", content_type="x/y"), 503, "x/y", b"\x00raw"),
        (Fault.html(502), 502, "text/html", b"<html>"),
        (Fault.html(503, "<p>down</p>"), 503, "text/html", b"<p>down</p>"),
        (Fault.empty(504), 504, None, b""),
        (Fault.not_json(), 200, "application/json", b"not json"),
        (Fault.rate_limited(), 429, "application/json; charset=utf-8", OPENAI_429),
        (Fault.rate_limited(shape="html"), 429, "text/html", b"429 Too Many Requests"),
        (Fault.rate_limited(shape="empty"), 429, None, b""),
        (
            Fault.server_error(),
            500,
            "application/json; charset=utf-8",
            {"code": "get_task_failed", "message": "get_task_failed", "data": None},
        ),
        (
            Fault.server_error(502, "bad_gateway", "boom"),
            502,
            "application/json; charset=utf-8",
            {"code": "bad_gateway", "message": "boom", "data": None},
        ),
        (
            Fault.task_not_exist(),
            400,
            "application/json; charset=utf-8",
            {"code": "task_not_exist", "message": "task_not_exist", "data": None},
        ),
        (
            Fault.envelope("quota_error", "no money"),
            200,
            "application/json; charset=utf-8",
            {"code": "quota_error", "message": "no money", "data": None},
        ),
        (
            Fault.wrong_shape(),
            200,
            "application/json",
            {"code": "success", "message": "", "data": {"status": 123}},
        ),
        (Fault.wrong_shape("array"), 200, "application/json", [1, 2]),
        (
            Fault.wrong_shape("null_data"),
            200,
            "application/json",
            {"code": "success", "message": "", "data": None},
        ),
        (Fault.wrong_shape("no_data"), 200, "application/json", {"code": "success", "message": ""}),
        (Fault.wrong_shape("string"), 200, "application/json", "success"),
    ],
)
async def test_fault_constructors(
    server: FakeAnyFast,
    session: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    content_type: str | None,
    check: Any,
) -> None:
    """Each Fault constructor answers the status, content type and body it documents."""
    task = server.add_task()
    server.inject(fault)
    answer = await poll(session, server, task)
    assert answer.status == status
    assert answer.headers.get("Content-Type") == content_type
    assert REQUEST_ID.match(answer.headers["X-Oneapi-Request-Id"])
    if isinstance(check, bytes):
        assert check in answer.body if check else answer.body == b""
    elif check is not None:
        assert answer.json() == check
    assert server.requests[-1].status == status
    assert (await poll(session, server, task)).json()["data"]["status"] == "NOT_START"


async def test_fault_http_dict_is_go_encoded(
    server: FakeAnyFast, session: aiohttp.ClientSession
) -> None:
    """Fault.http() JSON-encodes dict bodies the Go way."""
    server.inject(Fault.http(418, {"a": "<&>"}))
    answer = await get(session, server.url_for("x"))
    assert answer.body == b'{"a":"\\u003c\\u0026\\u003e"}'


async def test_panic_fault_has_no_code(server: FakeAnyFast, session: aiohttp.ClientSession) -> None:
    """Fault.panic() is a 500 with error.message and type new_api_panic, without a code key."""
    server.inject(Fault.panic())
    answer = await get(session, server.url_for("x"))
    assert answer.status == 500
    assert answer.json()["error"].keys() == {"message", "type"}
    assert answer.json()["error"]["type"] == "new_api_panic"


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(2, "2"), (1.5, "1.5"), (3.0, "3"), ("Wed, 21 Oct 2015 07:28:00 GMT", None), (None, None)],
)
async def test_rate_limited_retry_after(
    server: FakeAnyFast,
    session: aiohttp.ClientSession,
    retry_after: str | float | None,
    header: str | None,
) -> None:
    """Fault.rate_limited() sends Retry-After only when given: strings verbatim, numbers tidy."""
    server.inject(Fault.rate_limited(retry_after))
    answer = await get(session, server.url_for("x"))
    assert answer.status == 429
    expected = retry_after if isinstance(retry_after, str) else header
    assert answer.headers.get("Retry-After") == expected


async def test_truncated_json_is_complete_but_broken(
    server: FakeAnyFast, session: aiohttp.ClientSession
) -> None:
    """Fault.truncated_json() delivers every byte it announces, but the JSON is cut mid-way."""
    server.inject(Fault.truncated_json())
    answer = await get(session, server.url_for("x"))
    assert answer.status == 200
    assert int(answer.headers["Content-Length"]) == len(answer.body)
    assert answer.body.startswith(b'{"code":"success"')
    with pytest.raises(json.JSONDecodeError):
        answer.json()


async def test_huge_fault_has_exact_size(
    server: FakeAnyFast, session: aiohttp.ClientSession
) -> None:
    """Fault.huge(n) answers exactly n bytes of valid JSON."""
    server.inject(Fault.huge(3_000_000))
    answer = await get(session, server.url_for("x"))
    assert answer.status == 200
    assert len(answer.body) == 3_000_000
    assert answer.json()["code"] == "success"
    with pytest.raises(ValueError, match="size_bytes"):
        Fault.huge(10)


async def test_drop_connection(server: FakeAnyFast, session: aiohttp.ClientSession) -> None:
    """Fault.drop_connection() closes the socket unanswered; the client sees a disconnect."""
    task = server.add_task()
    server.inject(Fault.drop_connection(), times=2)  # aiohttp retries a GET once on disconnect
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await poll(session, server, task)
    assert [r.status for r in server.requests] == [0, 0]
    assert server.polls(task.task_id) == 2
    assert server.in_flight == 0
    assert (await poll(session, server, task)).json()["data"]["status"] == "NOT_START"


async def test_truncated_body(server: FakeAnyFast, session: aiohttp.ClientSession) -> None:
    """Fault.truncated_body() sends less than its Content-Length; reading raises a payload error."""
    task = server.add_task()
    server.inject(Fault.truncated_body())
    async with session.get(server.url_for(task.task_id), headers=AUTH) as resp:
        assert resp.status == 200
        assert resp.content_length is not None
        assert resp.content_length > 100
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert server.requests[-1].status == 200
    assert (await poll(session, server, task)).json()["data"]["status"] == "NOT_START"


@pytest.mark.virtual_time
async def test_faults_are_quiet(
    server: FakeAnyFast, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Dropping and truncating connections logs no warnings or errors on the server side."""
    caplog.set_level(logging.WARNING)
    server.inject(Fault.drop_connection(), times=2)
    server.inject(Fault.truncated_body())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get(session, server.url_for("x"))
    with pytest.raises(aiohttp.ClientPayloadError):
        await get(session, server.url_for("x"))
    await asyncio.sleep(0.05)
    assert caplog.records == []


@pytest.mark.virtual_time
async def test_slow_fault_delays_and_advances(
    server: FakeAnyFast, session: aiohttp.ClientSession
) -> None:
    """Fault.slow() answers normally after the delay (a short client timeout fires first)."""
    task = server.add_task()
    server.inject(Fault.slow(0.2))
    started = now()
    answer = await poll(session, server, task)
    assert now() - started == pytest.approx(0.2)
    assert answer.status == 200
    assert answer.json()["data"]["status"] == "NOT_START"
    assert task.status == "QUEUED"
    server.inject(Fault.slow(0.5), times=2)
    with pytest.raises(asyncio.TimeoutError):
        await session.get(
            server.url_for(task.task_id), headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.05)
        )


async def test_status_override_keeps_normal_body(
    server: FakeAnyFast, session: aiohttp.ClientSession
) -> None:
    """A Fault without a body answers the normal body with its own status and headers."""
    task = server.add_task()
    server.inject(Fault(status=503, headers={"X-Extra": "1"}))
    answer = await poll(session, server, task)
    assert answer.status == 503
    assert answer.headers["X-Extra"] == "1"
    assert answer.json()["data"]["status"] == "NOT_START"
    assert task.status == "QUEUED"


async def test_faults_do_not_advance(server: FakeAnyFast, session: aiohttp.ClientSession) -> None:
    """Faults with their own body, drops and truncations leave the task on its stage."""
    task = server.add_task()
    for fault in [Fault.http(500), Fault.html(502), Fault.rate_limited(1), Fault.envelope()]:
        server.inject(fault)
        assert (await poll(session, server, task)).headers["Content-Type"] != "application/json"
    server.inject(Fault.drop_connection(), times=2)
    server.inject(Fault.truncated_body())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await poll(session, server, task)
    with pytest.raises(aiohttp.ClientPayloadError):
        await poll(session, server, task)
    assert task.status == "NOT_START"
    assert await statuses(session, server, task, 2) == ["NOT_START", "QUEUED"]


async def test_fault_fifo_order(server: FakeAnyFast, session: aiohttp.ClientSession) -> None:
    """Queued faults are served in injection order, each `times` answers long."""
    task = server.add_task()
    server.inject(Fault.empty(500), times=2)
    server.inject(Fault.empty(502))
    server.inject(Fault.empty(503), task_id=task.task_id)
    seen = [(await poll(session, server, task)).status for _ in range(5)]
    assert seen == [500, 500, 502, 503, 200]


async def test_fault_targets_one_task(server: FakeAnyFast, session: aiohttp.ClientSession) -> None:
    """A fault injected for a task id is consumed only by requests for that id."""
    one, two = server.add_task("one"), server.add_task("two")
    server.inject(Fault.empty(503), times=2, task_id="two")
    assert (await poll(session, server, one)).status == 200
    assert (await poll(session, server, two)).status == 503
    assert (await poll(session, server, one)).status == 200
    assert (await poll(session, server, two)).status == 503
    assert (await poll(session, server, two)).status == 200
    assert await statuses(session, server, one, 1) == ["IN_PROGRESS"]


async def test_clear_faults(server: FakeAnyFast, session: aiohttp.ClientSession) -> None:
    """clear_faults() removes queued faults and random rules."""
    task = server.add_task()
    server.inject(Fault.empty(500), times=3)
    server.inject_rate(Fault.empty(502), 1.0)
    server.clear_faults()
    assert (await poll(session, server, task)).status == 200


async def test_inject_rate_is_reproducible(session: aiohttp.ClientSession) -> None:
    """inject_rate() faults about `probability` of answers, identically for the same seed."""

    async def run() -> list[int]:
        async with FakeAnyFast() as srv:
            task = srv.add_task()
            srv.inject_rate(Fault.empty(503), 0.3, seed=42)
            return [(await poll(session, srv, task)).status for _ in range(60)]

    first, second = await run(), await run()
    assert first == second
    assert 5 < first.count(503) < 35
    assert set(first) == {200, 503}


async def test_queued_faults_take_precedence_over_rate(
    server: FakeAnyFast, session: aiohttp.ClientSession
) -> None:
    """Queued faults win over random faults; probability 1 then faults every answer."""
    task = server.add_task()
    server.inject_rate(Fault.empty(503), 1.0, seed=1)
    server.inject(Fault.empty(500))
    assert [(await poll(session, server, task)).status for _ in range(3)] == [500, 503, 503]


# -- recording, concurrency, lifecycle ------------------------------------------------------


async def test_recording_and_reset(server: FakeAnyFast, session: aiohttp.ClientSession) -> None:
    """Every request is recorded with method, raw path, decoded id, headers, time and status."""
    server.add_task("a b")
    before = now()
    await get(session, server.url_for("a b"), headers={**AUTH, "X-Trace-ID": "t-1"})
    await get(session, server.url_for("missing"))
    await get(session, server.base_url + "/nope")
    first, second, third = server.requests
    assert isinstance(first, RecordedRequest)
    assert (first.method, first.path, first.task_id, first.status) == (
        "GET",
        "/v1/video/generations/a%20b",
        "a b",
        200,
    )
    assert first.headers["X-Trace-ID"] == "t-1"
    assert first.headers["Authorization"] == AUTH["Authorization"]
    assert before <= first.time <= second.time <= third.time <= now()
    assert (second.task_id, second.status) == ("missing", 400)
    assert (third.task_id, third.status) == (None, 404)
    assert server.polls("a b") == 1
    assert server.polls("missing") == 1
    assert server.polls("z") == 0
    server.reset_stats()
    assert server.requests == []
    assert server.polls("a b") == 0
    assert server.max_in_flight == 0


@pytest.mark.virtual_time
async def test_max_in_flight_with_latency(session: aiohttp.ClientSession) -> None:
    """Concurrent requests overlap under `latency`, and max_in_flight reports the peak."""
    async with FakeAnyFast(latency=0.2) as server:
        tasks = server.add_tasks(12)
        started = now()
        answers = await asyncio.gather(*(poll(session, server, t) for t in tasks))
        assert now() - started == pytest.approx(0.2)  # side by side, not one after the other
        assert all(a.status == 200 for a in answers)
        assert server.max_in_flight == 12
        assert server.in_flight == 0
        assert len(server.requests) == 12
        server.reset_stats()
        await poll(session, server, tasks[0])
        assert server.max_in_flight == 1


@pytest.mark.virtual_time
async def test_close_with_pending_delayed_request_does_not_hang(
    session: aiohttp.ClientSession,
) -> None:
    """close() cuts a sleeping delayed answer short; the client gets a connection error."""
    server = FakeAnyFast()
    await server.start()
    task = server.add_task()
    server.inject(Fault.slow(30), times=2)
    pending = asyncio.ensure_future(poll(session, server, task))
    await asyncio.sleep(0.1)
    assert server.in_flight == 1
    started = now()
    await asyncio.wait_for(server.close(), 2)
    assert now() - started < 1.0
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(pending, 2)
    assert server.requests[0].status == 0
    await server.close()  # idempotent


async def test_start_close_and_urls() -> None:
    """base_url/url_for are only valid while started; the port is ephemeral and on 127.0.0.1."""
    server = FakeAnyFast(api_key="k")
    with pytest.raises(RuntimeError):
        _ = server.base_url
    async with server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url)
        assert server.url_for("a/b?c") == server.base_url + "/v1/video/generations/a%2Fb%3Fc"
        assert server.api_key == "k"
        with pytest.raises(RuntimeError):
            await server.start()
    with pytest.raises(RuntimeError):
        _ = server.base_url


async def test_add_tasks_gives_unique_ids() -> None:
    """add_tasks(100_000) gives unique asyntask_ ids reachable via tasks[]."""
    server = FakeAnyFast()
    tasks = server.add_tasks(100_000, stages=FakeAnyFast.failure_stages())
    assert len(server.tasks) == 100_000 == len({t.task_id for t in tasks})
    assert all(re.fullmatch(r"asyntask_[A-Za-z0-9]{32}", t.task_id) for t in tasks[:1000])
    assert server.tasks[tasks[-1].task_id] is tasks[-1]
    with pytest.raises(ValueError, match="duplicate"):
        server.add_task(tasks[0].task_id)


def test_validation() -> None:
    """Bad stages, faults and options are rejected early."""
    with pytest.raises(ValueError, match="polls"):
        Stage(status="X", polls=-1)
    with pytest.raises(ValueError, match="delay"):
        Fault(delay=-1)
    with pytest.raises(ValueError, match="status"):
        Fault(status=None, body=b"x")
    with pytest.raises(ValueError, match="advance"):
        FakeAnyFast(advance="sometimes")  # type: ignore[arg-type]
    server = FakeAnyFast()
    with pytest.raises(ValueError, match="stages"):
        server.add_task(stages=[])
    with pytest.raises(ValueError, match="times"):
        server.inject(Fault.empty(500), times=0)
    with pytest.raises(ValueError, match="probability"):
        server.inject_rate(Fault.empty(500), 1.5)
    with pytest.raises(ValueError, match="key state"):
        server.set_key_state("banned")  # type: ignore[arg-type]
