"""Every optimizer against its NumPy reference (and Optax where it has a twin).

The problem is a noisy quadratic (``tests/cases.py``); each run compares the
whole parameter trajectory. Jitted runs are one ``lax.scan`` of
``NUM_STEPS`` steps; eager runs are a Python loop of ``EAGER_STEPS`` steps.
"""

from __future__ import annotations

import functools

import cases
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import references as ref
from cases import ADAPTIVE_CASES, OPTAX_CASES, OPTIMIZER_CASES, PACKED_CASES, OptimizerCase
from jax.flatten_util import ravel_pytree

import gradlab as gl

LR_KINDS = ["float", "array", "schedule"]
VMAP_SCALES = np.array([0.25, 0.5, 1.0, 2.0])


# --------------------------------------------------------------------------
# Running an optimizer on the problem
# --------------------------------------------------------------------------


def initial_params(dtype=jnp.float32, template=None):
    """The problem's starting point as a pytree (the params dict, or ``template``'s shape)."""
    if template is None:
        return jax.tree.map(jnp.asarray, cases.unflatten(cases.INITIAL_FLAT, dtype))
    _, unravel = ravel_pytree(template)
    return unravel(jnp.asarray(cases.INITIAL_FLAT, dtype))


def problem_grads(params, k, curvature=cases.CURVATURE, noise=cases.NOISE):
    """``g_k = c*p + noise_k`` on the flattened params, in the params' dtype."""
    flat, unravel = ravel_pytree(params)
    c = jnp.asarray(curvature).astype(flat.dtype)
    z = jnp.asarray(noise)[k].astype(flat.dtype)
    return unravel(c * flat + z)


def _step(tx, grads_fn, carry, k):
    params, state = carry
    updates, state = tx.update(grads_fn(params, k), state, params)
    params = gl.apply_updates(params, updates)
    return (params, state), (ravel_pytree(params)[0], ravel_pytree(updates)[0])


def trajectory_scan(tx, params, num_steps, grads_fn=problem_grads):
    """Params (flattened) after each of ``num_steps`` steps, in one ``lax.scan``."""
    step = functools.partial(_step, tx, grads_fn)
    _, (traj, _) = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(num_steps))
    return traj


def trajectory_loop(tx, params, num_steps, grads_fn=problem_grads):
    """The same as :func:`trajectory_scan` with a Python loop (eager, op by op)."""
    carry, traj = (params, tx.init(params)), []
    for k in range(num_steps):
        carry, (flat, _) = _step(tx, grads_fn, carry, jnp.asarray(k))
        traj.append(flat)
    return jnp.stack(traj)


def is_jit(run_mode) -> bool:
    probe = lambda: None  # noqa: E731
    return run_mode(probe) is not probe


def runner(run_mode):
    """(trajectory function, number of steps) for the run mode."""
    if is_jit(run_mode):
        return trajectory_scan, cases.NUM_STEPS
    return trajectory_loop, cases.EAGER_STEPS


def reference_trajectory(case, lrs, grad_fn=None):
    grad_fn = grad_fn or cases.reference_grad_fn()
    return case.reference(cases.INITIAL_FLAT.astype(np.float64), grad_fn, lrs)[1:]


def assert_close(actual, desired, rtol, atol, what=""):
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), desired, rtol=rtol, atol=atol, err_msg=what
    )


def learning_rate(case, kind):
    if kind == "float":
        return case.lr
    if kind == "array":
        return jnp.asarray(case.lr)
    return cases.schedule_for(case.lr)


def trajectories_by_lr_kind(case, run_mode):
    """{kind: trajectory} for a float, a 0-d array and a schedule as learning rate.

    Jitted, the three runs share one compiled function (one compile per case).
    """
    fn, n = runner(run_mode)
    if is_jit(run_mode):
        return _jitted_trajectories(case)()
    return {
        kind: fn(case.make(learning_rate(case, kind)), initial_params(), n) for kind in LR_KINDS
    }


@functools.cache
def _jitted_trajectories(case):
    def run():
        return {
            kind: trajectory_scan(
                case.make(learning_rate(case, kind)), initial_params(), cases.NUM_STEPS
            )
            for kind in LR_KINDS
        }

    return jax.jit(run)


# --------------------------------------------------------------------------
# Trajectories against the references
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", OPTIMIZER_CASES + PACKED_CASES, ids=repr)
def test_optimizer_matches_reference_for_float_array_and_schedule_lr(case, run_mode):
    trajs = trajectories_by_lr_kind(case, run_mode)
    for kind, traj in trajs.items():
        want = reference_trajectory(case, cases.reference_lrs(case.lr, kind, len(traj)))
        assert_close(traj, want, case.rtol, case.atol, f"learning rate as {kind}")


