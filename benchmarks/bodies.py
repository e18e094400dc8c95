"""The answers every benchmark serves: the gateway's records as users receive them.

* :data:`IN_PROGRESS_RECORD`: a HappyHorse task while the provider is still running. The
  gateway passes the provider's last answer through in ``data``: for DashScope an ``output``
  object (the provider's own task id, its status ``RUNNING``, the prompt as the model received
  it, submit and scheduled times), ``usage`` and a ``request_id``. It is the documented
  success record (``tests/data/query_happyhorse_success.json``) as it reads before the end:
  no result URL, no end time, ``finish_time`` 0, progress 50 %, with a prompt of realistic
  length (users write a paragraph, not the example's five words) and the fields newer gateway
  builds add (``id``, ``created_at``, ``updated_at``, ``platform``, ``user_id``, ``group``,
  ``channel_id``, ``quota``). About 1.3 KB of JSON, of which the provider payload is about
  700 bytes.
* :data:`SUCCESS_RECORD`: the documented success record itself.

Both are the ``data`` of the ``{"code": "success", "message": "", "data": ...}`` envelope;
:func:`envelope` wraps one as the gateway's compact JSON bytes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"

PROMPT = (
    "A golden retriever puppy runs across a sunlit meadow toward the camera, ears flapping, "
    "tall grass swaying in a light breeze; slow-motion tracking shot at ground level, shallow "
    "depth of field, warm late-afternoon light, cinematic colour grading, 4K detail"
)


def _success() -> dict[str, Any]:
    record: dict[str, Any] = json.loads((DATA / "query_happyhorse_success.json").read_text())
    return record["data"]  # type: ignore[no-any-return]


SUCCESS_RECORD: dict[str, Any] = _success()


def _in_progress() -> dict[str, Any]:
    record = copy.deepcopy(SUCCESS_RECORD)
    for key in ("result_url",):
        record.pop(key)
    record.update(
        {
            "id": 48213977,
            "status": "IN_PROGRESS",
            "fail_reason": "",
            "finish_time": 0,
            "progress": "50%",
            "created_at": record["submit_time"],
            "updated_at": record["start_time"] + 45,
            "platform": "48",
            "user_id": 10384,
            "group": "default",
            "channel_id": 112,
            "quota": 1500000,
        }
    )
    output = record["data"]["output"]
    output.pop("video_url")
    output.pop("end_time")
    output["task_status"] = "RUNNING"
    output["orig_prompt"] = PROMPT
    return record


IN_PROGRESS_RECORD: dict[str, Any] = _in_progress()


def envelope(record: dict[str, Any]) -> bytes:
    """``record`` in the success envelope, as compact JSON with Go's escapes (``&`` and the
    angle brackets as ``\\u0026``, ``\\u003c``, ``\\u003e``)."""
    text = json.dumps(
        {"code": "success", "message": "", "data": record},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return text.encode()


IN_PROGRESS_BODY: bytes = envelope(IN_PROGRESS_RECORD)
SUCCESS_BODY: bytes = envelope(SUCCESS_RECORD)
