"""The anyfast command line, run as a subprocess against FakeAnyFast."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from anyfast_async import AnyFast, SQLiteStore
from anyfast_async.testing import FakeAnyFast, Stage

pytestmark = pytest.mark.anyio

SECRET = "sk-cli-SECRET-1234567890"


async def anyfast(
    *args: str, server: FakeAnyFast | None = None, key: str | None = SECRET, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFAST_")}
    if key is not None:
        env["ANYFAST_API_KEY"] = key
    if server is not None:
        env["ANYFAST_BASE_URL"] = server.base_url
    with anyio.fail_after(timeout):
        return await anyio.run_process(
            [sys.executable, "-m", "anyfast_async", *args], check=False, env=env
        )


def text(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode() + result.stderr.decode()


@pytest.fixture
async def api() -> AsyncIterator[FakeAnyFast]:
    async with FakeAnyFast(api_key=SECRET) as server:
        yield server


def success(url: str = "https://cdn.example/v.mp4") -> list[Stage]:
    return [
        Stage(status="QUEUED", progress="20%"),
        Stage(status="IN_PROGRESS", progress="60%"),
        Stage(status="SUCCESS", progress="100%", result_url=url),
    ]


async def test_get_human_and_json(api: FakeAnyFast) -> None:
    """`get` prints the task, as text or JSON."""
    api.add_task("t1", stages=[Stage(status="IN_PROGRESS", progress="50%")])
    human = await anyfast("get", "t1", server=api)
    assert human.returncode == 0
    assert "IN_PROGRESS" in text(human)
    as_json = await anyfast("get", "t1", "--json", server=api)
    assert json.loads(as_json.stdout)["progress"] == 50


async def test_watch_jsonl(api: FakeAnyFast) -> None:
    """`watch` piped prints JSON lines of transitions; exit 0 when all succeed."""
    api.add_task("a", stages=success())
    api.add_task("b", stages=success())
    result = await anyfast("watch", "a", "b", "--poll-interval", "0.01", server=api)
    assert result.returncode == 0, text(result)
    *lines, summary = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert summary["summary"]["succeeded"] == 2
    for task_id in ("a", "b"):
        mine = [u for u in lines if u["task_id"] == task_id]
        assert [u["status"] for u in mine] == ["QUEUED", "IN_PROGRESS", "SUCCESS"]
        assert [u["is_terminal"] for u in mine] == [False, False, True]


async def test_watch_exit_codes(api: FakeAnyFast) -> None:
    """A failed task exits 1; a timeout exits 3; a missing task exits 4."""
    api.add_task("bad", stages=[Stage(status="FAILURE", fail_reason="moderation")])
    api.add_task("stuck", stages=[Stage(status="QUEUED")])
    failed = await anyfast("watch", "bad", "--jsonl", "--poll-interval", "0.01", server=api)
    assert failed.returncode == 1
    timed_out = await anyfast(
        "watch", "stuck", "--timeout", "0.3", "--poll-interval", "0.01", server=api
    )
    assert timed_out.returncode == 3
    missing = await anyfast("get", "nope", server=api)
    assert missing.returncode == 4


async def test_wait_downloads_and_summarises(api: FakeAnyFast, tmp_path: Path) -> None:
    """`wait --download DIR` downloads every result and prints one line per task."""
    async with FakeAnyFast() as storage:
        api.add_task("a", stages=success(storage.add_file("a.mp4", b"A" * 5000)))
        api.add_task("b", stages=success(storage.add_file("b.mp4", b"B" * 7000)))
        result = await anyfast(
            "wait", "a", "b", "--download", str(tmp_path), "--poll-interval", "0.01", server=api
        )
    assert result.returncode == 0, text(result)
    assert (tmp_path / "a.mp4").read_bytes() == b"A" * 5000
    assert (tmp_path / "b.mp4").read_bytes() == b"B" * 7000
    out = result.stdout.decode()
    assert "a\tSUCCESS" in out
    assert "b\tSUCCESS" in out


async def test_download_command(api: FakeAnyFast, tmp_path: Path) -> None:
    """`download` waits for an unfinished task, writes the file; an expired URL exits 4."""
    async with FakeAnyFast() as storage:
        api.add_task("ok", stages=success(storage.add_file("v.mp4", b"V" * 1234)))
        api.add_task("old", stages=success(storage.add_file("o.mp4", b"x", expired=True))[-1:])
        target = tmp_path / "video.mp4"
        good = await anyfast(
            "download", "ok", "-o", str(target), "--poll-interval", "0.01", server=api
        )
        assert good.returncode == 0, text(good)
        assert target.read_bytes() == b"V" * 1234
        expired = await anyfast("download", "old", "-o", str(tmp_path), server=api)
    assert expired.returncode == 4
    assert "expire" in text(expired)
    assert "Traceback" not in text(expired)


async def test_errors_are_one_line_without_the_key(api: FakeAnyFast) -> None:
    """A refused key exits 4 with one readable line; the key is never printed."""
    api.add_task("t1")
    wrong = await anyfast("get", "t1", server=api, key=SECRET + "-wrong")
    assert wrong.returncode == 4
    assert len(wrong.stderr.decode().strip().splitlines()) == 1
    assert "AuthenticationError" in wrong.stderr.decode()
    assert SECRET not in text(wrong)
    for args in (["get", "t1"], ["watch", "t1", "--poll-interval", "0.01"]):
        result = await anyfast(*args, server=api)
        assert SECRET not in text(result)


async def test_usage_errors_exit_2() -> None:
    """No command, a bad option, no key, or an empty id: exit 2 with a message."""
    assert (await anyfast()).returncode == 2
    assert (await anyfast("watch", "--concurrency", "x", "t1")).returncode == 2
    no_key = await anyfast("get", "t1", key=None)
    assert no_key.returncode == 2
    assert "ANYFAST_API_KEY" in no_key.stderr.decode()
    assert "Traceback" not in text(no_key)
    empty = await anyfast("get", " ")
    assert empty.returncode == 2


@pytest.mark.parametrize("command", [[], ["get"], ["watch"], ["wait"], ["download"], ["demo"]])
async def test_help_everywhere(command: list[str]) -> None:
    """--help works for the program and every command."""
    result = await anyfast(*command, "--help", key=None)
    assert result.returncode == 0
    assert "usage: anyfast" in result.stdout.decode()


async def test_base_url_option_overrides_the_environment(api: FakeAnyFast) -> None:
    """--base-url wins over ANYFAST_BASE_URL."""
    api.add_task("t1")
    env_points_nowhere = await anyfast("get", "t1", "--base-url", api.base_url, server=None)
    assert env_points_nowhere.returncode == 0, text(env_points_nowhere)


async def test_demo_piped() -> None:
    """`demo` needs no account and no network; piped, it prints updates and a summary."""
    result = await anyfast("demo", "--tasks", "5", key=None)
    assert result.returncode == 0, text(result)
    out = result.stdout.decode()
    assert "Summary" in out
    assert "tasks succeeded" in out
    assert "polls used" in out
    assert "throttles survived" in out


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the command under a pty; its exit code and everything it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 140, 0, 0))
    env = {**env, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "50"}
    process = subprocess.Popen(  # noqa: S603 (our own command)
        [sys.executable, "-m", "anyfast_async", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    captured = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                captured += chunk
            elif process.poll() is not None:
                break
        code = process.wait(timeout=120)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, captured.decode(errors="replace")


def test_demo_on_a_terminal() -> None:
    """Under a terminal (a pty), the demo draws live progress bars, then the summary table."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFAST_")}
    code, screen = run_on_a_terminal(["demo", "--tasks", "5"], env)
    assert code == 0, screen
    assert "━" in screen, "progress bars were drawn"
    assert "\x1b[" in screen, "with terminal escapes (a live display)"
    assert "100%" in screen
    assert "Summary" in screen
    assert "throttles survived (429)" in screen
    assert "┌" in screen, "the summary is a table"


