"""Development sessions: tests, lint, typecheck, examples, docs, bench, soak.

Run ``pip install nox && nox -s tests`` (or ``nox`` for all default sessions). Sessions use the
interpreter nox runs on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests", "examples", "docs"]
nox.options.reuse_existing_virtualenvs = True

PACKAGE = "anyfast_async"
# What the examples use beyond the package: the web frameworks and the job queue.
EXAMPLE_DEPS = [
    "fastapi>=0.115",
    "uvicorn>=0.30",
    "arq>=0.26",
    "redis>=5.0.1",
    "httpx>=0.27",
    "asgi-lifespan>=2.1",
]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with branch coverage (fails under 90%), then the soak test.

    The soak (10,000 tasks under injected faults) runs apart, without coverage tracing, which
    would triple its time. Arguments replace the default paths: ``nox -s tests -- tests/x.py``.
    """
    session.install("-e", ".[dev]")
    # The task store on Redis is tested against a real redis-server (Debian's package).
    redis = debian_program(
        session, "redis-server", "redis-server", required=bool(os.environ.get("CI"))
    )
    session.run(
        "pytest",
        "--doctest-modules",
        "-m",
        "not soak",
        f"--cov={PACKAGE}",
        "--cov-branch",
        "--cov-report=term-missing:skip-covered",
        "--cov-fail-under=90",
        "--doctest-glob=*.md",
        *(session.posargs or [PACKAGE, "docs", "tests"]),
        env={"ANYFAST_REDIS_SERVER": redis or ""},
    )
    if not session.posargs:
        session.run("pytest", "-m", "soak", "tests/test_soak.py")


@nox.session
def soak(session: nox.Session) -> None:
    """The soak test at 100,000 tasks (ANYFAST_SOAK_TASKS overrides; several minutes)."""
    session.install("-e", ".[dev]")
    tasks = os.environ.get("ANYFAST_SOAK_TASKS", "100000")
    session.run("pytest", "-m", "soak", "tests/test_soak.py", env={"ANYFAST_SOAK_TASKS": tasks})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, the tests and the examples."""
    session.install("-e", ".[dev]", *EXAMPLE_DEPS)
    session.run("mypy", "--strict", "-p", PACKAGE)
    session.run("mypy", "--strict", "tests", "examples", "scripts")


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example on the fake server: scripts (Python and shell) run to completion,
    test modules under pytest, the web apps are started as real servers and requested over
    HTTP, and the worker example runs two worker processes on a throwaway Redis queue. Then
    the README's first command.

    redis-server is installed from Debian's packages when missing (as root); elsewhere the
    worker example is skipped with a warning, except in CI (``CI`` set), where it must run.
    """
    session.install(
        "-e", ".[cli,speed,otel]", "opentelemetry-sdk", "pytest", "pytest-timeout", *EXAMPLE_DEPS
    )
    env = {"ANYFAST_API_KEY": "", "ANYFAST_BASE_URL": ""}
    with redis_server(session) as redis_url:
        for script in sorted([*Path("examples").glob("*.py"), *Path("examples").glob("*.sh")]):
            if script.name.startswith("_"):
                continue
            if script.name in ("worker_arq.py", "fleet.py") and redis_url is None:
                session.warn(f"skipping {script}: no redis-server (apt-get install redis-server)")
                continue
            session.log(f"running {script}")
            if script.name.startswith("webapp_"):
                session.run("python", "examples/_webapp_check.py", str(script), env=env)
            elif script.suffix == ".sh":
                session.run("bash", str(script), env=env, external=True)
            elif script.name.startswith("test_"):
                session.run("pytest", "-p", "no:cacheprovider", str(script), env=env)
            else:
                session.run("python", str(script), env={**env, "REDIS_URL": redis_url or ""})
    session.run("anyfast", "demo", "--tasks", "8", env=env)


def debian_program(
    session: nox.Session, program: str, package: str, *extra: str, required: bool = True
) -> str | None:
    """The path of ``program``, installing Debian's ``package`` (and ``extra`` packages) first
    when it is missing. ``None`` when it cannot be had and is not ``required``."""
    found = shutil.which(program)
    if found is None:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            if not required:
                return None
            session.error(f"{program} is needed: apt-get install {package}")
        session.run("apt-get", "update", "-qq", external=True)
        session.run(
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            package,
            *extra,
            external=True,
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which(program)
        if found is None:
            session.error(f"{package} was installed but {program} is not on the PATH")
    return found


@contextlib.contextmanager
def redis_server(session: nox.Session) -> Iterator[str | None]:
    """A throwaway redis-server on a free loopback port, without persistence; yields its URL,
    or ``None`` outside CI when there is no redis-server and it cannot be installed."""
    executable = debian_program(
        session, "redis-server", "redis-server", required=bool(os.environ.get("CI"))
    )
    if executable is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(  # noqa: S603 (a fixed command line)
        [
            executable,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    session.error(f"redis-server did not start (status {server.poll()})")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and write their results under benchmarks/ (about 18 minutes; under 3
    with ``-- --quick``).

    Installs what the comparisons need (httpx, pydantic, orjson) into the session's own
    virtualenv only: they are not dependencies of the package; and uvloop (the ``speed``
    extra), on which the client is measured too. ``nox -s bench -- --quick`` for a smaller
    run; any other arguments go to ``bench_watch.py``.
    """
    # sniffio: without it httpcore retries a failed `import sniffio` on every request, which
    # would make the httpx contender look slower than its users see it.
    session.install(
        "-e", ".[speed,redis,otel]", "opentelemetry-sdk", "httpx", "sniffio", "pydantic>=2",
        "orjson",
    )  # fmt: skip
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/bench_decode.py", "--json", "benchmarks/decode.json", *quick)
    session.run(
        "python", "benchmarks/bench_cadence.py", "--json", "benchmarks/cadence.json", *quick
    )
    session.run(
        "python", "benchmarks/bench_throttle.py", "--json", "benchmarks/throttle.json", *quick
    )
    session.run("python", "benchmarks/bench_scale.py", "--json", "benchmarks/scale.json", *quick)
    session.run("python", "benchmarks/bench_store.py", "--json", "benchmarks/store.json", *quick)
    session.run("python", "benchmarks/bench_batch.py", "--json", "benchmarks/batch.json", *quick)
    session.run(
        "python", "benchmarks/bench_telemetry.py", "--json", "benchmarks/telemetry.json", *quick
    )
    if debian_program(session, "redis-server", "redis-server", required=False):
        session.run(
            "python", "benchmarks/bench_fleet.py", "--json", "benchmarks/fleet.json", *quick
        )
    else:
        session.warn("skipping bench_fleet.py: no redis-server (apt-get install redis-server)")
    session.run(
        "python", "benchmarks/bench_watch.py", "--json", "benchmarks/results.json", *session.posargs
    )


DOCS_DEPS = ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"]


def build_site(session: nox.Session) -> None:
    """Install the site's tools and build it into site/, strictly: any warning fails."""
    session.install("-e", ".", *DOCS_DEPS)
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site in strict mode: a warning (a broken link or anchor, a
    docstring that names a parameter the signature lacks) fails the build. Output in site/."""
    build_site(session)


@nox.session
def screenshots(session: nox.Session) -> None:
    """Build the site, open the overview and the fan-out page in headless Chromium (installed
    from Debian's packages when missing), check the rendered pages and save screenshots to
    site-screenshots/."""
    debian_program(session, "chromium", "chromium", "fonts-liberation")
    build_site(session)
    session.run("python", "scripts/screenshot_docs.py", "site", "site-screenshots")
