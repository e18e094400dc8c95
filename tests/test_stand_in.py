"""FakeAnyFast as a local stand-in for AnyFast: a chosen port, a bounded request log, a rate
limit, result files served by itself, slow files, and the `anyfast fake-server` command."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import pytest

from anyfast_async import AnyFast, PollPolicy, TextToVideo
from anyfast_async.testing import FakeAnyFast, Stage

from .conftest import start_fake_server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as sess:
        yield sess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_chosen_port() -> None:
    """port= and host= choose where it listens; base_url says so."""
    port = free_port()
    async with FakeAnyFast(host="127.0.0.1", port=port) as server:
        assert server.base_url == f"http://127.0.0.1:{port}"
        assert server.port == port
        server.add_task("t1")
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            assert (await client.get_task("t1")).task_id == "t1"


async def test_the_request_log_keeps_the_latest() -> None:
    """max_requests bounds the log of a server that runs for long: the latest are kept."""
    async with FakeAnyFast(max_requests=10) as server:
        server.add_task("t1", stages=[Stage(status="QUEUED")])
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            for _ in range(45):
                await client.get_task("t1")
        assert 10 <= len(server.requests) <= 20
        assert server.polls("t1") == 45  # the counts are not trimmed
        times = [r.time for r in server.requests]
        assert times == sorted(times)


async def test_a_rate_limit_answers_429_past_it(session: aiohttp.ClientSession) -> None:
    """rate_limit=5: in one second (a clock that stands still) five queries are answered and
    the rest get 429 with a Retry-After, as a rate-limited gateway does."""
    async with FakeAnyFast(rate_limit=5, clock=lambda: 1000.0) as server:
        server.add_task("t1")
        headers = {"Authorization": f"Bearer {server.api_key}"}

        async def ask() -> tuple[int, str | None]:
            async with session.get(server.url_for("t1"), headers=headers) as response:
                await response.read()
                return response.status, response.headers.get("Retry-After")

        answers = await asyncio.gather(*(ask() for _ in range(8)))
    assert sorted(status for status, _ in answers) == [200] * 5 + [429] * 3
    assert all(float(after) <= 1.0 for status, after in answers if status == 429 and after)


async def test_results_served_by_itself_download(tmp_path: Path) -> None:
    """serve_results=True: a task that succeeds with the default result URL points at a file
    this server serves, so a download works with no other setup."""
    async with FakeAnyFast(serve_results=True) as server:
        server.add_task("t1")
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            task = await client.wait("t1", poll=PollPolicy.fixed(0.01))
            assert task.result_url is not None
            assert task.result_url.startswith(server.base_url + "/files/")
            path = await client.download(task, tmp_path)
    content = path.read_bytes()
    assert content[4:8] == b"ftyp"
    assert b"fake video of t1" in content


async def test_a_slow_file_can_be_interrupted(tmp_path: Path) -> None:
    """bytes_per_second serves a file slowly: a download cancelled midway (here after its
    first piece) leaves nothing behind."""
    async with FakeAnyFast() as server:
        url = server.add_file("slow.mp4", b"x" * 200_000, bytes_per_second=100_000)
        server.add_task("t1", stages=[Stage(status="SUCCESS", result_url=url)])
        async with AnyFast(server.api_key, base_url=server.base_url) as client:
            task = await client.get_task("t1")
            started = anyio.Event()

            def progress(done: int, total: int | None) -> None:
                assert total == 200_000
                started.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.download(task, tmp_path, progress=progress))
                await started.wait()
                tg.cancel_scope.cancel()
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []


def test_the_fake_server_command(tmp_path: Path) -> None:
    """`anyfast fake-server` runs a stand-in AnyFast until SIGTERM: tasks created through it
    finish, their videos download, and a key given on the command line is never printed."""
    process = start_fake_server("--stage-seconds", "0.05", "--api-key", "sk-local-SECRET")
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        first = process.stdout.readline().decode()
        assert first.startswith("FakeAnyFast serving on http://127.0.0.1:")
        base_url = first.split()[3]

        async def use() -> Path:
            async with AnyFast("sk-local-SECRET", base_url=base_url) as client:
                task = await client.create_and_wait(
                    TextToVideo(prompt="A cat on grass"), poll_interval=0.05
                )
                return await client.download(task, tmp_path)

        path = anyio.run(use)
        assert path.read_bytes()[4:8] == b"ftyp"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        output = first + process.stdout.read().decode() + process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    assert "stopped after 1 tasks created" in output
    assert "sk-local-SECRET" not in output
