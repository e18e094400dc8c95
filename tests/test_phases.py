"""Deadlines by phase, and the provider's error while a task waits.

Every test runs on virtual time against a FakeAnyFast whose tasks follow the clock
(``advance="time"``), so each poll, each phase change and each end comes at an exact time.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from anyfast_async import (
    AnyFast,
    PollPolicy,
    Task,
    TaskFailedError,
    TaskStalledError,
    TaskStatus,
    TaskUpdate,
    UpstreamError,
    WaitTimeoutError,
)
from anyfast_async._fleet import decode_outcome, encode_outcome
from anyfast_async._scheduler import same_error
from anyfast_async.testing import FakeAnyFast, Stage

from .conftest import now

pytestmark = pytest.mark.virtual_time

VIDEO = "https://cdn.example/v.mp4"
EVERY_5 = PollPolicy.fixed(5)
DONE = Stage(status="SUCCESS", progress="100%", result_url=VIDEO)


def queued(seconds: float = 0.0, **extra: Any) -> Stage:
    return Stage(status="QUEUED", progress="20%", seconds=seconds, extra=extra or None)


def running(progress: str, seconds: float = 0.0) -> Stage:
    return Stage(status="IN_PROGRESS", progress=progress, seconds=seconds)


async def stalled(stages: list[Stage], **limits: Any) -> tuple[TaskStalledError, float]:
    """Wait for a task with these stages and limits; the error that ended it and when (in
    seconds from the start)."""
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=stages)
        started = now()
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            with pytest.raises(TaskStalledError) as caught:
                await client.wait("t1", poll=EVERY_5, **limits)
            return caught.value, now() - started


async def test_a_task_queued_too_long_ends_at_its_queue_timeout() -> None:
    error, ended = await stalled([queued()], queue_timeout=30)
    assert ended == pytest.approx(30.0, abs=1e-6)
    assert (error.reason, error.timeout) == ("queue_timeout", 30)
    assert error.elapsed == pytest.approx(30.0, abs=1e-6)
    assert error.task.status is TaskStatus.QUEUED
    assert error.last_task is error.task
    assert isinstance(error, WaitTimeoutError)
    assert isinstance(error, TimeoutError)
    assert "waited for 30 s (queue_timeout 30 s); last status QUEUED" in str(error)


async def test_the_waiting_phase_spans_not_start_and_queued() -> None:
    """NOT_START for 20 s then QUEUED: both are waiting, so the clock does not restart."""
    stages = [Stage(status="NOT_START", progress="0%", seconds=20), queued()]
    error, ended = await stalled(stages, queue_timeout=30)
    assert ended == pytest.approx(30.0, abs=1e-6)
    assert error.reason == "queue_timeout"


async def test_a_task_that_starts_in_time_is_not_held_to_its_queue_timeout() -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=[queued(20), running("50%", 100), DONE])
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            task = await client.wait("t1", poll=EVERY_5, queue_timeout=30)
    assert task.result_url == VIDEO


async def test_the_run_phase_is_timed_from_the_first_poll_that_saw_it() -> None:
    """Queued for 10 s (not counted), then running for ever: seen running at 10, so a 20 s
    run_timeout ends it at 30."""
    error, ended = await stalled([queued(10), running("50%")], run_timeout=20)
    assert ended == pytest.approx(30.0, abs=1e-6)
    assert error.reason == "run_timeout"
    assert error.elapsed == pytest.approx(20.0, abs=1e-6)
    assert "ran for 20 s (run_timeout 20 s)" in str(error)


async def test_a_status_the_sdk_does_not_know_counts_as_running() -> None:
    error, ended = await stalled([Stage(status="GENERATING", progress="40%")], run_timeout=15)
    assert error.reason == "run_timeout"
    assert ended == pytest.approx(15.0, abs=1e-6)
    assert error.task.raw_status == "GENERATING"


async def test_a_running_task_whose_progress_stops_ends_at_its_stall_timeout() -> None:
    """Progress moves at 20 s (within 25 s), then not until 60 s: seen last moving at 20,
    so a 25 s stall_timeout ends it at 45."""
    stages = [running("10%", 20), running("30%", 40), running("90%", 30), DONE]
    error, ended = await stalled(stages, stall_timeout=25)
    assert ended == pytest.approx(45.0, abs=1e-6)
    assert error.reason == "stall_timeout"
    assert error.elapsed == pytest.approx(25.0, abs=1e-6)
    assert error.task.progress == 30


async def test_a_stall_timeout_does_not_apply_while_a_task_waits() -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=[queued(100), running("50%", 10), DONE])
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            task = await client.wait("t1", poll=EVERY_5, stall_timeout=25)
    assert task.status is TaskStatus.SUCCESS


async def test_the_overall_deadline_ends_the_watch_when_it_comes_first() -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=[queued()])
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            with pytest.raises(WaitTimeoutError) as caught:
                await client.wait("t1", poll=EVERY_5, timeout=12, queue_timeout=30)
    assert not isinstance(caught.value, TaskStalledError)
    assert caught.value.timeout == 12


# -- the provider's error while the task waits ------------------------------------------------

DASHSCOPE_ERROR = {
    "code": "InvalidApiKey",
    "message": "Invalid API-key provided.",
    "request_id": "7e",
}


async def test_a_provider_error_that_persists_ends_at_its_upstream_error_timeout() -> None:
    """Queued, then from 6 s on the provider's error (first seen at 10 s): a 20 s
    upstream_error_timeout ends it at 30 s with the error on the last task."""
    stages = [queued(6), queued(data=DASHSCOPE_ERROR)]
    error, ended = await stalled(stages, upstream_error_timeout=20)
    assert ended == pytest.approx(30.0, abs=1e-6)
    assert error.reason == "upstream_error"
    assert error.elapsed == pytest.approx(20.0, abs=1e-6)
    assert error.task.upstream_error == UpstreamError("InvalidApiKey", "Invalid API-key provided.")
    assert "had a provider error for 20 s" in str(error)
    assert "InvalidApiKey: Invalid API-key provided." in str(error)


async def test_a_provider_error_that_clears_in_time_ends_nothing() -> None:
    async with FakeAnyFast(advance="time") as server:
        stages = server.upstream_error_stages(seconds=5, error_seconds=15)
        server.add_task("t1", stages=stages)
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            task = await client.wait("t1", poll=EVERY_5, upstream_error_timeout=20)
    assert task.status is TaskStatus.SUCCESS


async def test_the_fake_scripts_a_provider_error_that_lasts_until_the_gateway_gives_up() -> None:
    async with FakeAnyFast(advance="time") as server:
        stages = server.upstream_error_stages("seedance", then="times_out", error_seconds=60)
        server.add_task("t1", stages=stages)
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            with pytest.raises(TaskFailedError) as caught:
                await client.wait("t1", poll=EVERY_5)
    assert caught.value.kind.value == "timed_out"
    assert caught.value.task.upstream_error is None  # finished: its kind says why


async def test_a_watch_tells_each_change_of_the_provider_error() -> None:
    """The status stays QUEUED at 20 % throughout; the error's appearing, changing and going
    away are each an update."""
    other = {"code": "Throttling", "message": "Requests throttling triggered."}
    stages = [queued(5), queued(5, data=DASHSCOPE_ERROR), queued(5, data=other), queued(5), DONE]
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=stages)
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            seen = [u async for u in client.watch("t1", poll=EVERY_5)]
    errors = [
        u.task.upstream_error.code if u.task and u.task.upstream_error else None for u in seen
    ]
    assert errors == [None, "InvalidApiKey", "Throttling", None, None]
    assert [u.status for u in seen][:4] == [TaskStatus.QUEUED] * 4
    assert seen[-1].is_terminal


async def test_a_watcher_keeps_the_provider_error_of_a_waiting_task() -> None:
    """A watcher drops a running task's payload, but not a provider's error: the handle's
    latest record still says what is wrong."""
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=[queued(data=DASHSCOPE_ERROR)])
        server.add_task("t2", stages=[running("50%")])
        async with (
            AnyFast(server.api_key, base_url=server.base_url) as client,
            client.watcher(poll=EVERY_5) as watcher,
        ):
            updates = watcher.updates()
            erring, fine = watcher.add("t1"), watcher.add("t2")
            seen = set()
            async for update in updates:
                seen.add(update.task_id)
                if seen == {"t1", "t2"}:
                    break
            assert erring.latest is not None
            assert erring.latest.upstream_error == UpstreamError(
                "InvalidApiKey", "Invalid API-key provided."
            )
            assert fine.latest is not None
            assert fine.latest.data is None
            assert fine.latest.upstream_error is None


async def test_a_watcher_applies_its_phase_deadlines_and_a_task_can_have_its_own() -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("t1", stages=[queued()])
        server.add_task("t2", stages=[queued(40), running("50%", 10), DONE])
        started = now()
        async with (
            AnyFast(server.api_key, base_url=server.base_url) as client,
            client.watcher(poll=EVERY_5, queue_timeout=30) as watcher,
        ):
            default, own = watcher.add("t1"), watcher.add("t2", queue_timeout=None)
            with pytest.raises(TaskStalledError):
                await default.wait()
            assert now() - started == pytest.approx(30.0, abs=1e-6)
            assert (await own.wait()).status is TaskStatus.SUCCESS


async def test_wait_many_ends_each_task_by_its_own_phases() -> None:
    async with FakeAnyFast(advance="time") as server:
        server.add_task("stuck", stages=[queued()])
        server.add_task("fine", stages=[queued(10), running("50%", 10), DONE])
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            outcomes = await client.wait_many(["stuck", "fine"], poll=EVERY_5, queue_timeout=20)
    assert isinstance(outcomes["stuck"], TaskStalledError)
    assert outcomes["stuck"].reason == "queue_timeout"
    assert isinstance(outcomes["fine"], Task)


@pytest.mark.parametrize(
    "limit", ["queue_timeout", "run_timeout", "stall_timeout", "upstream_error_timeout"]
)
@pytest.mark.parametrize("value", [0, -1.0])
async def test_a_phase_deadline_must_be_positive(limit: str, value: float) -> None:
    bad: dict[str, Any] = {limit: value}
    async with FakeAnyFast() as server:
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            with pytest.raises(ValueError, match=limit):
                client.watch("t1", **bad)
            with pytest.raises(ValueError, match=limit):
                client.watcher(**bad)
            async with client.watcher() as watcher:
                with pytest.raises(ValueError, match=limit):
                    watcher.add("t1", **bad)
        assert server.requests == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (DASHSCOPE_ERROR, UpstreamError("InvalidApiKey", "Invalid API-key provided.")),
        (
            {"output": {"task_status": "PENDING", "code": "InternalError", "message": "oops"}},
            UpstreamError("InternalError", "oops"),
        ),
        (
            {"error": {"code": "AuthenticationError", "message": "The API key is invalid."}},
            UpstreamError("AuthenticationError", "The API key is invalid."),
        ),
        ({"error": "quota exhausted", "status": "queued"}, UpstreamError("", "quota exhausted")),
        (
            {"code": 5001, "message": "Server temporarily unavailable"},
            UpstreamError("5001", "Server temporarily unavailable"),
        ),
        (
            {"base_resp": {"status_code": 1002, "status_msg": "rate limited"}},
            UpstreamError("1002", "rate limited"),
        ),
        ({"code": 0, "message": "SUCCEED", "data": {}}, None),
        # Jimeng's running answer, and other ways of saying success
        ({"code": 10000, "message": "Success", "data": {"status": "generating"}}, None),
        ({"code": "0", "message": "ok"}, None),
        ({"code": 200, "message": "OK"}, None),
        ({"code": 7, "message": "Success"}, None),
        ({"output": {"task_id": "x", "task_status": "RUNNING"}, "request_id": "r"}, None),
        ({"error": "", "status": "queued"}, None),
        ({"error": None}, None),
        ({"code": True}, None),
        ("an upstream HTML page", None),
        (None, None),
    ],
)
def test_the_provider_error_shapes_are_read(data: Any, expected: UpstreamError | None) -> None:
    body = msgspec.json.encode({"status": "QUEUED", "progress": "20%", "data": data})
    assert msgspec.json.decode(body, type=Task).upstream_error == expected


def test_a_finished_task_has_no_upstream_error() -> None:
    body = msgspec.json.encode({"status": "FAILURE", "data": DASHSCOPE_ERROR})
    assert msgspec.json.decode(body, type=Task).upstream_error is None


def test_an_update_carries_the_provider_error() -> None:
    """What a handler of updates reads: the update's task says what is wrong."""
    task = msgspec.json.decode(
        msgspec.json.encode({"status": "QUEUED", "data": DASHSCOPE_ERROR}), type=Task
    )
    update = TaskUpdate(
        task_id="t1", task=task, previous_status=None, status=task.status, progress=None
    )
    assert update.task is not None
    assert str(update.task.upstream_error).startswith("InvalidApiKey")


