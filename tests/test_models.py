"""Task model: status mapping, progress parsing, result URL and error rules, timestamps, views."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import msgspec
import pytest

from anyfast_async import DashScopePayload, SeedancePayload, Task, TaskStatus, TaskUpdate
from anyfast_async._decode import decode_task
from anyfast_async._models import parse_progress

from .conftest import load


def task(**fields: object) -> Task:
    fields.setdefault("status", "IN_PROGRESS")
    return msgspec.json.decode(msgspec.json.encode(fields), type=Task)


@pytest.mark.parametrize(
    ("raw", "status", "terminal"),
    [
        ("NOT_START", TaskStatus.NOT_START, False),
        ("SUBMITTED", TaskStatus.SUBMITTED, False),
        ("QUEUED", TaskStatus.QUEUED, False),
        ("IN_PROGRESS", TaskStatus.IN_PROGRESS, False),
        ("SUCCESS", TaskStatus.SUCCESS, True),
        ("FAILURE", TaskStatus.FAILURE, True),
        ("UNKNOWN", TaskStatus.UNKNOWN, False),
        ("FAILED", TaskStatus.FAILURE, True),
        ("succeeded", TaskStatus.SUCCESS, True),
        ("processing", TaskStatus.IN_PROGRESS, False),
        (" queued ", TaskStatus.QUEUED, False),
        ("WARMING_UP", TaskStatus.UNKNOWN, False),
        ("", TaskStatus.UNKNOWN, False),
    ],
)
def test_status_mapping(raw: str, status: TaskStatus, terminal: bool) -> None:
    """Every status string maps to a TaskStatus without raising; the raw string is kept."""
    t = task(status=raw)
    assert t.status is status
    assert t.is_terminal is terminal
    assert t.raw_status == raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("50%", 50),
        ("100%", 100),
        ("0%", 0),
        (" 75 % ", 75),
        ("33.9%", 33),
        (40, 40),
        (12.7, 12),
        ("", None),
        (None, None),
        ("junk", None),
        ("%", None),
        (True, None),
        ([50], None),
        ({"p": 1}, None),
        (-5, 0),
        ("250%", 100),
        (float("nan"), None),
    ],
)
def test_progress_parsing(raw: object, expected: int | None) -> None:
    """Progress is parsed leniently into 0..100 or None."""
    assert parse_progress(raw) == expected


def test_progress_raw_kept_and_missing() -> None:
    """The raw progress value is kept; a missing one gives None."""
    assert task(progress="50%").raw_progress == "50%"
    assert task(progress="50%").progress == 50
    missing = task()
    assert missing.raw_progress is None
    assert missing.progress is None


def test_only_status_is_required() -> None:
    """A record with only a status decodes; every other field has a default."""
    t = task(status="QUEUED")
    assert t.task_id == ""
    assert t.result_url is None
    assert t.error is None
    assert t.submitted_at is None
    assert t.data is None
    with pytest.raises(msgspec.ValidationError, match="status"):
        msgspec.json.decode(b"{}", type=Task)


def test_unknown_fields_ignored() -> None:
    """Fields from newer gateway builds are ignored."""
    t = task(status="SUCCESS", quota=5, platform="x", properties={"a": 1}, id=7)
    assert t.status is TaskStatus.SUCCESS


URL = "https://cdn.example.com/v.mp4?Expires=1&Sig=a"


def test_result_url_direct() -> None:
    """result_url is used when it holds a URL."""
    assert task(status="SUCCESS", result_url=URL, fail_reason=URL).result_url == URL


def test_result_url_falls_back_to_fail_reason_on_legacy_success() -> None:
    """On SUCCESS without result_url, a URL in fail_reason is the result."""
    t = task(status="SUCCESS", fail_reason=URL)
    assert t.result_url == URL
    assert t.error is None


def test_result_url_falls_back_to_upstream_payloads() -> None:
    """Then the DashScope output.video_url, then the Seedance content.video_url."""
    dash = task(status="SUCCESS", fail_reason="", data={"output": {"video_url": URL}})
    assert dash.result_url == URL
    seed = task(status="SUCCESS", data={"content": {"video_url": URL + "2"}})
    assert seed.result_url == URL + "2"
    assert task(status="SUCCESS", data={"content": {"video_url": 5}}).result_url is None
    assert task(status="SUCCESS", data=[1, 2]).result_url is None


def test_no_result_url_on_failure_or_before_success() -> None:
    """A failed task has no result URL, even when result_url repeats the error text."""
    failed = task(status="FAILURE", result_url="content moderation", fail_reason="")
    assert failed.result_url is None
    assert failed.error == "content moderation"
    assert task(status="FAILURE", result_url=URL).result_url is None
    assert task(status="IN_PROGRESS", fail_reason=URL).result_url is None


def test_error_only_on_failure() -> None:
    """fail_reason is an error on FAILURE and never on SUCCESS."""
    assert task(status="FAILURE", fail_reason="moderation").error == "moderation"
    assert task(status="FAILURE").error == ""
    assert task(status="SUCCESS", fail_reason="moderation").error is None
    assert task(status="QUEUED", fail_reason="x").error is None


def test_relative_gateway_proxy_url_is_a_result() -> None:
    """A result_url pointing at the gateway's own content proxy path is kept."""
    assert task(status="SUCCESS", result_url="/v1/videos/abc/content").result_url == (
        "/v1/videos/abc/content"
    )


