"""Development sessions: tests, lint, typecheck, examples.

Run ``pip install nox && nox -s tests`` (or ``nox`` for all default sessions). Sessions use the
interpreter nox runs on.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests", "examples"]
nox.options.reuse_existing_virtualenvs = True

PACKAGE = "anyfast_async"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with branch coverage (fails under 90%)."""
    session.install("-e", ".[dev]")
    session.run(
        "pytest",
        "--doctest-modules",
        f"--cov={PACKAGE}",
        "--cov-branch",
        "--cov-report=term-missing:skip-covered",
        "--cov-fail-under=90",
        *(session.posargs or [PACKAGE, "tests"]),
    )


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
    """Run every script under examples/ against the in-process fake server."""
    session.install("-e", ".")
    env = {"ANYFAST_API_KEY": "", "ANYFAST_BASE_URL": ""}
    for script in sorted(Path("examples").glob("*.py")):
        session.log(f"running {script}")
        session.run("python", str(script), env=env)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and write benchmarks/results.json (slow: several minutes).

    ``nox -s bench -- --quick`` for a smaller run.
    """
    session.install("-e", ".")
    session.run(
        "python", "benchmarks/bench_watch.py", "--json", "benchmarks/results.json", *session.posargs
    )
