"""Batches on the ``anyfast`` command line: task ids from files, one live view whatever the
size, outcomes streamed as they come, interruption by SIGINT or SIGTERM, and re-runs that
pick up where the last one stopped. Built on the public API only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TextIO, TypedDict

import anyio
import msgspec

from . import (
    AnyFast,
    AnyFastError,
    AuthenticationError,
    CreateRequest,
    FailureKind,
    PermissionDeniedError,
    PollPolicy,
    RawCreate,
    RedisStore,
    SQLiteStore,
    StoreError,
    Task,
    TaskFailedError,
    TaskRecord,
    TaskUpdate,
    TextToVideo,
    UpdateStream,
    WatcherStatistics,
)
from ._updates import outcome_of

__all__ = [
    "EXIT_API",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "PHASE_OPTIONS",
    "Report",
    "Stop",
    "Usage",
    "create_batch",
    "create_requests",
    "exit_code_of",
    "is_redis",
    "json_line",
    "kind_of",
    "open_store",
    "phase_limits",
    "read_ids",
    "rich_or_none",
    "run_batch",
    "stoppable",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_TIMEOUT: Final = 3
EXIT_API: Final = 4

#: Above this many tasks a terminal shows one bar for the batch, not one per task.
MAX_BARS: Final = 20
#: Above this many tasks the human summary lists only the tasks that did not succeed.
MAX_TABLE: Final = 50


class Usage(Exception):
    """A mistake in how the command was called (exit 2)."""


def json_line(value: Any, out: TextIO) -> None:
    out.write(msgspec.json.encode(value).decode() + "\n")
    out.flush()


def rich_or_none() -> Any | None:
    """The rich package, or None when the cli extra is not installed."""
    try:
        import rich
    except ImportError:
        return None
    return rich


# -- stopping ----------------------------------------------------------------------------------


class Stop:
    """Which signal, if any, asked the command to stop."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None


