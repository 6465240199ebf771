"""Reliability, item 2: numerical faults -- over every public transformation.

The table is ``PUBLIC_TRANSFORMS`` of ``tests/test_packing.py`` (every public
constructor of a transformation: optimizers, blocks, combinators; a new one
fails a test there until it is added), run eagerly on its small tree:

* NaN and Inf gradients show in the update of the leaf that held them (never a
  finite-looking update), except in the four transformations whose job is to
  remove them (:data:`SANITIZERS`); ``apply_if_finite`` skips such a step with
  zero updates and the inner state bit-identical, for every optimizer;
* huge (1e30) and subnormal (1e-40) gradients give no NaN anywhere, finite
  updates, and -- for transformations that do not keep the gradient's square
  -- a finite state and a non-zero update (norms do not overflow). Those that
  keep ``g²`` (:data:`SQUARES_THE_GRADIENT`: Adam's second moment, AdaGrad's
  sum, ...) store ``inf`` there, as torch and Optax do, and their update is 0;
  ``clip_by_global_norm`` first is the remedy, checked for each of them;
* bfloat16 and float16 params (one tree with both, plus float32), float32
  moments for bfloat16 params, float64 params under x64: updates in each
  param's dtype, finite, state dtypes stable step to step, no float64 leak;
* step counters saturate at 2**31 - 1 in every stateful block;
* every schedule is finite at steps 2**31 - 1 and 10**12.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_schedules
from reliability_helpers import OPTIMIZERS
from test_packing import PUBLIC_TRANSFORMS

import gradlab as gl
from gradlab._tree import INT32_MAX

# Few distinct leaf shapes: eagerly, each (primitive, shape, dtype) compiles once.
# Non-negative: keep_params_nonnegative needs p >= 0; "b" leaves are biases for
# the table's masks; the matrix is what Muon orthogonalises.
PARAMS = {
    "layers": [{"b": jnp.array([0.5, 1.0]), "w": jnp.array([[0.3, 1.2], [0.8, 0.1]])}],
    "scale": jnp.asarray(0.7),
}
NAMES = sorted(PUBLIC_TRANSFORMS)

# Transformations whose purpose is to remove or bound non-finite values
# (the four that bound or remove values by design, and apply_if_finite).
SANITIZERS = {
    "zero_nans": "replaces NaN by 0 (and records where)",
    "apply_if_finite": "skips the step (tested below: zero updates, state unchanged)",
    "freeze": "the faulty leaf is frozen in this table's configuration: its update is 0",
    "clip": "maps +-inf to +-max_delta, as optax.clip and torch.clamp (NaN stays NaN)",
    "keep_params_nonnegative": "bounds p + u at 0: a -inf step becomes -p (NaN stays NaN)",
}

# Transformations that keep g² (or |g|²) in their state: with |g| = 1e30 the
# square overflows float32 (1e60 > 3.4e38), the state holds inf and the update
# is 0 -- as in torch and Optax. Not fixable without changing what is stored.
SQUARES_THE_GRADIENT = {
    "adabelief", "adadelta", "adafactor", "adagrad", "adam", "adamw", "adan", "amsgrad",
    "apply_if_finite", "inject_hyperparams", "lamb", "lookahead", "masked", "muon", "nadam",
    "nadamw", "novograd", "packed", "partition", "radam", "reduce_on_plateau", "rmsprop",
    "scale_by_adadelta", "scale_by_adam", "scale_by_adan", "scale_by_amsgrad",
    "scale_by_belief", "scale_by_debiased_rms", "scale_by_factored_rms", "scale_by_novograd",
    "scale_by_radam", "scale_by_rms", "scale_by_rss", "scale_by_sm3", "scale_by_yogi",
    "schedule_free_adamw", "sm3", "yogi", "chain", "named_chain", "freeze",
}  # fmt: skip
# The line searches multiply the 1e30 direction by the gradient (directional
# derivatives): they overflow to -inf and the search backs off to a zero step.
LINE_SEARCHES = {"scale_by_zoom_linesearch", "scale_by_backtracking_linesearch"}

# Every fault scenario of one transformation runs as ONE vmapped eager update
# (twice: the second step shows what the first stored), cached: the properties
# below read it. Scenario 0 starts with its step counters at 2**31 - 2.
SCENARIOS = ("counters", "nan", "inf", "huge", "subnormal")
COUNTERS = ("count", "gradient_step", "total_notfinite")


def _signs():
    """Alternating +-1 over every leaf (a gradient with no common direction)."""

    def leaf(p):
        s = jnp.where(jnp.arange(p.size) % 2 == 0, 1.0, -1.0).reshape(p.shape)
        return s.astype(p.dtype)

    return jax.tree.map(leaf, PARAMS)


def _grads(value=None):
    """The table's gradient; ``value`` (and its negative) in two entries of one matrix."""
    g = jax.tree.map(lambda p: jnp.sin(p + 0.3).astype(p.dtype), PARAMS)
    if value is not None:
        w = g["layers"][0]["w"]
        g["layers"][0]["w"] = w.at[0, 0].set(value).at[1, 1].set(-value)
    return g


