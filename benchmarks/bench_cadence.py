"""Benchmark: requests per task, and how late the client learns that a task finished.

A simulation with a simulated clock (nothing sleeps; it runs in seconds). A population of
``--tasks`` tasks is drawn once, and each polling strategy is run over the same population:

* **the task** (created at t = 0, when the watch starts): ``NOT_START`` for U(0, 5) s while
  the gateway hands it to the provider, then ``QUEUED`` for an exponential time with a mean of
  20 s (most queues are short, a few are long), then ``IN_PROGRESS`` for U(60, 300) s (the
  documented 1 to 5 minutes of generation), then ``SUCCESS``. Its true finish time is the end of
  ``IN_PROGRESS``.
* **the gateway** refreshes each task from its provider every 15 s, at a random phase per task
  (U(0, 15) s after creation). A poll sees the true status as of the gateway's last refresh
  (``NOT_START`` before the first one): a change becomes visible at the next refresh.
* **the client** polls at t = 0, then after each poll waits what its policy says, until a poll
  sees ``SUCCESS``. Our default is the SDK's real ``anyfast_async.PollPolicy().next_delay(status,
  same_polls, rng)``, called as the scheduler calls it: ``same_polls`` counts the consecutive
  polls that saw the same status (1 on the first poll of a new status). The fixed loops are
  ``PollPolicy.fixed(15)`` and ``PollPolicy.fixed(1)`` (no jitter). Errors and deadlines are
  left out: every poll succeeds.

Reported per strategy: polls per task (mean), and the detection delay, from the true finish
time to the poll that sees ``SUCCESS`` (mean, median, 95th percentile). The gateway's own
refresh lag (true finish to the refresh that publishes it, 7.5 s on average) is part of every
strategy's delay and is shown on its own as the floor no client can beat. The difference to
the fixed 15 s loop is computed task by task on the same population, with its standard error.

    python benchmarks/bench_cadence.py [--tasks 5000] [--seed 1] [--json benchmarks/cadence.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from anyfast_async import PollPolicy, TaskStatus

REFRESH = 15.0
NOT_START_MAX = 5.0
QUEUE_MEAN = 20.0
RUN_MIN, RUN_MAX = 60.0, 300.0


@dataclass(frozen=True, slots=True)
class SimTask:
    """One task's true timeline (seconds after creation) and its gateway refresh phase."""

    queued_at: float
    started_at: float
    finished_at: float
    phase: float

    def true_status(self, t: float) -> TaskStatus:
        if t >= self.finished_at:
            return TaskStatus.SUCCESS
        if t >= self.started_at:
            return TaskStatus.IN_PROGRESS
        if t >= self.queued_at:
            return TaskStatus.QUEUED
        return TaskStatus.NOT_START

    def visible_status(self, t: float) -> TaskStatus:
        """What a poll at ``t`` sees: the status as of the gateway's last refresh."""
        if t < self.phase:
            return TaskStatus.NOT_START
        last_refresh = self.phase + REFRESH * math.floor((t - self.phase) / REFRESH)
        return self.true_status(last_refresh)

    @property
    def published_at(self) -> float:
        """The refresh that makes SUCCESS visible."""
        return self.phase + REFRESH * math.ceil((self.finished_at - self.phase) / REFRESH)


def population(count: int, rng: random.Random) -> list[SimTask]:
    tasks = []
    for _ in range(count):
        queued = rng.uniform(0.0, NOT_START_MAX)
        started = queued + rng.expovariate(1.0 / QUEUE_MEAN)
        finished = started + rng.uniform(RUN_MIN, RUN_MAX)
        tasks.append(SimTask(queued, started, finished, rng.uniform(0.0, REFRESH)))
    return tasks


