"""The packed fast path gives the same numbers as Optax (independent) and keeps the contract."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import gradlab as gl

KEY = jax.random.key(0)


def _tree(dtype=jnp.float32):
    k1, k2, k3 = jax.random.split(KEY, 3)
    return {
        "layers": [
            {"w": jax.random.normal(k1, (4, 3)).astype(dtype), "b": jnp.zeros((3,), dtype)},
            {"w": jax.random.normal(k2, (3, 2)).astype(dtype), "b": jnp.ones((2,), dtype)},
        ],
        "big": jax.random.normal(k3, (40,)).astype(dtype),  # loose with max_leaf_size=32
        "scale": jnp.ones((), dtype),
    }


def _grads(params, step):
    return jax.tree.map(lambda p: jnp.sin(p * (step + 1.0) + 0.3).astype(p.dtype), params)


def _not_bias(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: "b" not in str(path[-1]), params)


CASES = {
    "sgd_momentum": (lambda: gl.sgd(0.05, momentum=0.9), lambda: optax.sgd(0.05, momentum=0.9)),
    "adam": (lambda: gl.adam(0.01), lambda: optax.adam(0.01)),
    "adamw_masked": (
        lambda: gl.adamw(0.01, weight_decay=0.1, mask=_not_bias),
        lambda: optax.adamw(0.01, weight_decay=0.1, mask=_not_bias),
    ),
    # a static mask that is True (or False) on every packed leaf: no select at all
    "adamw_mask_all_true": (
        lambda: gl.adamw(0.01, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda _: True, p)),
        lambda: optax.adamw(0.01, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda _: True, p)),
    ),
    "adamw_mask_all_false": (
        lambda: gl.adamw(0.01, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda _: False, p)),
        lambda: optax.adamw(
            0.01, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda _: False, p)
        ),
    ),
    "clip_adamw": (
        lambda: gl.chain(gl.clip_by_global_norm(0.5), gl.adamw(0.01, weight_decay=1e-2)),
        lambda: optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(0.01, weight_decay=1e-2)),
    ),
}


def _run(tx, params, apply, steps=20):
    state = tx.init(params)

    @jax.jit
    def step(p, s, i):
        u, s = tx.update(_grads(p, i), s, p)
        return apply(p, u), s

    for i in range(steps):
        params, state = step(params, state, jnp.float32(i))
    return params


@pytest.mark.parametrize("name", sorted(CASES))
def test_packed_matches_optax(name):
    make, make_ref = CASES[name]
    params = _tree()
    ours = _run(gl.packed(make(), max_leaf_size=32), params, gl.apply_updates)
    with jax.numpy_dtype_promotion("standard"):  # Optax is not strict-promotion clean
        ref = _run(make_ref(), params, optax.apply_updates)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_packed_state_is_packed_and_updates_keep_structure_and_dtype():
    params = _tree(jnp.bfloat16)
    params["f32"] = jnp.ones((5,), jnp.float32)
    tx = gl.packed(gl.adam(0.1), max_leaf_size=32)
    state = tx.init(params)
    adam_state = state.inner[0]
    # offsets: a tree like the params, None where a leaf stays loose
    assert state.offsets["big"] is None
    # "at most max_leaf_size elements" are packed: 32 is, 33 is not
    edge = {"at": jnp.ones(32), "over": jnp.ones(33), "small": jnp.ones(2)}
    edge_offsets = gl.packed(gl.adam(0.1), max_leaf_size=32).init(edge).offsets
    assert edge_offsets["at"] is not None and edge_offsets["over"] is None
    # flatten order: f32 (alone in float32), layers[0].b, .w, layers[1].b, .w, scale
    assert [int(o) for o in jax.tree.leaves(state.offsets)] == [0, 0, 3, 15, 17, 23]
    # small leaves live in one buffer per dtype; the 40-element leaf stays loose
    assert set(adam_state.mu.buffers) == {"bfloat16", "float32"}
    assert adam_state.mu.buffers["bfloat16"].shape == (12 + 3 + 6 + 2 + 1,)
    assert [x.shape for x in adam_state.mu.loose] == [(40,)]
    updates, _ = jax.jit(tx.update)(_grads(params, 0), state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
        assert u.dtype == p.dtype and u.shape == p.shape


def test_packed_rejects_a_gradient_tree_unlike_the_params():
    params = _tree()
    tx = gl.packed(gl.adam(0.1))
    with pytest.raises(ValueError, match="params"):
        tx.update({"other": jnp.ones(3)}, tx.init(params), params)


@pytest.mark.parametrize(
    "grads",
    [
        {"a": jnp.ones(2), "c": jnp.ones(2)},  # a key renamed: same shapes, same layout
        {"a": jnp.ones(2), "b": jnp.ones(2), "c": jnp.ones(2)},  # one leaf more
        {"a": jnp.ones(2)},  # one leaf less
    ],
    ids=["renamed", "extra", "missing"],
)
@pytest.mark.parametrize("make", [lambda: gl.adam(0.1), lambda: gl.sgd(0.1)], ids=["adam", "sgd"])
def test_packed_rejects_a_gradient_tree_unlike_the_state_without_params(grads, make, run_mode):
    # Without params only the state can tell: its offsets tree mirrors the params.
    tx = gl.packed(make())
    state = tx.init({"a": jnp.ones(2), "b": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"(?s)does not match the optimizer state.*'b'.*'a'"):
        run_mode(tx.update)(grads, state)


def test_packed_rejects_negative_max_leaf_size():
    with pytest.raises(ValueError, match="max_leaf_size"):
        gl.packed(gl.adam(0.1), max_leaf_size=-1)


def test_packed_refuses_a_boolean_max_leaf_size():
    """(A traced one is a row of test_reliability_inputs.py, hunt70.)"""
    with pytest.raises(TypeError, match="max_leaf_size must be an integer"):
        gl.packed(gl.adam(0.1), max_leaf_size=True)


def test_packed_leaves_a_stateless_transform_unpacked_and_still_matches_optax():
    params = _tree()
    tx = gl.packed(gl.sgd(0.1), max_leaf_size=32)
    state = tx.init(params)
    # nothing to keep packed (no copies): no offsets, a tree of None like the params
    assert jax.tree.leaves(state.offsets) == []
    assert jax.tree.structure(state.offsets, is_leaf=lambda x: x is None) == jax.tree.structure(
        params
    )
    ours = _run(tx, params, gl.apply_updates, steps=3)
    with jax.numpy_dtype_promotion("standard"):
        ref = _run(optax.sgd(0.1), params, optax.apply_updates, steps=3)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_flat_params_pattern_with_a_flat_mask_matches_optax_on_the_tree():
    """The documented flat-params pattern (README *Performance*, notebook 03): the
    model unravels one flat vector, the gradient comes back flat through the
    unravel, and a weight-decay mask becomes a flat bool vector in the same order."""
    from jax.flatten_util import ravel_pytree

    params = _tree()
    flat, unravel = ravel_pytree(params)
    mask_tree = _not_bias(params)
    flat_mask = ravel_pytree(jax.tree.map(lambda p, m: jnp.full(p.shape, m), params, mask_tree))[0]

    def loss(tree):
        return sum(jnp.sum(jnp.sin(x) * x + 0.1 * x**2) for x in jax.tree.leaves(tree))

    def run(tx, p, loss_fn, apply):
        state = tx.init(p)

        @jax.jit
        def step(p, s):
            u, s = tx.update(jax.grad(loss_fn)(p), s, p)
            return apply(p, u), s

        for _ in range(15):
            p, state = step(p, state)
        return p

    tx = gl.adamw(0.05, weight_decay=0.3, mask=flat_mask)
    got = unravel(run(tx, flat, lambda f: loss(unravel(f)), gl.apply_updates))
    with jax.numpy_dtype_promotion("standard"):
        ref_tx = optax.adamw(0.05, weight_decay=0.3, mask=mask_tree)
        want = run(ref_tx, params, loss, optax.apply_updates)
    # atol: Adam turns float32 round-off in near-zero gradients into ~1e-5 of a 0.05 step
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5), got, want)
    # the mask mattered: biases were not decayed
    with jax.numpy_dtype_promotion("standard"):
        unmasked = run(optax.adamw(0.05, weight_decay=0.3), params, loss, optax.apply_updates)
    assert not np.allclose(unmasked["layers"][1]["b"], want["layers"][1]["b"], atol=1e-3)


def _step_equations(tx, n_leaves):
    params = {f"p{i:04d}": jnp.full((10,), 0.1 * i) for i in range(n_leaves)}

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return gl.apply_updates(p, u), s

    return len(jax.make_jaxpr(step)(params, tx.init(params), params).jaxpr.eqns)


@pytest.mark.parametrize(
    "make",
    [lambda: gl.adam(1e-3), lambda: gl.chain(gl.clip_by_global_norm(1.0), gl.adamw(1e-3))],
    ids=["adam", "clip_adamw"],
)
def test_packed_step_traces_two_primitives_per_packed_leaf(make):
    # Compile time on many-leaf trees follows the traced program's size: each
    # packed leaf may cost one dynamic_slice (cut its update out) and one add
    # (apply_updates), nothing per leaf for the optimizer's own arithmetic.
    # (A negative-index wrap on the offsets added 3 more per leaf, and XLA
    # compiled them into every leaf's kernel.)
    # (Plus, per 32 leaves, one concatenation and one optimization barrier: the
    # gradient is packed as a tree of 32-way concatenations.)
    tx = gl.packed(make())
    per_leaf = (_step_equations(tx, 200) - _step_equations(tx, 100)) / 100
    assert per_leaf <= 2 + 2 / 32, per_leaf


SHAPES = [(), (0,), (1,), (3,), (2, 3), (7,), (2, 0, 3), (4, 5)]


def _clip_by_global_norm_f32(max_norm):
    """``optax.clip_by_global_norm``'s formula, ``g * max_norm / |g|`` where
    ``|g| > max_norm``, with each leaf's squares summed in float32: Optax sums a
    bfloat16 leaf's into a bfloat16 scalar, a norm off by up to ~2**-9, which moves
    the float32 leaves beside it by more than the test's float32 tolerance (hunt54)."""

    def clip(updates, params=None):
        del params
        leaves = jax.tree.leaves(updates)
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))
        scale = jnp.where(norm < max_norm, 1.0, max_norm / norm)
        return jax.tree.map(lambda g: (g.astype(jnp.float32) * scale).astype(g.dtype), updates)

    return optax.stateless(clip)