def _scenario_grads():
    return [
        _grads(),
        _grads(jnp.nan),
        _grads(jnp.inf),
        jax.tree.map(lambda s: s * jnp.float32(1e30), _signs()),
        jax.tree.map(lambda s: s * jnp.float32(1e-40), _signs()),
    ]


def _is_counter(state, field, x):
    # ReduceLROnPlateauState.count counts values toward its next decision: not a step counter
    return (
        field in COUNTERS
        and not isinstance(state, gl.ReduceLROnPlateauState)
        and jnp.result_type(x) == jnp.int32
        and jnp.shape(x) == ()
    )


def _map_counters(state, fn, path=""):
    """``state`` with ``fn(path, counter)`` in place of every step counter."""
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        fields = zip(state._fields, state, strict=True)
        return type(state)(*(
            fn(at, x) if _is_counter(state, f, x) else _map_counters(x, fn, at)
            for f, x in fields
            for at in [f"{path}.{f}"]
        ))  # fmt: skip
    if isinstance(state, tuple | list):
        return type(state)(_map_counters(x, fn, f"{path}[{i}]") for i, x in enumerate(state))
    if isinstance(state, dict):
        return {k: _map_counters(x, fn, f"{path}[{k!r}]") for k, x in state.items()}
    return state


def _counters(state):
    found = []
    _map_counters(state, lambda path, x: found.append((path, x)) or x)
    return found


@functools.cache
def _scenarios(name):
    """``{scenario: (updates step 1, updates step 2, state after step 2)}``, eagerly:
    on this small tree every primitive's compiled kernel is shared by the table."""
    tx = PUBLIC_TRANSFORMS[name]()
    state = tx.init(PARAMS)
    at_max = _map_counters(state, lambda _, x: jnp.asarray(INT32_MAX - 1, jnp.int32))
    out = {}
    for scenario, grads in zip(SCENARIOS, _scenario_grads(), strict=True):
        s = at_max if scenario == "counters" else state
        first, s = tx.update(grads, s, PARAMS)
        second, s = tx.update(grads, s, PARAMS)
        out[scenario] = (first, second, s)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_a_python_number_param_leaf_acts_as_a_float_array(name):
    """Optax's rule: a Python number among the params is a float. Transformations
    that read the params (weight decay, trust ratios, factored moments) crashed
    on its missing ``.astype`` until map_like converted it."""
    tx = PUBLIC_TRANSFORMS[name]()
    grads = jax.tree.map(lambda p: 0.1 + 0.5 * p, PARAMS)
    as_number = {**PARAMS, "scale": float(PARAMS["scale"])}
    want, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    got, _ = tx.update(grads, tx.init(as_number), as_number)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_empty_leaves_change_nothing(name):
    """A (0, 3) matrix and a (0,) vector among the params (a layer of width 0):
    empty updates, and the other leaves' updates as without them. Muon divided
    by the matrix's fan-in and SM3 took a max over an empty axis."""
    tx = PUBLIC_TRANSFORMS[name]()
    grads = jax.tree.map(lambda p: 0.1 + 0.5 * p, PARAMS)
    empty = {"e": jnp.zeros((0, 3)), "v": jnp.zeros((0,))}
    with_empty, grads_empty = {**PARAMS, **empty}, {**grads, **empty}
    want, state = tx.update(grads, tx.init(PARAMS), PARAMS)
    want, _ = tx.update(grads, state, PARAMS)
    got, state = tx.update(grads_empty, tx.init(with_empty), with_empty)
    got, _ = tx.update(grads_empty, state, with_empty)
    assert got["e"].shape == (0, 3) and got["v"].shape == (0,)
    if name in ("add_noise", "noisy_sgd"):  # a key per leaf: other leaves, other draws
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(got))
        return
    for g, w in zip(
        jax.tree.leaves({k: got[k] for k in PARAMS}), jax.tree.leaves(want), strict=True
    ):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6, atol=1e-7)


