"""Shared fixtures: a fake AnyFast server on loopback and a client pointed at it."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from anyfast_async import AnyFast, RetryPolicy
from anyfast_async.testing import FakeAnyFast, VirtualTimeLoop

DATA = Path(__file__).parent / "data"


def _loops() -> list[Any]:
    """asyncio's own event loop, and uvloop where it is installed (the ``speed`` extra)."""
    loops: list[Any] = [pytest.param(("asyncio", {}), id="asyncio")]
    if importlib.util.find_spec("uvloop") is not None:
        loops.append(pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"))
    return loops


VIRTUAL = pytest.param(("asyncio", {"loop_factory": VirtualTimeLoop}), id="virtual")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Async tests run on asyncio's loop and on uvloop (aiohttp needs asyncio); those marked
    ``virtual_time`` run on a :class:`VirtualTimeLoop` instead, where waiting costs nothing
    and every timer fires at its exact time."""
    if "anyio_backend" in metafunc.fixturenames:
        virtual = metafunc.definition.get_closest_marker("virtual_time") is not None
        metafunc.parametrize("anyio_backend", [VIRTUAL] if virtual else _loops(), indirect=True)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """The loop of the test (see ``pytest_generate_tests``)."""
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


class RecordingSleep:
    """A sleep that records the requested delays and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, delay: float) -> None:
        import anyio

        self.calls.append(delay)
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


def open_tcp_sockets() -> set[str]:
    """Inodes of the TCP sockets this process has open (client and fake server alike)."""
    ours: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[8:-1])
    tcp: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                tcp.update(line.split()[9] for line in f)
        except OSError:
            continue
    return ours & tcp


@pytest.fixture(autouse=True)
def no_leaked_sockets() -> Iterator[None]:
    """After each test every TCP socket it opened is closed."""
    before = open_tcp_sockets()
    yield
    gc.collect()
    leaked = open_tcp_sockets() - before
    assert not leaked, f"{len(leaked)} TCP socket(s) left open"


@pytest.fixture
async def server() -> AsyncIterator[FakeAnyFast]:
    async with FakeAnyFast() as fake:
        yield fake
    # Client and server are closed: nothing of theirs may still be running.
    for _ in range(3):
        await asyncio.sleep(0)
    current = asyncio.current_task()
    pending = [
        t
        for t in asyncio.all_tasks()
        if t is not current
        and not t.done()
        and not getattr(t.get_coro(), "__qualname__", "").startswith("TestRunner.")
    ]
    assert pending == [], f"tasks left running: {pending}"


@pytest.fixture
async def client(server: FakeAnyFast, sleep: RecordingSleep) -> AsyncIterator[AnyFast]:
    async with AnyFast(
        server.api_key, base_url=server.base_url, sleep=sleep, retry=RetryPolicy(max_retries=3)
    ) as anyfast:
        yield anyfast


def now() -> float:
    """The running event loop's clock (the fake server's too; virtual on a VirtualTimeLoop)."""
    return asyncio.get_running_loop().time()


def start_fake_server(
    *options: str, stderr: int | None = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """``anyfast fake-server --port 0 OPTIONS`` in a process of its own (no ANYFAST_*
    variables); its first line of output names its base URL (4th word)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFAST_")}
    command = [sys.executable, "-m", "anyfast_async", "fake-server", "--port", "0", *options]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env)  # noqa: S603 (our own command)


def load(name: str) -> bytes:
    """A documented example body from tests/data."""
    return (DATA / name).read_bytes()


def everything_shown(exc: BaseException) -> str:
    """Messages, reprs, attributes and the formatted traceback of an exception chain."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)
