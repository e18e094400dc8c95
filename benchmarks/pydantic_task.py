"""The pydantic v2 model the comparisons decode into: the same fields as ``anyfast_async.Task``.

This is what an SDK built on pydantic would declare for the task-query answer: an envelope
holding the task record, with the same field names, aliases, types and defaults as our
msgspec ``Task`` (unknown fields ignored, frozen instances). It is used by
``bench_decode.py`` and by the httpx + pydantic polling loop of ``bench_watch.py``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PydanticTask(BaseModel):
    """A task record: the fields of ``anyfast_async.Task``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    raw_status: str = Field(alias="status")
    task_id: str = ""
    action: str = ""
    raw_result_url: str | None = Field(default=None, alias="result_url")
    original_result_url: str | None = None
    fail_reason: str | None = None
    submit_time: int | float | None = None
    start_time: int | float | None = None
    finish_time: int | float | None = None
    raw_progress: Any = Field(default=None, alias="progress")
    request_id: str | None = None
    url: str | None = None
    data: Any = None


class PydanticEnvelope(BaseModel):
    """The ``{"code", "message", "data"}`` envelope of a task-query answer."""

    model_config = ConfigDict(frozen=True)

    code: str = ""
    message: str = ""
    data: PydanticTask | None = None