def _bad_leaf(tree):
    return np.asarray(tree["layers"][0]["w"])[[0, 1], [0, 1]]


def _floats(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


# ------------------------------------------------------------------ NaN and Inf


@pytest.mark.parametrize("name", [n for n in NAMES if n not in SANITIZERS])
@pytest.mark.parametrize("scenario", ["nan", "inf"])
def test_a_non_finite_gradient_shows_in_its_leafs_update(name, scenario):
    """A NaN (or +inf and -inf) in two entries of one leaf: both entries'
    updates are not finite -- on the first step, and on the next one too."""
    first, second, _ = _scenarios(name)[scenario]
    for updates in (first, second):
        assert not np.any(np.isfinite(_bad_leaf(updates))), (
            f"{name} turned a {scenario} gradient into a finite update: {_bad_leaf(updates)}"
        )


def test_the_sanitizers_are_public_transformations():
    assert set(SANITIZERS) <= set(PUBLIC_TRANSFORMS)


def test_the_optimizer_list_is_every_public_optimizer():
    # the 29 optimizers of README's table (adamaxw, nadamw and the two schedule-free
    # ones counted) and schedule_free(base) -- every public function that builds one
    assert len(OPTIMIZERS) == 30, OPTIMIZERS


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_apply_if_finite_skips_a_non_finite_step_with_zero_updates_and_the_state_unchanged(name):
    tx = gl.apply_if_finite(PUBLIC_TRANSFORMS[name](), max_consecutive_errors=3)
    state = tx.init(PARAMS)
    _, state = tx.update(_grads(), state, PARAMS)
    for bad in (np.nan, np.inf):
        updates, after = tx.update(_grads(bad), state, PARAMS)
        assert all(np.all(u == 0) for u in _floats(updates)), name
        same = jax.tree.map(
            lambda a, b: np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True),
            after.inner_state,
            state.inner_state,
        )
        assert all(jax.tree.leaves(same)), f"{name}: inner state changed on a skipped step"
        assert not bool(after.last_finite)
        state = after
    assert int(state.notfinite_count) == 2 and int(state.total_notfinite) == 2


# --------------------------------------------------------- huge and subnormal


@pytest.mark.parametrize("name", [n for n in NAMES if n not in LINE_SEARCHES])
def test_huge_gradients_give_no_nan_and_no_overflow_outside_stored_squares(name):
    """+-1e30 in every entry (twice: the second step reads what the first stored)."""
    first, second, state = _scenarios(name)["huge"]
    assert not any(np.isnan(x).any() for x in _floats((first, second, state))), f"{name}: NaN"
    assert all(np.isfinite(u).all() for u in _floats((first, second))), f"{name}: overflow"
    if name not in SQUARES_THE_GRADIENT:
        # nothing squared is stored: the state is finite and the step is not 0
        assert all(np.isfinite(x).all() for x in _floats(state)), f"{name}: state overflow"
        vanished = [u for u in _floats(second) if u.size and not np.any(u != 0)]
        assert not vanished, f"{name}: a leaf's update vanished (a norm overflowed?)"


@pytest.mark.parametrize("name", sorted(SQUARES_THE_GRADIENT - {"freeze"}))
def test_clipping_the_global_norm_first_is_the_remedy_for_huge_gradients(name):
    tx = gl.chain(gl.clip_by_global_norm(1.0), PUBLIC_TRANSFORMS[name]())
    state = tx.init(PARAMS)
    huge = _scenario_grads()[SCENARIOS.index("huge")]
    for _ in range(2):
        updates, state = tx.update(huge, state, PARAMS)
        assert all(np.isfinite(x).all() for x in _floats((updates, state))), name
    # (the second step: some entries' learning rate is a warm-up's 0 at step 0)
    assert any(np.any(u != 0) for u in _floats(updates)), name


@pytest.mark.parametrize("name", NAMES)
def test_subnormal_gradients_give_finite_updates_and_state(name):
    """+-1e-40 everywhere. XLA on CPU flushes subnormals to zero (the gradient
    acts as 0; GPUs may keep them): either way no NaN, nothing infinite."""
    first, second, state = _scenarios(name)["subnormal"]
    assert all(np.isfinite(x).all() for x in _floats((first, second, state))), name


