"""Expensive fixtures computed once per test run, whichever xdist worker asks first.

A session fixture runs once per *worker*: under ``pytest -n 2`` a fixture whose
tests land on both workers (xdist's load scheduling decides) runs twice, and
for the subprocess fixtures here that is up to a minute of CPU. ``once_per_run``
keeps the result in a directory named after xdist's test-run id: the first
worker to ask produces it under a file lock, the others wait for it and read
it. The controller removes the directory at the session's end (conftest: a
worker finishing early must not delete what another still reads).
"""

from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable

try:
    import fcntl
except ImportError:  # not POSIX: each worker produces its own copy
    fcntl = None

PREFIX = "gradlab-tests-"
_PRODUCED: dict[str, pathlib.Path] = {}  # without xdist (several modules import a fixture)


def run_id() -> str | None:
    """xdist's id of this test run, the same in every worker (None without xdist)."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID")


def once_per_run(name: str, produce: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """A directory that ``produce(directory)`` filled, once per test run."""
    uid = run_id()
    if uid is None or fcntl is None:  # one process: once per process
        if name not in _PRODUCED:
            out = pathlib.Path(tempfile.mkdtemp(prefix=f"{PREFIX}{name}-"))
            atexit.register(shutil.rmtree, out, True)
            produce(out)
            _PRODUCED[name] = out  # (after produce: a failure is retried, as under xdist)
        return _PRODUCED[name]
    out = run_directory(uid) / name
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (out / "DONE").exists():  # a failed attempt leaves no DONE: retried
            produce(out)
            (out / "DONE").touch()
    return out


_SYSTEM_TMP = pathlib.Path(tempfile.gettempdir())  # before conftest points tempfile elsewhere


def run_directory(uid: str) -> pathlib.Path:
    return _SYSTEM_TMP / f"{PREFIX}{uid}"
