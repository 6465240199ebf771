"""Reliability, item 6: long runs.

One million steps, in one ``lax.scan``, of a composed optimizer on a
two-parameter model: MultiSteps(every 2) > apply_if_finite > chain(
clip_by_global_norm, inject_hyperparams(adamw) with a cyclic learning rate).

* Every step counter ends exactly where it must (1,000,000 mini-steps, 500,000
  updates: int32, no drift, no wrap), the learning rate the last update used
  is the schedule's closed form, nothing overflows or turns NaN.
* Started 400,000 steps short of 2**31 - 1, the counters reach it and stay
  there for the remaining 600,000 steps, with finite updates all along.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gradlab as gl
from gradlab._tree import INT32_MAX

STEPS = 1_000_000
K = 2  # mini-steps per update
BASE, PEAK, UP, DOWN = 1e-3, 1e-2, 250, 750  # a 1000-step triangular cycle
TARGET = jnp.asarray([1.5, -0.5])


def _triangular(t: int) -> float:
    """torch.optim.lr_scheduler.CyclicLR(mode="triangular") at step ``t``, in float64."""
    x = t % (UP + DOWN)
    frac = x / UP if x < UP else 1 - (x - UP) / DOWN
    return BASE + (PEAK - BASE) * frac


def _optimizer():
    schedule = gl.schedules.cyclic(BASE, PEAK, UP, DOWN)
    inner = gl.chain(
        gl.clip_by_global_norm(1.0),
        gl.inject_hyperparams(gl.adamw)(learning_rate=schedule, weight_decay=1e-4),
    )
    return gl.MultiSteps(gl.apply_if_finite(inner, max_consecutive_errors=3), K), schedule


def _run(tx, params, state):
    def step(carry, _):
        params, state = carry
        grads = jax.grad(lambda p: jnp.sum((p - TARGET) ** 2))(params)
        updates, state = tx.update(grads, state, params)
        finite = jnp.all(jnp.isfinite(updates))
        return (gl.apply_updates(params, updates), state), finite

    (params, state), finite = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), length=STEPS))(
        params, state
    )
    return params, state, np.asarray(finite)


def _counters(state):
    guarded = state.inner_opt_state
    injected = guarded.inner_state[1]
    return {
        "MultiSteps.gradient_step": int(state.gradient_step),
        "inject_hyperparams.count": int(injected.count),
        "adamw.count": int(injected.inner_state[0].count),
        "apply_if_finite.total_notfinite": int(guarded.total_notfinite),
    }


def test_a_million_steps_keep_exact_counters_and_the_schedule_on_its_closed_form():
    tx, schedule = _optimizer()
    params = jnp.zeros(2)
    params, state, finite = _run(tx, params, tx.init(params))
    assert finite.all()
    updates = STEPS // K
    assert _counters(state) == {
        "MultiSteps.gradient_step": updates,
        "inject_hyperparams.count": updates,
        "adamw.count": updates,
        "apply_if_finite.total_notfinite": 0,
    }
    assert int(state.mini_step) == 0  # the last mini-step was an update
    # the learning rate of the last update: the closed form at its (0-based) step
    lr = float(gl.get_hyperparams(state)["learning_rate"])
    np.testing.assert_allclose(lr, _triangular(updates - 1), rtol=1e-5)
    np.testing.assert_allclose(float(schedule(updates - 1)), _triangular(updates - 1), rtol=1e-5)
    # converged and stayed there (weight decay pulls a hair towards 0)
    np.testing.assert_allclose(params, TARGET, atol=1e-2)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state) if x.dtype.kind == "f")


def test_counters_reach_int32_max_in_a_long_run_and_stay_there():
    tx, _ = _optimizer()
    params = jnp.zeros(2)
    start = INT32_MAX - 400_000

    def near_the_end(path, x):
        names = {getattr(k, "name", None) for k in path[-1:]}
        return jnp.asarray(start, jnp.int32) if names & {"count", "gradient_step"} else x

    state = jax.tree_util.tree_map_with_path(near_the_end, tx.init(params))
    params, state, finite = _run(tx, params, state)
    assert finite.all()
    counters = _counters(state)
    assert counters["MultiSteps.gradient_step"] == INT32_MAX
    assert counters["inject_hyperparams.count"] == INT32_MAX
    assert counters["adamw.count"] == INT32_MAX
    assert np.isfinite(float(gl.get_hyperparams(state)["learning_rate"]))
    assert np.all(np.isfinite(params))