@given(
    leaves=st.lists(
        st.tuples(st.sampled_from(SHAPES), st.sampled_from(["float32", "bfloat16"])),
        min_size=1,
        max_size=7,
    ),
    max_leaf_size=st.sampled_from([0, 1, 6, 20, 4096]),
    nested=st.booleans(),
)
# (hunt54: hypothesis 6.100 drew it; Optax's own clip rounds a bfloat16 leaf's norm)
@settings(max_examples=12)  # eager: ~1 s a tree
@example(leaves=[((), "float32")] * 4 + [((2, 3), "bfloat16")], max_leaf_size=0, nested=False)
def test_packed_matches_optax_on_random_trees(leaves, max_leaf_size, nested):
    """Any mix of shapes (scalars, empty leaves), dtypes and packing thresholds:
    the layout (dtype groups, offsets, loose leaves) must route every element
    back to its own leaf. Eager, so each random tree costs no compile."""
    rng = np.random.default_rng(len(leaves) * 31 + max_leaf_size)
    flat = {
        f"l{i}": jnp.asarray(rng.normal(size=shape), dtype)
        for i, (shape, dtype) in enumerate(leaves)
    }
    params = {"outer": flat, "last": flat.pop("l0")} if nested else flat
    grads = [
        jax.tree.map(lambda p, k=k: (jnp.sin(p * (k + 1.0)) + 0.1).astype(p.dtype), params)
        for k in range(3)
    ]

    def run(tx, apply):
        p, s = params, tx.init(params)
        for g in grads:
            u, s = tx.update(g, s, p)
            p = apply(p, u)
        return p

    ours = run(
        gl.packed(
            gl.chain(gl.clip_by_global_norm(1.0), gl.adamw(0.05, weight_decay=0.1)),
            max_leaf_size=max_leaf_size,
        ),
        gl.apply_updates,
    )
    with jax.numpy_dtype_promotion("standard"):
        ref = run(
            optax.chain(_clip_by_global_norm_f32(1.0), optax.adamw(0.05, weight_decay=0.1)),
            optax.apply_updates,
        )
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        # bfloat16: gradlab computes in float32 and rounds once, Optax rounds
        # its bfloat16 moments each step: a few bfloat16 ulps of a 0.05 step.
        tol = 2e-5 if a.dtype == jnp.float32 else 2e-2
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=tol)


