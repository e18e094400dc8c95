"""Benchmark: how fast polling comes back after HTTP 429, in polls per second due against done.

A watcher polls ``--tasks`` tasks (100 by default), each due every second (``PollPolicy.fixed(1)``),
so 100 polls a second are due. The fake AnyFast server (in this process, on loopback) answers
with the gateway's realistic in-progress record (the provider's payload in ``data``, see
:func:`in_progress_stage`).
Four runs, each ``--seconds`` long, report the polls done in each second:

* **baseline**: no 429 at all (what is due, as the machine delivers it);
* **a create's 429**: a fresh client's first create is answered 429 with ``Retry-After: 0.1``
  (and retried), then the watch begins, with nothing but good answers;
* **a poll's 429**: the first poll answered is a 429 with ``Retry-After: 0.1``, then nothing but
  good answers;
* **1 % random 429s**: every answer is a 429 with probability 0.01, without ``Retry-After``.

The report gives each run's polls per second over time, its mean over the run after its first
second, and that mean as a ratio to the baseline's, measured in the same process.

    python benchmarks/bench_throttle.py                 # 4 runs of 20 s
    python benchmarks/bench_throttle.py --quick         # 4 runs of 4 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from anyfast_async import AnyFast, PollPolicy
from anyfast_async.testing import FakeAnyFast, Fault, Stage

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def in_progress_stage() -> Stage:
    """The gateway's in-progress record of a HappyHorse task, provider payload included: the
    documented success record (``tests/data/query_happyhorse_success.json``) as it reads while
    the provider is still running (no result URL, upstream status RUNNING, no end time)."""
    record = json.loads((DATA / "query_happyhorse_success.json").read_text())["data"]
    payload = record["data"]
    output = {k: v for k, v in payload["output"].items() if k not in ("video_url", "end_time")}
    output["task_status"] = "RUNNING"
    extra = {"data": {**payload, "output": output}, "start_time": record["start_time"]}
    return Stage(status="IN_PROGRESS", progress="50%", fail_reason="", extra=extra)


async def run(scenario: str, tasks: int, seconds: float) -> list[int]:
    """Polls done in each second of one run."""
    async with FakeAnyFast() as server:
        server.add_tasks(tasks, stages=[in_progress_stage()])
        if scenario in ("a create's 429", "a poll's 429"):
            server.inject(Fault.rate_limited(retry_after="0.1"))
        elif scenario == "1 % random 429s":
            server.inject_rate(Fault.rate_limited(), 0.01, seed=1)
        async with (
            AnyFast(server.api_key, base_url=server.base_url) as client,
            client.watcher(concurrency=64, poll=PollPolicy.fixed(1.0), timeout=None) as watcher,
        ):
            if scenario == "a create's 429":
                await client.create_text_to_video("A cat on grass")  # 429, then retried
                server.reset_stats()
            start = asyncio.get_running_loop().time()
            watcher.add_many(server.tasks)
            await asyncio.sleep(seconds)
        counts = [0] * int(seconds)
        for request in server.requests:
            second = int(request.time - start)
            if 0 <= second < len(counts):
                counts[second] += 1
        return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100, help="tasks, each due once a second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--quick", action="store_true", help="runs of 4 s")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    seconds = 4.0 if args.quick else args.seconds
    results: dict[str, Any] = {"tasks": args.tasks, "due_per_second": args.tasks, "runs": {}}
    for scenario in ("baseline", "a create's 429", "a poll's 429", "1 % random 429s"):
        counts = asyncio.run(run(scenario, args.tasks, seconds))
        steady = counts[1:]
        results["runs"][scenario] = {
            "polls_per_second": counts,
            "mean_after_first_second": sum(steady) / len(steady),
        }
    base = results["runs"]["baseline"]["mean_after_first_second"]
    print(f"{args.tasks} tasks due every second ({args.tasks} polls/s due), runs of {seconds:g} s")
    print()
    print("| run | polls done each second | mean after the first second | ratio to baseline |")
    print("|---|---|---:|---:|")
    for scenario, run_result in results["runs"].items():
        mean = run_result["mean_after_first_second"]
        run_result["ratio_to_baseline"] = mean / base
        shown = " ".join(str(c) for c in run_result["polls_per_second"])
        print(f"| {scenario} | {shown} | {mean:.1f} | {mean / base:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
