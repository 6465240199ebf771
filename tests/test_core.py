"""The core contract (API.md §1): chain, extras, apply_updates, state, validation."""

from __future__ import annotations

import copy
import functools
import re
from typing import Any, NamedTuple

import cases
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import references as ref
from cases import BAD_HYPERPARAMETERS, NON_NUMERIC_HYPERPARAMETERS, OPTIMIZER_CASES, PACKED_CASES

import gradlab as gl

INT32_MAX = 2**31 - 1

# Every building block, built with ordinary hyperparameters (for contracts that
# hold for all transformations: state of arrays, counters, extras, structure).
BLOCKS = {
    "identity": lambda: gl.identity(),
    "scale": lambda: gl.scale(0.5),
    "scale_by_learning_rate": lambda: gl.scale_by_learning_rate(0.1),
    "scale_by_schedule": lambda: gl.scale_by_schedule(lambda k: 0.9 ** jnp.asarray(k, float)),
    "trace": lambda: gl.trace(0.9, nesterov=True),
    "ema": lambda: gl.ema(0.9),
    "scale_by_adam": lambda: gl.scale_by_adam(),
    "scale_by_rms": lambda: gl.scale_by_rms(centered=True),
    "scale_by_rss": lambda: gl.scale_by_rss(),
    "add_decayed_weights": lambda: gl.add_decayed_weights(0.1),
    "clip": lambda: gl.clip(1.0),
    "clip_by_global_norm": lambda: gl.clip_by_global_norm(1.0),
    "add_noise": lambda: gl.add_noise(0.1, 0.55, 0),
    "zero_nans": lambda: gl.zero_nans(),
    "keep_params_nonnegative": lambda: gl.keep_params_nonnegative(),
}
# Blocks whose state holds a tree shaped like the params (or that read the params).
TREE_STATE_BLOCKS = [
    "trace",
    "ema",
    "scale_by_adam",
    "scale_by_rms",
    "scale_by_rss",
    "add_decayed_weights",
    "keep_params_nonnegative",
    "zero_nans",
]

ALL_TRANSFORMS = {**{c.name: functools.partial(c.make, c.lr) for c in OPTIMIZER_CASES}, **BLOCKS}


def params_and_grads(dtype=jnp.float32):
    params = jax.tree.map(jnp.asarray, cases.unflatten(cases.INITIAL_FLAT, dtype))
    grads = jax.tree.map(jnp.asarray, cases.unflatten(cases.NOISE[0], dtype))
    return params, grads


def as_np(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


# --------------------------------------------------------------------------
# GradientTransformation and chain
# --------------------------------------------------------------------------


def test_gradient_transformation_is_a_named_tuple_of_init_and_update():
    assert issubclass(gl.GradientTransformation, tuple)
    assert gl.GradientTransformation._fields == ("init", "update")
    tx = gl.adam(0.1)
    assert isinstance(tx, gl.GradientTransformation)
    init, update = tx  # unpacks like Optax's
    assert init is tx.init and update is tx.update


def test_chain_composes_in_order(run_mode):
    params, grads = params_and_grads()
    g = as_np(grads)

    def both(grads):
        a = gl.chain(gl.scale(2.0), gl.scale(3.0))
        b = gl.chain(gl.clip(0.5), gl.scale(10.0))  # clip first, then scale
        c = gl.chain(gl.scale(10.0), gl.clip(0.5))  # scale first, then clip
        return [t.update(grads, t.init(params), params)[0] for t in (a, b, c)]

    out_a, out_b, out_c = run_mode(both)(grads)
    for k in g:
        np.testing.assert_allclose(out_a[k], 6 * g[k], rtol=1e-6)
        np.testing.assert_allclose(out_b[k], 10 * ref.clip(g[k], 0.5), rtol=1e-6)
        np.testing.assert_allclose(out_c[k], ref.clip(10 * g[k], 0.5), rtol=1e-6)


def test_chain_state_is_a_tuple_of_member_states():
    params, _ = params_and_grads()
    state = gl.chain(gl.scale(2.0), gl.trace(0.9), gl.ema(0.5)).init(params)
    assert isinstance(state, tuple) and len(state) == 3
    assert isinstance(state[1], gl.TraceState) and isinstance(state[2], gl.EmaState)


def test_empty_chain_is_the_identity():
    params, grads = params_and_grads()
    tx = gl.chain()
    out, _ = tx.update(grads, tx.init(params), params)
    chex.assert_trees_all_equal(out, grads)


def test_chain_rejects_non_transformations():
    with pytest.raises(TypeError, match="chain argument 1"):
        gl.chain(gl.scale(2.0), lambda g: g)


class RecorderState(NamedTuple):
    value: jax.Array
    grad_norm: jax.Array


def recorder() -> gl.GradientTransformation:
    """Adds the ``value=`` extra to the updates and records ``value`` and ``grad``."""

    def init(params):
        return RecorderState(jnp.zeros(()), jnp.zeros(()))

    def update(updates, state, params=None, *, value, grad, **extra):
        assert callable(extra["value_fn"])  # the line-search extra arrives too
        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grad)))
        return jax.tree.map(lambda u: u + value, updates), RecorderState(value, norm)

    return gl.GradientTransformation(init, update)