# ============================================================================ declared packing
# `packed` never guesses: every member declares how it runs on buffers
# (elementwise / per leaf / a rule); an undeclared one is refused by name.


def _run_eager(tx, params, steps=3, apply=gl.apply_updates):
    """``steps`` eager updates on the fixed gradients of ``_grads``."""
    state = tx.init(params)
    for i in range(steps):
        updates, state = tx.update(_grads(params, i), state, params)
        params = apply(params, updates)
    return params, state


def test_packed_refuses_an_optax_member_naming_it():
    tx = gl.packed(gl.chain(optax.scale_by_adam(), gl.scale_by_learning_rate(1e-3)))
    with pytest.raises(TypeError, match=r"chain member 0.*optax.*gl\.elementwise"):
        tx.init(_tree())


def test_packed_refuses_an_optax_chain_that_would_hide_a_mask():
    # optax.chain drops unknown keywords, so the old hidden channel let the mask
    # function see packed buffers (biases decayed, weights not), silently.
    tx = gl.packed(optax.chain(gl.adamw(1e-3, weight_decay=0.1, mask=_not_bias)))
    with pytest.raises(TypeError, match="transform"):
        tx.init(_tree())


def test_an_optax_member_declared_elementwise_runs_packed_like_optax():
    params = _tree()
    tx = gl.chain(gl.elementwise(optax.scale_by_adam()), gl.scale_by_learning_rate(0.01))
    with jax.numpy_dtype_promotion("standard"):  # Optax's arithmetic is not strict-clean
        ours = _run(gl.packed(tx, max_leaf_size=32), params, gl.apply_updates)
        ref = _run(optax.adam(0.01), params, optax.apply_updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), ours, ref)


def test_an_optax_mask_declared_per_leaf_sees_the_real_params_tree():
    params = _tree()
    decay = gl.per_leaf(optax.masked(optax.add_decayed_weights(0.1), _not_bias))
    tx = gl.chain(gl.scale_by_adam(), decay, gl.scale_by_learning_rate(0.01))
    with jax.numpy_dtype_promotion("standard"):
        ours = _run(gl.packed(tx, max_leaf_size=32), params, gl.apply_updates)
        ref = _run(optax.adamw(0.01, weight_decay=0.1, mask=_not_bias), params, optax.apply_updates)
        unmasked = _run(optax.adamw(0.01, weight_decay=0.1), params, optax.apply_updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), ours, ref)
    # the mask mattered: a decayed bias would have moved differently
    assert not np.allclose(ours["layers"][0]["b"], unmasked["layers"][0]["b"], atol=1e-6)


def _all_but_last(tree):
    """A mask callable that depends on the tree it is given: every leaf but the last."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef.unflatten([i < len(leaves) - 1 for i in range(len(leaves))])


def _params_abc():
    return {"a": jnp.ones(2), "b": 10 * jnp.ones(2), "c": jnp.ones(3)}


_ZERO_AB = {"a": jnp.zeros(2), "b": jnp.zeros(2), "c": jnp.ones(3)}  # c is never masked in


@pytest.mark.parametrize(
    "make, grads, expected",
    [
        # Decay on "a" only, then a global-norm clip over what the mask sees:
        # ||0.5 * [1, 1]|| = 0.707 clipped to 0.1, so 0.0707 each. The buffer
        # form zeroed the unmasked gradients but not their decayed params, and
        # the clip counted b's 0.5 * 10 (0.00704 each, silently).
        (
            lambda: gl.masked(
                gl.chain(gl.add_decayed_weights(0.5), gl.clip_by_global_norm(0.1), gl.trace(0.9)),
                {"a": True, "b": False, "c": False},
            ),
            _ZERO_AB,
            {"a": [0.1 / np.sqrt(2)] * 2, "b": [0.0] * 2, "c": [1.0] * 3},
        ),
        # A mask inside a mask sees the outer mask's subtree, as unpacked: the
        # last leaf it sees is "b" (the buffer form resolved it against the
        # whole tree, where the last leaf is "c", and decayed "b").
        (
            lambda: gl.masked(
                gl.chain(gl.add_decayed_weights(0.5, mask=_all_but_last), gl.trace(0.9)),
                {"a": True, "b": True, "c": False},
            ),
            _ZERO_AB,
            {"a": [0.5] * 2, "b": [0.0] * 2, "c": [1.0] * 3},
        ),
        (
            lambda: gl.masked(
                gl.masked(gl.chain(gl.add_decayed_weights(0.5), gl.trace(0.9)), _all_but_last),
                {"a": True, "b": True, "c": False},
            ),
            _ZERO_AB,
            {"a": [0.5] * 2, "b": [0.0] * 2, "c": [1.0] * 3},
        ),
        (
            lambda: gl.masked(
                gl.chain(gl.trace(0.9), gl.freeze(_all_but_last)),
                {"a": True, "b": True, "c": False},
            ),
            {"a": jnp.ones(2), "b": jnp.ones(2), "c": jnp.ones(3)},
            {"a": [0.0] * 2, "b": [1.0] * 2, "c": [1.0] * 3},
        ),
    ],
    ids=["decay-then-clip", "inner-mask", "mask-in-mask", "freeze-in-mask"],
)
def test_a_mask_runs_packed_as_unpacked_its_inner_sees_the_masked_leaves_only(
    make, grads, expected
):
    params = _params_abc()
    for tx in (make(), gl.packed(make())):
        updates, _ = tx.update(grads, tx.init(params), params)
        for k, v in expected.items():
            np.testing.assert_allclose(updates[k], v, rtol=1e-6, err_msg=k)


def test_a_mask_around_a_whole_tree_reduction_runs_it_apart_else_on_the_buffers():
    params = _params_abc()
    on = {"a": True, "b": True, "c": False}
    elementwise = gl.packed(gl.masked(gl.chain(gl.add_decayed_weights(0.5), gl.trace(0.9)), on))
    reducing = gl.packed(gl.masked(gl.chain(gl.trace(0.9), gl.clip_by_global_norm(1.0)), on))
    # on the buffers: the momentum spans the whole packed buffer (7 elements);
    # apart: the inner is packed on its own over the masked leaves (4 elements)
    (trace,) = elementwise.init(params).inner.inner_state[1]
    assert trace.buffers["float32"].shape == (7,)
    (trace,) = reducing.init(params).inner.inner_state.inner[0]
    assert trace.buffers["float32"].shape == (4,)


def test_zero_nans_keeps_one_flag_per_leaf_when_packed():
    params = _tree()
    tx = gl.packed(gl.chain(gl.zero_nans(), gl.adam(0.1)), max_leaf_size=32)
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    grads["layers"][1]["b"] = grads["layers"][1]["b"].at[0].set(jnp.nan)
    updates, state = tx.update(grads, state, params)
    flags = state.inner[0].found_nan
    assert jax.tree.structure(flags) == jax.tree.structure(params)
    assert [bool(f) for f in jax.tree.leaves(flags)] == [
        leaf is grads["layers"][1]["b"] for leaf in jax.tree.leaves(grads)
    ]
    assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))


def test_add_noise_draws_the_same_noise_packed_and_unpacked():
    params = _tree()
    tx = gl.chain(gl.add_noise(0.5, 0.55, seed=3), gl.adam(0.1))
    plain, _ = _run_eager(tx, params)
    packed_, _ = _run_eager(gl.packed(tx, max_leaf_size=32), params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), plain, packed_
    )


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_packed_state_structure_depends_on_structure_not_on_sizes(n):
    # The old `init` matched state shapes against buffer shapes: add_noise's
    # (2,) key looked like a packed buffer when the params had 2 elements.
    def structure(size):
        tx = gl.packed(gl.chain(gl.add_noise(0.1, 0.5, 0), gl.sgd(0.1)))
        return jax.tree.structure(tx.init({"a": jnp.ones(size), "b": jnp.ones(())}))

    assert structure(n) == structure(5)


def test_packed_explains_gradients_in_another_dtype_than_the_params_without_params():
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), _tree())
    tx = gl.packed(gl.adam(0.1))
    state = tx.init(params)
    grads = jax.tree.map(lambda p: p.astype(jnp.float32), params)
    with pytest.raises(TypeError, match="dtypes differ from the params") as info:
        tx.update(grads, state)
    assert "Packed" not in str(info.value)
    with pytest.raises(TypeError, match=r"\['big'\] is float32 but the param is bfloat16|float32"):
        tx.update(grads, state, params)


def test_packed_tells_a_dtype_mismatch_from_a_shape_mismatch_without_params():
    """hunt66: with a float32 and a bfloat16 buffer, a float32 gradient for the
    bfloat16 param left the gradient's dtypes a *subset* of the state's, and the
    error blamed a shape. A gradient leaf of another shape still gets the shape
    error."""
    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3, jnp.bfloat16)}
    tx = gl.packed(gl.adam(1e-3))
    state = tx.init(params)
    wrong_dtype = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
    with pytest.raises(TypeError, match="dtypes differ from the params"):
        tx.update(wrong_dtype, state)
    wrong_shape = {"w": jnp.ones((4, 2)), "b": jnp.ones(3, jnp.bfloat16)}
    with pytest.raises(ValueError, match="another shape than its param"):
        tx.update(wrong_shape, state)


@pytest.mark.parametrize(
    "mask, leaf, got",
    [
        (lambda p: {"a": 1, "b": 0, "c": 1}, "['a']", "got 1"),
        (lambda p: {"a": True, "b": jnp.array([1, 0, 1]), "c": True}, "['b']", "got Array"),
    ],
)
def test_packed_refuses_a_non_boolean_decay_mask_naming_the_users_leaf(mask, leaf, got):
    """hunt66: packed named a path into its own buffers (``.loose[0]``) for a
    callable mask returning ints, and took an int array mask the plain path
    refuses. Both paths now give the same error, naming the param leaf."""
    params = {"a": jnp.ones(5000), "b": jnp.ones(3), "c": jnp.ones(2)}
    for wrap in (lambda t: t, gl.packed):
        tx = wrap(gl.adamw(0.1, mask=mask))
        with pytest.raises(TypeError, match="must be a bool or a boolean array") as info:
            tx.update(params, tx.init(params), params)
        assert f"mask leaf {leaf}" in str(info.value) and got in str(info.value)


# Every public constructor of a transformation, with arguments that make it do
# something. The README promises that `packed` works for every transformation
# built from gradlab's blocks, including later ones: a new public constructor
# fails `test_the_table_covers_every_public_transformation` until it is added.
_SCHEDULE = gl.schedules.warmup_cosine_decay(0.0, 0.05, 2, 10)


def _objective(params):
    """Its gradient sin(p + 0.3) is _grads at step 0: the table's directions descend."""
    return sum(-jnp.sum(jnp.cos(x + 0.3)) for x in jax.tree.leaves(params))


def _with_objective(tx, real_params=None):
    """``tx`` (holding a line search) given the extras a line search needs --
    ``value=``, ``grad=``, ``value_fn=`` of ``_objective`` at the *real* params --
    so the table runs it like the others. Packed, the real params are the
    packing context's tree (the line search itself runs on the real leaves)."""

    def update(updates, state, params=None, **extra):
        real = params if real_params is None else real_params()
        value, grad = jax.value_and_grad(_objective)(real)
        return tx.update(updates, state, params, value=value, grad=grad, value_fn=_objective)

    def packing(ctx):
        return _with_objective(ctx.form(tx, "line search chain"), lambda: ctx.tree)

    return gl.GradientTransformation(tx.init, update, packing=packing)


PUBLIC_TRANSFORMS = {
    "identity": gl.identity,
    "scale": lambda: gl.scale(-0.1),
    "scale_by_learning_rate": lambda: gl.scale_by_learning_rate(_SCHEDULE),
    "scale_by_schedule": lambda: gl.scale_by_schedule(_SCHEDULE),
    "trace": lambda: gl.trace(0.9, nesterov=True),
    "ema": lambda: gl.ema(0.8),
    "scale_by_adam": lambda: gl.scale_by_adam(),
    "scale_by_rms": lambda: gl.scale_by_rms(centered=True),
    "scale_by_rss": lambda: gl.scale_by_rss(),
    "add_decayed_weights": lambda: gl.add_decayed_weights(_SCHEDULE, _not_bias),  # (a schedule)
    "add_noise": lambda: gl.add_noise(0.1, 0.55, 0),
    "clip": lambda: gl.clip(0.5),
    "clip_by_global_norm": lambda: gl.clip_by_global_norm(0.5),
    "zero_nans": gl.zero_nans,
    "keep_params_nonnegative": gl.keep_params_nonnegative,
    "chain": lambda: gl.chain(gl.clip_by_global_norm(1.0), gl.adam(0.01)),
    "sgd": lambda: gl.sgd(0.05, momentum=0.9, nesterov=True),
    "adagrad": lambda: gl.adagrad(0.05),
    "rmsprop": lambda: gl.rmsprop(0.01, centered=True, momentum=0.5),
    "adam": lambda: gl.adam(_SCHEDULE),
    "adamw": lambda: gl.adamw(0.01, weight_decay=0.1, mask=_not_bias),
    "packed": lambda: gl.packed(gl.adam(0.01)),
    "elementwise": lambda: gl.elementwise(gl.scale(0.5)),
    "per_leaf": lambda: gl.per_leaf(gl.scale(0.5)),
    # the modern family (issue 23): blocks, then optimizers
    "scale_by_amsgrad": gl.scale_by_amsgrad,
    "scale_by_adamax": gl.scale_by_adamax,
    "scale_by_radam": lambda: gl.scale_by_radam(threshold=4.5),
    "scale_by_belief": gl.scale_by_belief,
    "scale_by_yogi": gl.scale_by_yogi,
    "scale_by_adadelta": gl.scale_by_adadelta,
    "scale_by_adan": gl.scale_by_adan,
    "scale_by_novograd": lambda: gl.scale_by_novograd(weight_decay=0.1),
    "scale_by_debiased_rms": gl.scale_by_debiased_rms,
    "scale_by_lion": gl.scale_by_lion,
    "scale_by_sign": gl.scale_by_sign,
    "scale_by_trust_ratio": lambda: gl.scale_by_trust_ratio(mask=_not_bias),
    "scale_by_param_block_rms": gl.scale_by_param_block_rms,
    "scale_by_factored_rms": lambda: gl.scale_by_factored_rms(min_dim_size_to_factor=2),
    "scale_by_sm3": gl.scale_by_sm3,
    "scale_by_rprop": lambda: gl.scale_by_rprop(0.01),
    "scale_by_muon": lambda: gl.partition(
        {"m": gl.scale_by_muon(), "rest": gl.identity()},
        lambda p: jax.tree.map(lambda x: "m" if jnp.ndim(x) == 2 else "rest", p),
    ),
    "clip_by_block_rms": lambda: gl.clip_by_block_rms(0.5),
    "adaptive_grad_clip": lambda: gl.adaptive_grad_clip(0.05),
    "normalize_by_update_norm": gl.normalize_by_update_norm,
    "centralize": gl.centralize,
    "schedule_free": lambda: gl.schedule_free(gl.sgd(0.05), 0.05),
    "nadam": lambda: gl.nadam(0.01),
    "nadamw": lambda: gl.nadamw(0.01, mask=_not_bias),
    "amsgrad": lambda: gl.amsgrad(0.01),
    "adamax": lambda: gl.adamax(0.01),
    "adamaxw": lambda: gl.adamaxw(0.01, mask=_not_bias),
    "radam": lambda: gl.radam(0.01, threshold=4.5),
    "adadelta": lambda: gl.adadelta(weight_decay=0.1, mask=_not_bias),
    "adabelief": lambda: gl.adabelief(0.01),
    "yogi": lambda: gl.yogi(0.01),
    "adan": lambda: gl.adan(0.01, weight_decay=0.1, mask=_not_bias),
    "novograd": lambda: gl.novograd(0.01, weight_decay=0.1),
    "lamb": lambda: gl.lamb(0.01, weight_decay=0.1, mask=_not_bias),
    "lars": lambda: gl.lars(0.1, weight_decay=0.1, trust_ratio_mask=_not_bias),
    "lion": lambda: gl.lion(0.01, mask=_not_bias),
    "sign_sgd": lambda: gl.sign_sgd(0.01),
    "signum": lambda: gl.signum(0.01),
    "adafactor": lambda: gl.adafactor(min_dim_size_to_factor=2, momentum=0.9),
    "sm3": lambda: gl.sm3(0.05),
    "rprop": lambda: gl.rprop(0.01),
    "noisy_sgd": lambda: gl.noisy_sgd(0.01),
    "schedule_free_sgd": lambda: gl.schedule_free_sgd(0.05, warmup_steps=2),
    "schedule_free_adamw": lambda: gl.schedule_free_adamw(0.01, weight_decay=0.1),
    "muon": lambda: gl.muon(0.02, weight_decay=0.1),
    "scale_by_lbfgs": lambda: gl.scale_by_lbfgs(2),
    "lbfgs": lambda: gl.lbfgs(0.1, memory_size=2, linesearch=None),
    "scale_by_zoom_linesearch": lambda: _with_objective(
        gl.chain(gl.scale(-0.5), gl.scale_by_zoom_linesearch(initial_guess="one"))
    ),
    "scale_by_backtracking_linesearch": lambda: _with_objective(
        gl.chain(gl.scale(-0.5), gl.scale_by_backtracking_linesearch(decrease_factor=0.3))
    ),
    # combinators (tests/test_combinators.py has their own packed tests)
    "named_chain": lambda: gl.named_chain(
        ("clip", gl.clip_by_global_norm(1.0)), ("adam", gl.adam(0.01))
    ),
    "partition": lambda: gl.partition(
        {"weight": gl.adam(0.01), "other": gl.sgd(0.05, momentum=0.9)},
        lambda p: jax.tree.map(lambda keep: "weight" if keep else "other", _not_bias(p)),
    ),
    "masked": lambda: gl.masked(gl.chain(gl.clip_by_global_norm(0.5), gl.adam(0.01)), _not_bias),
    "freeze": lambda: gl.chain(gl.adam(0.01), gl.freeze(_not_bias)),
    "apply_if_finite": lambda: gl.apply_if_finite(gl.adam(0.01), 2),
    "lookahead": lambda: gl.lookahead(gl.adam(0.01), 2, 0.5),
    "inject_hyperparams": lambda: gl.inject_hyperparams(gl.adamw, static_args="mask")(
        _SCHEDULE, weight_decay=0.1, mask=_not_bias
    ),
    "reduce_on_plateau": lambda: _with_value(
        gl.chain(gl.adam(0.01), gl.reduce_on_plateau(0.5, patience=0))
    ),
}


