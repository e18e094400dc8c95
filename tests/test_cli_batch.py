"""Batches on the command line: ids from files, outcomes as they come, interruption by
SIGINT/SIGTERM, re-runs that skip what is done, and `create --prompts`. Each test runs the
`anyfast` command as a subprocess against FakeAnyFast over loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from anyfast_async import SQLiteStore
from anyfast_async.testing import FakeAnyFast, Fault, Stage

from .test_cli import SECRET, anyfast, run_on_a_terminal, success, text

pytestmark = pytest.mark.anyio

FAST = ("--poll-interval", "0.01")


@pytest.fixture
async def api() -> AsyncIterator[FakeAnyFast]:
    async with FakeAnyFast(api_key=SECRET) as server:
        yield server


@pytest.fixture
async def storage() -> AsyncIterator[FakeAnyFast]:
    async with FakeAnyFast() as server:
        yield server


def lines(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def complete_lines(output: bytes) -> list[dict[str, Any]]:
    """The JSON lines of ``output`` read so far, but for a last one not yet ended."""
    return [json.loads(line) for line in output.split(b"\n")[:-1]]


def file_gets(storage: FakeAnyFast) -> int:
    return sum(1 for r in storage.requests if r.path.startswith("/files/"))


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def env_for(server: FakeAnyFast) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFAST_")}
    env.update(ANYFAST_API_KEY=SECRET, ANYFAST_BASE_URL=server.base_url)
    return env


# -- interruption -------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_signal_midway_through_downloads_leaves_no_partial_file(
    api: FakeAnyFast, storage: FakeAnyFast, tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """SIGTERM (docker, systemd, `timeout`) is handled as Ctrl-C is: the downloads under way
    are cancelled and their temporary files removed, the outcomes known so far are reported
    (a summary marked with the signal), and the exit code is 128 + the signal's number."""
    done = storage.add_file("done.mp4", b"D" * 1000)
    slow = storage.add_file("slow.mp4", b"S" * 1_000_000, bytes_per_second=50_000)
    api.add_task("quick", stages=success(done))
    api.add_task("big1", stages=success(slow))
    api.add_task("big2", stages=success(slow))
    out = tmp_path / "out"
    command = ["wait", "quick", "big1", "big2", *FAST, "--jsonl", "--download", str(out)]
    process = await anyio.open_process(
        [sys.executable, "-m", "anyfast_async", *command], env=env_for(api)
    )
    async with process:
        assert process.stdout is not None
        stdout = b""
        # Until "quick" is reported (its line is written after its file is in place) and
        # both slow downloads are under way.
        with anyio.fail_after(30):
            while "quick" not in {r.get("task_id") for r in complete_lines(stdout)}:
                stdout += await process.stdout.receive()
            while len(list(out.glob(".big*.part"))) < 2:
                await anyio.sleep(0.02)
        process.send_signal(signum)
        with anyio.fail_after(30):
            stdout += b"".join([chunk async for chunk in process.stdout])
            assert await process.wait() == code
    assert names(out) == ["quick.mp4"], "no partial file left"
    records = [json.loads(line) for line in stdout.decode().splitlines()]
    assert records[0]["task_id"] == "quick"
    assert records[0]["outcome"] == "succeeded"
    assert records[-1]["summary"]["interrupted"] == signum.name
    assert records[-1]["summary"]["unfinished"] == 2


async def test_partial_files_a_kill_left_are_removed_at_start(
    api: FakeAnyFast, storage: FakeAnyFast, tmp_path: Path
) -> None:
    """Partial files of our own naming (left by SIGKILL) are removed when a batch or a
    one-file download starts; other files are left alone."""
    api.add_task("a", stages=success(storage.add_file("a.mp4", b"A" * 100)))
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.mp4.x1y2z3w4.part").write_bytes(b"half")
    (out / "notes.txt").write_text("mine")
    result = await anyfast("wait", "a", "--download", str(out), *FAST, server=api)
    assert result.returncode == 0, text(result)
    assert names(out) == ["a.mp4", "notes.txt"]
    (tmp_path / ".one.mp4.abcdefgh.part").write_bytes(b"half")
    one = await anyfast("download", "a", "-o", str(tmp_path / "one.mp4"), *FAST, server=api)
    assert one.returncode == 0, text(one)
    assert names(tmp_path) == ["one.mp4", "out"]
    assert (tmp_path / "one.mp4").read_bytes() == b"A" * 100


