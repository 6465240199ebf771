"""What the reliability tests share: the list of every public optimizer.

``OPTIMIZERS`` is every public function that builds an optimizer (the 29 of
README's table, counting ``adamaxw``, ``nadamw`` and the two schedule-free ones
apart, and ``schedule_free(base)``), as names of ``PUBLIC_TRANSFORMS`` in
``tests/test_packing.py`` -- the table of every public transformation, with
arguments that make each one do something.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from shared_run import once_per_run
from test_packing import PUBLIC_TRANSFORMS

NOT_OPTIMIZERS = {
    "chain", "packed", "elementwise", "per_leaf", "centralize", "normalize_by_update_norm",
    "adaptive_grad_clip", "freeze", "masked", "named_chain", "partition", "apply_if_finite",
    "lookahead", "inject_hyperparams", "reduce_on_plateau", "identity",
}  # fmt: skip
BLOCK_PREFIXES = ("scale", "clip", "add_", "zero", "keep", "trace", "ema")

OPTIMIZERS = sorted(
    n for n in PUBLIC_TRANSFORMS if n not in NOT_OPTIMIZERS and not n.startswith(BLOCK_PREFIXES)
)


# ----------------------------------------------------------- the resume runs

WORKER = pathlib.Path(__file__).resolve().parent / "resume_worker.py"


def _resume_runs(out: pathlib.Path) -> None:
    for phase in ("train", "resume"):
        done = subprocess.run(
            [sys.executable, str(WORKER), phase, str(out)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )
        assert done.returncode == 0, f"{phase} failed:\n{done.stdout}\n{done.stderr[-5000:]}"


@pytest.fixture(scope="session")
def resume_run() -> pathlib.Path:
    """The two processes of ``tests/resume_worker.py`` (train, then resume in a
    fresh process); their outputs are in the returned directory. Once per test
    run: test_checkpoint and test_properties read the same files."""
    return once_per_run("resume_run", _resume_runs)


def saved_leaves(directory: pathlib.Path, row: str, kind: str) -> list | None:
    """The params a worker saved (``kind``: final, resumed, rerun, scan, eager, jit)."""
    path = directory / f"{row}.{kind}.npz"
    if not path.exists():
        return None
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.removeprefix("leaf")))]


def bits(x):
    """An array's bytes, to compare exactly (NaN payloads, -0.0 included)."""
    return np.ascontiguousarray(np.asarray(x)).tobytes()
