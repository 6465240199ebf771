"""Shared test setup: strict dtype promotion, eager/jit fixture, hypothesis profile.

* ``jax_numpy_dtype_promotion = "strict"`` for the whole suite: any silent
  float64 or bfloat16 promotion inside gradlab is an error here.
* ``run_mode`` runs a test body eager and jitted (STYLE.md habit 15).
"""

from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import tempfile
import uuid

import jax
import pytest
import shared_run
from hypothesis import HealthCheck, settings

jax.config.update("jax_numpy_dtype_promotion", "strict")

settings.register_profile(
    "gradlab",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
settings.load_profile("gradlab")


@pytest.fixture(params=["eager", "jit"])
def run_mode(request):
    """A function ``wrap(f)``: ``f`` itself (eager) or ``jax.jit(f)``."""
    if request.param == "eager":
        return lambda f, **kwargs: f
    return jax.jit


@pytest.fixture
def x64():
    """Enable float64 for one test, restoring the previous setting after."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


# ------------------------------------------------------ shared_run.once_per_run


def pytest_configure(config):
    """On xdist's controller, fix the test-run id the workers will get, so that
    the controller can remove their shared directory at the end. In each
    process that runs tests, keep compiled programs for the rest of the run."""
    if not hasattr(config, "workerinput") and getattr(config.option, "testrunuid", 0) is None:
        config.option.testrunuid = uuid.uuid4().hex
    _keep_compiled_programs(config)
    _private_temporary_files(config)


def _private_temporary_files(config):
    """Point ``tempfile`` at a directory removed at the end of the run, so the
    README's and docstrings' examples (``tempfile.mkdtemp()``, as a user would
    write them) leave nothing behind in the system's temporary directory."""
    worker = getattr(config, "workerinput", {}).get("workerid")
    uid = shared_run.run_id()
    if worker is not None and uid is not None:
        scratch = shared_run.run_directory(uid) / f"tmp-{worker}"  # removed by the controller
        scratch.mkdir(parents=True, exist_ok=True)
    elif hasattr(config.option, "dist") and config.option.dist != "no":
        return
    else:
        scratch = pathlib.Path(tempfile.mkdtemp(prefix=f"{shared_run.PREFIX}tmp-"))
        atexit.register(shutil.rmtree, scratch, True)
    tempfile.tempdir = str(scratch)


def _keep_compiled_programs(config):
    """JAX's persistent compilation cache, empty at the start of each run and
    private to one test process, removed at the end.

    Parametrized cases compile many identical programs (the same optimizer
    step on the same shapes, built afresh in each test): a cache hit skips
    XLA's compile, about 8% of the suite's time. The executable is the one a
    compile would give, so no number changes. Private, because JAX writes an
    entry non-atomically (another worker could read it half-written); not
    shared with subprocesses (a fresh-process resume must compile afresh).
    """
    worker = getattr(config, "workerinput", {}).get("workerid")
    uid = shared_run.run_id()
    if worker is not None and uid is not None:
        cache = shared_run.run_directory(uid) / f"jax-cache-{worker}"  # removed by the controller
    elif hasattr(config.option, "dist") and config.option.dist != "no":
        return  # xdist's controller runs no tests
    else:
        cache = pathlib.Path(tempfile.mkdtemp(prefix=f"{shared_run.PREFIX}jax-cache-"))
        atexit.register(shutil.rmtree, cache, True)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_sessionfinish(session):
    uid = getattr(session.config.option, "testrunuid", None)
    if uid and not hasattr(session.config, "workerinput"):
        shutil.rmtree(shared_run.run_directory(uid), ignore_errors=True)