def watch(task: SimTask, policy: PollPolicy, rng: random.Random) -> tuple[int, float]:
    """Poll one task as the SDK's scheduler does; (polls, detection delay)."""
    now = 0.0
    polls = 0
    status: TaskStatus | None = None
    same = 0
    while True:
        polls += 1
        seen = task.visible_status(now)
        if seen is status:
            same += 1
        else:
            status, same = seen, 1
        if seen is TaskStatus.SUCCESS:
            return polls, now - task.finished_at
        now += policy.next_delay(seen, same, rng)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


STRATEGIES = {
    "ours (PollPolicy())": PollPolicy(),
    "fixed 15 s": PollPolicy.fixed(15),
    "fixed 1 s": PollPolicy.fixed(1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000, help="tasks in the population")
    parser.add_argument("--seed", type=int, default=1, help="seed of the population and jitter")
    parser.add_argument("--quick", action="store_true", help="1,000 tasks")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    count = 1000 if args.quick else args.tasks
    started = time.perf_counter()
    tasks = population(count, random.Random(args.seed))
    floor = [t.published_at - t.finished_at for t in tasks]
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "tasks": count,
        "seed": args.seed,
        "model": {
            "not_start_seconds": f"uniform(0, {NOT_START_MAX})",
            "queued_seconds": f"exponential(mean {QUEUE_MEAN})",
            "in_progress_seconds": f"uniform({RUN_MIN}, {RUN_MAX})",
            "gateway_refresh_seconds": REFRESH,
        },
        "mean_task_seconds": statistics.fmean(t.finished_at for t in tasks),
        "gateway_refresh_lag_mean_seconds": statistics.fmean(floor),
        "strategies": {},
    }
    delays: dict[str, list[float]] = {}
    for name, policy in STRATEGIES.items():
        rng = random.Random(args.seed + 1)
        outcomes = [watch(task, policy, rng) for task in tasks]
        polls = [p for p, _ in outcomes]
        delays[name] = [d for _, d in outcomes]
        results["strategies"][name] = {
            "polls_per_task_mean": statistics.fmean(polls),
            "delay_mean_seconds": statistics.fmean(delays[name]),
            "delay_median_seconds": statistics.median(delays[name]),
            "delay_p95_seconds": _percentile(delays[name], 0.95),
        }
    base = results["strategies"]["fixed 15 s"]
    for name, row in results["strategies"].items():
        diff = [a - b for a, b in zip(delays[name], delays["fixed 15 s"], strict=True)]
        row["polls_ratio_to_fixed_15s"] = row["polls_per_task_mean"] / base["polls_per_task_mean"]
        row["delay_minus_fixed_15s_mean_seconds"] = statistics.fmean(diff)
        row["delay_minus_fixed_15s_stderr_seconds"] = statistics.pstdev(diff) / math.sqrt(count)
    results["elapsed_seconds"] = time.perf_counter() - started
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def report(results: dict[str, Any]) -> None:
    print(
        f"{results['tasks']:,} simulated tasks (mean true duration "
        f"{results['mean_task_seconds']:.0f} s), seed {results['seed']}; "
        f"simulated in {results['elapsed_seconds']:.1f} s."
    )
    print(
        f"Gateway refresh lag (true finish to the refresh that publishes it): mean "
        f"{results['gateway_refresh_lag_mean_seconds']:.1f} s, the floor of every strategy."
    )
    print()
    print(
        "| strategy | polls per task | vs fixed 15 s | detection delay: mean | median | p95 "
        "| mean delay minus fixed 15 s (± 1 s.e.) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in results["strategies"].items():
        print(
            f"| {name} | {row['polls_per_task_mean']:.1f} | {row['polls_ratio_to_fixed_15s']:.2f}x "
            f"| {row['delay_mean_seconds']:.1f} s | {row['delay_median_seconds']:.1f} s "
            f"| {row['delay_p95_seconds']:.1f} s "
            f"| {row['delay_minus_fixed_15s_mean_seconds']:+.2f} s "
            f"(± {row['delay_minus_fixed_15s_stderr_seconds']:.2f}) |"
        )


if __name__ == "__main__":
    main()
