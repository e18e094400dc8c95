"""Task lifecycles: :class:`Stage`, the shared plan of stages, :class:`FakeTask` and what it
serves (the task's ``data`` object, with a DashScope-shaped upstream payload)."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._wire import new_request_id

TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE"})
"""Statuses after which ``finish_time`` is set."""
DEFAULT_RESULT_URL = (
    "https://dashscope-result.oss-accelerate.aliyuncs.com/fake/asyntask_video.mp4"
    "?Expires=1777430361&OSSAccessKeyId=LTAIfake&Signature=fake%2Bsignature%3D"
)
"""Result URL of :meth:`FakeAnyFast.default_success_stages`; it contains ``&`` on purpose."""

_UTC8 = dt.timezone(dt.timedelta(hours=8))


@dataclass(frozen=True, kw_only=True, slots=True)
class Stage:
    """One step of a fake task's life.

    ``status`` is sent verbatim (any string, known or not). ``progress`` is sent as given (``None``
    omits the key). The stage lasts ``polls`` answers with ``advance="poll"`` or ``seconds`` with
    ``advance="time"``; a duration of 0 skips the stage, and the last stage lasts forever.
    ``fail_reason`` / ``result_url`` are omitted when ``None``. ``extra`` keys are merged into
    the task's ``data`` object last, so they can add fields or override standard ones (including
    the upstream payload under ``"data"``).
    """

    status: str
    progress: str | int | None = None
    polls: int = 1
    seconds: float = 0.0
    fail_reason: str | None = None
    result_url: str | None = None
    extra: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.polls < 0 or self.seconds < 0:
            raise ValueError("Stage.polls and Stage.seconds must be >= 0")


def early_stages(polls: int, seconds: float, count: int) -> list[Stage]:
    """The first ``count`` non-terminal stages of the default lifecycles."""
    steps = [("NOT_START", "0%"), ("QUEUED", "20%"), ("IN_PROGRESS", "50%"), ("IN_PROGRESS", "75%")]
    return [
        Stage(status=s, progress=p, polls=polls, seconds=seconds, fail_reason="")
        for s, p in steps[:count]
    ]


class Plan:
    """Stages shared by the tasks of one ``add_task(s)`` call, with cumulative stage end times."""

    __slots__ = ("by_time", "clock", "ends", "stages")

    def __init__(self, stages: Sequence[Stage], by_time: bool, clock: Callable[[], float]) -> None:
        if not stages or not all(isinstance(s, Stage) for s in stages):
            raise ValueError("stages must be a non-empty sequence of Stage")
        self.stages: tuple[Stage, ...] = tuple(stages)
        self.ends = list(itertools.accumulate(s.seconds for s in self.stages))
        self.by_time = by_time
        self.clock = clock


class FakeTask:
    """The server-side state of one fake task (see :meth:`FakeAnyFast.add_task`)."""

    __slots__ = (
        "_created",
        "_idx",
        "_left",
        "_plan",
        "_request_id",
        "finish_time",
        "start_time",
        "submit_time",
        "task_id",
    )

    def __init__(self, task_id: str, plan: Plan, created: float, submit_time: int) -> None:
        self.task_id = task_id
        """The raw task id (clients percent-encode it, see :meth:`FakeAnyFast.url_for`)."""
        self._plan = plan
        self._created = created
        self.submit_time = submit_time
        """Unix seconds when the task was added."""
        self.start_time = 0
        """Unix seconds when IN_PROGRESS was first served, else 0."""
        self.finish_time = 0
        """Unix seconds when a terminal status was first served, else 0."""
        self._request_id = ""
        self._idx = 0
        self._left = plan.stages[0].polls
        if self._left <= 0:
            self._skip_empty()

    def __repr__(self) -> str:
        return f"FakeTask({self.task_id!r}, status={self.status!r}, stage={self.stage_index})"

    @property
    def stages(self) -> tuple[Stage, ...]:
        """All stages of this task."""
        return self._plan.stages

    @property
    def stage_index(self) -> int:
        """Index of the stage the next answer will show."""
        plan = self._plan
        if plan.by_time:
            elapsed = plan.clock() - self._created
            return min(bisect.bisect_right(plan.ends, elapsed), len(plan.stages) - 1)
        return self._idx

    @property
    def stage(self) -> Stage:
        """The stage the next answer will show."""
        return self._plan.stages[self.stage_index]

    @property
    def status(self) -> str:
        """The status the next answer will show."""
        return self.stage.status

    @property
    def request_id(self) -> str:
        """The task's ``request_id`` field (fixed per task)."""
        if not self._request_id:
            self._request_id = new_request_id()
        return self._request_id

    def _skip_empty(self) -> None:
        last = len(self._plan.stages) - 1
        while self._left <= 0 and self._idx < last:
            self._idx += 1
            self._left = self._plan.stages[self._idx].polls

    def _serve(self, unix_now: int, advance: bool) -> dict[str, Any]:
        """Return the ``data`` object of the current stage; count one poll if ``advance``."""
        stage = self.stage
        if advance and not self._plan.by_time:
            self._left -= 1
            self._skip_empty()
        status = stage.status
        if status == "IN_PROGRESS" and not self.start_time:
            self.start_time = unix_now
        if status in TERMINAL_STATUSES and not self.finish_time:
            self.finish_time = unix_now
        data: dict[str, Any] = {"task_id": self.task_id, "action": "generate", "status": status}
        if stage.result_url is not None:
            data["result_url"] = stage.result_url
        if stage.fail_reason is not None:
            data["fail_reason"] = stage.fail_reason
        data["submit_time"] = self.submit_time
        data["start_time"] = self.start_time
        data["finish_time"] = self.finish_time
        if stage.progress is not None:
            data["progress"] = stage.progress
        data["request_id"] = self.request_id
        data["data"] = self._upstream(stage)
        if stage.extra:
            data.update(stage.extra)
        return data

    def _upstream(self, stage: Stage) -> dict[str, Any] | None:
        """A DashScope-shaped upstream payload for terminal stages, else ``None``."""
        if stage.status not in TERMINAL_STATUSES:
            return None

        def fmt(unix: int) -> str:
            return dt.datetime.fromtimestamp(unix, _UTC8).strftime("%Y-%m-%d %H:%M:%S.000")

        output: dict[str, Any] = {
            "task_id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.task_id)),
            "task_status": "SUCCEEDED" if stage.status == "SUCCESS" else "FAILED",
            "submit_time": fmt(self.submit_time),
            "scheduled_time": fmt(self.start_time or self.submit_time),
            "end_time": fmt(self.finish_time),
        }
        payload: dict[str, Any] = {
            "output": output,
            "request_id": str(uuid.uuid5(uuid.NAMESPACE_OID, self.task_id)),
        }
        if stage.status == "SUCCESS":
            output["video_url"] = stage.result_url
            output["orig_prompt"] = "A cat running on grass"
            payload["usage"] = {
                "SR": 720,
                "duration": 5,
                "input_video_duration": 0,
                "output_video_duration": 5,
                "ratio": "16:9",
                "video_count": 1,
            }
        else:  # the provider's code is the stage's to give (FakeAnyFast.failure_stages(kind=))
            output["message"] = stage.fail_reason or "task failed"
        return payload


def serve_task(task: FakeTask, unix_now: int, advance: bool) -> dict[str, Any]:
    """The ``data`` object ``task`` answers a query with now; count one poll if ``advance``.

    The server's way in to :class:`FakeTask`'s private serving step, which stays off the
    task's public surface.
    """
    return task._serve(unix_now, advance)