# -- re-runs ------------------------------------------------------------------------------------


async def test_a_rerun_does_not_download_again(
    api: FakeAnyFast, storage: FakeAnyFast, tmp_path: Path
) -> None:
    """Videos already in the folder are kept (a download only renames a whole file into
    place); `--no-skip-existing` fetches them again."""
    for name in ("a", "b"):
        api.add_task(name, stages=success(storage.add_file(f"{name}.mp4", name.encode() * 10)))
    out = str(tmp_path)
    first = await anyfast("wait", "a", "b", "--download", out, *FAST, server=api)
    assert first.returncode == 0, text(first)
    assert file_gets(storage) == 2
    again = await anyfast("wait", "a", "b", "--download", out, *FAST, server=api)
    assert again.returncode == 0, text(again)
    assert file_gets(storage) == 2, "nothing fetched again"
    assert f"a\tSUCCESS\t{tmp_path / 'a.mp4'}" in again.stdout.decode()
    forced = await anyfast("wait", "a", "--download", out, "--no-skip-existing", *FAST, server=api)
    assert forced.returncode == 0, text(forced)
    assert file_gets(storage) == 3


async def test_with_a_store_a_rerun_asks_the_server_nothing_it_knows(
    api: FakeAnyFast, storage: FakeAnyFast, tmp_path: Path
) -> None:
    """With --store, tasks whose outcome was recorded (a success whose video is on disk, a
    failure) are reported from the store, not polled; the others (one that timed out) are
    watched again."""
    api.add_task("ok", stages=success(storage.add_file("ok.mp4", b"V" * 10)))
    api.add_task("bad", stages=[Stage(status="FAILURE", fail_reason="moderation")])
    # Queued for ever while the first runs watch it: it times out, however slow the machine.
    api.add_task("late", stages=[Stage(status="QUEUED", polls=10**9)])
    store, out = str(tmp_path / "s.db"), str(tmp_path / "out")
    options = ["--download", out, "--store", store, "--jsonl", "--poll-interval", "0.05"]
    # The first runs: "ok" and "bad" reach their outcomes (no deadline to beat), "late" times
    # out.
    first = await anyfast("wait", "ok", "bad", *options, server=api)
    assert first.returncode == 1, text(first)  # "bad" failed
    assert {r["task_id"]: r["outcome"] for r in lines(first)[:-1]} == {
        "ok": "succeeded",
        "bad": "failed",
    }
    timed_out = await anyfast("wait", "late", *options, "--timeout", "0.5", server=api)
    assert timed_out.returncode == 3, text(timed_out)
    assert [(r["task_id"], r["outcome"]) for r in lines(timed_out)[:-1]] == [("late", "timed_out")]
    polls = {task_id: api.polls(task_id) for task_id in ("ok", "bad", "late")}
    # From now on "late" ends, in three polls.
    api.remove_task("late")
    api.add_task("late", stages=success(storage.add_file("late.mp4", b"L")))
    second = await anyfast("wait", "ok", "bad", "late", *options, server=api)
    assert second.returncode == 1, text(second)  # "bad" failed
    records = {r.get("task_id"): r for r in lines(second)}
    assert records["ok"]["from_store"] is True
    assert records["bad"]["from_store"] is True
    assert records["late"]["outcome"] == "succeeded"
    assert api.polls("ok") == polls["ok"]
    assert api.polls("bad") == polls["bad"]
    assert api.polls("late") > polls["late"]
    assert records[None]["summary"]["from_store"] == 2


# -- ids from files -----------------------------------------------------------------------------