def test_chain_forwards_keyword_extras_to_every_member(run_mode):
    params, grads = params_and_grads()
    g = as_np(grads)
    tx = gl.chain(recorder(), gl.scale(2.0), gl.adam(0.1), recorder())

    def step(grads, value):
        return tx.update(grads, tx.init(params), params, value=value, grad=grads, value_fn=jnp.sin)

    out, state = run_mode(step)(grads, jnp.float32(3.0))
    grad_norm = np.sqrt(sum(np.sum(x**2) for x in g.values()))
    for s in (state[0], state[3]):
        np.testing.assert_allclose(s.value, 3.0)
        np.testing.assert_allclose(s.grad_norm, grad_norm, rtol=1e-6)
    # recorder -> (g + 3) -> *2 -> adam's first step (-lr * sign) -> recorder (+3)
    for k in g:
        first = ref.adam(np.zeros_like(g[k]), lambda p, _, k=k: 2 * (g[k] + 3.0), [0.1])[1]
        np.testing.assert_allclose(out[k], first + 3.0, rtol=1e-5, atol=1e-6)


def first_step(name: str, **extra) -> tuple[Any, Any, Any]:
    """``(state, updates, new_state)`` of one step of ``ALL_TRANSFORMS[name]``."""
    params, grads = params_and_grads()
    tx = ALL_TRANSFORMS[name]()
    state = tx.init(params)
    return (state, *tx.update(grads, state, params, **extra))


@pytest.mark.parametrize("name", list(ALL_TRANSFORMS), ids=str)
def test_transforms_ignore_extras_they_do_not_use(name):
    _, plain, plain_state = first_step(name)
    grads = params_and_grads()[1]
    extras = dict(value=jnp.float32(1.0), grad=grads, value_fn=lambda p: 0.0, unknown="x")
    _, out, new_state = first_step(name, **extras)
    chex.assert_trees_all_equal(out, plain)
    chex.assert_trees_all_equal(new_state, plain_state)


@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=repr)
def test_first_step_with_extras_matches_reference(case):
    params, grads = params_and_grads()
    tx = case.make(case.lr)
    out, _ = tx.update(grads, tx.init(params), params, value=jnp.float32(2.0), foo=1)
    flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(out)])
    noise = cases.NOISE[0].astype(np.float64)
    want = np.diff(case.reference(cases.INITIAL_FLAT, lambda p, k: noise, [case.lr]), axis=0)[0]
    np.testing.assert_allclose(flat, want, rtol=case.rtol, atol=case.atol)


@pytest.mark.parametrize("case", OPTIMIZER_CASES + PACKED_CASES, ids=repr)
def test_python_number_gradient_leaf_is_taken_as_a_float(case):
    # jax.grad never returns one, but hand-written gradients do (Optax accepts them).
    params, grads = params_and_grads()
    grads = {**grads, "s": float(grads["s"])}
    tx = case.make(case.lr)
    out, _ = tx.update(grads, tx.init(params), params)
    new_params = gl.apply_updates(params, out)
    noise = cases.NOISE[0].astype(np.float64)
    want = case.reference(cases.INITIAL_FLAT, lambda p, k: noise, [case.lr])[1]
    flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(new_params)])
    np.testing.assert_allclose(flat, want, rtol=case.rtol, atol=case.atol)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((out, new_params)))


NON_FLOAT_LEAVES = {
    "int32": lambda g: jnp.asarray(g, jnp.float32).astype(jnp.int32),
    "bool": lambda g: jnp.asarray(g, jnp.float32) > 0,
    # the blocks square as g*g, not |g|**2: refused rather than silently wrong
    "complex64": lambda g: jnp.asarray(g, jnp.complex64) * (1 + 1j),
}


@pytest.mark.parametrize("leaf", list(NON_FLOAT_LEAVES))
@pytest.mark.parametrize(
    "name",
    [n for n in ALL_TRANSFORMS if n != "identity"] + [c.name for c in PACKED_CASES],
    ids=str,
)
def test_integer_bool_or_complex_gradient_leaf_raises_type_error_naming_it(name, leaf, run_mode):
    # An int32 update would silently truncate: sgd(0.1) on a gradient of 1 gives 0.
    make = {c.name: functools.partial(c.make, c.lr) for c in PACKED_CASES}.get(name)
    tx = (make or ALL_TRANSFORMS[name])()
    params, grads = params_and_grads()
    grads = {**grads, "w": NON_FLOAT_LEAVES[leaf](grads["w"])}
    state = tx.init(params)
    with pytest.raises(TypeError, match=rf"\['w'\].*floating-point.*{leaf}"):
        run_mode(lambda g, s: tx.update(g, s, params))(grads, state)


