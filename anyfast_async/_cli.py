"""The ``anyfast`` command line, built on the public API.

Exit codes: 0 every task succeeded, 1 some task failed, 2 usage error, 3 timeout, 4 auth or API
error, 130 stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM. Errors are one readable line on
stderr; the API key is never printed.

Live progress bars need the ``cli`` extra (``pip install 'anyfast-async[cli]'``, for rich);
without it, or when the output is not a terminal, updates are printed as JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import os
import signal
import sys
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from . import (
    AnyFast,
    AnyFastError,
    PollPolicy,
    RedisStore,
    StoreError,
    Task,
    TaskFailedError,
    TaskRecord,
    TaskUpdate,
    Throttle,
    WaitTimeoutError,
    __version__,
)
from ._cli_batch import (
    EXIT_API,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    PHASE_OPTIONS,
    Report,
    Stop,
    Usage,
    create_batch,
    create_requests,
    exit_code_of,
    is_redis,
    json_line,
    kind_of,
    open_store,
    phase_limits,
    read_ids,
    rich_or_none,
    run_batch,
    stoppable,
)
from ._download import remove_partial_files
from .testing import FakeAnyFast, Fault, Stage

__all__ = ["main"]


# -- commands ----------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> AnyFast:
    try:
        return AnyFast(base_url=args.base_url)
    except ValueError as exc:
        raise Usage(str(exc)) from None


def _poll(args: argparse.Namespace) -> PollPolicy | None:
    interval = getattr(args, "poll_interval", None)
    return PollPolicy.fixed(interval) if interval is not None else None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


async def _get(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        task = await client.get_task(args.task_id)
    if args.json:
        json_line(task.to_dict(), sys.stdout)
        return EXIT_OK
    for key, value in task.to_dict().items():
        if value is not None:
            print(f"{key:>13}: {value}")
    return EXIT_OK


async def _create(args: argparse.Namespace) -> int:
    try:
        return await create_batch(args, args.requests, args.stop)
    except StoreError as exc:
        raise Usage(str(exc)) from None


async def _watch(args: argparse.Namespace) -> int:
    folder = Path(args.download) if args.download else None
    return await run_batch(args, args.ids, folder=folder, every_update=True, stop=args.stop)


async def _wait(args: argparse.Namespace) -> int:
    folder = Path(args.download) if args.download else None
    return await run_batch(args, args.ids, folder=folder, every_update=False, stop=args.stop)


def _is_folder(output: str, args: argparse.Namespace) -> bool:
    """Whether ``download -o`` names a folder: for a batch (several ids, ids from a file, a
    store), for a path ending in a separator, or for an existing folder; else it is the file.
    A folder that does not exist yet may not look like a video file's name."""
    batch = len(args.ids) > 1 or args.ids_from or args.store
    if not (batch or output.endswith((os.sep, "/")) or Path(output).is_dir()):
        return False
    if not Path(output).exists() and Path(output).suffix.lower() in (".mp4", ".mov", ".webm"):
        raise Usage(f"-o {output}: a batch needs a folder, and this looks like a file name")
    return True


async def _download(args: argparse.Namespace) -> int:
    ids: list[str] = args.ids
    output = args.output or "."
    if _is_folder(output, args):
        return await run_batch(args, ids, folder=Path(output), every_update=False, stop=args.stop)
    # One task to one file, as named.
    target = Path(output)
    _remove_partial_files(target.parent)
    async with _client(args) as client:
        task = await client.get_task(ids[0])
        if not task.is_terminal:
            task = await client.wait(
                ids[0], poll=_poll(args), timeout=args.timeout, **phase_limits(args)
            )
        path = await client.download(task, target, skip_existing=args.skip_existing is True)
    print(path)
    return EXIT_OK


def _remove_partial_files(folder: Path) -> None:
    """Remove what downloads a crash cut short left in ``folder``."""
    if folder.is_dir():
        remove_partial_files(folder)


# -- the task store ----------------------------------------------------------------------------


def _record_dict(record: TaskRecord) -> dict[str, Any]:
    return {field: getattr(record, field) for field in record.__struct_fields__}