def test_the_global_norm_of_huge_finite_gradients_is_finite_and_right():
    """The sum of squares overflows from |x| ~ 1.8e19 in float32; the norm does
    not, until it is itself above 3.4e38."""
    from gradlab._tree import global_norm

    x = {"a": jnp.array([3e20, -4e20]), "b": jnp.full((3,), 1e30)}
    want = np.sqrt(9e40 + 16e40 + 3e60)
    clipped, _ = gl.clip_by_global_norm(1.0).update(x, gl.EmptyState())
    np.testing.assert_allclose(clipped["b"], 1e30 / want, rtol=1e-6)
    for fn in (global_norm, jax.jit(global_norm)):
        np.testing.assert_allclose(fn(x), want, rtol=1e-6)
        assert np.isinf(fn({"a": jnp.full(4, 3e38)}))  # the norm itself overflows
        assert np.isnan(fn({"a": jnp.array([jnp.nan, 1e30])}))
    # the gradient through the rescued norm is the norm's: x / ||x||
    np.testing.assert_allclose(jax.grad(global_norm)(jnp.full(4, 1e30)), 0.5, rtol=1e-6)


def test_dividing_by_a_norm_above_2_126_keeps_the_direction(run_mode):
    """XLA turns ``x / norm`` into ``x * (1 / norm)``, and ``1 / norm`` is subnormal,
    flushed to 0 on CPU, above ~8.5e37: a clip or a block-RMS clip of such a
    gradient gave zeros (hunt47). The references are the float64 formulas; the
    second element, 1e-38, is itself subnormal in float32. (normalize_by_update_norm
    keeps Optax's multiplication: see test_normalize_by_update_norm_...)"""
    g = jnp.array([1e38, 1.0], jnp.float32)
    both = jnp.array([2e38, 2e38], jnp.float32)
    for tx, x, want in (
        (gl.clip_by_global_norm(1.0), g, [1.0, 0.0]),
        (gl.clip_by_global_norm(1.0), both, [2**-0.5, 2**-0.5]),
        (gl.clip_by_block_rms(1.0), both, [1.0, 1.0]),
    ):
        out, _ = run_mode(tx.update)(x, tx.init(x))
        np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-37)
    # and in the normal range the same numbers as the multiplication XLA makes
    x = jax.random.normal(jax.random.key(0), (64,)) * 1e3
    out, _ = jax.jit(gl.clip_by_global_norm(1.0).update)(x, gl.EmptyState())
    n = jnp.sqrt(jnp.sum(x * x))
    np.testing.assert_array_equal(out, x * (1 / n))


def test_tiny_gradients_still_adapt_rprop_and_move_sm3(run_mode):
    """Products and squares of gradients below ~1e-19 are subnormal, flushed to 0 on
    CPU (hunt47): rprop compared g * g_prev and stopped adapting (a fixed +-lr
    swing); sm3 zeroed the step where g² flushed although eps keeps it finite.
    The references: torch's Rprop sequence, the sm3 formula."""
    rprop = gl.rprop(0.1)
    step = run_mode(rprop.update)
    p = jnp.zeros(1)
    state = rprop.init(p)
    got = []
    for g in (1e-20, -1e-20, 1e-20, -1e-20, 1e-20, 1e-20, 1e-20):
        u, state = step(jnp.array([g], jnp.float32), state, p)
        got.append(float(u[0]))
    np.testing.assert_allclose(got, [-0.1, 0, -0.05, 0, -0.025, -0.03, -0.036], rtol=1e-6)

    sm3 = gl.sm3(1.0, momentum=0.0, eps=1e-8)
    g = jnp.full((2,), 1e-20, jnp.float32)
    u, _ = run_mode(sm3.update)(g, sm3.init(g))
    np.testing.assert_allclose(u, -1e-20 / np.sqrt(1e-40 + 1e-8), rtol=1e-5)