async def test_a_provider_error_coming_and_going_does_not_hide_a_stall() -> None:
    """Stuck at 50 % while the provider's error appears and clears every 5 s: a stall is
    neither status nor progress changing, so a 20 s stall_timeout ends it at 20 s."""
    flapping = [
        Stage(status="IN_PROGRESS", progress="50%", seconds=5, extra=extra)
        for _ in range(10)
        for extra in ({"data": DASHSCOPE_ERROR}, None)
    ]
    error, ended = await stalled([running("50%", 1), *flapping], stall_timeout=20)
    assert error.reason == "stall_timeout"
    assert ended == pytest.approx(20.0, abs=1e-6)


def test_a_request_id_in_the_message_is_not_a_new_error() -> None:
    one = UpstreamError("", "upstream busy (request id: 2026120503AbCd)")
    two = UpstreamError("", "upstream busy (request id: 2026120504EfGh)")
    assert same_error(one, two)
    assert not same_error(one, UpstreamError("", "quota exhausted"))
    assert same_error(UpstreamError("Throttling", "a"), UpstreamError("Throttling", "b"))
    assert not same_error(UpstreamError("Throttling", "a"), None)
    assert same_error(None, None)


def test_a_stalled_outcome_crosses_a_fleet_whole() -> None:
    """What a process that polled tells the process that added the task."""
    task = msgspec.json.decode(b'{"task_id": "t1", "status": "QUEUED"}', type=Task)
    sent = TaskStalledError("t1", task=task, reason="queue_timeout", timeout=60, elapsed=61.5)
    told = decode_outcome("t1", encode_outcome(sent))
    assert isinstance(told, TaskStalledError)
    assert (told.reason, told.timeout, told.elapsed) == ("queue_timeout", 60, 61.5)
    assert told.task.raw_status == "QUEUED"
    assert str(told) == str(sent)
