"""Sharded params stay sharded: state, updates, training, sweeps on 8 devices.

The device count is fixed when JAX starts, so the checks run once, in a
subprocess with 8 simulated CPU devices (``tests/scale_checks.py``; each
section below reads its failures). On a 1-D mesh with an explicit axis
(``jax.make_mesh``'s default, sharding in types) and a 2-D mesh in JAX's auto
mode, with fully sharded, partially sharded and replicated leaves:

* every public transformation's and every optimizer configuration's state
  follows its param's sharding -- after eager ``init``, after
  ``jax.jit(init)`` (Optax's jitted init puts every moment on ONE device: the
  out-of-memory trap of large models, its issue #548), and through
  ``gl.state_shardings`` + ``jax.jit(init, out_shardings=...)``: moments like
  their param, Adafactor's statistics and SM3's accumulators along the axes
  they keep, counters and hyperparameters replicated, nothing on one device;
* updates have their param's sharding, and so does the state after steps;
* sharded training gives the unsharded numbers (1e-6 of each leaf's scale);
* the global norm (and clipping by it) equals a float64 NumPy sum;
* ``gl.packed`` keeps partitioned leaves loose and packs the replicated ones;
* a compiled data-parallel / fully-sharded step has no collective beyond
  plain SGD's (gradient reduction, params gathered for the forward pass)
  except the global norm's scalars: no optimizer state moves;
* ``gl.sweep(mesh=...)`` gives the unsharded sweep's numbers, each device
  training its share of the configurations without any collective;
* modes: ``set_hyperparams`` keeps the value's placement (the step compiles
  once), ``load_state`` of an ``eval_shape``'d state inside ``jax.set_mesh``
  (explicit axes), ``minimize`` without ``set_mesh``, a gradient laid out
  against its param named in the error, ``MultiSteps`` inside ``shard_map``.

The rest runs in this process, on its single device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from shared_run import once_per_run
from sweep_helpers import FakeCompiled

import gradlab as gl
from gradlab import _tree
from gradlab.run import _sweep

SCRIPT = Path(__file__).with_name("scale_checks.py")


def _run_on_eight_devices(out: Path) -> None:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # Optimisation level 0 halves the compile time of the big bundled programs,
    # and XLA's older CPU fusion path takes another quarter off; the numbers
    # compared are all computed under the same flags.
    env["XLA_FLAGS"] = (
        "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
        " --xla_cpu_use_fusion_emitters=false"
    )
    root = str(SCRIPT.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    (out / "report.json").write_text(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def eight_devices():
    """The JSON report of tests/scale_checks.py run on 8 simulated devices (once
    per test run, whichever worker asks first)."""
    out = once_per_run("eight_devices", _run_on_eight_devices)
    report = json.loads((out / "report.json").read_text())
    print(json.dumps(report["record"], indent=1))  # shown with -s: timings, Optax, collectives
    return report


@pytest.mark.parametrize(
    "section",
    ["state", "updates", "training", "modes", "global_norm", "packed", "collectives", "sweep"],
)
def test_on_eight_devices(eight_devices, section):
    assert section in eight_devices, f"section {section} did not run"
    failures = eight_devices[section]
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures[:40])


def test_the_eight_device_checks_cover_every_transformation(eight_devices):
    record = eight_devices["record"]
    # test_packing's table (every public constructor) + the optimizer tables + wrappers
    assert record["transformations"] >= 130 and record["trained"] >= 85, record
    # For the record (Optax's issue #548): Optax's jitted init is on one device, ours not.
    assert "SingleDeviceSharding" not in record["gradlab_jit_init_mu_w_2-D"]


# ----------------------------------------------------------------------------- one device


def test_full_along_keeps_the_named_axes_in_dtype_with_the_value():
    x = jnp.ones((2, 3, 4), jnp.bfloat16)
    row = _tree.full_along(x, (0, 2), 1.5, jnp.float32)
    assert row.shape == (2, 4) and row.dtype == jnp.float32
    np.testing.assert_array_equal(row, np.full((2, 4), 1.5, np.float32))
    assert _tree.full_along(x, ()).shape == () and _tree.full_along(x, ()).dtype == jnp.bfloat16
    assert _tree.full_along(x, (-1,)).shape == (4,)
    # a dropped axis of size 0: still the kept axes' shape
    assert _tree.full_along(jnp.ones((0, 5)), (1,)).shape == (5,)
    # under jit (a traced param) too
    assert jax.jit(lambda p: _tree.full_along(p, (1,)))(x).shape == (3,)


def _problem():
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 4, 3)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32)

    def loss_fn(p, batch):
        xb, yb = batch
        return jnp.mean((xb @ p - yb) ** 2)

    return dict(
        make_optimizer=lambda learning_rate: gl.adam(learning_rate),
        loss_fn=loss_fn,
        params=jnp.zeros(3),
        batches=(x, y),
        grid={"learning_rate": [0.01, 0.05, 0.1]},
        num_steps=5,
    )


def test_sweep_over_a_mesh_of_whatever_devices_there_are_equals_the_plain_sweep():
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("configs",))
    plain = gl.sweep(**_problem())
    sharded = gl.sweep(**_problem(), mesh=mesh)
    np.testing.assert_allclose(sharded.losses, plain.losses, rtol=1e-6)
    np.testing.assert_allclose(sharded.params, plain.params, rtol=1e-6, atol=1e-7)
    assert sharded.configs == plain.configs


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(mesh="cpu"), TypeError, "mesh must be a jax.sharding.Mesh"),
        (dict(mesh_axis="configs"), ValueError, "mesh_axis needs a mesh"),
        (dict(mesh="MESH", mesh_axis="nope"), ValueError, r"mesh_axis must name.*'nope'"),
        (dict(mesh="MESH", mesh_axis=()), ValueError, "mesh_axis must name"),
    ],
)
def test_sweep_rejects_a_bad_mesh_naming_it(kwargs, error, match):
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("configs",))
    kwargs = {k: mesh if v == "MESH" else v for k, v in kwargs.items()}
    with pytest.raises(error, match=match):
        gl.sweep(**_problem(), **kwargs)


def test_fit_memory_chunks_are_multiples_of_the_device_count():
    sizes = []

    def compile_for(size):
        sizes.append(size)
        return FakeCompiled(size)

    # 16 configurations over 4 devices, room for 9: chunks of 8 (a multiple of 4)
    assert _sweep._fit_memory(compile_for, FakeCompiled(16), 16, 1900, unit=4)[0] == 8
    assert sizes == [4, 8]  # the smallest program is one configuration per device
    # never below 4
    assert _sweep._fit_memory(compile_for, FakeCompiled(16), 16, 10, unit=4)[0] == 4
    assert _sweep._fit_memory(compile_for, FakeCompiled(16), 16, 10**6, unit=4)[0] == 16  # fits