async def test_ids_from_a_file_and_from_stdin(api: FakeAnyFast, tmp_path: Path) -> None:
    """--ids-from: one id a line, blank lines and comments skipped, JSON lines give their
    task_id, `-` is stdin; duplicates are watched once."""
    for name in ("a", "b", "c", "d"):
        api.add_task(name, stages=success())
    ids = tmp_path / "ids.txt"
    ids.write_text(
        '# my batch\na\n\nb  # the second\n{"task_id": "c", "line": 3}\n{"summary": {}}\na\n'
    )
    result = await anyfast("wait", "--ids-from", str(ids), "d", "--jsonl", *FAST, server=api)
    assert result.returncode == 0, text(result)
    assert sorted(r["task_id"] for r in lines(result)[:-1]) == ["a", "b", "c", "d"]
    assert lines(result)[-1]["summary"]["tasks"] == 4
    with anyio.fail_after(60):
        piped = await anyio.run_process(
            [sys.executable, "-m", "anyfast_async", "wait", "--ids-from", "-", *FAST],
            input=b"a\nb\n",
            env=env_for(api),
            check=False,
        )
    assert piped.returncode == 0, text(piped)
    out = piped.stdout.decode()
    assert sorted(line.split("\t")[0] for line in out.splitlines()) == ["a", "b"]
    assert "2 of 2 tasks finished" in piped.stderr.decode()
    # That output, fed back, is the same batch (its counts went to stderr).
    (tmp_path / "out.txt").write_text(out)
    again = await anyfast("wait", "--ids-from", str(tmp_path / "out.txt"), "--jsonl", server=api)
    assert sorted(r["task_id"] for r in lines(again)[:-1]) == ["a", "b"]


