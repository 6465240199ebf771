"""The sharded sweep over two processes (``jax.distributed``) equals one process's.

Launches ``benchmarks/scale/sweep_multiprocess.py``'s two workers: each a
process with 4 simulated CPU devices, joined through a coordinator on
127.0.0.1, gloo for the collectives, running ``gl.sweep(..., mesh=)`` over
all 8 devices. Bounded: the launcher kills both after ``TIMEOUT`` seconds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

TIMEOUT = 180
SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "scale" / "sweep_multiprocess.py"


def _example():
    spec = importlib.util.spec_from_file_location("sweep_multiprocess", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_close(got: dict, want: dict, rtol: float) -> None:
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape, name
        scale = np.nanmax(np.abs(w))
        np.testing.assert_allclose(g, w, rtol=0, atol=rtol * scale, err_msg=name)


def test_a_sweep_over_two_processes_gives_the_single_process_numbers(tmp_path):
    example = _example()
    first, second = example.launch(tmp_path, timeout=TIMEOUT)
    # both processes got the whole result, and it is the same
    _assert_close(second, first, rtol=0.0)
    assert first["losses"].shape == (12, 30)
    # this process (one device), no mesh: one program, and two configurations
    # per program (each device's share); float32 rounding may differ by an ulp
    for chunk_size in (None, example.CONFIGS_PER_DEVICE):
        _assert_close(first, example.single_process(chunk_size), rtol=1e-6)
    # it trained: the best configuration's loss fell
    assert np.nanmin(first["losses"][:, -1]) < 0.5 * np.nanmax(first["losses"][:, 0])