def test_normalize_by_update_norm_derivatives_and_nan_stay_as_optax_s():
    """An exact norm and a division by ``(n + eps) / scale_factor`` (tried for hunt47's
    extreme norms) gave NaN derivatives at ``scale_factor=0``, lost the derivative
    in ``scale_factor`` at large norms and passed a NaN tree's other leaves through
    unnormalised (review9). The block keeps ``u * scale_factor / (n + eps)``: the
    derivative in scale_factor is u / (n + eps), a NaN anywhere is NaN everywhere."""
    u = jnp.array([3.0, 4.0])

    def out(s):
        return gl.normalize_by_update_norm(scale_factor=s).update(u, gl.EmptyState())[0]

    for s in (0.0, 1.0, -1.0):
        np.testing.assert_allclose(jax.jacfwd(out)(s), [0.6, 0.8], rtol=1e-5)
        np.testing.assert_allclose(jax.grad(lambda s: out(s)[0])(s), 0.6, rtol=1e-5)
    nan = gl.normalize_by_update_norm(eps=0.0).update(
        {"a": jnp.array([1e38, 1e-30]), "b": jnp.array([jnp.nan])}, gl.EmptyState()
    )[0]
    assert np.all(np.isnan(nan["a"]))
    zero = gl.normalize_by_update_norm(eps=0.0).update(jnp.zeros(3), gl.EmptyState())[0]
    np.testing.assert_array_equal(zero, np.zeros(3))  # 0 stays 0, as before


@pytest.mark.parametrize("x", [jnp.array(3e38), jnp.array([2.0**64]), jnp.full((1, 1), 1e30)])
def test_the_norm_of_a_single_huge_element_is_finite_and_right(x):
    """A one-element reduction: XLA's simplifier turned the rescue's ``(x 2^-66)^2``
    into ``x^2 2^-132``, whose constant flushes to 0, and the norm was NaN."""
    from gradlab._tree import global_norm, norm

    want = float(np.abs(np.asarray(x, np.float64)).max())
    for fn in (global_norm, jax.jit(global_norm), lambda v: norm(v, jnp.float32)):
        np.testing.assert_allclose(fn(x), want, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(global_norm)(x[None]), [want], rtol=1e-6)
    clipped, _ = jax.jit(gl.clip_by_global_norm(1.0).update)({"w": x}, gl.EmptyState())
    np.testing.assert_allclose(clipped["w"], np.sign(x), rtol=1e-6)


# Leaves the per-leaf norms see: small ones (a where-picked rescue), a scalar,
# an empty one, and a big one (> 4096 elements: the tree's one lax.cond).
_NORM_SHAPES = [(3,), (), (2, 5), (0,), (70, 70), (4, 3)]


def _norm_tree(huge_at: int | None = None, scale: float = 3e19) -> dict:
    rng = np.random.default_rng(7)
    tree = {
        f"l{i}": rng.normal(size=s).astype(np.float32) + 0.5 for i, s in enumerate(_NORM_SHAPES)
    }
    if huge_at is not None:
        tree[f"l{huge_at}"] = tree[f"l{huge_at}"] * np.float32(scale)
    return {k: jnp.asarray(v) for k, v in tree.items()}


