"""Retry only the failures worth retrying, and stop waiting for tasks that are stuck.

Creates a task per prompt and waits for all of them with two phase deadlines: a task whose
provider keeps answering with an error while it is queued ends after ``upstream_error_timeout``
instead of after the 24 hours the gateway would wait, and a task queued too long ends after
``queue_timeout``. Then, by kind of failure:

- ``UPSTREAM_ERROR`` and ``TIMED_OUT`` (``FailureKind.retryable``), and tasks stuck on a
  provider error: the same request may succeed, so it is created again (up to 2 more times);
- ``CONTENT_POLICY``, ``INVALID_INPUT``, ``QUOTA``, ``UNKNOWN``: reported, not retried (change
  the prompt, fix the request, top up).

Runs against an in-process FakeAnyFast whose tasks fail as the providers really fail (their
documented codes and messages): one prompt is refused by moderation, one hits a provider
outage on its first attempt, one is stuck on a provider error on its first attempt. The
fake's tasks take minutes, as real ones do, so the example runs on a virtual clock
(``VirtualTimeLoop``): the minutes pass in a moment.

    python examples/retry_failures.py
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from anyfast_async import (
    AnyFast,
    AnyFastError,
    FailureKind,
    PollPolicy,
    Task,
    TaskFailedError,
    TaskStalledError,
    TextToVideo,
)
from anyfast_async.testing import FakeAnyFast, Stage, VirtualTimeLoop

PROMPTS = [
    "A paper boat drifting down a rainy street",
    "A lighthouse at dawn, waves rolling in",
    "A fox running through fresh snow",
    "FORBIDDEN: something moderation refuses",
    "A hot-air balloon over a canyon",
]
ATTEMPTS = 3


def worth_retrying(outcome: Task | AnyFastError) -> bool:
    """Whether creating the same task again may succeed."""
    if isinstance(outcome, TaskFailedError):
        return outcome.kind.retryable
    return isinstance(outcome, TaskStalledError) and outcome.reason == "upstream_error"


async def run(client: AnyFast, poll: PollPolicy | None) -> dict[str, Task | AnyFastError]:
    """Each prompt's final outcome, after the retries."""
    final: dict[str, Task | AnyFastError] = {}
    todo = list(PROMPTS)
    for attempt in range(1, ATTEMPTS + 1):
        created = {}
        for prompt in todo:
            task = await client.create(TextToVideo(prompt=prompt, duration=5))
            created[task.task_id] = prompt
        outcomes = await client.wait_many(
            created, poll=poll, queue_timeout=1800, upstream_error_timeout=120
        )
        kinds = {kind.value: len(ids) for kind, ids in outcomes.by_kind().items()}
        stuck = Counter(o.reason for o in outcomes.values() if isinstance(o, TaskStalledError))
        print(f"attempt {attempt}: {len(created)} tasks; failed: {kinds}; stuck: {dict(stuck)}")
        todo = []
        for task_id, outcome in outcomes.items():
            prompt = created[task_id]
            final[prompt] = outcome
            if worth_retrying(outcome) and attempt < ATTEMPTS:
                todo.append(prompt)
        if not todo:
            break
    return final


def report(final: dict[str, Task | AnyFastError]) -> None:
    for prompt, outcome in final.items():
        if isinstance(outcome, Task):
            print(f"ok: {prompt!r}: {outcome.result_url}")
        elif isinstance(outcome, TaskFailedError):
            print(f"not retried ({outcome.kind.value}): {prompt!r}: {outcome.reason}")
        else:
            print(f"gave up: {prompt!r}: {type(outcome).__name__}: {outcome}")


async def main() -> None:
    attempts: Counter[str] = Counter()

    def stages(body: dict[str, Any]) -> list[Stage]:
        """How the fake's providers treat each create."""
        prompt = body.get("input", {}).get("prompt") or body.get("prompt", "")
        attempts[prompt] += 1
        first = attempts[prompt] == 1
        if prompt.startswith("FORBIDDEN"):
            return server.failure_stages(kind="content_policy", provider="seedance", seconds=30)
        if prompt.startswith("A lighthouse") and first:
            return server.failure_stages(kind="upstream_error", seconds=30)
        if prompt.startswith("A fox") and first:
            return server.upstream_error_stages(then="persists", seconds=5)
        return server.default_success_stages(seconds=30)

    async with FakeAnyFast(advance="time") as server:
        server.create_stages = stages
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            final = await run(client, PollPolicy.fixed(15))
    report(final)
    assert isinstance(final["A lighthouse at dawn, waves rolling in"], Task)
    assert isinstance(final["A fox running through fresh snow"], Task)
    refused = final["FORBIDDEN: something moderation refuses"]
    assert isinstance(refused, TaskFailedError)
    assert refused.kind is FailureKind.CONTENT_POLICY
    assert attempts["FORBIDDEN: something moderation refuses"] == 1  # not retried


if __name__ == "__main__":
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