def test_traced_non_scalar_hyperparameter_is_refused_but_a_vmapped_one_works():
    # The shape of a tracer is static: an array of learning rates passed to jit
    # without vmap is caught; under vmap each learning rate is a scalar.
    params = {"w": jnp.ones(2)}

    def one_step(lr):
        tx = gl.adam(lr)
        return tx.update(params, tx.init(params), params)[0]

    with pytest.raises(ValueError, match=r"learning_rate must be a scalar.*\(3,\).*vmap"):
        jax.jit(one_step)(jnp.ones(3))
    out = jax.jit(jax.vmap(one_step))(jnp.asarray([0.1, 0.2, 0.3]))
    np.testing.assert_allclose(out["w"][:, 0], [-0.1, -0.2, -0.3], rtol=1e-6)


def test_packed_refuses_gradients_in_another_dtype_than_the_params():
    params = {"b": jnp.ones(3, jnp.bfloat16), "w": jnp.ones(5, jnp.float32)}
    grads = {"b": jnp.ones(3, jnp.float32), "w": jnp.ones(5, jnp.float32)}
    tx = gl.packed(gl.adam(0.1))
    with pytest.raises(TypeError, match=r"\['b'\] is float32 but the param is bfloat16"):
        tx.update(grads, tx.init(params), params)
    # A big (unpacked) leaf may differ: it keeps its own state, as without packing.
    tx = gl.packed(gl.adam(0.1), max_leaf_size=4)
    params = {**params, "b": jnp.ones(5, jnp.bfloat16)}
    grads = {**grads, "b": jnp.ones(5, jnp.float32)}
    out, _ = tx.update(grads, tx.init(params), params)
    # (its moments are stored in bfloat16, hence the tolerance)
    np.testing.assert_allclose(np.asarray(out["b"], np.float32), -0.1, rtol=4e-3)


# --------------------------------------------------------------------------
# Optax interoperability
# --------------------------------------------------------------------------


def test_gradlab_transformations_drop_into_optax_chain_and_apply_updates():
    params, grads = params_and_grads()
    g = as_np(grads)
    with jax.numpy_dtype_promotion("standard"):  # Optax is not strict-clean
        tx = optax.chain(gl.scale(2.0), optax.scale(3.0), gl.clip(4.0))
        out, _ = tx.update(grads, tx.init(params), params)
        new_params = optax.apply_updates(params, out)
    for k in g:
        np.testing.assert_allclose(out[k], ref.clip(6 * g[k], 4.0), rtol=1e-6)
        np.testing.assert_allclose(new_params[k], cases.unflatten(cases.INITIAL_FLAT)[k] + out[k])


def test_optax_transformations_drop_into_gradlab_chain():
    params, grads = params_and_grads()
    g = as_np(grads)
    tx = gl.chain(optax.clip(0.5), gl.scale(-2.0))
    out, _ = tx.update(grads, tx.init(params), params)
    for k in g:
        np.testing.assert_allclose(out[k], -2 * ref.clip(g[k], 0.5), rtol=1e-6)


def test_gradlab_adam_inside_optax_multisteps_matches_reference():
    """Gradient accumulation written for Optax runs a gradlab optimizer unchanged."""
    params, _ = params_and_grads()
    noise = cases.NOISE.astype(np.float64)
    with jax.numpy_dtype_promotion("standard"):  # Optax is not strict-clean
        tx = optax.MultiSteps(gl.adam(0.05), every_k_schedule=2)
        state = tx.init(params)
        step = jax.jit(tx.update)  # eager, Optax's lax.cond would compile every call
        for k in range(6):
            grads = jax.tree.map(jnp.asarray, cases.unflatten(cases.NOISE[k]))
            updates, state = step(grads, state, params)
            params = gl.apply_updates(params, updates)
    # Adam on the mean of each pair of gradients, 3 steps.
    mean_grads = (noise[0:6:2] + noise[1:6:2]) / 2
    want = ref.adam(cases.INITIAL_FLAT, lambda p, k: mean_grads[k], [0.05] * 3)[-1]
    flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)])
    np.testing.assert_allclose(flat, want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------
# apply_updates
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param_dtype", "update_dtype"),
    [
        (jnp.bfloat16, jnp.float32),
        (jnp.float16, jnp.float32),
        (jnp.float32, jnp.bfloat16),
        (jnp.float32, jnp.float32),
        (jnp.bfloat16, jnp.bfloat16),
    ],
    ids=lambda d: jnp.dtype(d).name,
)
def test_apply_updates_keeps_param_dtype_and_rounds_once(param_dtype, update_dtype, run_mode):
    # 1 + 0.0039064 rounds up to 1.0078125 in bfloat16; rounding the update to
    # bfloat16 first (0.00390625, a tie) and then adding would give 1.0. The sum
    # is formed in float32 and then rounded to bfloat16, as Optax (two roundings):
    # no value here sits where the two differ. (With 0.0039063 the float32 sum
    # is the tie 1.00390625 itself and rounds to 1.0; ml_dtypes < 0.7 rounded the
    # float64 reference through float32 too, and the test took 1.0 as right.)
    p = np.array([1.0, -2.5, 0.3, 100.0], np.float64)
    u = np.array([0.0039064, 0.01, -0.3, -0.5], np.float64)
    params = {"p": jnp.asarray(p, param_dtype), "scalar": jnp.asarray(p[0], param_dtype)}
    updates = {"p": jnp.asarray(u, update_dtype), "scalar": jnp.asarray(u[0], update_dtype)}
    out = run_mode(gl.apply_updates)(params, updates)
    for k in out:
        assert out[k].dtype == param_dtype
        exact = np.asarray(params[k], np.float64) + np.asarray(updates[k], np.float64)
        want = exact.astype(jnp.dtype(param_dtype))  # one rounding (ml_dtypes)
        np.testing.assert_array_equal(np.asarray(out[k]), want)


