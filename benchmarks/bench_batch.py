"""Benchmark: a batch through the ``anyfast`` command, interrupted by SIGTERM and run again.

A fake AnyFast server runs in this process, on loopback; it answers the gateway's records (the
provider's DashScope-shaped payload in ``data``) and serves each result as a 64 KiB file. Each
created task is NOT_START, QUEUED, IN_PROGRESS (twice) for 30 s each (2 minutes in all, within
the documented 1 to 5), then SUCCESS; one prompt in 50 is refused by moderation (FAILURE). The
commands run as a user runs them, in subprocesses, with the default poll policy:

1. ``anyfast create --prompts prompts.txt --store batch.db > ids.txt``;
2. ``anyfast wait --ids-from ids.txt --download out --jsonl --store batch.db``, sent SIGTERM
   once half of the tasks have ended;
3. the same ``wait`` command again, to the end.

Reported: each step's wall time, the CPU of the command (user + system of the child
process), its peak resident memory (``VmHWM``), the polls per task, files
fetched against files expected, and what the interruption left (exit code, partial files).

    python benchmarks/bench_batch.py               # 2,000 tasks, 30 s stages (about 3 minutes)
    python benchmarks/bench_batch.py --quick       # 200 tasks, 2 s stages, a poll a second
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from anyfast_async.testing import FakeAnyFast, Stage

KEY = "sk-bench-batch"


def children_cpu() -> float:
    """CPU seconds of the waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib(pid: int) -> int:
    """The process's resident-memory high-water mark since its exec (``VmHWM``), in KiB.

    (``ru_maxrss`` will not do: a child's counts the memory of this process, which it was
    forked from, before its exec.)"""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


async def watch_memory(pid: int, peak: list[int]) -> None:
    """Keep ``peak[0]`` at the process's high-water mark until it is cancelled."""
    while True:
        peak[0] = max(peak[0], peak_rss_kib(pid))
        await asyncio.sleep(0.2)


async def run(
    command: list[str], env: dict[str, str], *, stop_after: int | None = None, cwd: Path
) -> dict[str, Any]:
    """Run ``anyfast COMMAND``; with ``stop_after``, send SIGTERM once that many outcome
    lines were printed. Its exit code, output lines, wall time and CPU."""
    cpu_before = children_cpu()
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "anyfast_async",
        *command,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    peak = [0]
    memory = asyncio.create_task(watch_memory(process.pid, peak))
    lines: list[str] = []
    outcomes = 0
    signalled = False
    while raw := await process.stdout.readline():
        lines.append(raw.decode())
        if raw.startswith(b'{"task_id"'):
            outcomes += 1
        if stop_after is not None and outcomes >= stop_after and not signalled:
            process.send_signal(signal.SIGTERM)
            signalled = True
    assert process.stderr is not None
    errors = (await process.stderr.read()).decode()
    peak[0] = max(peak[0], peak_rss_kib(process.pid))  # its output is closed: it is ending
    memory.cancel()
    code = await process.wait()
    return {
        "exit_code": code,
        "lines": lines,
        "stderr": errors,
        "wall_s": time.perf_counter() - started,
        "cpu_s": children_cpu() - cpu_before,
        "peak_rss_mib": round(peak[0] / 1024, 1),
    }


def stages(body: dict[str, Any], seconds: float) -> list[Stage]:
    if "moderation" in str(body.get("prompt", "")):
        return FakeAnyFast.failure_stages("content moderation", seconds=seconds)
    return FakeAnyFast.default_success_stages(seconds=seconds)


async def main(tasks: int, stage_seconds: float, poll_interval: float | None) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="anyfast-batch-"))
    prompts = folder / "prompts.txt"
    prompts.write_text(
        "".join(
            f"Clip {i}: a lighthouse at dusk, waves{' (moderation)' if i % 50 == 49 else ''}\n"
            for i in range(tasks)
        )
    )
    failing = sum(1 for i in range(tasks) if i % 50 == 49)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFAST_")}
    async with FakeAnyFast(KEY, advance="time", serve_results=True) as server:
        server.create_stages = lambda body: stages(body, stage_seconds)
        env.update(ANYFAST_API_KEY=KEY, ANYFAST_BASE_URL=server.base_url)
        create = await run(
            ["create", "--prompts", "prompts.txt", "--store", "batch.db", "--concurrency", "8"],
            env,
            cwd=folder,
        )
        (folder / "ids.txt").write_text("".join(create["lines"]))
        batch = ["wait", "--ids-from", "ids.txt", "--download", "out", "--jsonl"]
        batch += ["--store", "batch.db"]
        if poll_interval is not None:
            batch += ["--poll-interval", str(poll_interval)]
        first = await run(batch, env, stop_after=tasks // 2, cwd=folder)
        left = sorted(p.name for p in (folder / "out").iterdir() if p.name.endswith(".part"))
        polls_first = sum(1 for r in server.requests if r.method == "GET" and r.task_id)
        second = await run(batch, env, cwd=folder)
        polls = sum(1 for r in server.requests if r.method == "GET" and r.task_id)
        fetched = sum(1 for r in server.requests if r.path.startswith("/files/"))
    summary = json.loads(second["lines"][-1])["summary"]
    videos = sum(1 for p in (folder / "out").iterdir() if p.name.endswith(".mp4"))
    return {
        "tasks": tasks,
        "stage_seconds": stage_seconds,
        "poll_interval": poll_interval,
        "create": {
            "ids": len(create["lines"]),
            "exit_code": create["exit_code"],
            "wall_s": round(create["wall_s"], 2),
            "cpu_s": round(create["cpu_s"], 2),
            "peak_rss_mib": create["peak_rss_mib"],
        },
        "first_wait": {
            "exit_code": first["exit_code"],
            "outcomes_before_sigterm": sum(1 for x in first["lines"] if x.startswith('{"task')),
            "summary": json.loads(first["lines"][-1])["summary"],
            "partial_files_left": left,
            "polls": polls_first,
            "wall_s": round(first["wall_s"], 2),
            "cpu_s": round(first["cpu_s"], 2),
            "peak_rss_mib": first["peak_rss_mib"],
        },
        "second_wait": {
            "exit_code": second["exit_code"],
            "summary": summary,
            "wall_s": round(second["wall_s"], 2),
            "cpu_s": round(second["cpu_s"], 2),
            "peak_rss_mib": second["peak_rss_mib"],
        },
        "polls_per_task": round(polls / tasks, 2),
        "videos_on_disk": videos,
        "videos_expected": tasks - failing,
        "files_fetched": fetched,
        "peak_rss_mib": max(step["peak_rss_mib"] for step in (create, first, second)),
        "cpu_per_task_ms": round(
            1000 * (create["cpu_s"] + first["cpu_s"] + second["cpu_s"]) / tasks, 2
        ),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="200 tasks, 2 s stages, polled every second"
    )
    parser.add_argument("--json", type=Path, help="write the results to this file")
    options = parser.parse_args()
    results = asyncio.run(main(200, 2.0, 1.0) if options.quick else main(2000, 30.0, None))
    text = json.dumps(results, indent=2)
    print(text)
    if options.json:
        options.json.write_text(text + "\n")
