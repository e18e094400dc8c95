"""Development sessions: tests, lint, typecheck, examples, docs, bench, soak.

Run ``pip install nox && nox -s tests`` (or ``nox`` for all default sessions). Sessions use the
interpreter nox runs on.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests", "examples", "docs"]
nox.options.reuse_existing_virtualenvs = True

PACKAGE = "anyfast_async"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with branch coverage (fails under 90%), then the soak test.

    The soak (10,000 tasks under injected faults) runs apart, without coverage tracing, which
    would triple its time. Arguments replace the default paths: ``nox -s tests -- tests/x.py``.
    """
    session.install("-e", ".[dev]")
    session.run(
        "pytest",
        "--doctest-modules",
        "-m",
        "not soak",
        f"--cov={PACKAGE}",
        "--cov-branch",
        "--cov-report=term-missing:skip-covered",
        "--cov-fail-under=90",
        *(session.posargs or [PACKAGE, "tests"]),
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
    """mypy --strict on the package and the tests."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "-p", PACKAGE)
    session.run("mypy", "--strict", "tests", "examples")


@nox.session
def examples(session: nox.Session) -> None:
    """Run every script under examples/, and the README's first command, on the fake server."""
    session.install("-e", ".[cli]")
    env = {"ANYFAST_API_KEY": "", "ANYFAST_BASE_URL": ""}
    for script in sorted(Path("examples").glob("*.py")):
        session.log(f"running {script}")
        session.run("python", str(script), env=env)
    session.run("anyfast", "demo", "--tasks", "8", env=env)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and write their results under benchmarks/ (slow: about 12 minutes).

    Installs what the comparisons need (httpx, pydantic, orjson) into the session's own
    virtualenv only: they are not dependencies of the package. ``nox -s bench -- --quick``
    for a smaller run; any other arguments go to ``bench_watch.py``.
    """
    # sniffio: without it httpcore retries a failed `import sniffio` on every request, which
    # would make the httpx contender look slower than its users see it.
    session.install("-e", ".", "httpx", "sniffio", "pydantic>=2", "orjson")
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/bench_decode.py", "--json", "benchmarks/decode.json", *quick)
    session.run(
        "python", "benchmarks/bench_cadence.py", "--json", "benchmarks/cadence.json", *quick
    )
    session.run(
        "python", "benchmarks/bench_watch.py", "--json", "benchmarks/results.json", *session.posargs
    )


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site in strict mode: a warning (a broken link, a docstring that
    names a parameter the signature lacks) fails the build. Output in site/."""
    session.install("-e", ".", "mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )
