"""``gl.minimize``: the seeds' "is the gradient near zero? -> stop" loop, compiled.

References: Optax's Adam run step by step (its gradient norms tell where the
loop must stop), NumPy for the failing cases, and separate runs for jit/vmap.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradlab as gl

CURVATURE = {"a": np.array([1.0, 4.0]), "b": np.array(10.0)}  # a pytree of 3 params
X0 = {"a": np.array([1.0, -2.0], np.float32), "b": np.array(0.5, np.float32)}
LR, TOL = 0.05, 1e-2


def quadratic(p):
    """Convex: 0.5 * sum(c * p**2) over the pytree; its gradient is c * p."""
    return sum(0.5 * jnp.sum(c * x**2) for c, x in zip(CURVATURE.values(), p.values(), strict=True))


def optax_adam_iterates(num_steps):
    """Optax's Adam on the quadratic: every iterate and its gradient's global norm."""
    tx = optax.adam(LR)
    params = jax.tree.map(jnp.asarray, X0)

    def step(carry, _):
        params, state = carry
        grad = jax.grad(quadratic)(params)
        updates, state = tx.update(grad, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    with jax.numpy_dtype_promotion("standard"):  # Optax's own code is not strict-clean
        _, iterates = jax.lax.scan(step, (params, tx.init(params)), length=num_steps)
    iterates = jax.tree.map(lambda x0, xs: np.concatenate([x0[None], xs]), X0, iterates)
    norms = np.sqrt(
        sum(np.sum((c * x) ** 2, axis=tuple(range(1, x.ndim))) for c, x in
            zip(CURVATURE.values(), iterates.values(), strict=True))
    )  # fmt: skip
    return iterates, norms


@jax.jit
def _adam_runs(max_steps):
    """minimize(adam) for each of several max_steps, vmapped (max_steps traced)."""
    run = lambda m: gl.minimize(quadratic, X0, gl.adam(LR), max_steps=m, tol=TOL)  # noqa: E731
    return jax.vmap(run)(max_steps)


def test_minimize_adam_stops_at_the_first_step_with_small_gradient_and_respects_max_steps():
    iterates, norms = optax_adam_iterates(400)
    first = int(np.argmax(norms <= TOL))  # where the loop must stop
    assert 10 < first < 400 and norms[first] <= TOL < norms[first - 1]
    short = first // 2
    results = _adam_runs(jnp.array([400, short, first]))
    for i, (max_steps, stop) in enumerate([(400, first), (short, short), (first, first)]):
        r = jax.tree.map(lambda x: x[i], results)
        assert int(r.num_steps) == stop <= max_steps
        # converged exactly when the gradient norm is at most tol
        assert bool(r.converged) == (stop == first) == bool(r.grad_norm <= TOL)
        assert not bool(r.failed)
        # (float32: Adam's rounding differs between the two libraries at ~1e-4.)
        np.testing.assert_allclose(float(r.grad_norm), norms[stop], rtol=1e-3)
        for k in X0:
            np.testing.assert_allclose(r.params[k], iterates[k][stop], rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(float(r.value), float(quadratic(r.params)), rtol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_minimize_vmapped_over_starting_points_equals_separate_runs(optimizer):
    starts = jnp.array([[1.0, 2.0], [-3.0, 0.5], [0.1, -0.1]])
    if optimizer == "adam":  # the convex quadratic
        f, tx, tol = lambda x: jnp.sum(jnp.array([1.0, 25.0]) * x**2), gl.adam(0.05), 1e-2
    else:  # nested loops (the line search's) under vmap
        f = lambda x: jnp.sum(jnp.array([1.0, 25.0]) * x**2) + jnp.sum(x**4)  # noqa: E731
        tx, tol = gl.lbfgs(), 1e-4
    solve = jax.jit(lambda x: gl.minimize(f, x, tx, max_steps=500, tol=tol))
    batched = jax.jit(jax.vmap(solve))(starts)
    for i, x0 in enumerate(starts):
        single = solve(x0)
        assert int(batched.num_steps[i]) == int(single.num_steps)
        np.testing.assert_allclose(batched.params[i], single.params, rtol=1e-6, atol=1e-7)
        assert bool(batched.converged[i]) and bool(single.converged)
    assert len(set(np.asarray(batched.num_steps).tolist())) > 1  # they stopped at different steps


def test_minimize_vmapped_over_learning_rates_equals_separate_runs():
    lrs = jnp.array([0.002, 0.05, 0.2])
    solve = jax.jit(
        lambda lr: gl.minimize(quadratic, X0, gl.sgd(lr, momentum=0.5), max_steps=300, tol=TOL)
    )
    batched = jax.jit(jax.vmap(solve))(lrs)
    for i, lr in enumerate(lrs):
        single = solve(lr)
        assert int(batched.num_steps[i]) == int(single.num_steps)
        np.testing.assert_allclose(batched.params["a"][i], single.params["a"], rtol=1e-6)
        assert bool(batched.converged[i]) == bool(single.converged)
    assert int(batched.num_steps[0]) == 300 and not bool(batched.converged[0])  # too small


def test_a_nan_value_stops_the_loop_with_the_failed_flag():
    # sum(x - log x) from x = 3 with sgd(10): x1 = 3 - 10 * (1 - 1/3) < 0 and log(x1) is NaN.
    f = lambda x: jnp.sum(x - jnp.log(x))  # noqa: E731
    r = jax.jit(lambda x: gl.minimize(f, x, gl.sgd(10.0), max_steps=50, tol=1e-6))(jnp.array([3.0]))
    assert bool(r.failed) and not bool(r.converged)
    assert int(r.num_steps) == 1  # not spinning to max_steps
    np.testing.assert_allclose(r.params, [3.0 - 10.0 * (1 - 1 / 3)], rtol=1e-6)


def test_params_turned_nan_where_the_objective_does_not_look_fail_the_run():
    """The value and gradient stay finite (f ignores "b"), the params do not: the
    run fails at once, not converged (hunt52: params left out of the check went
    unseen)."""
    poison = gl.GradientTransformation(
        lambda p: (), lambda u, s, p=None: (jax.tree.map(lambda x: x * jnp.nan, u), s)
    )
    tx = gl.chain(gl.sgd(0.1), gl.masked(poison, {"a": False, "b": True}))
    x0 = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([0.5])}
    r = gl.minimize(lambda p: jnp.sum(p["a"] ** 2), x0, tx, max_steps=50, tol=1e-30)
    assert bool(r.failed) and not bool(r.converged) and int(r.num_steps) == 1
    assert np.isfinite(float(r.value)) and np.isfinite(float(r.grad_norm))
    np.testing.assert_allclose(r.params["a"], [0.8, 1.6], rtol=1e-6)
    # |grad| 4.47 -> 3.58: tol 4 is reached at the step the params fail: failed, not converged
    r = gl.minimize(lambda p: jnp.sum(p["a"] ** 2), x0, tx, max_steps=50, tol=4.0)
    assert float(r.grad_norm) <= 4.0 and int(r.num_steps) == 1
    assert bool(r.failed) and not bool(r.converged)


def test_an_overflowing_run_stops_with_the_failed_flag():
    # sgd(1.5) on x**2: x <- -2 x, |x| doubles each step until x**2 overflows float32.
    r = gl.minimize(lambda x: jnp.sum(x**2), jnp.array([1.0]), gl.sgd(1.5), max_steps=500, tol=1e-3)
    # x_k = (-2)**k: the value 2**(2k) is inf in float32 from k = 64 on. The
    # gradient's squared norm 2**(2k+2) overflows one step earlier, but its
    # norm 2**(k+1) does not (the global norm's rescue): it is finite and right.
    # (Until the rescue's scale was kept from XLA's simplifier it was NaN here,
    # and the loop stopped at 63 for that wrong reason.)
    assert bool(r.failed) and not bool(r.converged) and int(r.num_steps) == 64
    assert float(r.grad_norm) == 2.0**65 and not np.isfinite(float(r.value))


def test_minimize_with_aux_a_chain_and_an_optax_optimizer():
    def loss_with_aux(p):
        return quadratic(p), {"b_squared": p["b"] ** 2}

    tx = gl.chain(gl.clip_by_global_norm(1.0), gl.adam(gl.schedules.cosine_decay(LR, 400, 0.1)))
    r = gl.minimize(loss_with_aux, X0, tx, max_steps=400, tol=TOL, has_aux=True)
    assert bool(r.converged)
    np.testing.assert_allclose(r.aux["b_squared"], r.params["b"] ** 2, rtol=1e-6)
    # Optax's adam in the loop (it takes no extras) equals gradlab's.
    ours = gl.minimize(quadratic, X0, gl.adam(LR), max_steps=50, tol=TOL)
    with jax.numpy_dtype_promotion("standard"):  # Optax's own code is not strict-clean
        theirs = gl.minimize(quadratic, X0, optax.adam(LR), max_steps=50, tol=TOL)
    np.testing.assert_allclose(theirs.params["a"], ours.params["a"], rtol=1e-3)
    assert theirs.aux is None


def test_minimize_with_a_first_order_line_search_reads_its_values():
    calls = []

    def f(p):
        jax.debug.callback(lambda: calls.append(1))
        return quadratic(p)

    tx = gl.chain(gl.sgd(1.0), gl.scale_by_backtracking_linesearch(max_stepsize=1.0))
    r = jax.jit(lambda x: gl.minimize(f, x, tx, max_steps=200, tol=TOL))(X0)
    jax.effects_barrier()
    assert bool(r.converged)
    # One evaluation to start, then only the line search's trials (>= 1 per step).
    assert int(r.num_steps) + 1 <= len(calls) <= 3 * int(r.num_steps) + 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_steps": 0, "tol": 1e-3}, "max_steps must be >= 1, got 0"),
        ({"max_steps": 2.5, "tol": 1e-3}, "max_steps must be an integer, got 2.5"),
        ({"max_steps": 10, "tol": -1.0}, "tol must be >= 0, got -1.0"),
        ({"max_steps": 10, "tol": float("nan")}, "tol must be finite"),
    ],
)
def test_bad_arguments_raise_naming_the_argument_and_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gl.minimize(quadratic, X0, gl.adam(LR), **kwargs)


def test_bad_fun_and_optimizer_are_refused():
    with pytest.raises(TypeError, match="fun must be a callable"):
        gl.minimize(3.0, X0, gl.adam(LR), max_steps=5, tol=0.0)
    with pytest.raises(TypeError, match="optimizer must be a GradientTransformation"):
        gl.minimize(quadratic, X0, "adam", max_steps=5, tol=0.0)
    with pytest.raises(ValueError, match="fun must return a scalar"):
        gl.minimize(lambda x: x**2, jnp.ones(2), gl.adam(LR), max_steps=5, tol=0.0)
    # a string gave JAX's error naming the lambda's file; None a ValueError where
    # lr_finder and trajectories say TypeError (hunt84)
    for bad, shown in ((lambda x: "a", "'a'"), (lambda x: None, "None")):
        with pytest.raises(TypeError, match=f"fun must return a float scalar, got {shown}"):
            gl.minimize(bad, jnp.ones(2), gl.adam(LR), max_steps=5, tol=0.0)


def test_bad_outputs_and_starting_points_are_refused_with_clear_errors():
    x0 = jnp.ones(2)
    scalar = lambda x: jnp.sum(x**2)  # noqa: E731
    with pytest.raises(TypeError, match=r"has_aux=True: fun must return a pair \(value, aux\)"):
        gl.minimize(scalar, x0, gl.adam(LR), max_steps=5, tol=0.0, has_aux=True)
    with pytest.raises(ValueError, match=r"got a tuple \(for \(value, aux\) pass has_aux=True\)"):
        gl.minimize(lambda x: (scalar(x), x), x0, gl.adam(LR), max_steps=5, tol=0.0)
    with pytest.raises(ValueError, match=r"got an array of shape \(2,\)"):
        gl.minimize(
            lambda x: (x**2, None), jnp.ones(2), gl.adam(LR), max_steps=5, tol=0.0, has_aux=True
        )
    with pytest.raises(TypeError, match=r"x0 leaf \['b'\] must be a float array, got int32"):
        gl.minimize(
            lambda p: p["a"] ** 2, {"a": 1.0, "b": jnp.arange(2)}, gl.adam(LR), max_steps=5, tol=0.0
        )
    with pytest.raises(ValueError, match="x0 must hold at least one array"):
        gl.minimize(scalar, {}, gl.adam(LR), max_steps=5, tol=0.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_tol_zero_converges_at_an_exact_stationary_point(dtype):
    # The norm of a zero gradient is 0, not the floor sqrt(finfo.tiny) that the
    # differentiable global norm keeps (~1e-19): tol = 0 is met at a minimum.
    f = lambda x: jnp.sum((x - 1.0) ** 2)  # noqa: E731
    at_min = gl.minimize(f, jnp.ones(3, dtype), gl.sgd(0.1), max_steps=20, tol=0.0)
    assert float(at_min.grad_norm) == 0.0
    assert int(at_min.num_steps) == 0 and bool(at_min.converged)
    # L-BFGS reaches this quadratic's minimum exactly in a few steps, then stops.
    r = gl.minimize(f, jnp.zeros(3), gl.lbfgs(), max_steps=20, tol=0.0)
    np.testing.assert_array_equal(np.asarray(r.params), np.ones(3))
    assert bool(r.converged) and int(r.num_steps) < 20
    # A nonzero gradient below the floor keeps its exact (nonzero) norm.
    tiny = gl.minimize(lambda x: jnp.sum(x) * 1e-21, jnp.ones(4), gl.sgd(0.1), max_steps=2, tol=0.0)
    np.testing.assert_allclose(float(tiny.grad_norm), 2e-21, rtol=1e-5)
    assert not bool(tiny.converged) and int(tiny.num_steps) == 2


def test_python_number_leaves_of_x0_are_floats_as_for_the_optimizers():
    # {"a": 2} was refused ("must be a float array, got int") by minimize,
    # sweep and lr_finder, though every optimizer takes it as the float 2.0.
    def fun(p):
        return (p["a"] - 3.0) ** 2 + jnp.sum((p["w"] - 1.0) ** 2)

    ints = gl.minimize(fun, {"a": 2, "w": jnp.zeros(2)}, gl.lbfgs(), max_steps=50, tol=1e-5)
    floats = gl.minimize(fun, {"a": 2.0, "w": jnp.zeros(2)}, gl.lbfgs(), max_steps=50, tol=1e-5)
    assert bool(ints.converged) and ints.params["a"].dtype == floats.params["a"].dtype
    np.testing.assert_allclose(ints.params["a"], floats.params["a"], rtol=1e-7)
    result = gl.sweep(
        lambda learning_rate: gl.sgd(learning_rate),
        lambda p, b: (p["a"] - b) ** 2,
        {"a": 2},
        jnp.ones(3),
        {"learning_rate": [0.1]},
        num_steps=3,
        progress=False,
    )
    np.testing.assert_allclose(result.params["a"], [1.0 + 0.8**3], rtol=1e-6)


def _true_value_and_norm(f, params):
    value, grad = jax.value_and_grad(f)(params)
    return float(value), float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grad))))


ROSEN4 = jnp.array([-1.2, 1.0, -1.2, 1.0])


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@pytest.mark.parametrize(
    "name",
    ["MultiSteps(lbfgs)", "lookahead(lbfgs)", "chain(lbfgs, scale)", "apply_if_finite(lbfgs)"],
)
def test_the_reported_value_and_gradient_are_at_the_returned_params(name):
    """A line search's stored value is the objective at the new params only when
    its step is the update: around a wrapper that changes the step (or with a
    member after it) minimize evaluates instead of reporting another point's
    values (MultiSteps(lbfgs) reported converged=True, grad_norm 0, at f = 272)."""
    tx = {
        "MultiSteps(lbfgs)": lambda: gl.MultiSteps(gl.lbfgs(), 2),
        "lookahead(lbfgs)": lambda: gl.lookahead(gl.lbfgs(), 5, 0.5),
        "chain(lbfgs, scale)": lambda: gl.chain(gl.lbfgs(), gl.scale(0.5)),
        "apply_if_finite(lbfgs)": lambda: gl.apply_if_finite(gl.lbfgs(), 3),
    }[name]()
    r = gl.minimize(rosenbrock, ROSEN4, tx, max_steps=12, tol=1e-5)
    value, norm = _true_value_and_norm(rosenbrock, r.params)
    np.testing.assert_allclose(float(r.value), value, rtol=1e-5)
    np.testing.assert_allclose(float(r.grad_norm), norm, rtol=1e-4)
    assert bool(r.converged) == (norm <= 1e-5) and not bool(r.failed)


def test_value_and_grad_from_state_refuses_a_search_whose_step_is_changed():
    f = lambda x: jnp.sum((x - 1.0) ** 2)  # noqa: E731
    fn = gl.value_and_grad_from_state(f)
    x = jnp.zeros(2)
    for tx in (gl.MultiSteps(gl.lbfgs(), 2), gl.chain(gl.lbfgs(), gl.scale(0.5))):
        with pytest.raises(ValueError, match="found 1 line search"):
            fn(x, state=tx.init(x))
    for tx in (gl.inject_hyperparams(gl.lbfgs)(), gl.packed(gl.lbfgs())):  # its step is the update
        value, _ = fn(x, state=tx.init(x))
        assert float(value) == 2.0


def test_lbfgs_stays_finite_when_gradients_underflow():
    """float32 gradients of ~1e-20: <y, y> underflows to 0; the pair used to be
    stored, gamma = inf and the params NaN, reported as not failed."""
    quartic = lambda x: jnp.sum((x - jnp.arange(1.0, 4.0)) ** 4)  # noqa: E731
    tiny = lambda x: 1e-20 * jnp.sum(jnp.arange(1.0, 4.0) * (x - 1.0) ** 2)  # noqa: E731
    for f, steps in ((quartic, 200), (tiny, 5)):
        r = gl.minimize(f, jnp.zeros(3), gl.lbfgs(), max_steps=steps, tol=0.0)
        assert np.all(np.isfinite(r.params)) and not bool(r.failed)
        np.testing.assert_allclose(float(r.value), float(f(r.params)), rtol=1e-5, atol=1e-38)
        assert float(r.value) < float(f(jnp.zeros(3)))


@pytest.mark.parametrize("scale", [1.0, 3e-20, 1e-30])
def test_lbfgs_first_step_has_unit_length_for_tiny_float32_gradients(scale, run_mode):
    """With an empty memory the direction is g / |g| (scipy's first step) at
    any scale: |g| was the global norm, floored at sqrt(tiny) ~ 1e-19 in
    float32, so a 3e-20 gradient stepped 0.32 and a 1e-30 one 1e-11."""
    g = np.array([3.0, -4.0, 12.0], np.float32) * np.float32(scale)
    want = g.astype(np.float64) / np.linalg.norm(g.astype(np.float64))  # NumPy, float64
    tx = gl.scale_by_lbfgs()
    x = jnp.zeros(3)

    def first(g):
        return tx.update(g, tx.init(x), x)[0]

    got = np.asarray(run_mode(first)(jnp.asarray(g)), np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    if scale != 1.0:
        return
    # a zero gradient: a zero direction, and finite forward and reverse derivatives
    zero = jnp.zeros(3)
    assert np.all(np.asarray(run_mode(first)(zero)) == 0)
    _, tangent = jax.jvp(first, (zero,), (jnp.ones(3),))
    assert np.all(np.isfinite(np.asarray(tangent)))
    assert np.all(np.isfinite(np.asarray(jax.grad(lambda g: jnp.sum(first(g)))(zero))))


def test_reverse_mode_through_scanned_lbfgs_steps_from_zero_matches_differences(x64):
    """The README's way to reverse-mode gradients through L-BFGS: a lax.scan of
    updates. From x0 = 0 (the state's own zero params) the first pair has
    s = 0, and the untaken 1 / <s, y> made the gradient NaN; against forward
    mode and central differences in float64."""
    w = jnp.array([1.0, 2.0, 3.0])
    f = lambda x: jnp.sum(w * (x - w) ** 2)  # noqa: E731

    def final_loss(x0, tx):
        def body(c, _):
            x, s = c
            u, s = tx.update(jax.grad(f)(x), s, x)
            return (gl.apply_updates(x, jax.tree.map(lambda v: -0.1 * v, u)), s), None

        (x, _), _ = jax.lax.scan(body, (x0, tx.init(x0)), None, length=3)
        return f(x)

    x0 = jnp.zeros(3)
    for tx in (gl.scale_by_lbfgs(), gl.lbfgs(linesearch=None)):
        loss = jax.jit(functools.partial(final_loss, tx=tx))  # compiled once per use
        reverse = np.asarray(jax.jit(jax.grad(loss))(x0))
        forward = np.asarray(jax.jit(jax.jacfwd(loss))(x0))
        h, e = 1e-6, np.eye(3)
        central = [(loss(x0 + h * e[i]) - loss(x0 - h * e[i])) / (2 * h) for i in range(3)]
        assert np.all(np.isfinite(reverse))
        np.testing.assert_allclose(reverse, forward, rtol=1e-9)
        np.testing.assert_allclose(reverse, np.asarray(central), rtol=1e-5, atol=1e-8)


def test_minimize_takes_params_with_an_empty_leaf():
    f = lambda p: jnp.sum((p["w"] - 1.0) ** 2) + jnp.sum(p["e"])  # noqa: E731
    x0 = {"e": jnp.zeros(0), "w": jnp.zeros(2)}
    for tx in (gl.lbfgs(), gl.adam(0.3)):
        r = gl.minimize(f, x0, tx, max_steps=300, tol=1e-3)
        assert bool(r.converged) and r.params["e"].shape == (0,)
    assert float(gl.minimize(lambda p: 0.0 * jnp.sum(p), jnp.zeros(0), gl.adam(0.1),
                             max_steps=3, tol=0.0).grad_norm) == 0.0  # fmt: skip


def test_a_failed_backtracking_search_is_not_repeated_forever(x64):
    """Powell's badly scaled function (Moré, Garbow & Hillstrom 1981, #3): the
    first unit step must shrink below 0.8**20. A failed search used to restart
    from t = 1 at the same point and fail again, forever (f stayed 1.135)."""

    def powell(x):
        r = jnp.stack([1e4 * x[0] * x[1] - 1, jnp.exp(-x[0]) + jnp.exp(-x[1]) - 1.0001])
        return jnp.sum(r**2)

    x0 = jnp.array([0.0, 1.0])
    for guess in ("keep", "one"):
        tx = gl.lbfgs(linesearch=gl.scale_by_backtracking_linesearch(initial_guess=guess))
        r = gl.minimize(powell, x0, tx, max_steps=400, tol=1e-6)
        assert float(r.value) < 1e-10, (guess, float(r.value))  # MGH: f* = 0


def test_backtracking_first_search_respects_max_stepsize_and_float32_endgame_converges():
    """The first search starts from the initial guess capped by max_stepsize
    (the initial state is not a failed search); near a float32 minimum, a search
    that ran out of steps is followed by one that tries the full step first
    (continuing only from the smaller steps stalled 4-D Rosenbrock at t ~ 2e-4)."""
    f = lambda x: jnp.sum((x - 3.0) ** 2)  # noqa: E731
    tx = gl.chain(gl.sgd(1.0), gl.scale_by_backtracking_linesearch(max_stepsize=0.25))
    x = jnp.zeros(2)
    value, grad = jax.value_and_grad(f)(x)
    _, state = tx.update(grad, tx.init(x), x, value=value, grad=grad, value_fn=f)
    assert float(state[-1].step_size) == 0.25
    tx = gl.lbfgs(linesearch=gl.scale_by_backtracking_linesearch(max_backtracking_steps=10))
    r = gl.minimize(rosenbrock, jnp.full(4, -1.2), tx, max_steps=500, tol=1e-5)
    assert bool(r.converged) and int(r.num_steps) < 100


def test_a_line_search_last_in_a_named_chain_is_reused():
    """named_chain(..., ("opt", lbfgs())): the search's step is the update, so
    minimize reads its value and gradient (as many evaluations as lbfgs alone)
    and value_and_grad_from_state accepts a one-member named_chain's state."""
    counts = []
    for tx in (
        gl.lbfgs(),
        gl.named_chain(("first", gl.identity()), ("opt", gl.lbfgs())),
    ):
        calls = []

        def f(x, calls=calls):
            jax.debug.callback(lambda: calls.append(1))
            return rosenbrock(x)

        r = jax.jit(lambda x, tx=tx, f=f: gl.minimize(f, x, tx, max_steps=30, tol=1e-6))(ROSEN4)
        jax.effects_barrier()
        counts.append((int(r.num_steps), len(calls)))
    assert counts[0] == counts[1]
    x = jnp.zeros(2)
    state = gl.named_chain(("opt", gl.lbfgs())).init(x)
    value, _ = gl.value_and_grad_from_state(lambda x: jnp.sum((x - 1.0) ** 2))(x, state=state)
    assert float(value) == 2.0
