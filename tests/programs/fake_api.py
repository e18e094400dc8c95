"""FakeAnyFast in a process of its own, for the fleet test (tests/test_fleet.py): created tasks
take ``STAGE_SECONDS`` a stage (four stages), and fail when their prompt says "moderation".
It prints its base URL, then answers each line read on stdin with the number of task queries
it has answered so far, as JSON; it ends when stdin closes.

    python fake_api.py API_KEY STAGE_SECONDS
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from anyfast_async.testing import FakeAnyFast, Stage


async def main(api_key: str, seconds: float) -> None:
    def stages(body: dict[str, Any]) -> list[Stage]:
        if "moderation" in str(body.get("prompt", "")):
            return FakeAnyFast.failure_stages("content moderation", seconds=seconds)
        return FakeAnyFast.default_success_stages(seconds=seconds)

    async with FakeAnyFast(api_key, advance="time") as server:
        server.create_stages = stages
        print(server.base_url, flush=True)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):
            polls = sum(1 for r in server.requests if r.method == "GET" and r.task_id)
            print(json.dumps({"polls": polls}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