@pytest.mark.parametrize("case", OPTIMIZER_CASES + PACKED_CASES, ids=repr)
def test_optimizer_matches_reference_under_vmap(case, run_mode):
    """``case.make(lr)`` built inside a function vmapped over 4 learning rates."""
    fn, n = runner(run_mode)
    lrs = jnp.asarray(case.lr * VMAP_SCALES, jnp.float32)

    def run(lr):
        return fn(case.make(lr), initial_params(), n)

    def batched_and_separate(lrs):
        # lax.map runs the 4 learning rates one after the other, unbatched.
        separate = jax.lax.map(run, lrs) if is_jit(run_mode) else [run(lr) for lr in lrs]
        return jax.vmap(run)(lrs), separate

    batched, separate = run_mode(batched_and_separate)(lrs)
    assert batched.shape == (4, n, cases.NUM_PARAMS)
    for i, lr in enumerate(lrs):
        # The same float32 computation, batched or not: only XLA's instruction
        # choice may differ, so the tolerance is a few ulps.
        assert_close(batched[i], separate[i], 1e-6, 3e-7, f"lr #{i} vs a separate run")
        want = reference_trajectory(case, np.full(n, float(lr), np.float64))
        assert_close(batched[i], want, case.rtol, case.atol, f"lr #{i} vs the reference")


@pytest.mark.parametrize("case", OPTAX_CASES, ids=repr)
def test_optimizer_matches_optax(case):
    def optax_run():
        # Optax itself mixes int32 counts with Python floats: not strict-clean.
        with jax.numpy_dtype_promotion("standard"):
            return trajectory_scan(case.optax_make(case.lr), initial_params(), cases.NUM_STEPS)

    theirs = np.asarray(jax.jit(optax_run)(), np.float64)
    mine = _jitted_trajectories(case)()["float"]
    assert_close(mine, theirs, case.rtol, case.optax_atol)


# Each sweep: (id, builder from a dict of hyperparameters, reference kwargs, two configs).
HYPERPARAMETER_SWEEPS = [
    (
        "sgd",
        lambda h: gl.sgd(h["lr"], momentum=h["momentum"], nesterov=True),
        lambda h: functools.partial(ref.sgd, momentum=h["momentum"], nesterov=True),
        {"lr": [0.01, 0.03], "momentum": [0.5, 0.9]},
    ),
    (
        "adagrad",
        lambda h: gl.adagrad(h["lr"], h["initial_accumulator_value"], h["eps"]),
        lambda h: functools.partial(
            ref.adagrad, initial_accumulator_value=h["initial_accumulator_value"], eps=h["eps"]
        ),
        {"lr": [0.1, 0.05], "initial_accumulator_value": [0.1, 1.0], "eps": [1e-7, 1e-2]},
    ),
    (
        "rmsprop",
        lambda h: gl.rmsprop(
            h["lr"], h["decay"], h["eps"], h["initial_scale"], centered=True, momentum=h["mom"]
        ),
        lambda h: functools.partial(
            ref.rmsprop,
            alpha=h["decay"],
            eps=h["eps"],
            initial_scale=h["initial_scale"],
            centered=True,
            momentum=h["mom"],
        ),
        {
            "lr": [0.002, 0.001],
            "decay": [0.9, 0.99],
            "eps": [1e-8, 1e-3],
            "initial_scale": [0.0, 0.5],
            "mom": [0.5, 0.9],
        },
    ),
    (
        "adam",
        lambda h: gl.adam(h["lr"], h["b1"], h["b2"], h["eps"], h["eps_root"]),
        lambda h: functools.partial(
            ref.adam, b1=h["b1"], b2=h["b2"], eps=h["eps"], eps_root=h["eps_root"]
        ),
        {
            "lr": [0.02, 0.01],
            "b1": [0.9, 0.5],
            "b2": [0.999, 0.9],
            "eps": [1e-8, 1e-3],
            "eps_root": [0.0, 1e-4],
        },
    ),
    (
        "adamw",
        lambda h: gl.adamw(h["lr"], h["b1"], h["b2"], h["eps"], h["wd"]),
        lambda h: functools.partial(
            ref.adamw, b1=h["b1"], b2=h["b2"], eps=h["eps"], weight_decay=h["wd"]
        ),
        {
            "lr": [0.02, 0.01],
            "b1": [0.9, 0.5],
            "b2": [0.999, 0.9],
            "eps": [1e-8, 1e-3],
            "wd": [0.0, 0.5],
        },
    ),
]