async def _tasks(args: argparse.Namespace) -> int:
    store = open_store(args.store, namespace=args.namespace, readonly=True, fleet_ok=True)
    assert store is not None
    try:
        async with store:
            records = await store.tasks(unfinished=args.unfinished)
    except StoreError as exc:
        raise Usage(str(exc)) from None
    if args.jsonl:
        for record in records:
            json_line(_record_dict(record), sys.stdout)
        return EXIT_OK
    for record in records:
        outcome = record.error or record.status or "-"
        handled = "handled" if record.handled else "unhandled"
        where = record.download_path or ""
        print(f"{record.task_id or '(unknown)'}\t{record.state}\t{handled}\t{outcome}\t{where}")
    counts = Counter(record.state for record in records)
    print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no tasks")
    return EXIT_OK


def _hook(path: str) -> Callable[[TaskUpdate], object]:
    """The function ``module:function`` names (``--on-terminal``)."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise Usage(f"--on-terminal {path}: give it as module:function")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise Usage(f"--on-terminal {path}: {exc}") from None
    if not callable(found):
        raise Usage(f"--on-terminal {path}: not a function")
    return cast("Callable[[TaskUpdate], object]", found)


async def _worker(args: argparse.Namespace) -> int:
    """A member of a fleet: polls whatever tasks are due in the Redis store, delivers their
    outcomes to ``--on-terminal`` (and prints them), until SIGINT or SIGTERM, then gives the
    tasks it holds back to the others and exits 0."""
    if not is_redis(args.store):
        raise Usage("anyfast worker needs a Redis store: --store redis://host:port/db")
    hook = _hook(args.on_terminal) if args.on_terminal else None
    store = RedisStore(args.store, namespace=args.namespace, lease=args.lease, hold=args.hold)
    show = _printer(args.jsonl or not sys.stdout.isatty(), Counter())

    async def deliver(update: TaskUpdate) -> None:
        if hook is not None:
            result = hook(update)
            if inspect.isawaitable(result):
                await result
        show(update)

    async def until_stopped() -> None:
        print(f"anyfast: worker on {store!r}", file=sys.stderr, flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()  # until a signal cancels it

    folder = Path(args.download_to) if args.download_to else None
    await _with_fleet(args, store, deliver, folder, until_stopped)
    return EXIT_OK


async def _with_fleet(
    args: argparse.Namespace,
    store: RedisStore,
    on_terminal: Callable[[TaskUpdate], object],
    folder: Path | None,
    run: Callable[[], Awaitable[None]],
) -> None:
    """Run ``run`` while this process polls with the fleet of ``store``, delivering each
    outcome to ``on_terminal`` and saving videos into ``folder``."""
    try:
        client = AnyFast(base_url=args.base_url, store=store)
    except ValueError as exc:
        raise Usage(str(exc)) from None
    try:
        async with (
            client,
            client.watcher(
                concurrency=args.concurrency,
                poll=_poll(args),
                timeout=None,
                on_terminal=on_terminal,
                download_to=folder,
                download_concurrency=args.download_concurrency,
                **phase_limits(args),
            ),
        ):
            await run()
    except StoreError as exc:
        raise Usage(str(exc)) from None


async def _resume(args: argparse.Namespace) -> int:
    folder = Path(args.download_to) if args.download_to else None
    if is_redis(args.store):
        return await _resume_fleet(args, folder)
    return await run_batch(args, None, folder=folder, every_update=True, stop=args.stop)


def _printer(jsonl: bool, kinds: Counter[str]) -> Callable[[TaskUpdate], None]:
    """Print each outcome a member of a fleet delivers (a line, or JSON), and count it."""

    def show(update: TaskUpdate) -> None:
        kind = kind_of(update.outcome())
        kinds[kind] += 1
        if jsonl:
            json_line({**update.to_dict(), "outcome": kind}, sys.stdout)
        else:
            where = update.download_path or update.error or ""
            print(f"{update.task_id}\t{kind}\t{where}", flush=True)

    return show


async def _resume_fleet(args: argparse.Namespace, folder: Path | None) -> int:
    """``anyfast resume`` on a Redis store: poll with the fleet until the store has no task
    left unfinished or undelivered; exit as for ``wait`` by what this process delivered."""
    store = RedisStore(args.store, namespace=args.namespace)
    kinds: Counter[str] = Counter()

    async def until_nothing_left() -> None:
        # Other processes end tasks too: the store is looked at once a second.
        while await store.tasks(unfinished=True, unhandled=True):  # noqa: ASYNC110
            await asyncio.sleep(1.0)

    printer = _printer(args.jsonl or not sys.stdout.isatty(), kinds)
    await _with_fleet(args, store, printer, folder, until_nothing_left)
    print(f"anyfast: {sum(kinds.values())} outcomes delivered here", file=sys.stderr)
    return exit_code_of(kinds)


# -- the demo ----------------------------------------------------------------------------------


def _demo_stages(index: int) -> list[Stage]:
    """Varied lifecycles: quick and slow successes, failures, an unknown status."""
    slow = 1 + index % 4
    early = [
        Stage(status="NOT_START", progress="0%", polls=1),
        Stage(status="QUEUED", progress="20%", polls=slow),
    ]
    running = [
        Stage(status="IN_PROGRESS", progress=f"{p}%", polls=1 + (index + p) % 3)
        for p in (50, 60, 70, 80, 90)
    ]
    if index % 5 == 3:
        return [*early, *running[:2], Stage(status="FAILURE", fail_reason="content moderation")]
    if index % 7 == 5:
        early.append(Stage(status="WARMING_UP", polls=2))
    url = f"https://cdn.example.com/demo/video-{index}.mp4?Expires=1777430361&Signature=demo"
    return [*early, *running, Stage(status="SUCCESS", progress="100%", result_url=url)]


async def _demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    count = args.tasks
    async with FakeAnyFast(latency=0.01) as server:
        made = iter(range(count))
        server.create_stages = lambda body: _demo_stages(next(made))
        async with AnyFast(
            server.api_key,
            base_url=server.base_url,
            throttle=Throttle(initial_pause=0.3, max_pause=2.0, min_rate=20),
        ) as client:
            ids = []
            for i in range(count):
                created = await client.create_text_to_video(f"Demo video {i + 1}", duration=5)
                ids.append(created.task_id)
            # Then, while polling: throttling from a proxy now and then, and flaky answers.
            server.inject_rate(Fault.rate_limited(retry_after="0.3"), 0.04, seed=1)
            server.inject_rate(Fault.html(502), 0.03, seed=2)
            outcomes: dict[str, Task | AnyFastError] = {}
            async with client.watcher(concurrency=16, poll=PollPolicy.fixed(0.2)) as watcher:
                with Report(ids, jsonl=False, every_update=True) as report:
                    stream = watcher.updates()
                    handles = watcher.add_many(ids)
                    async with stream:
                        async for update in stream:
                            if not update.is_terminal:
                                report.update(update)
                            else:
                                report.ended(update)
                                outcomes[update.task_id] = update.outcome()
                                if len(outcomes) == len(handles):
                                    break
                stats = watcher.statistics()
        polls = sum(1 for r in server.requests if r.method == "GET")
    elapsed = time.monotonic() - started
    kinds = Counter(
        "succeeded" if isinstance(o, Task) else type(o).__name__ for o in outcomes.values()
    )
    _demo_summary(kinds, polls, stats.throttles, stats.errors - stats.throttles, elapsed, count)
    return EXIT_OK


def _demo_summary(
    kinds: Counter[str], polls: int, throttles: int, errors: int, elapsed: float, count: int
) -> None:
    rows = [(f"tasks {name}", str(n)) for name, n in sorted(kinds.items())]
    rows += [
        ("polls used", f"{polls} ({polls / max(count, 1):.1f} per task)"),
        ("throttles survived (429)", str(throttles)),
        ("other errors ridden out", str(errors)),
        ("elapsed", f"{elapsed:.1f} s"),
    ]
    if rich_or_none() is None or not sys.stdout.isatty():
        print("Summary")
        for name, value in rows:
            print(f"  {name}: {value}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Summary", show_header=False)
    table.add_column()
    table.add_column(justify="right")
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


# -- the fake server ---------------------------------------------------------------------------


async def _fake_server(args: argparse.Namespace) -> int:
    """Run FakeAnyFast as a local stand-in for AnyFast until SIGINT or SIGTERM."""
    server = FakeAnyFast(
        args.api_key,
        advance="time",
        host=args.host,
        port=args.port,
        max_requests=10_000,
        rate_limit=args.rate_limit,
        serve_results=True,
    )
    seconds = args.stage_seconds
    failing = args.fail_prompts_with

    def stages(body: dict[str, Any]) -> list[Stage]:
        inner = body.get("input")
        prompt = str(body.get("prompt") or (inner.get("prompt") if isinstance(inner, dict) else ""))
        if failing and failing in prompt:
            return FakeAnyFast.failure_stages("content moderation", seconds=seconds)
        return FakeAnyFast.default_success_stages(seconds=seconds)

    server.create_stages = stages
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still ends it
            loop.add_signal_handler(signum, stop.set)
    async with server:
        given = "" if args.api_key_given else f" (API key: {args.api_key})"
        print(f"FakeAnyFast serving on {server.base_url}{given}", flush=True)
        print(f"  export ANYFAST_BASE_URL={server.base_url}", flush=True)
        await stop.wait()
    print(f"stopped after {len(server.created)} tasks created", flush=True)
    return EXIT_OK


# -- the parser --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--base-url",
        default=None,
        help="the API origin (default: $ANYFAST_BASE_URL, then https://www.anyfast.ai)",
    )
    phases = argparse.ArgumentParser(add_help=False)
    for phase, what in PHASE_OPTIONS.items():
        phases.add_argument(
            f"--{phase.replace('_', '-')}",
            type=_positive,
            default=None,
            metavar="SECONDS",
            help=f"end a task that {what} longer than this (off by default)",
        )
    pacing = argparse.ArgumentParser(add_help=False, parents=[phases])
    pacing.add_argument("--concurrency", type=int, default=16, help="polls at once (16)")
    pacing.add_argument(
        "--timeout", type=_positive, default=1800.0, help="seconds to wait per task (1800)"
    )
    pacing.add_argument(
        "--poll-interval", type=_positive, default=None, help="seconds between polls (default: 15)"
    )
    waiting = argparse.ArgumentParser(add_help=False, parents=[pacing])
    waiting.add_argument("task_ids", nargs="*", metavar="ID", help="task ids")
    waiting.add_argument(
        "--ids-from",
        action="append",
        default=[],
        metavar="FILE",
        help="read task ids from FILE, one a line ('-': stdin; blank lines and # comments "
        "are skipped; JSON lines give their task_id)",
    )
    waiting.add_argument(
        "--store",
        metavar="PATH",
        help="record the batch in this task store: a run again after an interruption asks "
        "nothing more of the tasks it already finished",
    )
    waiting.add_argument(
        "--jsonl",
        action="store_true",
        help="print JSON lines: each outcome as it comes, then a summary (the default for "
        "watch when piped)",
    )
    downloads = argparse.ArgumentParser(add_help=False)
    downloads.add_argument(
        "--download-concurrency", type=int, default=4, help="downloads at once (4)"
    )
    downloads.add_argument(
        "--skip-existing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep a video already downloaded instead of fetching it again (default: on "
        "for a folder, whose file names come from the task ids; off for a named file)",
    )

    parser = argparse.ArgumentParser(
        prog="anyfast",
        description="Create, watch, wait for and download AnyFast video tasks, one or "
        "thousands. The API key is read from $ANYFAST_API_KEY.",
        epilog="exit codes: 0 all succeeded, 1 some task failed, 2 usage error, 3 timeout, "
        "4 authentication or API error, 130 stopped by Ctrl-C (SIGINT), 143 stopped by SIGTERM",
    )
    parser.add_argument("--version", action="version", version=f"anyfast-async {__version__}")
    parser.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="the event loop: uvloop when installed (pip install 'anyfast-async[speed]'), "
        "else asyncio (auto)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    get = commands.add_parser("get", parents=[common], help="print a task")
    get.add_argument("task_id", metavar="ID")
    get.add_argument("--json", action="store_true", help="print JSON")
    get.set_defaults(run=_get)

    create = commands.add_parser(
        "create",
        parents=[common],
        help="create a task for each prompt; print each id as soon as it is known",
    )
    create.add_argument("prompt", nargs="*", metavar="PROMPT", help="prompts")
    create.add_argument(
        "--prompts",
        action="append",
        default=[],
        metavar="FILE",
        help="read prompts from FILE, one a line, or JSON lines of create parameters "
        "('-': stdin; blank lines and # comments are skipped)",
    )
    create.add_argument("--duration", type=int, help="seconds of video (server default: 5)")
    create.add_argument("--resolution", choices=["720P", "1080P"], help="(default: 1080P)")
    create.add_argument("--ratio", choices=["16:9", "9:16", "1:1", "4:3", "3:4"])
    create.add_argument("--concurrency", type=int, default=4, help="creates at once (4)")
    create.add_argument(
        "--store",
        metavar="PATH",
        help="record each create in this task store (a file, or a Redis URL: the fleet's "
        "workers then watch the tasks) first: a run again sends only the prompts not sent "
        "before",
    )
    create.add_argument(
        "--namespace", default="anyfast", help="a Redis store's key prefix (anyfast)"
    )
    create.add_argument(
        "--resend-unknown",
        action="store_true",
        help="with --store: send again the prompts whose earlier create may or may not "
        "have made a task",
    )
    create.add_argument("--jsonl", action="store_true", help="print JSON lines")
    create.set_defaults(run=_create)

    watch = commands.add_parser(
        "watch",
        parents=[common, waiting, downloads],
        help="show live progress until the tasks finish",
    )
    watch.add_argument("--download", metavar="DIR", help="download each result into DIR")
    watch.set_defaults(run=_watch)

    wait = commands.add_parser(
        "wait",
        parents=[common, waiting, downloads],
        help="wait for the tasks; print each outcome as it comes, then a summary",
    )
    wait.add_argument("--download", metavar="DIR", help="download each result into DIR")
    wait.set_defaults(run=_wait)

    download = commands.add_parser(
        "download",
        parents=[common, waiting, downloads],
        help="download results (waiting for them if need be)",
    )
    download.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="a folder (default: .; made if missing), or, for one task, a file path not "
        "ending in a separator",
    )
    download.set_defaults(run=_download)

    tasks = commands.add_parser(
        "tasks", help="list the tasks a task store knows (read only: works while it is in use)"
    )
    tasks.add_argument(
        "--store", metavar="PATH", required=True, help="the store's file, or a Redis URL"
    )
    tasks.add_argument(
        "--namespace", default="anyfast", help="a Redis store's key prefix (anyfast)"
    )
    tasks.add_argument("--unfinished", action="store_true", help="only tasks still to watch")
    tasks.add_argument("--jsonl", action="store_true", help="print JSON lines")
    tasks.set_defaults(run=_tasks)

    worker = commands.add_parser(
        "worker",
        parents=[common, downloads, phases],
        help="poll the tasks of a fleet on Redis, run an on_terminal hook for each outcome "
        "(until Ctrl-C or SIGTERM, which give its tasks back to the others)",
    )
    worker.add_argument("--store", metavar="URL", required=True, help="redis://host:port/db")
    worker.add_argument("--namespace", default="anyfast", help="the fleet's key prefix (anyfast)")
    worker.add_argument("--concurrency", type=int, default=64, help="polls at once (64)")
    worker.add_argument("--hold", type=int, default=1000, help="most tasks held at once (1000)")
    worker.add_argument(
        "--lease", type=_positive, default=30.0, help="seconds a held task's lease lasts (30)"
    )
    worker.add_argument(
        "--poll-interval", type=_positive, default=None, help="seconds between polls (default: 15)"
    )
    worker.add_argument(
        "--on-terminal",
        metavar="MODULE:FUNCTION",
        help="called with each task's terminal TaskUpdate (may be async); make it idempotent",
    )
    worker.add_argument(
        "--download-to", metavar="DIR", help="save the video of each task that succeeds"
    )
    worker.add_argument("--jsonl", action="store_true", help="print JSON lines")
    worker.set_defaults(run=_worker)

    resume = commands.add_parser(
        "resume",
        parents=[common, pacing, downloads],
        help="watch to their ends the tasks a task store left unfinished",
    )
    resume.add_argument(
        "--store",
        metavar="PATH",
        required=True,
        help="the store's file, or a Redis URL (then it polls with the fleet until the store "
        "has nothing left to watch or deliver)",
    )
    resume.add_argument(
        "--namespace", default="anyfast", help="a Redis store's key prefix (anyfast)"
    )
    resume.add_argument(
        "--download-to", metavar="DIR", help="save the video of each task that succeeds"
    )
    resume.add_argument(
        "--jsonl",
        action="store_true",
        help="print JSON lines: each update, then a summary (the default when piped)",
    )
    resume.set_defaults(run=_resume)

    demo = commands.add_parser(
        "demo", help="run a demo against a built-in fake server: no account, no network"
    )
    demo.add_argument("--tasks", type=int, default=12, help="tasks to create (12)")
    demo.set_defaults(run=_demo)

    fake = commands.add_parser(
        "fake-server",
        help="run a fake AnyFast on this machine, to develop against (until Ctrl-C or SIGTERM)",
    )
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    fake.add_argument("--port", type=int, default=8001, help="port (8001; 0: any free one)")
    fake.add_argument(
        "--api-key",
        default=None,
        help="the key clients must send (default: test-key, which is printed)",
    )
    fake.add_argument(
        "--stage-seconds",
        type=_positive,
        default=5.0,
        help="how long a created task spends in each stage before SUCCESS (5)",
    )
    fake.add_argument(
        "--rate-limit",
        type=_positive,
        default=None,
        help="answer requests beyond this many per second with 429 (default: no limit)",
    )
    fake.add_argument(
        "--fail-prompts-with",
        metavar="TEXT",
        default="moderation",
        help='tasks whose prompt contains TEXT fail ("moderation"; "" for none)',
    )
    fake.set_defaults(run=_fake_server)
    return parser


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    print(f"anyfast: warning: {message}", file=sys.stderr)


def _run(coro: Coroutine[Any, Any, int], loop: str) -> int:
    """Run ``coro`` on uvloop (``auto``: when it is installed) or on asyncio's own loop."""
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                coro.close()
                raise Usage("--loop uvloop: uvloop is not installed") from None
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``anyfast`` command; return its exit code."""
    warnings.showwarning = _one_line_warning
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "fake-server":
        args.api_key_given = args.api_key is not None
        args.api_key = args.api_key if args.api_key is not None else "test-key"
    for name in ("concurrency", "tasks", "download_concurrency", "hold"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    args.stop = Stop()
    try:
        # Input is read before the command starts (and before Ctrl-C is taken over).
        if hasattr(args, "ids_from"):
            args.ids = read_ids(args.task_ids, args.ids_from)
        if args.command == "create":
            args.requests = create_requests(args)
        code: int = _run(stoppable(args.run(args), args.stop), args.loop)
        sys.stdout.flush()  # a reader that went away is met here, not at interpreter exit
        return code
    except Usage as exc:
        print(f"anyfast: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (TaskFailedError, WaitTimeoutError) as exc:
        print(f"anyfast: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT if isinstance(exc, WaitTimeoutError) else EXIT_FAILED
    except AnyFastError as exc:
        print(f"anyfast: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_API
    except BrokenPipeError:
        # The reader went away (`anyfast watch ... | head`): stop quietly. (Before OSError,
        # which it is a kind of.)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except (ValueError, OSError) as exc:
        print(f"anyfast: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
