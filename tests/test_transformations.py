"""Reliability, item 5: every optimizer under JAX's transformations.

* ``jax.grad`` through the update -- meta-learning the learning rate: the
  hypergradient ``d L(p_2) / d lr`` of the loss after two steps, in float64,
  matches central finite differences, for every optimizer configuration of
  ``tests/cases.py`` and ``tests/cases_modern.py`` that takes a traced
  learning rate (one configuration per optimizer), jitted and vmapped over an
  ensemble of two starting points (each member equal to its own eager run).
  Sign-based optimizers (signSGD, Signum, Lion) and Rprop are included: their
  update is piecewise linear in the learning rate and the sign of the gradient
  does not flip inside the finite-difference interval, so both agree. Left
  out: the line searches (``lbfgs``' default), whose ``lax.while_loop`` JAX
  cannot differentiate in reverse mode, and configurations whose table entry
  takes a float learning rate only (Adafactor's relative step ignores it).
  For the same configurations, ``d L(p_2) / d p_0`` by jitted reverse mode
  equals jitted forward mode.
* ``donate_argnums`` on params and state (README's *Performance* pattern):
  no initial state of any public transformation holds one buffer twice (XLA
  refuses to donate it), a jitted step of one optimizer per kind of state
  donates both without JAX's "donated buffers were not usable" warning, and
  README's block itself runs without it.
"""

from __future__ import annotations

import re
import warnings

import cases
import cases_modern
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reliability_helpers import OPTIMIZERS
from test_packing import PUBLIC_TRANSFORMS
from test_readme import BLOCKS, run_block

import gradlab as gl

STEPS = 2


# One configuration per optimizer: the classic table's first of each kind, and
# every modern one that takes a traced learning rate.
CLASSIC = ("sgd_momentum", "adagrad", "rmsprop_centered", "adam_nesterov", "adamw_mask")
HYPERGRADIENT_ROWS = [
    pytest.param(c, cases.PARAM_SHAPES, id=c.name)
    for c in cases.OPTIMIZER_CASES
    if c.name in CLASSIC
] + [
    pytest.param(c, cases_modern.PARAM_SHAPES, id=c.name)
    for c in cases_modern.CASES
    if "vmap" in c.lr_kinds
]


def _params(shapes, scale=1.0):
    return {
        k: jnp.asarray(
            scale * np.cos(0.5 + 0.1 * np.arange(int(np.prod(s)))).reshape(s), jnp.float64
        )
        for k, s in sorted(shapes.items())
    }


def _meta_loss(make, shapes):
    """``(lr, p0) -> L(p_2)``: two steps on noisy quadratics, then the clean loss."""
    curvature = jax.tree.map(lambda p: 1.0 + 0.5 * jnp.abs(jnp.sin(p * 3.0)), _params(shapes))

    def loss(p, k):
        """``sum(c/2 x² + 0.3 sin(k + index) x)``: step ``k``'s noisy quadratic."""

        def leaf(x, c):
            noise = 0.3 * jnp.sin(k + jnp.arange(x.size, dtype=x.dtype).reshape(x.shape))
            return jnp.sum(0.5 * c * x * x + noise * x)

        return sum(jax.tree.leaves(jax.tree.map(leaf, p, curvature)))

    def final(lr, p0):
        tx = make(lr)
        p, s = p0, tx.init(p0)
        for k in range(1, STEPS + 1):
            u, s = tx.update(jax.grad(loss)(p, float(k)), s, p)
            p = gl.apply_updates(p, u)
        return loss(p, 0.0)

    return final


@pytest.mark.parametrize(("case", "shapes"), HYPERGRADIENT_ROWS)
def test_the_hypergradient_of_the_learning_rate_matches_finite_differences_under_vmap(
    case, shapes, x64
):
    """``jit(vmap(value_and_grad))`` over an ensemble of two starting points (one
    compile): each member's hypergradient against central differences of the
    same function, and each member's loss against an unbatched eager run."""
    final = _meta_loss(case.make, shapes)
    members = [_params(shapes), _params(shapes, scale=-0.7)]
    ensemble = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
    batched = jax.jit(jax.vmap(jax.value_and_grad(final), in_axes=(None, 0)))
    lr, h = jnp.float64(case.lr), 1e-6 * case.lr
    values, hypergradients = batched(lr, ensemble)
    above, _ = batched(lr + h, ensemble)
    below, _ = batched(lr - h, ensemble)
    fd = (np.asarray(above) - np.asarray(below)) / (2 * h)
    assert np.all(np.isfinite(hypergradients)) and np.all(hypergradients != 0), case.name
    np.testing.assert_allclose(hypergradients, fd, rtol=2e-5, atol=1e-7, err_msg=case.name)
    for i, member in enumerate(members):  # vmap = a loop over the members
        np.testing.assert_allclose(values[i], final(lr, member), rtol=1e-12, err_msg=case.name)


def test_the_hypergradient_table_covers_every_optimizer_but_the_line_searches():
    names = {p.values[0].name for p in HYPERGRADIENT_ROWS}
    covered = {n for n in OPTIMIZERS if any(r == n or r.startswith(n + "_") for r in names)}
    # schedule_free(base) is schedule_free_sgd's and _adamw's core; lbfgs's default
    # line search is a while_loop, which JAX cannot differentiate in reverse mode
    assert set(OPTIMIZERS) - covered <= {"schedule_free", "lbfgs"}, set(OPTIMIZERS) - covered


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_schedule_free_hypergradients_through_a_warm_up_are_finite(power, x64):
    """A warm-up from 0 (a schedule: ``warmup_steps`` ramps from lr / W) has a
    first learning rate 0, and d/dx x**power is infinite at 0 for power < 1
    (its Hessian NaN for power 1): NaN times a zero tangent."""

    def final(lr, power=power):
        warm_up = gl.schedules.linear(0.0, lr, transition_steps=2)  # 0, lr / 2, lr
        tx = gl.schedule_free_sgd(warm_up, weight_lr_power=power)
        p = jnp.asarray([1.0, -2.0])
        state = tx.init(p)
        for _ in range(3):
            u, state = tx.update(p * jnp.asarray([1.0, 3.0]), state, p)
            p = p + u
        return jnp.sum(p**2)

    lr, h = 0.1, 1e-6
    fd = (final(lr + h) - final(lr - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(final)(lr), fd, rtol=1e-6)
    fd2 = (jax.grad(final)(lr + h) - jax.grad(final)(lr - h)) / (2 * h)
    np.testing.assert_allclose(jax.hessian(final)(lr), fd2, rtol=1e-5)
    # ... and in the power itself (at power 1 too: x * x**(power - 1))
    # (not at power 0: 0**power jumps from 1 to 0 there, the first weight with it)
    if power > 0:
        fd = (final(lr, power + h) - final(lr, power - h)) / (2 * h)
        np.testing.assert_allclose(jax.grad(final, 1)(lr, power), fd, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    ("make", "beta"),
    [(gl.adam, "b1"), (gl.adam, "b2"), (gl.radam, "b2")],
    ids=["adam-b1", "adam-b2", "radam-b2"],
)
def test_second_hypergradients_at_a_zero_decay_are_finite(make, beta, x64):
    """The bias correction 1 - b**k (and radam's rectifier b2**k): JAX's power
    rule gives d2/db2 b**1 at b = 0 as 0 * inf (NaN Hessians; Optax's too).
    In a lax.scan (a custom JVP was inlined there). Against central differences."""

    def final(b):
        tx = make(0.1, **{beta: b})
        p = jnp.asarray([1.0, -2.0])

        def step(carry, _):
            p, state = carry
            u, state = tx.update(p * jnp.asarray([1.0, 3.0]), state, p)
            return (p + u, state), None

        (p, _), _ = jax.lax.scan(step, (p, tx.init(p)), length=3)
        return jnp.sum(p**2)

    h = 1e-5
    fd2 = (jax.grad(final)(h) - jax.grad(final)(-h)) / (2 * h)
    np.testing.assert_allclose(jax.hessian(final)(0.0), fd2, rtol=1e-4)


def test_hypergradients_through_a_clamped_square_root_are_finite(x64):
    """radam's rectifier and the 1-sqrt cooldown take ``sqrt`` of a clamped
    argument in a branch ``where`` does not select: ``jnp.sqrt(maximum(x, 0))``
    made the reverse-mode gradient ``inf * 0 = NaN`` (forward mode was right)."""

    def radam_loss(b2):  # 8 steps: rho_t is in (2, 4) on the first ones
        tx = gl.radam(0.05, b2=b2)
        p = jnp.array([0.3, 0.4])
        s = tx.init(p)
        for _ in range(8):
            u, s = tx.update(2 * (p - jnp.array([1.0, -2.0])), s, p)
            p = gl.apply_updates(p, u)
        return jnp.sum((p - jnp.array([1.0, -2.0])) ** 2)

    b2, h = 0.999, 1e-7
    fd = (radam_loss(b2 + h) - radam_loss(b2 - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(radam_loss)(b2), fd, rtol=1e-5)

    def wsd(warmup, decay):  # step 1: warm-up, where the value is smooth in warmup_steps
        s = gl.schedules.warmup_stable_decay(1.0, warmup, 2.0, 10.0, init_value=0.1, decay=decay)
        return s(1)

    for decay in ("linear", "sqrt"):  # (0.1 - 1) * 1 / warmup^2 at warmup = 4
        np.testing.assert_allclose(jax.grad(wsd)(4.0, decay), -0.9 / 16, rtol=1e-12)
    # in the cooldown, the derivative of 1 - sqrt((t - 6) / (n - 6)) in n, at t = 8, n = 10
    grad = jax.grad(lambda n: gl.schedules.warmup_stable_decay(1.0, 4, 2, n, decay="sqrt")(8))
    np.testing.assert_allclose(grad(10.0), 0.5 * np.sqrt(2 / 4) / 4, rtol=1e-12)


# ---------------------------------------------------------------- donation

PARAMS = {"w": jnp.asarray([[0.3, 1.2], [0.8, 0.1]]), "b": jnp.asarray([0.5, 1.0])}
DONATION_WARNING = re.compile("donated buffers were not usable", re.IGNORECASE)


def _donation_warnings(caught):
    return [str(w.message) for w in caught if DONATION_WARNING.search(str(w.message))]


@pytest.mark.parametrize("name", sorted(PUBLIC_TRANSFORMS))
def test_no_initial_state_holds_one_buffer_twice(name):
    """A buffer that appears twice in a state cannot be donated: XLA refuses
    ("Attempt to donate the same buffer twice"), at the first jitted step."""
    state = PUBLIC_TRANSFORMS[name]().init(PARAMS)
    pointers = [x.unsafe_buffer_pointer() for x in jax.tree.leaves(state) if x.size]
    assert len(pointers) == len(set(pointers)), name


# a compile each: one optimizer per kind of state (the structural test above
# covers every transformation's initial state)
DONATED = ["adam", "adafactor", "lamb", "lion", "muon", "schedule_free_adamw", "sgd", "sm3"]


@pytest.mark.parametrize("name", DONATED)
def test_a_jitted_step_donates_params_and_state_without_warning(name):
    tx = PUBLIC_TRANSFORMS[name]()
    params = jax.tree.map(jnp.array, PARAMS)  # a copy: the step donates it

    def step(params, state):
        grads = jax.tree.map(lambda p: jnp.sin(3.0 * p), params)
        updates, state = tx.update(grads, state, params)
        return gl.apply_updates(params, updates), state

    train = jax.jit(step, donate_argnums=(0, 1))
    state = tx.init(params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            params, state = train(params, state)
    assert not _donation_warnings(caught), _donation_warnings(caught)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))


def test_lbfgs_step_donates_params_and_state_without_warning():
    tx = gl.lbfgs()
    x = jnp.asarray([-1.2, 1.0])

    def f(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    value_and_grad = gl.value_and_grad_from_state(f)

    def step(x, state):
        value, grad = value_and_grad(x, state=state)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
        return gl.apply_updates(x, updates), state

    train = jax.jit(step, donate_argnums=(0, 1))
    state = tx.init(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            x, state = train(x, state)
    assert not _donation_warnings(caught), _donation_warnings(caught)


@pytest.mark.parametrize("i", [i for i, b in enumerate(BLOCKS) if "donate_argnums" in b])
def test_readme_donation_pattern_runs_without_the_warning(i):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_block(i)
    assert not _donation_warnings(caught), _donation_warnings(caught)


ZERO_OUTPUT_LAYER = {
    "adam": lambda: gl.adam(0.1),
    "amsgrad": lambda: gl.amsgrad(0.1),
    "radam": lambda: gl.radam(0.1),  # the rectifier is off for these steps
    "rmsprop": lambda: gl.rmsprop(0.1, centered=True),
    "adagrad": lambda: gl.adagrad(0.1, initial_accumulator_value=0.0),
    "novograd": lambda: gl.novograd(0.1),
    "lars": lambda: gl.lars(0.1),
    "sm3": lambda: gl.sm3(0.1, eps=0.0),
}
# (nadam and lamb share adam's root.) The steps of these two jump where the
# output layer leaves 0: a trust ratio is 1 at a zero param and |p| / |u|
# next to it; with eps = 0, g / sqrt(g**2) is a sign. There only the hidden
# layer's derivatives are compared with differences.
JUMPS_AT_ZERO = {"lars", "sm3"}


@pytest.mark.parametrize("name", ZERO_OUTPUT_LAYER)
def test_derivatives_through_steps_from_a_zero_output_layer_match_differences(name, x64):
    """A zero-initialised output layer gives the hidden layer exactly zero
    gradients at the first step (second moments 0, trust ratios of a zero
    update): jnp.sqrt(0)'s infinite derivative, and 1 / 0 in a where's branch
    not taken, made the derivative of the loss after the steps w.r.t. the
    initial params NaN, reverse mode and often forward. Against central
    differences (float64)."""
    tx = ZERO_OUTPUT_LAYER[name]()
    x = jnp.array([[0.5, -1.0], [1.5, 0.25], [-0.5, 2.0]])
    y = jnp.array([1.0, -0.5, 0.25])

    def loss(p):
        return jnp.mean((jnp.tanh(x @ p["hidden"]) @ p["out"] - y) ** 2)

    def final_loss(flat):
        p = {"hidden": flat[:4].reshape(2, 2), "out": flat[4:]}

        def step(c, _):
            p, s = c
            u, s = tx.update(jax.grad(loss)(p), s, p)
            return (gl.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (p, tx.init(p)), None, length=2)
        return loss(p)

    flat = jnp.array([0.3, -0.7, 0.9, 0.2, 0.0, 0.0])  # the output layer at zero
    reverse = np.asarray(jax.jit(jax.grad(final_loss))(flat))
    forward = np.asarray(jax.jit(jax.jacfwd(final_loss))(flat))
    assert np.all(np.isfinite(reverse)) and np.all(np.isfinite(forward)), (reverse, forward)
    np.testing.assert_allclose(reverse, forward, rtol=1e-8, atol=1e-12)
    # The first step moves the hidden layer by lr * g / (|g| + eps) with g
    # proportional to the output weights: steep within ~eps of 0, so those
    # two derivatives are checked with a step far inside that region.
    f = jax.jit(final_loss)
    h = np.array([1e-6] * 4 + [1e-12] * 2)
    n = 4 if name in JUMPS_AT_ZERO else 6
    central = [(f(flat.at[i].add(h[i])) - f(flat.at[i].add(-h[i]))) / (2 * h[i]) for i in range(n)]
    np.testing.assert_allclose(reverse[:n], np.array(central), rtol=1e-3, atol=1e-7)
    if name == "adam":  # second order inside the scan too (a custom JVP lost it there)
        assert np.all(np.isfinite(np.asarray(jax.jit(jax.hessian(final_loss))(flat))))


@pytest.mark.parametrize(("case", "shapes"), HYPERGRADIENT_ROWS)
def test_jitted_reverse_mode_equals_forward_mode_through_the_steps(case, shapes, x64):
    """``d L(p_2) / d p_0`` by ``jit(grad)`` and by ``jit(jacfwd)``: equal. hunt72:
    under jit the reverse-mode derivative through amsgrad's ``max(v̂max, v/c2)``
    was wrong in about a quarter of the elements (XLA computed ``v/c2`` twice,
    differently rounded, and JAX's rule for ``max`` tests which side equals the
    maximum), while eager mode, forward mode and differences agreed."""
    final = _meta_loss(case.make, shapes)
    lr, p0 = jnp.float64(case.lr), _params(shapes)
    # Two separate programs, as a user compiles jit(grad) alone: compiled together
    # (one jit returning both) XLA shared the division and amsgrad's bug hid.
    reverse = jax.jit(jax.grad(final, argnums=1))(lr, p0)
    forward = jax.jit(jax.jacfwd(final, argnums=1))(lr, p0)
    for k in p0:
        assert np.all(np.isfinite(np.asarray(reverse[k]))), (case.name, k)
        np.testing.assert_allclose(
            reverse[k], forward[k], rtol=1e-7, atol=1e-10, err_msg=f"{case.name} {k}"
        )
