"""Why tasks failed, on the command line: the kind of each failure in the outcome lines and
counted in the summary, and the phase deadlines as options. Each test runs the `anyfast`
command as a subprocess against FakeAnyFast over loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from anyfast_async.testing import FakeAnyFast

from .test_cli import SECRET, anyfast, success, text

pytestmark = pytest.mark.anyio

FAST = ("--poll-interval", "0.01")


@pytest.fixture
async def api() -> AsyncIterator[FakeAnyFast]:
    async with FakeAnyFast(api_key=SECRET) as server:
        yield server


def json_lines(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.decode().splitlines()]


def add_batch(api: FakeAnyFast) -> list[str]:
    api.add_task("ok", stages=success())
    api.add_task("nsfw", stages=api.failure_stages(kind="content_policy", provider="seedance"))
    api.add_task("nsfw2", stages=api.failure_stages(kind="content_policy"))
    api.add_task("down", stages=api.failure_stages(kind="upstream_error", provider="kling"))
    return ["ok", "nsfw", "nsfw2", "down"]


async def test_wait_jsonl_gives_each_failure_its_kind_and_counts_them(api: FakeAnyFast) -> None:
    result = await anyfast("wait", *add_batch(api), "--jsonl", *FAST, server=api)
    assert result.returncode == 1, text(result)
    *outcomes, summary = json_lines(result.stdout)
    kinds = {line["task_id"]: line["failure_kind"] for line in outcomes}
    assert kinds == {
        "ok": None,
        "nsfw": "content_policy",
        "nsfw2": "content_policy",
        "down": "upstream_error",
    }
    assert summary["summary"]["failed_by_kind"] == {"content_policy": 2, "upstream_error": 1}


async def test_piped_wait_shows_the_kind_in_each_line_and_in_the_counts(api: FakeAnyFast) -> None:
    result = await anyfast("wait", *add_batch(api), *FAST, server=api)
    out, err = result.stdout.decode(), result.stderr.decode()
    nsfw = next(line for line in out.splitlines() if line.startswith("nsfw\t"))
    assert "failed (content_policy)" in nsfw
    assert "3 failed (2 content_policy, 1 upstream_error)" in err
    assert SECRET not in out + err


async def test_a_rerun_with_a_store_counts_the_kinds_it_recorded(
    api: FakeAnyFast, tmp_path: Path
) -> None:
    store = str(tmp_path / "batch.db")
    first = await anyfast("wait", *add_batch(api), "--store", store, "--jsonl", *FAST, server=api)
    assert first.returncode == 1, text(first)
    polls = len(api.requests)
    again = await anyfast("wait", "nsfw", "down", "--store", store, "--jsonl", *FAST, server=api)
    *outcomes, summary = json_lines(again.stdout)
    assert len(api.requests) == polls  # known from the store: nothing asked
    assert {line["failure_kind"] for line in outcomes} == {"content_policy", "upstream_error"}
    assert summary["summary"]["failed_by_kind"] == {"content_policy": 1, "upstream_error": 1}


async def test_a_single_failed_task_says_its_kind(api: FakeAnyFast) -> None:
    api.add_task("t1", stages=api.failure_stages(kind="quota"))
    result = await anyfast("wait", "t1", *FAST, server=api)
    assert result.returncode == 1
    assert "failed (quota): task failed, code: Arrearage" in text(result)


async def test_a_queue_timeout_on_the_command_line_ends_a_stuck_task(api: FakeAnyFast) -> None:
    """A task the provider refuses (it stays queued with the provider's error) ends with the
    phase deadline instead of the 30-minute one."""
    api.add_task("stuck", stages=api.upstream_error_stages(then="persists", error_polls=1))
    api.add_task("ok", stages=success())
    result = await anyfast(
        "wait", "stuck", "ok", "--jsonl", "--upstream-error-timeout", "0.3", *FAST, server=api
    )
    assert result.returncode == 3, text(result)  # a deadline passed
    outcomes = {line["task_id"]: line for line in json_lines(result.stdout)[:-1]}
    assert outcomes["stuck"]["stalled"] == "upstream_error"
    assert outcomes["stuck"]["error_type"] == "TaskStalledError"
    assert "InvalidApiKey" in outcomes["stuck"]["error"]
    assert outcomes["ok"]["outcome"] == "succeeded"


async def test_phase_options_must_be_positive(api: FakeAnyFast) -> None:
    for option in (
        "--queue-timeout",
        "--run-timeout",
        "--stall-timeout",
        "--upstream-error-timeout",
    ):
        result = await anyfast("wait", "t1", option, "0", server=api)
        assert result.returncode == 2
        assert "must be greater than 0" in text(result)
    assert api.requests == []


async def test_wait_summarizes_phase_times_and_polls_per_task(api: FakeAnyFast) -> None:
    ids = add_batch(api)
    result = await anyfast("wait", *ids, "--jsonl", *FAST, server=api)
    summary = json_lines(result.stdout)[-1]["summary"]
    polls = sum(1 for r in api.requests if r.method == "GET")
    assert summary["polls_per_task"] == pytest.approx(polls / len(ids))
    # The success went through IN_PROGRESS: the gateway's times give its queue and run time.
    assert summary["queue_time_p50"] is not None
    assert summary["queue_time_p50"] >= 0
    assert summary["run_time_p95"] >= summary["run_time_p50"] >= 0
    piped = await anyfast("wait", *ids, *FAST, server=api)
    assert "polls per task" in piped.stderr.decode()
    assert "(p50)" in piped.stderr.decode()
