"""The benchmark script still runs and its numerical cross-check passes.

Timings are not asserted (speed is measured in benchmarks/, never asserted in
tests); this only keeps ``benchmarks/run.py`` from rotting, and its check that
gradlab, gradlab+packed and the flat-params pattern reach Optax's params.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import sys

import jax

RUN = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def test_benchmark_runs_one_small_case_and_every_impl_matches_optax(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("benchmark_run", RUN)
    run = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = run  # its dataclasses look their module up
    spec.loader.exec_module(run)
    out = tmp_path / "bench.json"
    # 40 small leaves: the quick run's 250 took a minute of compiles (chain: test_packing)
    args = ["--quick", "--cases", "small-f32", "--small-leaves", "40", "--opts", "adam"]
    args += ["--rounds", "1", "--compile-reps", "1", "--no-training", "--json", str(out)]
    with jax.numpy_dtype_promotion("standard"):  # Optax is not strict-promotion clean
        assert run.main(args) == 0, capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    impls = {r["impl"] for r in rows}
    assert {"gradlab", "gradlab+packed", "gradlab+flat", "optax"} <= impls
    assert all(r["check_ok"] for r in rows)
    assert all(r["step_ms"] > 0 and r["loop_ms"] > 0 for r in rows)


def test_training_benchmark_times_every_implementation_on_the_digits_mlp():
    sys.path.insert(0, str(RUN.parent))
    import training

    with jax.numpy_dtype_promotion("standard"):
        rows = training.time_problem("digits-mlp", calls=1, opts=("adam",))
    assert {r["impl"] for r in rows} == {"gradlab", "gradlab+packed", "optax"}
    assert all(r["step_ms"] > 0 and r["loop_ms"] > 0 and 0 <= r["opt_share"] < 1 for r in rows)


def test_every_benchmark_script_imports():
    """A moved private name broke ``composition.py`` at import for many commits
    (hunt56): each script's imports still resolve (nothing runs at import)."""
    sys.path.insert(0, str(RUN.parent))  # the scripts import run.py's helpers
    # lbfgs.py switches float64 on and pins BLAS threads as it is imported (it runs
    # as a script): put both back, or every later test in this process runs in x64
    x64, environ = jax.config.jax_enable_x64, dict(os.environ)
    try:
        for path in sorted(RUN.parent.glob("*.py")):
            spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)  # raises on an import that no longer resolves
            assert module.__doc__, path.name  # each says what it measures and how to run it
    finally:
        jax.config.update("jax_enable_x64", x64)
        os.environ.clear()
        os.environ.update(environ)
    assert jax.numpy.zeros(()).dtype == jax.numpy.float32 or x64
