"""Proof by crash: a client process with a task store, SIGKILLed at random moments while it
creates, watches, downloads and delivers, then run again until it is done, loses nothing.

The fake server runs in this test's process, so it outlives every client process, and its
record of the tasks it created is the truth the store is checked against.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest

from anyfast_async.testing import FakeAnyFast, Stage

pytestmark = pytest.mark.anyio

CLIENT = Path(__file__).parent / "programs" / "durable_client.py"
TASKS = 200
KILLS = 6
VIDEO = bytes(range(256)) * 512  # 128 KiB, served at 500 kB/s: a download takes ~0.25 s


async def run_client(server: FakeAnyFast, tmp: Path, kill_after: float | None) -> int:
    """Run the client; SIGKILL it after ``kill_after`` seconds (``None``: let it finish).
    Its exit code (negative: the signal that ended it)."""
    command = [
        sys.executable,
        str(CLIENT),
        server.base_url,
        str(tmp / "store.db"),
        str(tmp / "videos"),
        str(tmp / "deliveries.jsonl"),
        str(TASKS),
    ]
    log = tmp / "client-stderr.txt"
    with log.open("wb") as stderr:
        async with await anyio.open_process(command, stdout=None, stderr=stderr) as process:
            if kill_after is None:
                with anyio.fail_after(240):
                    await process.wait()
            else:
                with anyio.move_on_after(kill_after):
                    await process.wait()
                if process.returncode is None:
                    process.send_signal(signal.SIGKILL)
                    await process.wait()
    assert process.returncode in (0, -signal.SIGKILL), log.read_text()
    return process.returncode


# Above the last run's own 240-second guard plus the killed runs before it.
@pytest.mark.timeout(360)
async def test_a_client_killed_again_and_again_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261204)
    # 10 ms per answer: the 200 creates, one after the other, take seconds, so kills land
    # among them too.
    async with FakeAnyFast(latency=0.01) as server:
        video_url = server.add_file("v.mp4", VIDEO, bytes_per_second=500_000)
        server.create_stages = [
            Stage(status="QUEUED", progress="0%", polls=2),
            Stage(status="IN_PROGRESS", progress="50%", polls=3),
            Stage(status="SUCCESS", progress="100%", result_url=video_url),
        ]
        kills = 0
        for _ in range(KILLS):
            if await run_client(server, tmp_path, kill_after=rng.uniform(0.5, 2.0)) != 0:
                kills += 1
        assert await run_client(server, tmp_path, kill_after=None) == 0
        created = [t.task_id for t in server.created]
    check(tmp_path, created, kills)


def check(tmp_path: Path, created: list[str], kills: int) -> None:
    """What the store, the deliveries and the files say after the last run."""
    with sqlite3.connect(tmp_path / "store.db") as db:
        rows = db.execute(
            "SELECT task_id, state, handled_at IS NOT NULL, download_path, error FROM tasks"
        ).fetchall()
    recorded = {row[0]: row for row in rows if row[0] is not None}
    unknown = [row for row in rows if row[1] == "unknown"]
    deliveries = [
        json.loads(line) for line in (tmp_path / "deliveries.jsonl").read_text().splitlines()
    ]
    delivered = {d["task_id"] for d in deliveries}
    # A task delivered again is marked so (at least once, and the callback can tell).
    seen: set[str] = set()
    for delivery in deliveries:
        assert delivery["redelivered"] or delivery["task_id"] not in seen
        seen.add(delivery["task_id"])

    assert kills >= KILLS // 2, "the client was killed while it worked"
    assert len(rows) == TASKS  # every create attempted, once
    # Every task the server made is in the store with its id, but for at most one create
    # per kill whose answer never came back, recorded as such.
    missing = set(created) - set(recorded)
    assert len(unknown) <= kills
    assert len(missing) <= len(unknown)
    assert set(recorded) <= set(created)
    # Every recorded task reached its outcome, was handled, and on_terminal saw it.
    assert [row for row in recorded.values() if row[1] != "finished" or not row[2]] == []
    assert set(recorded) <= delivered
    # Every video is whole on disk, and no partial file is left.
    for task_id, row in recorded.items():
        assert row[4] is None, f"{task_id}: {row[4]}"
        assert Path(row[3]).read_bytes() == VIDEO
    assert sorted(p.name for p in (tmp_path / "videos").iterdir() if p.name.startswith(".")) == []