def _numpy_norm(x, axis=None, keepdims=False):
    return np.sqrt(np.sum(np.square(np.asarray(x, np.float64)), axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("huge_at", [None, 0, 1, 2, 4])
def test_the_norms_of_many_leaves_are_each_right_with_a_huge_leaf_anywhere(huge_at):
    """``_tree.norms`` (the per-leaf norms of lamb, lars, adafactor, AGC...)
    against NumPy in float64, eagerly, jitted and under vmap: a sum of squares
    that overflows is rescued for its own leaf (small leaves: a where; big ones:
    one lax.cond for all), and the other leaves' norms are unaffected."""
    from gradlab._tree import norms

    tree = _norm_tree(huge_at)
    xs = list(tree.values())
    axes = [None, None, (1,), None, (0,), 0]
    dts = [np.float32] * len(xs)
    for fn in (norms, jax.jit(norms, static_argnums=(1, 2))):
        whole = fn(xs, tuple(dts))
        by_axis = fn(xs, tuple(dts), tuple(axes))
        for x, n, m, axis in zip(xs, whole, by_axis, axes, strict=True):
            np.testing.assert_allclose(n, _numpy_norm(x), rtol=1e-6)
            np.testing.assert_allclose(m, _numpy_norm(x, axis), rtol=1e-6)
            assert np.all(np.isfinite(n)) and np.all(np.isfinite(m))
    # under vmap both branches run: the picked values are still each leaf's own
    batched = jax.vmap(lambda *xs: norms(list(xs), dts))(*(jnp.stack([x, 2 * x]) for x in xs))
    for x, n in zip(xs, batched, strict=True):
        np.testing.assert_allclose(n, [_numpy_norm(x), _numpy_norm(2 * np.asarray(x))], rtol=1e-6)
    # forward mode: d||x|| = <x, dx> / ||x|| (0 at 0), not through the rescue
    tangents = [jnp.ones_like(x) for x in xs]
    _, dn = jax.jvp(lambda *xs: norms(list(xs), dts), xs, tangents)
    for x, d in zip(xs, dn, strict=True):
        x64 = np.asarray(x, np.float64)
        want = np.sum(x64) / _numpy_norm(x) if x.size else 0.0
        np.testing.assert_allclose(d, want, rtol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gl.lamb(1e-2),
        lambda: gl.lars(1e-2),
        lambda: gl.adafactor(1e-2, factored=False),
        lambda: gl.adaptive_grad_clip(0.01),
    ],
    ids=["lamb", "lars", "adafactor", "adaptive_grad_clip"],
)
@pytest.mark.parametrize("huge_at", [0, 2, 4])
def test_a_huge_leaf_leaves_every_other_leaf_s_per_leaf_step_bit_identical(make, huge_at):
    """Per-leaf norms are per leaf: a leaf whose sum of squares overflows is
    rescued without touching the others' numbers (the shared rescue picks
    each leaf's plain norm wherever that one is finite), and its own step is
    finite."""
    tx = make()
    plain, huge = _norm_tree(), _norm_tree(huge_at)
    step = jax.jit(tx.update)
    want, _ = step(plain, tx.init(plain), plain)
    got, _ = step(huge, tx.init(huge), huge)
    for k in plain:
        if k != f"l{huge_at}":
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert np.all(np.isfinite(got[f"l{huge_at}"]))
    assert np.any(got[f"l{huge_at}"] != 0)


@pytest.mark.parametrize(
    ("make", "blocks"),
    [
        (lambda: gl.lamb(1e-2), 1),
        (lambda: gl.lars(1e-2), 1),
        (lambda: gl.adafactor(1e-2), 2),  # clip_by_block_rms, scale_by_param_block_rms
        (lambda: gl.chain(gl.adaptive_grad_clip(0.01), gl.sgd(1e-2)), 1),
        (lambda: gl.scale_by_trust_ratio(), 1),
        (lambda: gl.clip_by_block_rms(1.0), 1),
        (lambda: gl.scale_by_param_block_rms(), 1),
    ],
    ids=["lamb", "lars", "adafactor", "agc", "trust_ratio", "block_rms", "param_block_rms"],
)
def test_per_leaf_norms_compile_at_most_one_conditional_for_the_whole_tree(make, blocks):
    """The overflow rescue of per-leaf norms was a lax.cond per leaf: an HLO
    conditional per leaf (408 for 204 leaves), which XLA cannot fuse across --
    2-4.7x Optax's compile time. Now at most one per block for the whole tree
    (the big leaf's; the small leaves' rescue is a where)."""
    params = {f"w{i}": jnp.full((4, 3), 0.5 + i) for i in range(12)}
    params["big"] = jnp.ones((70, 70))
    tx = make()
    text = jax.jit(tx.update).lower(params, tx.init(params), params).as_text()
    conditionals = text.count("stablehlo.if") + text.count("stablehlo.case")
    assert conditionals <= blocks, conditionals


# ------------------------------------------------------------------ counters

STATEFUL = [n for n in NAMES if _counters(PUBLIC_TRANSFORMS[n]().init(PARAMS))]


def test_every_stateful_public_transformation_has_its_counter_tested():
    assert len(STATEFUL) >= 55, STATEFUL


@pytest.mark.parametrize("name", STATEFUL)
def test_step_counters_saturate_at_int32_max(name):
    """Counters start at 2**31 - 2: one step reaches 2**31 - 1, the next stays there
    (and the arithmetic that reads the counter -- bias corrections, schedules,
    Adafactor's decay -- still gives finite updates)."""
    first, second, state = _scenarios(name)["counters"]
    assert all(np.isfinite(u).all() for u in _floats((first, second))), name
    for path, c in _counters(state):
        # two finite steps: total_notfinite stays where it started
        want = INT32_MAX - 1 if path.endswith("total_notfinite") else INT32_MAX
        assert int(c) == want, f"{name}: {path} = {int(c)}"


def test_multisteps_and_apply_if_finite_counters_saturate():
    tx = gl.apply_if_finite(gl.MultiSteps(gl.adam(0.1), 2), max_consecutive_errors=100)
    state = _map_counters(tx.init(PARAMS), lambda _, x: jnp.asarray(INT32_MAX - 2, jnp.int32))
    for bad in (None, None, None, None, np.nan, np.nan, np.nan):
        _, state = tx.update(_grads(bad), state, PARAMS)
    assert int(state.total_notfinite) == INT32_MAX and int(state.notfinite_count) == 3
    assert int(state.inner_state.gradient_step) == INT32_MAX
    assert int(state.inner_state.inner_opt_state[0].count) == INT32_MAX


# ------------------------------------------------------------- low precision


MIXED = {
    "bf16": jnp.linspace(0.1, 1.0, 4, dtype=jnp.bfloat16).reshape(2, 2),
    "f16": jnp.linspace(0.2, 1.0, 4, dtype=jnp.float16).reshape(2, 2),
    "f32": jnp.linspace(0.1, 0.5, 4, dtype=jnp.float32).reshape(2, 2),
}


def _mixed_grads(params, k):
    return jax.tree.map(
        lambda p: (jnp.cos(p.astype(jnp.float32) * (k + 1))).astype(p.dtype), params
    )


def _dtypes(tree):
    return jax.tree.map(lambda x: jnp.result_type(x), tree)


def _run_dtypes(name, params, steps=2):
    tx = PUBLIC_TRANSFORMS[name]()
    state = tx.init(params)
    first = _dtypes(state)
    for k in range(steps):
        updates, state = tx.update(_mixed_grads(params, k), state, params)
        assert _dtypes(state) == first, f"{name}: state dtypes changed at step {k}"
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
            assert u.dtype == p.dtype, f"{name}: a {p.dtype} param got a {u.dtype} update"
            assert np.all(np.isfinite(np.asarray(u, np.float32))), name
        params = gl.apply_updates(params, updates)
    return state


# Muon's Newton-Schulz needs matrices; the line searches' objective is the table's.
LOW_PRECISION = [n for n in NAMES if n not in LINE_SEARCHES | {"scale_by_muon"}]


@pytest.mark.parametrize("name", LOW_PRECISION)
def test_bfloat16_and_float16_params_get_updates_in_their_dtype(name):
    _run_dtypes(name, MIXED)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gl.adam(0.1, mu_dtype=jnp.float32),
        lambda: gl.adamw(0.1, mu_dtype=jnp.float32),
        lambda: gl.lion(0.1, mu_dtype=jnp.float32),
        lambda: gl.trace(0.9, accumulator_dtype=jnp.float32),
        lambda: gl.schedule_free_adamw(0.1, state_dtype=jnp.float32),
        lambda: gl.adafactor(momentum=0.9, dtype_momentum=jnp.float32),
    ],
    ids=["adam", "adamw", "lion", "trace", "schedule_free_adamw", "adafactor"],
)
def test_bfloat16_params_with_float32_moments_keep_float32_moments(make):
    params = {"w": MIXED["bf16"]}
    tx = make()
    state = tx.init(params)
    for k in range(2):
        updates, state = tx.update(_mixed_grads(params, k), state, params)
        assert updates["w"].dtype == jnp.bfloat16
        params = gl.apply_updates(params, updates)
    kinds = {np.dtype(x.dtype).name for x in jax.tree.leaves(state) if x.ndim >= 1}
    assert "float32" in kinds, kinds