@pytest.mark.parametrize(
    ("build", "reference", "grid"),
    [s[1:] for s in HYPERPARAMETER_SWEEPS],
    ids=[s[0] for s in HYPERPARAMETER_SWEEPS],
)
def test_every_hyperparameter_traced_under_vmap_matches_reference(build, reference, grid):
    """A sweep over *all* numeric hyperparameters at once (not only the lr)."""
    hps = {k: jnp.asarray(v, jnp.float32) for k, v in grid.items()}
    run = jax.jit(jax.vmap(lambda h: trajectory_scan(build(h), initial_params(), cases.NUM_STEPS)))
    trajs = run(hps)
    for i in range(2):
        h = {k: v[i] for k, v in grid.items()}
        case = OptimizerCase("sweep", build, reference(h), h["lr"])
        want = reference_trajectory(case, np.full(cases.NUM_STEPS, h["lr"]))
        assert_close(trajs[i], want, 1e-5, 1e-6, f"config {h}")


# --------------------------------------------------------------------------
# Dtypes
# --------------------------------------------------------------------------

LOW_PRECISION_STEPS = 10


@pytest.mark.parametrize(
    ("dtype", "tol"),
    [
        # A bfloat16 value has 8 significant bits (relative spacing 2**-8 = 0.4%);
        # the state stored in bfloat16 is rounded every step, so after 10 steps
        # the updates are within a few roundings: 3% of the largest update.
        (jnp.bfloat16, 3e-2),
        # float16: 11 bits (2**-11 = 0.05%), same reasoning.
        (jnp.float16, 4e-3),
    ],
    ids=["bfloat16", "float16"],
)
@pytest.mark.parametrize("case", OPTIMIZER_CASES + PACKED_CASES, ids=repr)
def test_low_precision_params_keep_their_dtype_and_match_reference(case, dtype, tol):
    # Fixed gradients (no curvature), rounded to the dtype, so gradlab and the
    # reference see the very same gradient values. Eager: the compiled
    # primitives are shared by all cases, so this costs no compile per case.
    noise = np.asarray(jnp.asarray(cases.NOISE[:LOW_PRECISION_STEPS], dtype), np.float64)
    zero = np.zeros(cases.NUM_PARAMS)
    tx = case.make(case.lr)
    params = initial_params(dtype)
    state = tx.init(params)
    states, updates = [state], []
    for k in range(LOW_PRECISION_STEPS):
        u, state = tx.update(problem_grads(params, k, zero, noise), state, params)
        params = gl.apply_updates(params, u)
        states.append(state)
        updates.append(u)

    for leaf in jax.tree.leaves((params, updates)):
        assert leaf.dtype == dtype
    for s in states:
        for leaf in jax.tree.leaves(s):
            # Documented: step counters are int32 scalars; moments and
            # accumulators are stored in the param dtype (mu_dtype=None).
            if jnp.issubdtype(leaf.dtype, jnp.integer):
                assert leaf.dtype == jnp.int32 and leaf.shape == ()
            else:
                assert leaf.dtype == dtype, jax.tree.map(lambda x: x.dtype, s)

    p0 = np.asarray(jnp.asarray(cases.INITIAL_FLAT, dtype), np.float64)
    lrs = [case.lr] * LOW_PRECISION_STEPS
    want = np.diff(case.reference(p0, cases.reference_grad_fn(zero, noise), lrs), axis=0)
    got = np.stack([np.asarray(ravel_pytree(u)[0], np.float64) for u in updates])
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.max(np.abs(want)))


@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=repr)
def test_float64_params_match_reference_tightly(case, x64):
    params = initial_params(jnp.float64)
    kinds = ("float", "schedule")
    txs = {kind: case.make(learning_rate(case, kind)) for kind in kinds}
    trajs = jax.jit(
        lambda: {k: trajectory_scan(tx, params, cases.NUM_STEPS) for k, tx in txs.items()}
    )()
    for kind in kinds:
        state = txs[kind].init(params)
        assert all(leaf.dtype in (jnp.float64, jnp.int32) for leaf in jax.tree.leaves(state)), (
            jax.tree.map(lambda x: x.dtype, state)
        )
        assert trajs[kind].dtype == jnp.float64
        want = reference_trajectory(case, cases.reference_lrs(case.lr, kind, cases.NUM_STEPS))
        # float64 round-off over 100 steps: ~1e-14 relative; 1e-11 leaves room.
        assert_close(trajs[kind], want, 1e-11, 1e-12, f"learning rate as {kind}")


# --------------------------------------------------------------------------
# Pytrees and extreme gradients
# --------------------------------------------------------------------------

NESTED_TEMPLATE = {
    "layers": [
        {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(2)},
        (jnp.zeros(()), [jnp.zeros(2)]),
    ],
    "scale": jnp.zeros(()),
}  # 6 + 2 + 1 + 2 + 1 = 12 numbers, two of them 0-d leaves

UNMASKED_CASES = [c for c in OPTIMIZER_CASES if "mask" not in c.name]