def test_a_reader_that_closes_early_ends_the_command_quietly() -> None:
    """`anyfast demo | head -2`: when the reader goes away the command stops at once, with
    exit code 1 and nothing on stderr (no "Broken pipe" error, no traceback)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFAST_")}
    # 120 tasks print far more than a pipe holds (64 KiB), so the command cannot finish
    # without its reader: it must meet the closed pipe.
    process = subprocess.Popen(
        [sys.executable, "-m", "anyfast_async", "demo", "--tasks", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        first = [process.stdout.readline(), process.stdout.readline()]
        process.stdout.close()  # what `head -2` does after its two lines
        assert process.wait(timeout=60) == 1
        errors = process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert all(json.loads(line)["task_id"] for line in first)
    assert errors == ""


async def test_demo_with_many_tasks() -> None:
    """The demo's throttling and flaky answers hit polls only: 25 tasks still exit 0."""
    result = await anyfast("demo", "--tasks", "25", key=None, timeout=120)
    assert result.returncode == 0, text(result)
    assert "tasks succeeded" in result.stdout.decode()


async def test_non_positive_numbers_are_usage_errors() -> None:
    """--poll-interval 0 or a negative --timeout is refused, not silently ignored."""
    for option in (["--poll-interval", "0"], ["--timeout", "-1"]):
        result = await anyfast("watch", "t1", *option)
        assert result.returncode == 2
        assert "greater than 0" in result.stderr.decode()