async def stoppable(command: Coroutine[Any, Any, int], stop: Stop) -> int:
    """Run ``command``; SIGINT or SIGTERM cancels it, so that it cleans up (no partial file
    is left) and reports what it knows, and the exit code is then 128 + the signal's number
    (130, 143), as shells report it. A second signal ends the process at once."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.signum is not None:  # the second: no more cleaning up
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        stop.signum = signum
        task.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises KeyboardInterrupt
            continue
        installed.append(signum)
    try:
        return await command
    except asyncio.CancelledError:
        if stop.signum is None:
            raise
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
        return 128 + stop.signum
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


# -- input ---------------------------------------------------------------------------------------


def _lines(source: str) -> Iterator[tuple[str, int, str]]:
    """(where, line number, text) of each line of a file, ``-`` being stdin."""
    if source == "-":
        name, text = "stdin", sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise Usage(f"cannot read {source}: {exc}") from None
        name = source
    for number, line in enumerate(text.splitlines(), 1):
        yield name, number, line


def read_ids(given: Sequence[str], sources: Sequence[str]) -> list[str]:
    """The task ids of the command line and of each ``--ids-from`` file, in order, once each.

    A file has one id a line; blank lines and ``#`` comments are skipped, and so is what
    follows the first blank on a line (the other columns of ``anyfast wait``'s own output).
    A line that is a JSON object gives its ``task_id`` (``anyfast create --jsonl``'s output).
    """
    if any(not task_id.strip() for task_id in given):
        raise Usage("a task id is empty")
    ids = list(given)
    for source in sources:
        for name, number, line in _lines(source):
            text = line.split("#", 1)[0].strip() if not line.lstrip().startswith("{") else line
            if not text.strip():
                continue
            if text.lstrip().startswith("{"):
                try:
                    value = msgspec.json.decode(text.strip())
                except msgspec.DecodeError as exc:
                    raise Usage(f"{name}:{number}: not a JSON object: {exc}") from None
                task_id = value.get("task_id") if isinstance(value, dict) else None
                if not isinstance(task_id, str) or not task_id:
                    continue  # a summary or a failed create: no task
                ids.append(task_id)
            else:
                ids.append(text.split()[0])
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise Usage("no task ids: give them as arguments or with --ids-from FILE")
    return ids


# -- reporting -----------------------------------------------------------------------------------


#: The phase deadlines of the command line: option name -> what a task did for too long.
PHASE_OPTIONS: Final = {
    "queue_timeout": "waits (NOT_START, SUBMITTED, QUEUED)",
    "run_timeout": "runs",
    "stall_timeout": "runs with no change of status or progress",
    "upstream_error_timeout": "has a provider error",
}


class PhaseLimitArgs(TypedDict):
    queue_timeout: float | None
    run_timeout: float | None
    stall_timeout: float | None
    upstream_error_timeout: float | None


def phase_limits(args: argparse.Namespace) -> PhaseLimitArgs:
    """The phase deadlines given on the command line, as keyword arguments of a watch."""
    return PhaseLimitArgs(
        queue_timeout=getattr(args, "queue_timeout", None),
        run_timeout=getattr(args, "run_timeout", None),
        stall_timeout=getattr(args, "stall_timeout", None),
        upstream_error_timeout=getattr(args, "upstream_error_timeout", None),
    )


def kind_of(outcome: Task | AnyFastError) -> str:
    """:func:`outcome_of`, in the words of the command's output (``error``, not
    ``errored``)."""
    kind = outcome_of(outcome)
    return "error" if kind == "errored" else kind


def exit_code_of(kinds: Counter[str]) -> int:
    """The exit code of a batch by its outcomes (counted by :func:`kind_of`): the worst."""
    if kinds["error"]:
        return EXIT_API
    if kinds["timed_out"]:
        return EXIT_TIMEOUT
    return EXIT_FAILED if kinds["failed"] else EXIT_OK


_RECORDED_KIND: Final = re.compile(r" failed \((\w+)\)")


def _kind_of_record(record: TaskRecord) -> str:
    return "succeeded" if record.status == "SUCCESS" and record.error is None else "failed"


#: The statistics the summary carries: phase times and polls per task.
_TIMES: Final = (
    "queue_time_p50",
    "queue_time_p95",
    "run_time_p50",
    "run_time_p95",
    "polls_per_task",
)


class Report:
    """What a batch shows while it runs and when it ends.

    - JSON lines (``--jsonl``, or output that is not a terminal for ``watch``): ``watch``
      prints every update, ``wait`` and ``download`` one object per task as it ends; then one
      ``{"summary": ...}`` object.
    - A terminal with rich: a bar per task up to :data:`MAX_BARS` tasks, else one bar for the
      whole batch with counts; then a summary.
    - Otherwise: one tab-separated line per task as it ends, then the counts.
    """

    def __init__(self, ids: Sequence[str], *, jsonl: bool, every_update: bool) -> None:
        tty = sys.stdout.isatty() and rich_or_none() is not None
        self.jsonl = jsonl or (every_update and not tty)
        self.live = tty and not self.jsonl
        self.every_update = every_update and (self.jsonl or self.live)
        self._ids = list(ids)
        self._per_task = self.live and len(self._ids) <= MAX_BARS
        self._progress: Any = None
        self._rows: dict[str, Any] = {}
        self._all: Any = None
        self.kinds: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()  # the failed tasks by FailureKind value
        self._shown: list[tuple[str, str, str]] = []  # (id, outcome, detail) for the summary
        self.skipped = 0
        #: The watcher's statistics when the batch ended (phase times, polls per task).
        self.statistics: WatcherStatistics | None = None

    @property
    def done(self) -> int:
        return sum(self.kinds.values())

    def __enter__(self) -> Report:
        if not self.live:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        if self._per_task:
            self._progress = Progress(
                TextColumn("{task.fields[name]}", style="bold"),
                BarColumn(bar_width=30),
                TaskProgressColumn(),
                TextColumn("{task.fields[state]}"),
                refresh_per_second=4,
            )
            for task_id in self._ids:
                name = task_id if len(task_id) <= 24 else task_id[:21] + "..."
                self._rows[task_id] = self._progress.add_task(
                    "", total=100, name=name, state="waiting"
                )
        else:
            self._progress = Progress(
                TextColumn("[bold]tasks"),
                BarColumn(bar_width=40),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                refresh_per_second=4,
            )
            self._all = self._progress.add_task("", total=len(self._ids), counts="")
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
            self._progress = None

    def update(self, update: TaskUpdate) -> None:
        """A change of a task that goes on (``watch`` only)."""
        if self.jsonl:
            json_line(update.to_dict(), sys.stdout)
        elif self._per_task and (row := self._rows.get(update.task_id)) is not None:
            state = update.status.value if update.status else "?"
            self._progress.update(row, completed=update.progress or 0, state=state)

    def ended(self, update: TaskUpdate) -> None:
        """A task's outcome, as the watch delivered it."""
        outcome = update.outcome()
        kind = kind_of(outcome)
        if isinstance(outcome, TaskFailedError):
            self.failures[outcome.kind.value] += 1
        if self.jsonl:
            json_line({**update.to_dict(), "outcome": kind}, sys.stdout)
        detail = update.download_path or (update.task.result_url if update.task else None)
        if isinstance(outcome, AnyFastError):
            detail = f"{type(outcome).__name__}: {outcome}"
        self._count(update.task_id, kind, detail or "")

    def known(self, record: TaskRecord) -> None:
        """A task whose outcome the store already holds: nothing is asked of the server."""
        assert record.task_id is not None
        kind = _kind_of_record(record)
        error_type = "TaskFailedError" if kind == "failed" else None
        failure_kind = None
        if kind == "failed" and record.status == "FAILURE":
            # The kind is in the recorded message: "task 'X' failed (quota): ...".
            found = _RECORDED_KIND.search(record.error or "")
            failure_kind = found.group(1) if found else FailureKind.UNKNOWN.value
            self.failures[failure_kind] += 1
        if self.jsonl:
            json_line(
                {
                    "task_id": record.task_id,
                    "previous_status": None,
                    "status": record.status,
                    "progress": 100 if kind == "succeeded" else None,
                    "is_terminal": True,
                    "error_type": error_type,
                    "error": record.error,
                    "failure_kind": failure_kind,
                    "result_url": None,
                    "redelivered": False,
                    "download_path": record.download_path,
                    "outcome": kind,
                    "from_store": True,
                },
                sys.stdout,
            )
        self.skipped += 1
        detail = f"{error_type}: {record.error}" if error_type else record.download_path
        self._count(record.task_id, kind, detail or "")

    def _count(self, task_id: str, kind: str, detail: str) -> None:
        self.kinds[kind] += 1
        label = {"succeeded": "SUCCESS", "failed": "FAILURE", "timed_out": "TIMEOUT"}.get(
            kind, "ERROR"
        )
        if not self.jsonl and not self.live:
            print(f"{task_id}\t{label}\t{detail}", flush=True)
            return
        if kind != "succeeded" or len(self._ids) <= MAX_TABLE:
            self._shown.append((task_id, label, detail))
        if self._progress is None:
            return
        if self._per_task and (row := self._rows.get(task_id)) is not None:
            style = "green" if kind == "succeeded" else "red"
            self._progress.update(row, completed=100, state=f"[{style}]{label}[/{style}]")
        elif self._all is not None:
            self._progress.update(self._all, completed=self.done, counts=self._counts())

    def _counts(self) -> str:
        names = (("succeeded", "succeeded"), ("failed", "failed"), ("timed_out", "timed out"))
        parts = [f"{self.kinds[k]} {name}" for k, name in names if self.kinds[k]]
        if self.failures:
            by_kind = ", ".join(f"{n} {k}" for k, n in self.failures.most_common())
            parts[1 if self.kinds["succeeded"] else 0] += f" ({by_kind})"
        if self.kinds["error"]:
            parts.append(f"{self.kinds['error']} errors")
        return ", ".join(parts)

    def _times(self) -> dict[str, float | None]:
        """The phase times and polls of the tasks that finished in this run (``None`` when
        nothing was watched in it)."""
        stats = self.statistics
        return {name: getattr(stats, name, None) for name in _TIMES}

    def _times_line(self) -> str:
        stats = self.statistics
        if stats is None or stats.polls_per_task is None:
            return ""
        parts = []
        for name, p50, p95 in (
            ("queued", stats.queue_time_p50, stats.queue_time_p95),
            ("ran", stats.run_time_p50, stats.run_time_p95),
        ):
            if p50 is not None and p95 is not None:
                parts.append(f"{name} {p50:g} s (p50), {p95:g} s (p95)")
        parts.append(f"{stats.polls_per_task:.1f} polls per task")
        return "; ".join(parts)

    def exit_code(self) -> int:
        return exit_code_of(self.kinds)

    def summary(self, interrupted: str | None) -> None:
        """Print what is known: at the end, or when a signal stopped the batch."""
        self.__exit__()
        total = len(self._ids)
        unfinished = total - self.done
        if self.jsonl:
            json_line(
                {
                    "summary": {
                        "tasks": total,
                        "succeeded": self.kinds["succeeded"],
                        "failed": self.kinds["failed"],
                        "failed_by_kind": dict(self.failures.most_common()),
                        "timed_out": self.kinds["timed_out"],
                        "errors": self.kinds["error"],
                        "unfinished": unfinished,
                        "from_store": self.skipped,
                        "interrupted": interrupted,
                        **self._times(),
                    }
                },
                sys.stdout,
            )
            return
        # Piped, stdout holds only the tasks' lines (to be fed back with --ids-from).
        out = sys.stdout if self.live and not interrupted else sys.stderr
        if self.live and self._shown:
            from rich.console import Console
            from rich.table import Table

            table = Table(title="Summary" if total <= MAX_TABLE else "Did not succeed")
            for column in ("task", "outcome", "result"):
                table.add_column(column)
            for task_id, label, detail in self._shown:
                style = "green" if label == "SUCCESS" else "red"
                table.add_row(task_id, f"[{style}]{label}[/{style}]", detail)
            Console(file=out).print(table)
        counts = self._counts() or "nothing finished"
        line = f"{self.done} of {total} tasks finished: {counts}"
        if self.skipped:
            line += f" ({self.skipped} known from the store)"
        print(line, file=out, flush=True)
        times = self._times_line()
        if times:
            print(times, file=out, flush=True)
        if interrupted:
            print(
                f"anyfast: stopped by {interrupted} with {unfinished} tasks unfinished; run the "
                "same command again to go on",
                file=sys.stderr,
                flush=True,
            )


# -- watching a batch -------------------------------------------------------------------------


_REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")


def is_redis(spec: str | None) -> bool:
    """Whether a ``--store`` names a Redis (a URL) rather than a SQLite file."""
    return bool(spec) and str(spec).startswith(_REDIS_SCHEMES)


def open_store(
    spec: str | None, *, namespace: str = "anyfast", readonly: bool = False, fleet_ok: bool
) -> SQLiteStore | RedisStore | None:
    """The store a ``--store`` names: a SQLite file, or a Redis URL where the command can be
    part of a fleet (``fleet_ok``)."""
    if not spec:
        return None
    if is_redis(spec):
        if not fleet_ok:
            raise Usage(
                "a Redis store is shared by a fleet: use it with `anyfast create`, "
                "`anyfast worker` and `anyfast tasks`; give this command a SQLite file"
            )
        return RedisStore(spec, namespace=namespace)
    return SQLiteStore(spec, readonly=readonly)


def _store(path: str | None) -> SQLiteStore | RedisStore | None:
    return open_store(path, fleet_ok=False)


def _in_folder(path: str | None, folder: Path) -> bool:
    """Whether ``path`` is a file in ``folder``."""
    if path is None or not os.path.isfile(path):
        return False
    return Path(path).resolve().parent == folder.resolve()


async def _known(client: AnyFast, ids: list[str], folder: Path | None) -> dict[str, TaskRecord]:
    """The tasks of ``ids`` whose outcome the client's store already holds, handled: a
    failure, or a success (whose video, if one is wanted, is on disk)."""
    if client.store is None:
        return {}
    wanted = set(ids)
    known = {}
    for record in await client.store.tasks():
        if record.task_id not in wanted or record.state != "finished" or not record.handled:
            continue
        if record.status == "FAILURE" or (
            record.status == "SUCCESS"
            and record.error is None
            and (folder is None or _in_folder(record.download_path, folder))
        ):
            known[record.task_id] = record
    return known


async def run_batch(
    args: argparse.Namespace,
    ids: list[str] | None,
    *,
    folder: Path | None,
    every_update: bool,
    stop: Stop,
) -> int:
    """Watch ``ids`` to their ends in one watcher, downloading each success into
    ``folder``; report as :class:`Report` says. With ``--store``, outcomes already recorded
    are reported, not fetched again. ``ids=None``: what the store left unfinished
    (``anyfast resume``)."""
    poll = PollPolicy.fixed(args.poll_interval) if args.poll_interval is not None else None
    try:
        client = AnyFast(base_url=args.base_url, store=_store(args.store))
    except ValueError as exc:
        raise Usage(str(exc)) from None
    report: Report | None = None
    resume = ids is None
    cancelled = False
    try:
        async with client:
            if ids is None:
                assert client.store is not None
                records = await client.store.tasks(unfinished=True, unhandled=True)
                ids = [r.task_id for r in records if r.task_id is not None]
                if not ids:
                    print("nothing to resume", file=sys.stderr)
                known = {}
            else:
                known = await _known(client, ids, folder)
            report = Report(ids, jsonl=args.jsonl, every_update=every_update)
            todo = [task_id for task_id in ids if task_id not in known]
            with report:
                for task_id in ids:
                    if task_id in known:
                        report.known(known[task_id])
                await _watch(client, args, todo, folder, poll, report, resume=resume)
    except StoreError as exc:
        raise Usage(str(exc)) from None
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        if report is not None and (not cancelled or stop.signum is not None):
            report.summary(stop.name if cancelled else None)
    assert report is not None
    return report.exit_code()


async def _watch(
    client: AnyFast,
    args: argparse.Namespace,
    todo: list[str],
    folder: Path | None,
    poll: PollPolicy | None,
    report: Report,
    *,
    resume: bool,
) -> None:
    if not todo:
        return
    seen: set[str] = set()
    waiting: set[str] | None = None
    all_ended = anyio.Event()
    failed: list[Exception] = []  # the report could not be written (its reader went away)

    def reported(show: Callable[[TaskUpdate], None], update: TaskUpdate) -> bool:
        """Whether ``show(update)`` could write it; if not, the batch ends."""
        try:
            show(update)
        except Exception as exc:
            failed.append(exc)
            all_ended.set()
            return False
        return True

    def ended(update: TaskUpdate) -> None:
        if not reported(report.ended, update):
            return
        seen.add(update.task_id)
        if waiting is not None:
            waiting.discard(update.task_id)
            if not waiting:
                all_ended.set()

    async with client.watcher(
        concurrency=args.concurrency,
        timeout=args.timeout,
        **phase_limits(args),
        poll=poll,
        on_terminal=ended,
        download_to=folder,
        download_concurrency=args.download_concurrency,
        skip_existing=args.skip_existing is not False,
    ) as watcher:
        updates = watcher.updates() if report.every_update else None
        if resume:
            handles = await watcher.resume()
        else:
            handles = watcher.add_many(todo)
        waiting = {handle.task_id for handle in handles} - seen
        if not waiting:
            all_ended.set()
        try:
            if updates is None:
                await all_ended.wait()
            else:
                async with updates, anyio.create_task_group() as group:

                    async def show(updates: UpdateStream) -> None:
                        async for update in updates:
                            if not update.is_terminal and not reported(report.update, update):
                                return

                    group.start_soon(show, updates)
                    await all_ended.wait()
                    group.cancel_scope.cancel()
        finally:  # also when a signal stops the batch: its summary has what finished
            report.statistics = watcher.statistics()
    if failed:
        raise failed[0]


# -- creating a batch ---------------------------------------------------------------------------


def read_requests(
    prompts: Sequence[str], sources: Sequence[str], defaults: dict[str, Any]
) -> list[tuple[str, CreateRequest]]:
    """(where, request) for each prompt given and each line of each ``--prompts`` file: a
    line is a prompt, or a JSON object of create parameters (with ``model``: sent as given,
    without: a HappyHorse text-to-video). Every line is checked before anything is sent."""
    lines = [("argument", 0, prompt) for prompt in prompts]
    for source in sources:
        lines.extend(_lines(source))
    requests = []
    for name, number, line in lines:
        where = f"{name}:{number}" if number else f"prompt {line[:40]!r}"
        text = line.strip()
        if not text or (number and text.startswith("#")):
            continue
        try:
            if text.startswith("{"):
                fields = msgspec.json.decode(text)
                if not isinstance(fields, dict):
                    raise ValueError("a JSON line must be an object")
                model = fields.pop("model", None)
                request: CreateRequest = (
                    RawCreate(str(model), fields)
                    if model is not None
                    else TextToVideo(**{**defaults, **fields})
                )
            else:
                request = TextToVideo(prompt=text, **defaults)
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            raise Usage(f"{where}: {exc}") from None
        requests.append((where, request))
    if not requests:
        raise Usage("no prompts: give them as arguments or with --prompts FILE")
    return requests


def _digest(request: CreateRequest) -> str:
    return hashlib.sha256(msgspec.json.encode(request.body())).hexdigest()


def create_requests(args: argparse.Namespace) -> list[tuple[str, CreateRequest]]:
    """The requests of ``anyfast create``: its prompts and ``--prompts`` files, checked."""
    defaults = {
        key: value
        for key, value in (
            ("duration", args.duration),
            ("resolution", args.resolution),
            ("ratio", args.ratio),
        )
        if value is not None
    }
    return read_requests(args.prompt, args.prompts, defaults)


async def create_batch(
    args: argparse.Namespace, requests: list[tuple[str, CreateRequest]], stop: Stop
) -> int:
    """Create a task for each request, at most ``--concurrency`` at once; print each id as
    soon as it is known. With ``--store``, a request whose create was sent before is not
    sent again. A refused key stops the batch."""
    try:
        store = open_store(args.store, namespace=args.namespace, fleet_ok=True)
        client = AnyFast(base_url=args.base_url, store=store)
    except ValueError as exc:
        raise Usage(str(exc)) from None
    counts: Counter[str] = Counter()
    jsonl = args.jsonl
    refused: list[AnyFastError] = []

    def created(where: str, task_id: str, *, earlier: bool = False) -> None:
        counts["earlier" if earlier else "created"] += 1
        if jsonl:
            json_line({"line": where, "task_id": task_id, "earlier": earlier}, sys.stdout)
        else:
            print(task_id, flush=True)

    def failed(where: str, error: AnyFastError | str, sent: bool) -> None:
        counts["maybe" if sent else "failed"] += 1
        kind = type(error).__name__ if isinstance(error, AnyFastError) else "Unknown"
        if jsonl:
            json_line(
                {
                    "line": where,
                    "task_id": None,
                    "error_type": kind,
                    "error": str(error),
                    "sent": sent,
                },
                sys.stdout,
            )
        else:
            print(f"anyfast: {where}: {kind}: {error}", file=sys.stderr, flush=True)

    async with client:  # a store in use fails here, before anything is reported
        cancelled = False
        try:
            todo = await _unsent(client, requests, created, failed, args.resend_unknown)
            limiter = anyio.CapacityLimiter(args.concurrency)
            async with anyio.create_task_group() as group:

                async def create(where: str, request: CreateRequest) -> None:
                    async with limiter:
                        try:
                            made = await client.create(request)
                        except (AuthenticationError, PermissionDeniedError) as exc:
                            refused.append(exc)  # every other create would be refused too
                            group.cancel_scope.cancel()
                        except AnyFastError as exc:
                            failed(where, exc, exc.sent)
                        except asyncio.CancelledError:
                            if stop.signum is not None:
                                failed(where, "stopped while being sent", True)
                            raise
                        else:
                            created(where, made.task_id)

                for where, request in todo:
                    group.start_soon(create, where, request)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            _create_summary(counts, len(requests), stop.name if cancelled else None, jsonl)
    if refused:
        raise refused[0]
    if counts["maybe"] or counts["failed"]:
        return EXIT_API
    return EXIT_OK


async def _unsent(
    client: AnyFast,
    requests: list[tuple[str, CreateRequest]],
    created: Callable[..., None],
    failed: Callable[[str, AnyFastError | str, bool], None],
    resend_unknown: bool,
) -> list[tuple[str, CreateRequest]]:
    """The requests the store has no create for (all of them without a store); the others
    are reported: their task id, or that they may have made a task."""
    if client.store is None:
        return requests
    earlier: dict[str, list[TaskRecord]] = {}
    for record in await client.store.tasks():
        if record.body_sha256 is not None:
            earlier.setdefault(record.body_sha256, []).append(record)
    for same in earlier.values():  # a task made (a resend, say) before a create in doubt
        same.sort(key=lambda record: record.task_id is None)
    todo = []
    for where, request in requests:
        records = earlier.get(_digest(request))
        match = records.pop(0) if records else None
        if match is None or (match.task_id is None and resend_unknown):
            todo.append((where, request))
        elif match.task_id is not None:
            created(where, match.task_id, earlier=True)
        else:
            failed(
                where,
                f"an earlier create of this request may have made a task ({match.error}); "
                "not sent again (look for it, then use --resend-unknown to send it anyway)",
                True,
            )
    return todo


def _create_summary(counts: Counter[str], total: int, interrupted: str | None, jsonl: bool) -> None:
    if jsonl:
        json_line(
            {
                "summary": {
                    "prompts": total,
                    "created": counts["created"],
                    "created_earlier": counts["earlier"],
                    "failed": counts["failed"],
                    "maybe_created": counts["maybe"],
                    "interrupted": interrupted,
                }
            },
            sys.stdout,
        )
        return
    parts = [f"{counts['created']} created"]
    if counts["earlier"]:
        parts.append(f"{counts['earlier']} created earlier")
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed")
    if counts["maybe"]:
        parts.append(f"{counts['maybe']} may have been created (see above)")
    line = f"{total} prompts: " + ", ".join(parts)
    if interrupted:
        line += f"; stopped by {interrupted}"
    print(f"anyfast: {line}", file=sys.stderr, flush=True)