def test_timestamps() -> None:
    """Timestamps are UTC datetimes; 0 and missing mean unknown."""
    t = task(submit_time=1777343862, start_time=0, finish_time=1777343961.5)
    assert t.submitted_at == datetime(2026, 4, 28, 2, 37, 42, tzinfo=timezone.utc)
    assert t.started_at is None
    assert t.finished_at is not None
    assert t.finished_at.tzinfo is timezone.utc
    assert task(submit_time=-1).submitted_at is None
    assert task(submit_time=1e20).submitted_at is None


def test_dashscope_view() -> None:
    """The DashScope payload is readable as a typed view; junk gives None."""
    t = task(
        status="SUCCESS",
        data={"output": {"task_status": "SUCCEEDED", "video_url": URL}, "usage": {"SR": 1080}},
    )
    view = t.dashscope
    assert isinstance(view, DashScopePayload)
    assert view.output is not None
    assert view.output.task_status == "SUCCEEDED"
    assert view.usage is not None
    assert view.usage.sr == 1080
    assert t.seedance is None
    assert task(data={"output": {"video_url": 5}}).dashscope is None
    assert task(data=None).dashscope is None


def test_seedance_view() -> None:
    """The Seedance payload is readable as a typed view."""
    t = task(
        status="SUCCESS",
        data={"id": "cgt-1", "status": "succeeded", "usage": {"total_tokens": 9}},
    )
    view = t.seedance
    assert isinstance(view, SeedancePayload)
    assert view.usage is not None
    assert view.usage.total_tokens == 9
    assert t.dashscope is None
    assert task(data={"model": "kling"}).seedance is None
    assert task(data={"content": {"video_url": 3}}).seedance is None


def test_upstream_error_payload_never_decides_outcome() -> None:
    """An upstream error object inside data does not change a QUEUED status."""
    t = task(status="QUEUED", data={"output": {"code": "Throttling", "task_status": "FAILED"}})
    assert t.status is TaskStatus.QUEUED
    assert t.error is None
    assert not t.is_terminal


def test_task_and_update_have_a_json_ready_form() -> None:
    """to_dict() gives what a handler can return as JSON, the interpreted fields included
    (msgspec.structs.asdict leaves the properties out)."""
    task = decode_task(load("query_happyhorse_success.json"))
    as_dict = task.to_dict()
    assert as_dict["status"] == "SUCCESS"
    assert as_dict["progress"] == 100
    assert as_dict["result_url"] == task.result_url
    assert as_dict["finished_at"] == "2026-04-28T02:39:21+00:00"
    assert json.loads(json.dumps(as_dict)) == as_dict
    update = TaskUpdate(
        task_id=task.task_id,
        task=task,
        previous_status=TaskStatus.IN_PROGRESS,
        status=TaskStatus.SUCCESS,
        progress=100,
        is_terminal=True,
    )
    assert json.loads(json.dumps(update.to_dict()))["status"] == "SUCCESS"
    assert update.to_dict()["result_url"] == task.result_url
