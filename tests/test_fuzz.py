"""Property tests: no body, however broken, escapes as anything but a Task or our error."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyfast_async import AnyFastError, APIStatusError, Task
from anyfast_async._decode import decode_created, decode_task, parse_retry_after, status_error
from anyfast_async._models import CreatedTask, parse_progress

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
statuses = st.sampled_from(["SUCCESS", "FAILURE", "QUEUED", "IN_PROGRESS", "??", ""]) | st.text()
task_like = st.fixed_dictionaries(
    {"status": statuses | scalars},
    optional={
        "task_id": scalars,
        "progress": scalars,
        "result_url": scalars,
        "fail_reason": scalars,
        "submit_time": scalars,
        "finish_time": scalars,
        "data": json_values,
        "url": scalars,
    },
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "code": st.sampled_from(["success", "task_not_exist", "", "x"]) | scalars,
        "message": scalars,
        "data": task_like | json_values,
        "error": json_values,
    },
)


def check_task_or_error(body: bytes) -> None:
    try:
        task = decode_task(body, request_id="rid")
    except AnyFastError as exc:
        message = str(exc)
    else:
        message = ""
        assert isinstance(task, Task)
        # Every property of a decoded task is computable without raising.
        _ = (task.status, task.progress, task.result_url, task.error, task.is_terminal)
        _ = (task.submitted_at, task.started_at, task.finished_at, task.dashscope, task.seedance)
        return
    assert message


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(body: bytes) -> None:
    """Random bytes decode to a Task or raise an AnyFastError."""
    check_task_or_error(body)


@FUZZ
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    """Any JSON document decodes to a Task or raises an AnyFastError."""
    check_task_or_error(msgspec.json.encode(value))


@FUZZ
@given(envelopes)
def test_envelope_shaped_json(value: dict[str, Any]) -> None:
    """Envelopes with odd codes, messages and task fields: a Task or an AnyFastError."""
    check_task_or_error(msgspec.json.encode(value))


@FUZZ
@given(
    st.integers(min_value=100, max_value=599),
    st.binary(max_size=200) | json_values.map(msgspec.json.encode),
)
def test_error_bodies(status: int, body: bytes) -> None:
    """Any error body at any status gives an APIStatusError with a readable message."""
    error = status_error(status, body, request_id="rid")
    assert isinstance(error, APIStatusError)
    assert error.status_code == status
    assert str(error)


@FUZZ
@given(st.binary(max_size=200) | json_values.map(msgspec.json.encode))
def test_create_answers(body: bytes) -> None:
    """Any create answer gives a CreatedTask with an id, or an AnyFastError."""
    try:
        created = decode_created(body)
    except AnyFastError:
        return
    assert isinstance(created, CreatedTask)
    assert created.task_id


@FUZZ
@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    """Retry-After parsing gives a non-negative number or None."""
    parsed = parse_retry_after(value)
    assert parsed is None or parsed >= 0


@FUZZ
@given(scalars | json_values)
def test_progress_never_raises(value: Any) -> None:
    """Progress parsing gives 0..100 or None."""
    parsed = parse_progress(value)
    assert parsed is None or 0 <= parsed <= 100