@pytest.mark.parametrize("case", UNMASKED_CASES, ids=repr)
def test_nested_pytree_with_scalar_leaves_matches_reference(case, run_mode):
    fn, n = runner(run_mode)
    params = initial_params(template=NESTED_TEMPLATE)
    tx = case.make(case.lr)
    traj = run_mode(lambda p: fn(tx, p, n))(params)
    want = reference_trajectory(case, np.full(n, case.lr))
    assert_close(traj, want, case.rtol, case.atol)
    state = tx.init(params)
    updates, _ = tx.update(params, state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)


@pytest.mark.parametrize("empty", [{}, [], ()], ids=["dict", "list", "tuple"])
@pytest.mark.parametrize("case", UNMASKED_CASES, ids=repr)
def test_empty_params_tree_gives_empty_updates(case, empty, run_mode):
    tx = case.make(case.lr)

    def step(params):
        state = tx.init(params)
        updates, state = tx.update(params, state, params)
        updates, state = tx.update(updates, state, params)
        return updates

    updates = run_mode(step)(empty)
    assert updates == empty and type(updates) is type(empty)


@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=repr)
def test_zero_gradients_give_finite_updates_matching_reference(case, run_mode):
    fn, _ = runner(run_mode)
    zero = np.zeros(cases.NUM_PARAMS, np.float32)
    zero_noise = np.zeros_like(cases.NOISE)
    grads_fn = functools.partial(problem_grads, curvature=zero, noise=zero_noise)
    traj = run_mode(lambda p: fn(case.make(case.lr), p, 3, grads_fn))(initial_params())
    assert np.all(np.isfinite(traj))
    want = reference_trajectory(case, [case.lr] * 3, cases.reference_grad_fn(zero, zero_noise))
    assert_close(traj, want, case.rtol, case.atol)
    if "adamw" not in case.name:  # weight decay moves the params even without a gradient
        np.testing.assert_array_equal(traj, np.broadcast_to(cases.INITIAL_FLAT, traj.shape))


# A gradient of 1e30 squares to inf in float32: the adaptive rules must still
# give finite, bounded updates (the exact value 1e30/sqrt(1e60) is lost to
# overflow, in torch and Optax too, so only finiteness is asserted).


def _large_grads():
    g = np.ones(cases.NUM_PARAMS, np.float32)
    g[::2] = 1e30
    g[1::4] = -1e30
    return g


def _huge_gradient_updates(case):
    """Updates and final params of 4 steps with gradients of +-1e30 (a Python loop)."""
    big = _large_grads()
    noise = np.stack([big, np.ones_like(big), big, -big])
    grads_fn = functools.partial(problem_grads, curvature=np.zeros_like(big), noise=noise)

    def run(params):
        tx = case.make(case.lr)
        carry, updates = (params, tx.init(params)), []
        for k in range(len(noise)):
            carry, (_, u) = _step(tx, grads_fn, carry, k)
            updates.append(u)
        return jnp.stack(updates), ravel_pytree(carry[0])[0]

    return run


def _assert_finite_and_bounded(case, updates, final):
    assert np.all(np.isfinite(updates)) and np.all(np.isfinite(final))
    # Normalised rules move by O(lr) per step, whatever the gradient's size:
    # adam <= lr*(1-b1)/sqrt(1-b2) ~ 3.2 lr; rmsprop(+momentum) <= lr/sqrt(1-decay)/(1-mom).
    assert np.max(np.abs(updates)) <= 50 * case.lr


@pytest.mark.parametrize("case", [c for c in ADAPTIVE_CASES if "centered" not in c.name], ids=repr)
def test_adaptive_optimizers_stay_finite_for_huge_gradients(case, run_mode):
    _assert_finite_and_bounded(case, *run_mode(_huge_gradient_updates(case))(initial_params()))


@pytest.mark.parametrize("case", [c for c in ADAPTIVE_CASES if "centered" in c.name], ids=repr)
def test_centered_rmsprop_stays_finite_for_huge_gradients(case, run_mode):
    _assert_finite_and_bounded(case, *run_mode(_huge_gradient_updates(case))(initial_params()))


@pytest.mark.parametrize("case", [c for c in OPTIMIZER_CASES if not c.adaptive], ids=repr)
def test_sgd_large_gradients_give_the_large_finite_reference_update(case):
    big = _large_grads()
    noise = np.stack([big, big, -big])
    zero = np.zeros_like(big)
    grads_fn = functools.partial(problem_grads, curvature=zero, noise=noise)
    traj = jax.jit(lambda p: trajectory_scan(case.make(case.lr), p, 3, grads_fn))(initial_params())
    want = reference_trajectory(case, [case.lr] * 3, cases.reference_grad_fn(zero, noise))
    assert np.all(np.isfinite(traj))
    assert_close(traj, want, case.rtol, case.atol)
