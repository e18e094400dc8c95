"""Shared fixtures: a fake AnyFast server on loopback and a client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from anyfast_async import AnyFast, RetryPolicy
from anyfast_async.testing import FakeAnyFast

DATA = Path(__file__).parent / "data"


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


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


@pytest.fixture
async def server() -> AsyncIterator[FakeAnyFast]:
    async with FakeAnyFast() as fake:
        yield fake


@pytest.fixture
async def client(server: FakeAnyFast, sleep: RecordingSleep) -> AsyncIterator[AnyFast]:
    async with AnyFast(
        server.api_key, base_url=server.base_url, sleep=sleep, retry=RetryPolicy(max_retries=3)
    ) as anyfast:
        yield anyfast


def load(name: str) -> bytes:
    """A documented example body from tests/data."""
    return (DATA / name).read_bytes()