# -- the task store ----------------------------------------------------------------------------


async def test_resume_and_tasks_with_a_store(api: FakeAnyFast, tmp_path: Path) -> None:
    """A process creates two tasks with a store and dies; `anyfast resume` watches them to
    their ends (saving the video), and `anyfast tasks` lists what the store knows."""
    store = tmp_path / "tasks.db"
    video = api.add_file("v.mp4", b"a video")
    api.create_stages = success(video)
    async with AnyFast(SECRET, base_url=api.base_url, store=SQLiteStore(store)) as client:
        first = await client.create_text_to_video("A cat")
        second = await client.create_text_to_video("A dog")  # and the process dies

    listed = await anyfast("tasks", "--store", str(store), "--unfinished", "--jsonl")
    assert listed.returncode == 0, text(listed)
    records = [json.loads(line) for line in listed.stdout.decode().splitlines()]
    assert [r["task_id"] for r in records] == [first.task_id, second.task_id]
    assert {r["state"] for r in records} == {"watching"}

    resumed = await anyfast(
        "resume",
        "--store",
        str(store),
        "--download-to",
        str(tmp_path / "videos"),
        "--poll-interval",
        "0.01",
        "--jsonl",
        server=api,
    )
    assert resumed.returncode == 0, text(resumed)
    finals = [json.loads(line) for line in resumed.stdout.decode().splitlines()]
    assert finals[-1]["summary"]["succeeded"] == 2
    assert sorted(u["task_id"] for u in finals if u.get("is_terminal")) == sorted(
        [first.task_id, second.task_id]
    )
    for task_id in (first.task_id, second.task_id):
        assert (tmp_path / "videos" / f"{task_id}.mp4").read_bytes() == b"a video"

    human = await anyfast("tasks", "--store", str(store))
    assert human.returncode == 0, text(human)
    assert "2 finished" in text(human)
    assert text(human).count("\thandled\tSUCCESS\t") == 2
    assert SECRET not in text(human) + text(resumed) + text(listed)
    again = await anyfast("resume", "--store", str(store), server=api)
    assert again.returncode == 0
    assert "nothing to resume" in text(again)


async def test_tasks_without_a_store_is_a_usage_error(tmp_path: Path) -> None:
    result = await anyfast("tasks", "--store", str(tmp_path / "nope.db"))
    assert result.returncode == 2
    assert "no task store at" in text(result)