def test_apply_updates_float64_updates_keep_float32_params(x64):
    out = gl.apply_updates({"a": jnp.ones(3, jnp.float32)}, {"a": jnp.full(3, 0.5, jnp.float64)})
    assert out["a"].dtype == jnp.float32
    np.testing.assert_array_equal(out["a"], np.full(3, 1.5, np.float32))


@pytest.mark.parametrize(
    ("params", "updates", "words"),
    [
        ({"w": 1.0, "b": 2.0}, {"w": 1.0, "c": 2.0}, ("'b'", "'c'")),
        ([1.0, 2.0], (1.0, 2.0), ("[", "(")),
        ({"w": [1.0, 2.0]}, {"w": [1.0]}, ("params", "updates")),
    ],
    ids=["keys", "list-vs-tuple", "length"],
)
def test_apply_updates_structure_mismatch_names_both_structures(params, updates, words):
    params = jax.tree.map(jnp.float32, params)
    updates = jax.tree.map(jnp.float32, updates)
    with pytest.raises(ValueError, match="params") as info:
        gl.apply_updates(params, updates)
    msg = str(info.value)
    assert "updates" in msg
    for w in words:
        assert w in msg


# --------------------------------------------------------------------------
# State: structure, contents, counters
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [c.name for c in OPTIMIZER_CASES if c.name != "sgd"] + TREE_STATE_BLOCKS
)
def test_gradient_tree_mismatch_raises_value_error_naming_both_structures(name, run_mode):
    params, grads = params_and_grads()
    tx = ALL_TRANSFORMS[name]()
    state = tx.init(params)
    bad = {"b": grads["b"], "s": grads["s"], "extra_key": grads["w"]}  # 'w' renamed

    with pytest.raises(ValueError) as info:
        run_mode(lambda g, s: tx.update(g, s, params))(bad, state)
    msg = str(info.value)
    assert "'w'" in msg and "'extra_key'" in msg, msg
    # ... and says which tree is which (JAX's own tree_map error does not).
    assert "gradient" in msg or "updates" in msg, msg
    assert "state" in msg or "params" in msg, msg


@pytest.mark.parametrize("name", list(ALL_TRANSFORMS), ids=str)
def test_state_is_a_pytree_of_arrays_only(name):
    state, _, new_state = first_step(name)
    for s in (state, new_state):
        # Python scalars, callables and strings would show up as non-array leaves.
        for leaf in jax.tree.leaves(s):
            assert isinstance(leaf, jax.Array), (name, type(leaf), leaf)
    assert jax.tree.structure(state) == jax.tree.structure(new_state)


def _counts(state) -> list[jax.Array]:
    """Every ``count`` field of every NamedTuple in a (nested) state."""
    found = []
    if hasattr(state, "_fields"):
        if "count" in state._fields:
            found.append(state.count)
        for field in state:
            found += _counts(field)
    elif isinstance(state, (tuple, list)):
        for s in state:
            found += _counts(s)
    elif isinstance(state, dict):
        for s in state.values():
            found += _counts(s)
    return found


def _set_counts(state, value):
    if hasattr(state, "_fields"):
        fields = [_set_counts(f, value) for f in state]
        new = type(state)(*fields)
        if "count" in state._fields:
            new = new._replace(count=jnp.asarray(value, jnp.int32))
        return new
    if isinstance(state, (tuple, list)):
        return type(state)(_set_counts(s, value) for s in state)
    return state


COUNTED = [c.name for c in OPTIMIZER_CASES] + [
    "scale_by_learning_rate",
    "scale_by_schedule",
    "ema",
    "scale_by_adam",
    "add_noise",
]