# Adafactor keeps its momentum in dtype_momentum=float32 by default (as Optax).
FLOAT32_BY_DESIGN = {"adafactor"}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float64_params_keep_float64_state_and_updates_under_x64(name, x64):
    params = jax.tree.map(lambda p: p.astype(jnp.float64), PARAMS)
    state = _run_dtypes(name, params, steps=1)
    # every floating state array is float64 (nothing rounded to float32 on the way)
    for x in jax.tree.leaves(state):
        if jnp.issubdtype(x.dtype, jnp.floating) and x.ndim >= 1 and name not in FLOAT32_BY_DESIGN:
            assert x.dtype == jnp.float64, f"{name}: a {x.dtype} state array for float64 params"


# ------------------------------------------------------------------ schedules

SCHEDULE_CASES = [p.values[0] for p in test_schedules.CASES]


def test_the_schedule_table_covers_every_public_schedule():
    names = {c.make.__name__ for c in SCHEDULE_CASES} | {"join"}  # join: below
    assert set(gl.schedules.__all__) <= names, set(gl.schedules.__all__) - names


def test_a_joined_schedule_is_finite_at_huge_steps_and_ends_on_its_last_value():
    S = gl.schedules
    schedule = S.join([S.linear(0.0, 1.0, 100), S.cosine_decay(1.0, 10**6, end_value=0.1)], [100])
    for step in (np.int32(2**31 - 1), 10**12):
        np.testing.assert_allclose(schedule(step), 0.1, rtol=1e-6)


