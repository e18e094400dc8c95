"""Start a web app example as a real server and check it over HTTP.

    python examples/_webapp_check.py examples/webapp_fastapi.py

Starts the app on a free loopback port (its fake AnyFast inside), creates videos through it,
waits for them through it, checks the answers and the shared watcher's counters, then stops
the app with SIGTERM and checks that it exits cleanly. Exits non-zero on any mismatch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp

SUCCEEDING = 12
FAILING = 3
STATUSES = {None, "NOT_START", "SUBMITTED", "QUEUED", "IN_PROGRESS", "SUCCESS"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {what}")


async def wait_ready(http: aiohttp.ClientSession, base: str, app: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        check(app.poll() is None, f"the app exited early with status {app.returncode}")
        try:
            async with http.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("FAILED: the app did not answer /healthz within 30 s")


async def exercise(base: str, app: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        await wait_ready(http, base, app)

        async def create(prompt: str) -> str:
            async with http.post(f"{base}/videos", json={"prompt": prompt}) as response:
                check(response.status == 202, f"POST /videos answered {response.status}")
                task_id: str = (await response.json())["task_id"]
                return task_id

        async def get(task_id: str, wait: float) -> dict[str, Any]:
            async with http.get(f"{base}/videos/{task_id}", params={"wait": wait}) as response:
                check(response.status == 200, f"GET /videos/{task_id} answered {response.status}")
                answer: dict[str, Any] = await response.json()
                return answer

        async with http.post(f"{base}/videos", json={"prompt": "   "}) as response:
            check(response.status == 422, f"an empty prompt answered {response.status}")
        async with http.get(f"{base}/videos/x", params={"wait": "soon"}) as response:
            check(response.status == 422, f"a bad wait answered {response.status}")
        async with http.get(f"{base}/videos/x", params={"wait": "26"}) as response:
            check(response.status == 422, f"a wait over 25 s answered {response.status}")
        async with http.get(f"{base}/videos/asyntask_someone_elses") as response:
            check(response.status == 404, f"an unknown id answered {response.status}")

        prompts = [f"video {i}" for i in range(SUCCEEDING)]
        prompts += [f"moderation test {i}" for i in range(FAILING)]
        ids = await asyncio.gather(*(create(p) for p in prompts))
        check(len(set(ids)) == len(ids), "task ids are not unique")

        now = await get(ids[0], 0)
        check(now["status"] in STATUSES, f"a new task's answer: {now}")
        # Two requests for every task at once: they share the watcher's one watch.
        answers = await asyncio.gather(*(get(i, 25) for i in ids + ids))
        for prompt, answer in zip(prompts + prompts, answers, strict=True):
            if "moderation" in prompt:
                check(answer["status"] == "FAILURE", f"{prompt}: {answer}")
                check(answer["error"] == "content moderation", f"{prompt}: {answer}")
            else:
                check(answer["status"] == "SUCCESS", f"{prompt}: {answer}")
                check(answer["result_url"].startswith("https://"), f"{prompt}: {answer}")

        async def stats() -> dict[str, Any]:
            async with http.get(f"{base}/stats") as response:
                counters: dict[str, Any] = await response.json()
                return counters

        before = await stats()
        check(before["succeeded"] == SUCCEEDING, f"stats: {before}")
        check(before["failed"] == FAILING, f"stats: {before}")
        check(before["errors"] == 0, f"stats: {before}")
        check(before["watching"] == 0, f"stats: {before}")
        # Finished videos are answered from the app's store: the same answer, no new poll.
        again = await asyncio.gather(*(get(i, 0) for i in ids))
        check(again == answers[: len(ids)], "a finished video's answer changed")
        after = await stats()
        check(after["polls"] == before["polls"], f"finished videos were polled: {after}")
        # Videos nobody asks about while they run are kept too, when they end.
        late = await asyncio.gather(*(create(f"late video {i}") for i in range(3)))
        deadline = time.monotonic() + 30
        while (ended := await stats())["succeeded"] < SUCCEEDING + len(late):
            check(time.monotonic() < deadline, f"the late videos did not finish: {ended}")
            await asyncio.sleep(0.05)
        for task_id in late:
            answer = await get(task_id, 0)
            check(answer["status"] == "SUCCESS", f"a video that ended unobserved: {answer}")
            check(answer["result_url"].startswith("https://"), f"no result: {answer}")
        after = await stats()
        check(after["polls"] == ended["polls"], f"finished videos were polled again: {after}")
        print(f"{len(ids) + len(late)} videos created and watched through the app: {after}")


def main() -> None:
    script = sys.argv[1]
    port = free_port()
    env = {**os.environ, "ANYFAST_API_KEY": "", "ANYFAST_BASE_URL": ""}
    with tempfile.TemporaryFile() as log:
        app = subprocess.Popen(
            [sys.executable, script, "--port", str(port)], env=env, stdout=log, stderr=log
        )
        try:
            asyncio.run(exercise(f"http://127.0.0.1:{port}", app))
            app.send_signal(signal.SIGTERM)
            status = app.wait(timeout=15)
        finally:
            if app.poll() is None:
                app.kill()
                app.wait()
        log.seek(0)
        output = log.read().decode(errors="replace")
    print(output, end="")
    # uvicorn re-raises the signal once it has shut down: killed by SIGTERM is its clean exit.
    check(status in (0, -signal.SIGTERM), f"{script} exited with status {status} after SIGTERM")
    check("closed; final counters" in output, f"{script} did not close its watcher")
    for sign in ("Traceback", "Unclosed", "was destroyed", "never awaited", "Error"):
        check(sign not in output, f"{script} printed {sign!r} while running or stopping")
    print(f"{script}: served, answered, and stopped cleanly")


if __name__ == "__main__":
    main()