def _with_value(tx):
    """``tx`` given ``value=1.0`` (a flat loss) at every step."""

    def update(updates, state, params=None, **extra):
        return tx.update(updates, state, params, value=jnp.float32(1.0))

    return gl.GradientTransformation(
        tx.init, update, packing=lambda ctx: _with_value(ctx.form(tx, "with value"))
    )


def _public_transformation_constructors() -> set[str]:
    import inspect

    names = set()
    for name in gl.__all__:
        obj = getattr(gl, name)
        if inspect.isfunction(obj) and "GradientTransformation" in str(
            inspect.signature(obj).return_annotation
        ):
            names.add(name)
    return names


def test_the_table_covers_every_public_transformation():
    assert _public_transformation_constructors() == set(PUBLIC_TRANSFORMS)


@pytest.mark.parametrize("name", sorted(PUBLIC_TRANSFORMS))
def test_every_public_transformation_declares_packing_and_packs_to_the_same_numbers(name):
    make = PUBLIC_TRANSFORMS[name]
    assert make().packing is not None, f"{name} does not declare its packing"
    params = jax.tree.map(jnp.abs, _tree())  # keep_params_nonnegative needs p >= 0
    plain, _ = _run_eager(make(), params)
    packed_, _ = _run_eager(gl.packed(make(), max_leaf_size=32), params)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(packed_), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gl.packed(gl.masked(gl.adam(0.1), {"w": True, "n": False})),
        lambda: gl.packed(gl.partition({"a": gl.adam(0.1), "f": gl.chain()}, {"w": "a", "n": "f"})),
    ],
    ids=["masked", "partition"],
)
def test_packed_refuses_an_integer_param_by_its_path_and_says_how_to_keep_it(make):
    """An int leaf that ``masked``/``partition`` keep out unpacked: refused at
    ``init`` naming ``['n']`` (it was ``.loose[0]``, or a gradient error at the
    first update), with the composition that works; that one runs."""
    params = {"w": jnp.ones(3), "n": jnp.arange(2)}
    with pytest.raises(TypeError, match=r"packed: param leaf \['n'\] has dtype int32.*masked\("):
        make().init(params)
    tx = gl.masked(gl.packed(gl.adam(0.1)), {"w": True, "n": False})
    grads = {"w": jnp.ones(3), "n": jnp.zeros(2, jnp.int32)}
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["w"], -0.1 * np.ones(3), rtol=1e-5)  # Adam's first step: -lr
    np.testing.assert_array_equal(u["n"], [0, 0])