@pytest.mark.parametrize("name", COUNTED)
def test_step_counters_are_int32_and_saturate(name):
    params, grads = params_and_grads()
    tx = ALL_TRANSFORMS[name]()
    state = tx.init(params)
    counts = _counts(state)
    assert counts, "expected a step counter"
    for c in counts:
        assert c.dtype == jnp.int32 and c.shape == () and int(c) == 0
    _, one = tx.update(grads, state, params)
    assert all(int(c) == 1 for c in _counts(one))

    state = _set_counts(state, INT32_MAX - 1)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        assert all(c.dtype == jnp.int32 and int(c) == INT32_MAX for c in _counts(state))
        assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=repr)
def test_state_structure_does_not_depend_on_learning_rate_kind(case):
    """STYLE habit 13: float, array and schedule learning rates give the same state tree."""
    params, _ = params_and_grads()
    states = [
        case.make(lr).init(params)
        for lr in (case.lr, jnp.asarray(case.lr), cases.schedule_for(case.lr), lambda k: 0.1)
    ]
    shapes = [jax.tree.map(lambda x: (x.shape, x.dtype), s) for s in states]
    for s, shape in zip(states[1:], shapes[1:], strict=True):
        assert jax.tree.structure(s) == jax.tree.structure(states[0])
        assert shape == shapes[0]


def test_sgd_state_tree_is_the_same_for_float_schedule_and_array():
    params, _ = params_and_grads()
    trees = [
        jax.tree.structure(gl.sgd(lr).init(params)) for lr in (0.1, lambda k: 0.1, jnp.array(0.1))
    ]
    assert trees[0] == trees[1] == trees[2]


@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=repr)
def test_new_learning_rate_values_do_not_recompile(case):
    """STYLE habit 14: a jitted train step with the lr as an argument traces once."""
    params, grads = params_and_grads()
    traces = []
    chex.clear_trace_counter()  # chex counts per function *code*, across tests

    @jax.jit
    @chex.assert_max_traces(n=1)
    def train_step(params, state, grads, lr):
        traces.append(1)
        updates, state = case.make(lr).update(grads, state, params)
        return gl.apply_updates(params, updates), state

    state = case.make(case.lr).init(params)
    noise = cases.NOISE[0].astype(np.float64)
    for lr in (case.lr, 0.5 * case.lr, 2 * case.lr):
        new_params, _ = train_step(params, state, grads, jnp.float32(lr))
        flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(new_params)])
        want = case.reference(cases.INITIAL_FLAT, lambda p, k: noise, [lr])[1]
        np.testing.assert_allclose(flat, want, rtol=case.rtol, atol=case.atol)
    assert len(traces) == 1


# --------------------------------------------------------------------------
# Transformations under jax.grad
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=repr)
def test_gradient_with_respect_to_learning_rate_matches_finite_differences(case):
    """``init``/``update`` are differentiable (meta-gradients through 3 steps)."""
    params, _ = params_and_grads()
    grad_fn = cases.reference_grad_fn()

    def final_sum(lr):
        tx = case.make(lr)
        p, state = params, tx.init(params)
        for k in range(3):
            flat = jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(p)])
            g = cases.CURVATURE * flat + cases.NOISE[k]
            g_tree = jax.tree.unflatten(jax.tree.structure(p), _split_like(g, p))
            u, state = tx.update(g_tree, state, p)
            p = gl.apply_updates(p, u)
        return sum(jnp.sum(x) for x in jax.tree.leaves(p))

    d = jax.grad(final_sum)(jnp.float32(case.lr))

    def ref_sum(lr):
        return case.reference(cases.INITIAL_FLAT, grad_fn, [lr] * 3)[-1].sum()

    h = 1e-4 * case.lr
    want = (ref_sum(case.lr + h) - ref_sum(case.lr - h)) / (2 * h)
    np.testing.assert_allclose(d, want, rtol=2e-3, atol=1e-4)


def _split_like(flat, tree):
    leaves, out, i = jax.tree.leaves(tree), [], 0
    for leaf in leaves:
        out.append(flat[i : i + leaf.size].reshape(leaf.shape))
        i += leaf.size
    return out


# --------------------------------------------------------------------------
# Hyperparameter validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "words"),
    [b[1:] for b in BAD_HYPERPARAMETERS],
    ids=[b[0] for b in BAD_HYPERPARAMETERS],
)
def test_bad_hyperparameter_raises_value_error_naming_it(build, words):
    with pytest.raises(ValueError) as info:
        build()
    for w in words:
        assert w in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("build", "name"),
    [b[1:] for b in NON_NUMERIC_HYPERPARAMETERS],
    ids=[b[0] for b in NON_NUMERIC_HYPERPARAMETERS],
)
def test_non_numeric_hyperparameter_raises_type_error(build, name):
    with pytest.raises(TypeError, match=name):
        build()