@pytest.mark.parametrize("c", SCHEDULE_CASES, ids=lambda c: c.id)
def test_every_schedule_is_finite_at_huge_steps(c):
    schedule = c.make(**c.kw)
    for step in (np.int32(2**31 - 1), 10**12, np.asarray([0, 2**31 - 1], np.int32)):
        assert np.all(np.isfinite(schedule(step))), step
    if not c.periodic:  # a decay has reached its final value: the closed form's
        np.testing.assert_allclose(schedule(10**12), c.ref(10**12, **c.kw), rtol=1e-5, atol=1e-7)


def test_healthy_steps_make_no_nan_for_debug_nans_and_schedules_leak_no_tracer():
    # sign() built an eager NaN constant for its (unselected) non-finite branch,
    # and check_schedule kept the traced value of its probe in an outer list
    params, grads = {"w": jnp.asarray([0.5, -1.0, 2.0])}, {"w": jnp.asarray([0.1, -0.2, 0.3])}
    with jax.debug_nans(True):
        for tx in (gl.lion(0.1), gl.sign_sgd(0.1), gl.signum(0.1)):
            tx.update(grads, tx.init(params), params)
    with jax.checking_leaks():
        gl.adam(gl.schedules.cosine_decay(0.1, 100))


# A NaN hyperparameter given traced (under jit, vmap, or set_hyperparams in a jitted
# step; concrete ones are refused at construction) must reach the params. Each of
# these hid it behind a comparison that NaN fails (hunt61): radam took its
# unrectified branch, sm3 a zero step, schedule-free switched its averaging off,
# reduce_on_plateau cut the scale as if no loss improved, polynomial_decay held
# its end value.
TRACED_NAN_CASES = {
    "radam b2": (lambda h: gl.radam(0.01, b2=h), 0.999),
    "radam threshold": (lambda h: gl.radam(0.01, threshold=h), 5.0),
    "sm3 eps": (lambda h: gl.sm3(0.1, eps=h), 1e-8),
    "schedule_free weight_lr_power": (lambda h: gl.schedule_free_sgd(0.1, weight_lr_power=h), 2.0),
    "reduce_on_plateau rtol": (
        lambda h: gl.chain(gl.sgd(0.1), gl.reduce_on_plateau(rtol=h, patience=0)),
        1e-4,
    ),
    "reduce_on_plateau atol": (
        lambda h: gl.chain(gl.sgd(0.1), gl.reduce_on_plateau(atol=h, patience=0)),
        0.0,
    ),
    "polynomial_decay decay_steps": (
        lambda h: gl.sgd(gl.schedules.polynomial_decay(0.1, 0.01, h, power=2.0)),
        10.0,
    ),
}


@pytest.mark.parametrize("name", TRACED_NAN_CASES)
def test_a_traced_nan_hyperparameter_reaches_the_params(name):
    make, good = TRACED_NAN_CASES[name]
    p0 = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "b": jnp.ones(3)}

    @jax.jit
    def run(h):
        tx = make(h)
        p, s = p0, tx.init(p0)
        for k in range(6):
            g = jax.tree.map(lambda x, k=k: 0.5 * x + 0.1 * k, p)
            u, s = tx.update(g, s, p, value=jnp.sum(p["w"] ** 2))
            p = gl.apply_updates(p, u)
        return p

    assert all(np.isfinite(x).all() for x in jax.tree.leaves(run(jnp.float32(good))))
    assert any(np.isnan(x).any() for x in jax.tree.leaves(run(jnp.float32(np.nan)))), name


def test_an_infinite_gradient_leaves_no_finite_entry_in_its_factored_row():
    # The inf/inf rescue is for squares of huge finite gradients that overflow; an
    # infinite gradient left the rest of its row finite (Optax: all non-finite).
    tx = gl.scale_by_factored_rms(min_dim_size_to_factor=2)
    g = jnp.ones((4, 6)).at[1, 2].set(jnp.inf)
    out, _ = tx.update(g, tx.init(g), g)
    assert not np.isfinite(out[1]).any()
