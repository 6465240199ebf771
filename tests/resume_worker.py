"""The two processes of the exact-resume test (``tests/test_checkpoint.py``).

``python tests/resume_worker.py train DIR``: for every row of :data:`ROWS` (every
public optimizer, L-BFGS with its line search, and a composed optimizer), train
100 steps, checkpoint ``(params, state)`` with ``gl.save_state``, train 100 more
(the uninterrupted run) and save the final params. Also records, for the
determinism test, the first steps run eagerly and with ``jax.jit(step)``.

``python tests/resume_worker.py resume DIR``: in a fresh process, rebuild each
optimizer, ``gl.load_state`` its checkpoint (checked against
``jax.eval_shape(tx.init, params)``), train the last 100 steps and save the
final params; then train all 200 steps again from scratch (a second run in
another process).

Both processes share XLA's persistent compilation cache (in ``DIR``), so the
second one does not compile again: the test is about the checkpoint and the
state holding everything, not about the compiler.
"""

from __future__ import annotations

import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jax  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import gradlab as gl  # noqa: E402

HALF = 100  # steps before and after the checkpoint
EAGER_STEPS = 2

W = jnp.array([[0.3, -1.2], [0.8, 0.1], [-0.4, 0.6]])
PARAMS = {"layers": [{"b": jnp.array([0.5, -1.0]), "w": W}], "scale": jnp.asarray(0.7, jnp.float32)}


def _curvature(p):
    return 0.5 + jnp.abs(jnp.cos(jnp.arange(p.size, dtype=jnp.float32) + 1.0)).reshape(p.shape)


CURVATURE = jax.tree.map(_curvature, PARAMS)


def loss(params, k):
    """``f_k(p) = sum(c/2 p² + noise_k p)``: its gradient ``c p + noise_k`` changes each step."""

    def leaf(p, c):
        noise = jnp.sin(0.7 * k.astype(jnp.float32) + jnp.arange(p.size, dtype=jnp.float32))
        return jnp.sum(0.5 * c * p * p + noise.reshape(p.shape) * p)

    return sum(jax.tree.leaves(jax.tree.map(leaf, params, CURVATURE)))


def step(tx, params, state, k):
    value, grads = jax.value_and_grad(loss)(params, k)
    # the composed row's apply_if_finite sees two NaN steps
    bad = (k == 37) | (k == 150)
    grads = jax.tree.map(lambda g: jnp.where(bad, jnp.nan, g), grads) if NAN_STEPS else grads
    updates, state = tx.update(
        grads, state, params, value=value, grad=grads, value_fn=lambda p: loss(p, k)
    )
    return gl.apply_updates(params, updates), state


NAN_STEPS = False


def composed():
    schedule = gl.schedules.warmup_cosine_decay(0.0, 0.05, 10, 2 * HALF)
    groups = gl.partition(
        {
            "matrix": gl.inject_hyperparams(gl.adamw, static_args="mask")(
                learning_rate=schedule, weight_decay=0.1, mask=None
            ),
            "other": gl.sgd(0.02, momentum=0.9),
        },
        lambda p: jax.tree.map(lambda x: "matrix" if jnp.ndim(x) == 2 else "other", p),
    )
    inner = gl.chain(gl.clip_by_global_norm(1.0), groups, gl.reduce_on_plateau(0.5, patience=5))
    return gl.MultiSteps(gl.apply_if_finite(inner, max_consecutive_errors=3), every_k_schedule=2)


def rows():
    """``{name: make}``: every public optimizer (tests/test_packing.py's table) and two more."""
    from reliability_helpers import OPTIMIZERS
    from test_packing import PUBLIC_TRANSFORMS

    table = {name: PUBLIC_TRANSFORMS[name] for name in OPTIMIZERS}
    table["lbfgs_zoom"] = gl.lbfgs  # its default strong-Wolfe line search
    table["composed"] = composed
    return table


def run_half(tx):
    """``(params, state, k0) -> ((params, state), params after each step)``, jitted."""

    def run(params, state, k0):
        def body(carry, k):
            carry = step(tx, *carry, k)
            return carry, carry[0]

        return jax.lax.scan(body, (params, state), k0 + jnp.arange(HALF))

    return jax.jit(run)


def leaves(tree):
    return {f"leaf{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(tree))}


# jax.jit(step) against the scan: a compile more per row, so a few rows only
# (every kind of state: moments, factored, per-leaf, wrappers, a line search).
JIT_ROWS = ("adam", "adafactor", "lamb", "muon", "sign_sgd", "composed")
# Eagerly, the line search's loops compile for every new objective (a lambda per step).
NOT_EAGER = ("lbfgs_zoom",)


def train(out: pathlib.Path) -> None:
    global NAN_STEPS
    for name, make in rows().items():
        NAN_STEPS = name == "composed"
        tx = make()
        run = run_half(tx)
        (params, state), trajectory = run(PARAMS, tx.init(PARAMS), 0)
        gl.save_state(out / f"{name}.ckpt.npz", (params, state))
        (final, _), _ = run(params, state, HALF)
        np.savez(out / f"{name}.final.npz", **leaves(final))
        # determinism: the first steps eagerly and with jax.jit(step), against the scan's
        np.savez(
            out / f"{name}.scan.npz",
            **leaves(jax.tree.map(lambda x: x[EAGER_STEPS - 1], trajectory)),
        )
        if name not in NOT_EAGER:
            eager = (PARAMS, tx.init(PARAMS))
            for k in range(EAGER_STEPS):
                eager = step(tx, *eager, jnp.int32(k))
            np.savez(out / f"{name}.eager.npz", **leaves(eager[0]))
        if name in JIT_ROWS:
            jitted, jit_step = (
                (PARAMS, tx.init(PARAMS)),
                jax.jit(lambda p, s, k, tx=tx: step(tx, p, s, k)),
            )
            for k in range(EAGER_STEPS):
                jitted = jit_step(*jitted, jnp.int32(k))
            np.savez(out / f"{name}.jit.npz", **leaves(jitted[0]))


def resume(out: pathlib.Path) -> None:
    global NAN_STEPS
    for name, make in rows().items():
        NAN_STEPS = name == "composed"
        tx = make()
        run = run_half(tx)
        like = jax.eval_shape(lambda: (PARAMS, tx.init(PARAMS)))
        params, state = gl.load_state(out / f"{name}.ckpt.npz", like=like)
        (final, _), _ = run(params, state, HALF)
        np.savez(out / f"{name}.resumed.npz", **leaves(final))
        # the whole run again, in this other process
        (params, state), _ = run(PARAMS, tx.init(PARAMS), 0)
        (final, _), _ = run(params, state, HALF)
        np.savez(out / f"{name}.rerun.npz", **leaves(final))


if __name__ == "__main__":
    phase, directory = sys.argv[1], pathlib.Path(sys.argv[2])
    jax.config.update("jax_compilation_cache_dir", str(directory / "xla-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    {"train": train, "resume": resume}[phase](directory)
    os.sys.stdout.write(f"{phase} done\n")