# (id, builder of a transform from one hyperparameter, a valid value, an invalid value)
TRACEABLE_HYPERPARAMETERS: list[tuple[str, Any, float, float]] = [
    ("sgd-lr", lambda x: gl.sgd(x), 0.1, -0.1),
    ("sgd-momentum", lambda x: gl.sgd(0.1, momentum=x, nesterov=True), 0.9, 1.5),
    ("adagrad-initial", lambda x: gl.adagrad(0.1, initial_accumulator_value=x), 0.1, -1.0),
    ("adagrad-eps", lambda x: gl.adagrad(0.1, eps=x), 1e-7, -1.0),
    ("rmsprop-decay", lambda x: gl.rmsprop(0.1, decay=x), 0.9, 1.5),
    ("rmsprop-initial-scale", lambda x: gl.rmsprop(0.1, initial_scale=x), 0.1, -1.0),
    ("rmsprop-momentum", lambda x: gl.rmsprop(0.1, momentum=x), 0.9, 2.0),
    ("adam-lr", lambda x: gl.adam(x), 0.1, -0.1),
    ("adam-b1", lambda x: gl.adam(0.1, b1=x), 0.9, 1.5),
    ("adam-b2", lambda x: gl.adam(0.1, b2=x), 0.999, 1.5),
    ("adam-eps", lambda x: gl.adam(0.1, eps=x), 1e-8, -1.0),
    ("adam-eps-root", lambda x: gl.adam(0.1, eps_root=x), 1e-8, -1.0),
    ("adamw-weight-decay", lambda x: gl.adamw(0.1, weight_decay=x), 1e-2, -1.0),
    ("scale", lambda x: gl.scale(x), 2.0, float("nan")),
    ("trace-decay", lambda x: gl.trace(x), 0.9, 1.5),
    ("ema-decay", lambda x: gl.ema(x), 0.9, 1.0),
    ("clip", lambda x: gl.clip(x), 1.0, -1.0),
    ("clip_by_global_norm", lambda x: gl.clip_by_global_norm(x), 1.0, -1.0),
    ("add_decayed_weights", lambda x: gl.add_decayed_weights(x), 0.1, -0.1),
    ("add_noise-eta", lambda x: gl.add_noise(x, 0.55, 0), 0.1, -0.1),
    ("add_noise-gamma", lambda x: gl.add_noise(0.1, x, 0), 0.55, -1.0),
]


@pytest.mark.parametrize(
    ("build", "valid", "invalid"),
    [t[1:] for t in TRACEABLE_HYPERPARAMETERS],
    ids=[t[0] for t in TRACEABLE_HYPERPARAMETERS],
)
def test_traced_hyperparameters_are_not_validated(build, valid, invalid):
    params, grads = params_and_grads()

    def one_step(x):
        tx = build(x)
        return tx.update(grads, tx.init(params), params)[0]

    with pytest.raises(ValueError):
        build(invalid)  # concrete: validated ...
    jax.make_jaxpr(one_step)(jnp.float32(invalid))  # ... traced by jit: not inspected
    jax.make_jaxpr(jax.vmap(one_step))(jnp.asarray([invalid, valid], jnp.float32))
    out = jax.vmap(one_step)(jnp.asarray([valid, valid / 2], jnp.float32))
    assert all(x.shape[0] == 2 and np.all(np.isfinite(x)) for x in jax.tree.leaves(out))


def test_apply_updates_adds_integer_updates_to_integer_params_exactly():
    params = {"steps": jnp.arange(3, dtype=jnp.int32), "w": jnp.ones(2, jnp.bfloat16)}
    updates = {"steps": jnp.ones(3, jnp.int32), "w": jnp.full(2, 0.25, jnp.float32)}
    out = gl.apply_updates(params, updates)
    np.testing.assert_array_equal(out["steps"], np.array([1, 2, 3]))
    assert out["steps"].dtype == jnp.int32 and out["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out["w"], np.float32), np.full(2, 1.25))


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.int8, jnp.uint8, jnp.bool_])
def test_apply_updates_refuses_a_float_update_on_an_integer_param(dtype, run_mode):
    # [0, 5, 5] + [0.6, -0.4, 1.9] used to give [0, 5, 6] (int32: "wider" chosen
    # by item size) or [0, 4, 6] (int8): updates silently lost either way.
    params = {"ok": jnp.zeros(2), "n": jnp.array([0, 5, 5]).astype(dtype)}
    updates = {"ok": jnp.ones(2), "n": jnp.array([0.6, -0.4, 1.9])}
    with pytest.raises(TypeError, match=r"\['n'\].*" + jnp.dtype(dtype).name):
        run_mode(gl.apply_updates)(params, updates)


