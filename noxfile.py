"""Developer sessions. They run in the current environment (``pip install -e '.[test]'``
first): a fresh virtualenv per session would reinstall torch every time."""

from __future__ import annotations

import glob

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    session.run("python", "-m", "pytest", *session.posargs)


LINTED = ("evalkit", "tasks", "tests", "benchmarks", "leaderboards", "noxfile.py", "setup.py")


@nox.session
def lint(session: nox.Session) -> None:
    """What .ci/run enforces: ruff's rules and formatting, and mypy (tests included; they are
    checked with untyped definitions allowed, see pyproject.toml)."""
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)
    session.run("mypy", "evalkit", "tasks", "tests")


@nox.session
def demo(session: nox.Session) -> None:
    """The README's first command: the bundled tiny Osprey on the bundled shapes set."""
    session.run("evalkit", "run", "--model", "osprey-tiny", "--task", "shapes_cls")


@nox.session
def bench(session: nox.Session) -> None:
    for script in sorted(glob.glob("benchmarks/*.py")):
        session.run("python", script, *session.posargs)