async def test_no_ids_is_a_usage_error(api: FakeAnyFast, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    result = await anyfast("wait", "--ids-from", str(empty), server=api)
    assert result.returncode == 2
    assert "no task ids" in result.stderr.decode()
    missing = await anyfast("watch", "--ids-from", str(tmp_path / "nope.txt"), server=api)
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr.decode()
    blank = await anyfast("wait", "", server=api)
    assert blank.returncode == 2
    assert blank.stdout == b""
    assert "empty" in blank.stderr.decode()


# -- output -------------------------------------------------------------------------------------


async def test_wait_streams_each_outcome_then_a_summary(
    api: FakeAnyFast, storage: FakeAnyFast, tmp_path: Path
) -> None:
    """`wait --jsonl`: one object per task as it ends (outcome, error kind, download path),
    in the order they end, then one summary object; the exit code says the worst outcome."""
    api.add_task("ok", stages=success(storage.add_file("ok.mp4", b"V")))
    api.add_task("bad", stages=[Stage(status="FAILURE", fail_reason="moderation")])
    result = await anyfast(
        "wait",
        "ok",
        "bad",
        "--jsonl",
        "--download",
        str(tmp_path),
        "--poll-interval",
        "0.01",
        server=api,
    )
    assert result.returncode == 1
    *outcomes, summary = lines(result)
    by_id = {r["task_id"]: r for r in outcomes}
    assert by_id["ok"]["outcome"] == "succeeded"
    assert by_id["ok"]["download_path"] == str(tmp_path / "ok.mp4")
    assert by_id["bad"]["outcome"] == "failed"
    assert by_id["bad"]["error_type"] == "TaskFailedError"
    assert "moderation" in str(by_id["bad"]["error"])
    assert by_id["bad"]["failure_kind"] == "content_policy"
    counts = summary["summary"]
    # The phase times come from the gateway's clock (whole seconds of the wall clock here).
    times = {k: counts.pop(k) for k in list(counts) if k.endswith(("_p50", "_p95"))}
    assert set(times) == {"queue_time_p50", "queue_time_p95", "run_time_p50", "run_time_p95"}
    polls = sum(1 for r in api.requests if r.method == "GET")
    assert counts.pop("polls_per_task") == pytest.approx(polls / 2)
    assert counts == {
        "tasks": 2,
        "succeeded": 1,
        "failed": 1,
        "failed_by_kind": {"content_policy": 1},
        "timed_out": 0,
        "errors": 0,
        "unfinished": 0,
        "from_store": 0,
        "interrupted": None,
    }


async def test_watch_can_download(api: FakeAnyFast, storage: FakeAnyFast, tmp_path: Path) -> None:
    api.add_task("a", stages=success(storage.add_file("a.mp4", b"A" * 10)))
    result = await anyfast(
        "watch", "a", "--download", str(tmp_path), "--poll-interval", "0.01", server=api
    )
    assert result.returncode == 0, text(result)
    *updates, summary = lines(result)
    assert updates[-1]["download_path"] == str(tmp_path / "a.mp4")
    assert (tmp_path / "a.mp4").read_bytes() == b"A" * 10
    assert summary["summary"]["succeeded"] == 1


async def test_a_large_batch_on_a_terminal_draws_one_bar(api: FakeAnyFast) -> None:
    """Past 20 tasks a terminal shows one bar with counts, not a bar per task; the summary
    then lists only the tasks that did not succeed when there are more than 50."""
    ids = [f"t{i:03}" for i in range(60)]
    for task_id in ids[:-1]:
        api.add_task(task_id, stages=success())
    api.add_task(ids[-1], stages=[Stage(status="FAILURE", fail_reason="moderation")])
    code, screen = await anyio.to_thread.run_sync(
        run_on_a_terminal, ["watch", *ids, "--poll-interval", "0.01"], env_for(api)
    )
    assert code == 1, screen
    assert "60/60" in screen, "one bar counts the whole batch"
    assert "59 succeeded, 1 failed" in screen
    assert "t000" not in screen, "no row per task, and successes are not listed"
    assert "t059" in screen
    assert "FAILURE" in screen


async def test_a_small_batch_on_a_terminal_draws_a_bar_per_task(api: FakeAnyFast) -> None:
    for task_id in ("a1", "b2"):
        api.add_task(task_id, stages=success())
    code, screen = await anyio.to_thread.run_sync(
        run_on_a_terminal, ["wait", "a1", "b2", "--poll-interval", "0.01"], env_for(api)
    )
    assert code == 0, screen
    assert "a1" in screen
    assert "b2" in screen
    assert "2 of 2 tasks finished: 2 succeeded" in screen


# -- download -----------------------------------------------------------------------------------


async def test_download_to_a_folder_that_does_not_exist(
    api: FakeAnyFast, storage: FakeAnyFast, tmp_path: Path
) -> None:
    """Several ids, or an -o ending with a separator: a folder (made); one id to a missing
    path: that file."""
    api.add_task("a", stages=success(storage.add_file("a.mp4", b"A" * 10)))
    api.add_task("b", stages=success(storage.add_file("b.mp4", b"B" * 20)))
    many = await anyfast(
        "download", "a", "b", "-o", str(tmp_path / "new"), "--concurrency", "2", *FAST, server=api
    )
    assert many.returncode == 0, text(many)
    assert (tmp_path / "new" / "a.mp4").read_bytes() == b"A" * 10
    assert (tmp_path / "new" / "b.mp4").read_bytes() == b"B" * 20
    slash = await anyfast(
        "download", "a", "-o", str(tmp_path / "other") + os.sep, *FAST, server=api
    )
    assert slash.returncode == 0, text(slash)
    assert (tmp_path / "other" / "a.mp4").read_bytes() == b"A" * 10
    single = await anyfast("download", "b", "-o", str(tmp_path / "video.bin"), *FAST, server=api)
    assert single.returncode == 0, text(single)
    assert (tmp_path / "video.bin").read_bytes() == b"B" * 20
    assert single.stdout.decode().strip() == str(tmp_path / "video.bin")


# -- creating a batch ---------------------------------------------------------------------------


async def test_create_from_a_prompts_file(api: FakeAnyFast, tmp_path: Path) -> None:
    """One prompt a line or a JSON object of parameters; each id printed as it comes, so
    the output feeds `wait --ids-from`."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "# cats\nA cat on grass\n\n"
        '{"prompt": "A dog", "duration": 3}\n'
        '{"model": "wan2.2-t2v", "prompt": "A fox"}\n'
    )
    result = await anyfast("create", "--prompts", str(prompts), "--duration", "7", server=api)
    assert result.returncode == 0, text(result)
    ids = result.stdout.decode().split()
    assert len(ids) == 3
    assert sorted(ids) == sorted(task.task_id for task in api.created)
    bodies = sorted(
        (json.loads(r.body) for r in api.requests if r.method == "POST"), key=lambda b: str(b)
    )
    assert {"model": "wan2.2-t2v", "prompt": "A fox"} in bodies
    dog = next(b for b in bodies if b["prompt"] == "A dog")
    assert dog == {"model": "happyhorse-1.0-t2v", "prompt": "A dog", "parameters": {"duration": 3}}
    cat = next(b for b in bodies if b["prompt"] == "A cat on grass")
    assert cat["parameters"] == {"duration": 7}
    assert "3 prompts: 3 created" in result.stderr.decode()


async def test_a_bad_line_sends_nothing(api: FakeAnyFast, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text('A cat\n{"prompt": "x", "duration": 99}\n')
    result = await anyfast("create", "--prompts", str(prompts), server=api)
    assert result.returncode == 2
    assert f"{prompts}:2" in result.stderr.decode()
    assert api.created == []


async def test_one_failed_create_does_not_stop_the_others(api: FakeAnyFast, tmp_path: Path) -> None:
    """A 500 on one create is reported (it may have made a task: sent=true) and the others
    go on; exit 4."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\nthree\n")
    api.inject(Fault.server_error(500))
    result = await anyfast(
        "create", "--prompts", str(prompts), "--jsonl", "--concurrency", "1", server=api
    )
    assert result.returncode == 4, text(result)
    *made, summary = lines(result)
    assert [r["task_id"] is not None for r in made] == [False, True, True]
    assert made[0]["error_type"] == "ServerError"
    assert made[0]["sent"] is True
    assert summary["summary"]["created"] == 2
    assert summary["summary"]["maybe_created"] == 1
    assert len(api.created) == 2