def test_apply_updates_on_complex_params_and_complex_updates_on_real_ones(run_mode):
    """A real update on a complex param adds (it was refused: "rounded back to
    complex64"); a complex update on a real param is refused, naming the leaf (its
    imaginary part was dropped with only NumPy's ComplexWarning) (hunt46)."""
    apply = run_mode(gl.apply_updates)
    z = jnp.array([1 + 2j, -1j], jnp.complex64)
    out = apply({"z": z}, {"z": jnp.array([0.5, 2.0], jnp.float32)})["z"]
    assert out.dtype == jnp.complex64
    np.testing.assert_array_equal(out, np.array([1.5 + 2j, 2 - 1j], np.complex64))
    out = apply({"z": z}, {"z": z})["z"]
    np.testing.assert_array_equal(out, 2 * np.asarray(z))
    with pytest.raises(TypeError, match=r"\['w'\].*float32.*complex64.*imaginary"):
        apply({"w": jnp.ones(2)}, {"w": jnp.ones(2, jnp.complex64)})


def test_apply_updates_follows_jax_promotion_for_mixed_float_dtypes():
    # float16 + bfloat16 promote to float32 (JAX's lattice), not to float16 by item size:
    # a bfloat16 update of 1e5 would be inf in float16 before the add.
    params = {"p": jnp.array([-60_000.0], jnp.float16)}
    updates = {"p": jnp.array([1e5], jnp.bfloat16)}
    out = gl.apply_updates(params, updates)["p"]
    want = np.float16(np.float32(np.float16(-60_000.0)) + np.float32(jnp.bfloat16(1e5)))
    assert out.dtype == jnp.float16 and out[0] == want


@pytest.mark.parametrize("make", [lambda: gl.adam(0.1), lambda: gl.sgd(0.1, momentum=0.9),
                                  lambda: gl.rmsprop(0.1), lambda: gl.adagrad(0.1)],
                         ids=["adam", "sgd_momentum", "rmsprop", "adagrad"])  # fmt: skip
def test_integer_params_are_refused_at_init_and_python_numbers_are_floats(make):
    with pytest.raises(TypeError, match=r"\['b'\].*int32"):
        make().init({"a": jnp.ones(2), "b": jnp.arange(3)})
    # Python numbers are taken as floats, as Optax does: float state, a float step.
    params = {"a": 1, "b": 2}
    tx = make()
    state = tx.init(params)
    assert all(jnp.issubdtype(x.dtype, jnp.floating) for x in jax.tree.leaves(state)
               if jnp.ndim(x) == 0 and x.dtype != jnp.int32)  # fmt: skip
    updates, _ = tx.update({"a": 1.0, "b": -1.0}, state, params)
    new = gl.apply_updates(params, updates)
    assert new["a"] < 1 and new["b"] > 2 and jnp.issubdtype(new["a"].dtype, jnp.floating)


WRONG_SHAPE = {
    "sgd": lambda: gl.sgd(0.1),
    "sgd_momentum": lambda: gl.sgd(0.1, momentum=0.9),
    "adam": lambda: gl.adam(0.1),
    "adamw": lambda: gl.adamw(0.1),
    "packed_adam": lambda: gl.packed(gl.adam(0.1)),
}


@pytest.mark.parametrize("name", WRONG_SHAPE)
@pytest.mark.parametrize("bad", [(3,), (4,)], ids=["broadcasts", "incompatible"])
def test_a_gradient_leaf_of_the_wrong_shape_names_the_leaf_and_both_shapes(name, bad, run_mode):
    # (3,) for a scalar bias used to broadcast silently, changing the shapes of
    # params and state; (4,) for a (3,) weight gave an unlabelled JAX error.
    params = {"w": jnp.ones(3), "bias": jnp.zeros(())}
    grads = {"w": jnp.ones(3), "bias": jnp.ones(bad)}
    tx = WRONG_SHAPE[name]()

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return gl.apply_updates(params, updates), state

    with pytest.raises(ValueError, match=rf"\['bias'\].*{re.escape(str(bad))}.*\(\)"):
        run_mode(step)(params, tx.init(params), grads)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_concrete_16_bit_hyperparameters_are_accepted_like_traced_ones(dtype):
    lr = jnp.array(0.125, dtype)  # exact in both formats
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.full(3, 2.0)}
    tx = gl.sgd(lr, momentum=np.asarray(0.5, dtype))
    concrete, _ = tx.update(grads, tx.init(params))
    traced = jax.jit(lambda lr: gl.sgd(lr).update(grads, gl.sgd(0.1).init(params))[0])(lr)
    np.testing.assert_array_equal(concrete["w"], traced["w"])
    np.testing.assert_array_equal(traced["w"], np.full(3, -0.25))
    with pytest.raises(ValueError, match="learning_rate"):
        gl.sgd(jnp.array(-0.125, dtype))


@pytest.mark.parametrize(
    "make",
    [
        lambda: gl.lookahead(gl.sgd(0.1), 2, 0.5),
        lambda: gl.schedule_free_sgd(1.0),
        lambda: gl.adam(0.1),
    ],
    ids=["lookahead", "schedule_free", "adam"],
)
def test_python_number_params_give_a_state_whose_type_update_keeps(make):
    # lookahead's slow copy and schedule-free's z copied a Python-number param
    # with its weak type; update returned it strong, so a jitted step compiled twice.
    tx = make()
    params = {"w": jnp.ones(2), "t": 0.5}  # a Python float leaf: weakly typed in JAX
    grads = {"w": jnp.ones(2), "t": jnp.float32(0.1)}
    state = tx.init(params)
    _, new_state = tx.update(grads, state, params)
    assert jax.tree.map(jax.typeof, new_state) == jax.tree.map(jax.typeof, state)


def test_python_int_params_are_floats_under_jit_and_eval_shape_too():
    # Eagerly {"a": 1} was a float leaf; traced, the 1 arrived as a weak int32
    # and init/apply_updates refused it as an integer param.
    tx, params = gl.adam(0.1), {"a": 1, "b": 2.0}
    eager = tx.init(params)
    for traced in (jax.eval_shape(tx.init, params), jax.jit(tx.init)(params)):
        assert jax.tree.map(lambda x: x.dtype, traced) == jax.tree.map(lambda x: x.dtype, eager)
    updates = {"a": jnp.float32(0.25), "b": jnp.float32(0.5)}
    new = jax.jit(gl.apply_updates)(params, updates)
    assert new == {"a": 1.25, "b": 2.5} and new["a"].dtype == jnp.float32
    # a weakly typed integer array counting integer updates still adds exactly
    counter = gl.apply_updates({"n": jnp.asarray(5)}, {"n": jnp.asarray(2)})["n"]
    assert counter.dtype == jnp.int32 and int(counter) == 7


@pytest.mark.parametrize(
    "make", [lambda: gl.sgd(0.1), lambda: gl.sign_sgd(0.1), lambda: gl.noisy_sgd(0.1)]
)
def test_optimizers_without_moments_refuse_integer_params_at_init(make):
    tx = make()
    with pytest.raises(TypeError, match=r"\['n'\].*int32"):
        tx.init({"w": jnp.ones(2), "n": jnp.asarray(3, jnp.int32)})
    # a frozen integer leaf in a partition is still fine: only the trained group is checked
    labels = {"w": "train", "n": "frozen"}
    ok = gl.partition({"train": tx, "frozen": gl.freeze(True)}, labels)
    ok.init({"w": jnp.ones(2), "n": jnp.asarray(3, jnp.int32)})


@pytest.mark.parametrize("declare", [gl.elementwise, gl.per_leaf])
def test_a_declared_foreign_transformation_ignores_extras(declare):
    tx = declare(optax.scale_by_adam())
    params = {"w": jnp.ones(3)}
    with jax.numpy_dtype_promotion("standard"):  # Optax's arithmetic is not strict-clean
        updates, _ = tx.update(params, tx.init(params), params, value=jnp.float32(1.0))
        expected, _ = optax.scale_by_adam().update(params, optax.scale_by_adam().init(params))
    np.testing.assert_allclose(updates["w"], expected["w"])


def test_python_int_params_work_with_lbfgs_and_schedule_free_eval_params_under_jit(x64):
    # Traced, a Python int param reached code that checks its first tree as a
    # gradient (L-BFGS's params, eval_params' y) and was refused as an integer.
    def fun(p):
        return (p["a"] - 3.0) ** 2 + jnp.sum((p["w"] - 1.0) ** 2)

    ints, floats = (
        {"a": 2, "w": jnp.asarray([0.5, -1.0])},
        {"a": 2.0, "w": jnp.asarray([0.5, -1.0])},
    )
    v, g = jax.value_and_grad(fun)(floats)
    tx = gl.lbfgs()
    expected, _ = tx.update(g, tx.init(floats), floats, value=v, grad=g, value_fn=fun)
    got, _ = tx.update(g, tx.init(ints), ints, value=v, grad=g, value_fn=fun)
    np.testing.assert_allclose(got["a"], expected["a"], rtol=1e-12)
    sf = gl.schedule_free_sgd(1.0)
    state = sf.init(ints)
    eval_params = jax.jit(gl.schedule_free_eval_params)(state, ints)
    assert float(eval_params["a"]) == 2.0


def test_replace_gives_an_undeclared_transformation_that_packed_refuses_by_name():
    """``_replace`` may swap ``update`` for one the declaration does not hold
    for: the copy declares nothing, and ``packed`` says how to declare it."""
    tx = gl.chain(gl.clip_by_global_norm(1.0), gl.adam(0.1))
    assert copy.deepcopy(tx).packing is tx.packing is not None
    replaced = tx._replace(init=tx.init)
    assert replaced.packing is None
    with pytest.raises(TypeError, match="does not declare how it runs on packed buffers"):
        gl.packed(replaced).init({"w": jnp.ones(3)})