async def test_with_a_store_create_sends_each_prompt_once(api: FakeAnyFast, tmp_path: Path) -> None:
    """Run again with the same store, `create` sends only the prompts it had not sent, and
    prints every id again (so its output is the whole batch's); a create that may have
    made a task is not sent again unless --resend-unknown says so."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("same\nsame\nother\nthird\n")
    store = str(tmp_path / "s.db")
    api.inject(Fault.server_error(500))  # the first create: may have made a task
    first = await anyfast(
        "create", "--prompts", str(prompts), "--store", store, "--concurrency", "1", server=api
    )
    assert first.returncode == 4
    assert len(api.created) == 3
    again = await anyfast("create", "--prompts", str(prompts), "--store", store, server=api)
    assert again.returncode == 4, text(again)
    assert len(api.created) == 3, "nothing sent again"
    assert sorted(again.stdout.decode().split()) == sorted(t.task_id for t in api.created)
    assert "may have made a task" in again.stderr.decode()
    resent = await anyfast(
        "create", "--prompts", str(prompts), "--store", store, "--resend-unknown", server=api
    )
    assert resent.returncode == 0, text(resent)
    assert len(api.created) == 4
    for flags in (["--resend-unknown"], []):  # the resent one now stands for its prompt
        once_more = await anyfast(
            "create", "--prompts", str(prompts), "--store", store, *flags, server=api
        )
        assert once_more.returncode == 0, text(once_more)
        assert len(api.created) == 4
        assert sorted(once_more.stdout.decode().split()) == sorted(t.task_id for t in api.created)
    async with SQLiteStore(store, readonly=True) as records:
        made = [r for r in await records.tasks() if r.task_id is not None]
    assert len(made) == 4


def start_and_close_its_output(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the command, read 10 bytes of its output and close it (as `head -c 10` does)."""
    process = subprocess.Popen(  # noqa: S603 (our own command)
        [sys.executable, "-m", "anyfast_async", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    process.stdout.read(10)
    process.stdout.close()
    return process


def exit_and_stderr(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Wait for the process to end (killing it after 60 s); its exit code and its stderr."""
    assert process.stderr is not None
    try:
        _, errors = process.communicate(timeout=60)
        return process.returncode, errors.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


async def test_a_reader_that_goes_away_ends_the_batch_quietly(api: FakeAnyFast) -> None:
    """`anyfast wait ... | head -c 10`: the next outcome meets the closed pipe and the
    command stops (exit 1, nothing on stderr) instead of watching on with nowhere to write.

    One task ends at once; the reader takes its line and goes away. Only then does a second
    task end; the other 38 never do, so a command that watched on would not exit."""
    ids = [f"t{i}" for i in range(40)]
    api.add_task(ids[0], stages=success())
    for task_id in ids[1:]:
        api.add_task(task_id, stages=[Stage(status="QUEUED", polls=10**9)])
    process = await anyio.to_thread.run_sync(
        start_and_close_its_output, ["wait", *ids, "--jsonl", *FAST], env_for(api)
    )
    try:
        api.remove_task(ids[1])
        api.add_task(ids[1], stages=success())
    finally:
        code, errors = await anyio.to_thread.run_sync(exit_and_stderr, process)
    assert code == 1
    assert errors == ""


async def test_a_store_does_not_stand_for_another_download_folder(
    api: FakeAnyFast, storage: FakeAnyFast, tmp_path: Path
) -> None:
    """A success recorded with its video in one folder is watched again (and its video
    fetched) when the batch now downloads into another."""
    api.add_task("a", stages=success(storage.add_file("a.mp4", b"A")))
    store = str(tmp_path / "s.db")
    for folder in ("v1", "v2"):
        result = await anyfast(
            "wait",
            "a",
            "--store",
            store,
            "--download",
            str(tmp_path / folder),
            *FAST,
            server=api,
        )
        assert result.returncode == 0, text(result)
        assert (tmp_path / folder / "a.mp4").read_bytes() == b"A"
    assert file_gets(storage) == 2


async def test_ids_from_a_file_always_download_into_a_folder(
    api: FakeAnyFast, storage: FakeAnyFast, tmp_path: Path
) -> None:
    """--ids-from means a batch, so -o is a folder even for a file of one id; a batch to a
    new path that looks like a video file is refused."""
    api.add_task("a", stages=success(storage.add_file("a.mp4", b"A")))
    (tmp_path / "ids.txt").write_text("a\n")
    result = await anyfast(
        "download",
        "--ids-from",
        str(tmp_path / "ids.txt"),
        "-o",
        str(tmp_path / "out"),
        *FAST,
        server=api,
    )
    assert result.returncode == 0, text(result)
    assert (tmp_path / "out" / "a.mp4").read_bytes() == b"A"
    refused = await anyfast(
        "download",
        "a",
        "--store",
        str(tmp_path / "s.db"),
        "-o",
        str(tmp_path / "clip.mp4"),
        server=api,
    )
    assert refused.returncode == 2
    assert "looks like a file name" in refused.stderr.decode()


async def test_a_refused_key_stops_a_create_batch(api: FakeAnyFast, tmp_path: Path) -> None:
    """A 401 on one create stops the batch: the other prompts are not sent to be refused."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(10)))
    result = await anyfast(
        "create", "--prompts", str(prompts), "--concurrency", "1", key="sk-wrong", server=api
    )
    assert result.returncode == 4
    assert "AuthenticationError" in result.stderr.decode()
    assert "sk-wrong" not in text(result)
    assert len([r for r in api.requests if r.method == "POST"]) == 1


async def test_sigterm_while_creating(api: FakeAnyFast, tmp_path: Path) -> None:
    """Stopped while creates are on the wire: those are reported as possibly made (and kept
    as unknown in the store), the prompts never sent are not; a run again sends only those."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\nthree\nfour\n")
    store = str(tmp_path / "s.db")
    api.inject(Fault.slow(30), times=2)
    command = ["create", "--prompts", str(prompts), "--store", store, "--jsonl"]
    process = await anyio.open_process(
        [sys.executable, "-m", "anyfast_async", *command, "--concurrency", "2"],
        env=env_for(api),
    )
    async with process:
        with anyio.fail_after(30):  # until both creates are on the wire
            while api.in_flight < 2:
                await anyio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert process.stdout is not None
            stdout = b"".join([chunk async for chunk in process.stdout])
            assert await process.wait() == 143
    *made, summary = [json.loads(line) for line in stdout.decode().splitlines()]
    assert [(r["task_id"], r["sent"]) for r in made] == [(None, True), (None, True)]
    assert summary["summary"]["maybe_created"] == 2
    assert summary["summary"]["interrupted"] == "SIGTERM"
    async with SQLiteStore(store, readonly=True) as records:
        states = sorted(r.state for r in await records.tasks())
    assert states == ["unknown", "unknown"], "the two never sent left no record"
    posts = len([r for r in api.requests if r.method == "POST"])
    again = await anyfast(*command, server=api)
    assert again.returncode == 4, text(again)  # the two in doubt are not sent again
    assert len([r for r in api.requests if r.method == "POST"]) == posts + 2
    assert lines(again)[-1]["summary"]["created"] == 2
