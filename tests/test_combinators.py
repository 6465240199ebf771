"""Combinators (API.md §4) against Optax, torch and NumPy references: partition,
masked, freeze, named_chain, apply_if_finite, MultiSteps, lookahead, their
nesting, Optax interop and ``gl.packed``.

Every test runs a few steps on a small Flax-style parameter dict (kernels,
biases, a norm scale) with gradients that depend on the params and the step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from combinator_helpers import (
    OPTAX_PROMOTION,
    STEPS,
    assert_trees_close,
    assert_trees_equal,
    decay_mask,
    flax_params,
    grads_at,
    labels_fn,
    run,
)

import gradlab as gl

# ----------------------------------------------------------------- partition


GROUPS = {
    "kernel": (
        lambda: gl.adamw(0.02, weight_decay=0.1),
        lambda: optax.adamw(0.02, weight_decay=0.1),
    ),
    "bias": (lambda: gl.sgd(0.05, momentum=0.9), lambda: optax.sgd(0.05, momentum=0.9)),
    "norm": (lambda: gl.adam(0.01), lambda: optax.adam(0.01)),
}


def test_partition_equals_each_group_run_alone_with_optax(run_mode):
    params = flax_params()
    tx = gl.partition({k: make() for k, (make, _) in GROUPS.items()}, labels_fn)
    ours, _ = run(tx, params, wrap=run_mode)
    # Each group's Optax optimizer run on that group's leaves alone (grads_at is leafwise).
    labels = jax.tree.leaves(labels_fn(params))
    for label, (_, make_ref) in GROUPS.items():
        own = lambda tree, label=label: [  # noqa: E731
            x for x, lab in zip(jax.tree.leaves(tree), labels, strict=True) if lab == label
        ]
        with OPTAX_PROMOTION:
            ref, _ = run(make_ref(), own(params), apply=optax.apply_updates)
        for mine, theirs in zip(ours, ref, strict=True):
            assert_trees_close(own(mine), theirs)


def test_partition_matches_torch_param_groups_with_different_learning_rates():
    torch = pytest.importorskip("torch")
    params = {"w": jnp.asarray([[0.5, -1.0], [2.0, 0.3]]), "b": jnp.asarray([0.1, -0.2])}
    tx = gl.partition({"w": gl.adam(0.05), "b": gl.adam(0.005)}, {"w": "w", "b": "b"})
    grads = lambda p, k: {"w": 2 * p["w"] + 0.1 * k, "b": jnp.cos(p["b"]) * 3}  # noqa: E731
    ours, _ = run(tx, params, grads=grads)

    w = torch.tensor(np.asarray(params["w"]), dtype=torch.float64, requires_grad=True)
    b = torch.tensor(np.asarray(params["b"]), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([{"params": [w], "lr": 0.05}, {"params": [b], "lr": 0.005}])
    for k in range(STEPS):
        opt.zero_grad()
        w.grad = 2 * w.detach() + 0.1 * k
        b.grad = torch.cos(b.detach()) * 3
        opt.step()
        np.testing.assert_allclose(ours[k]["w"], w.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours[k]["b"], b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_partition_state_holds_only_each_groups_own_leaves():
    params = flax_params()
    tx = gl.partition({k: make() for k, (make, _) in GROUPS.items()}, labels_fn)
    state = tx.init(params)
    adam_state = state.inner_states["kernel"][0]
    shapes = sorted(x.shape for x in jax.tree.leaves(adam_state.mu))
    assert shapes == [(3, 4), (4, 2)]  # kernels only, no placeholders for the rest
    assert len(jax.tree.leaves(state.inner_states["bias"])) == 3 + 1  # 3 momenta, 1 counter


def test_partition_with_a_prefix_of_labels_and_optax_members():
    params = flax_params()
    labels = {"dense1": "frozen", "norm": "train", "dense2": "train"}
    tx = gl.partition({"train": optax.adam(0.01), "frozen": optax.set_to_zero()}, labels)
    trained = {k: params[k] for k in ("norm", "dense2")}
    with OPTAX_PROMOTION:
        out, _ = run(tx, params, value=jnp.float32(1.0))  # value= is not passed to Optax members
        ref, _ = run(optax.adam(0.01), trained, apply=optax.apply_updates)
    assert_trees_equal(out[-1]["dense1"], params["dense1"])
    assert_trees_close({k: out[-1][k] for k in trained}, ref[-1])


@pytest.mark.parametrize(
    "transforms, labels, error, words",
    [
        ({"a": "adam"}, {"w": "a", "b": "a"}, TypeError, ["transforms['a']"]),
        ({}, {"w": "a", "b": "a"}, TypeError, ["non-empty dict"]),
        ({"a": None}, {"w": "a", "b": "x"}, TypeError, ["transforms['a']"]),
    ],
)
def test_partition_bad_arguments_raise(transforms, labels, error, words):
    with pytest.raises(error) as info:
        gl.partition(transforms, labels)
    for word in words:
        assert word in str(info.value)


def test_partition_label_without_transform_raises_naming_it():
    with pytest.raises(ValueError, match=r"'bias'.*no transformation.*'kernel'"):
        gl.partition({"kernel": gl.sgd(0.1)}, {"w": "kernel", "b": "bias"})
    tx = gl.partition({"kernel": gl.sgd(0.1)}, labels_fn)  # a function: checked at init
    with pytest.raises(ValueError, match="'bias', 'norm' have no transformation"):
        tx.init(flax_params())


def test_partition_transform_without_label_raises_naming_it():
    tx = gl.partition(
        {"kernel": gl.sgd(0.1), "bias": gl.sgd(0.1), "norm": gl.sgd(1), "emb": gl.sgd(1)}, labels_fn
    )
    with pytest.raises(ValueError, match="'emb' label no param leaf"):
        tx.init(flax_params())


def test_partition_labels_tree_mismatch_shows_both_structures():
    tx = gl.partition({"a": gl.sgd(0.1)}, {"w": "a", "bias": "a"})
    with pytest.raises(
        ValueError, match=r"labels tree is neither.*\n  params: .*'b'.*\n  labels: .*'bias'"
    ):
        tx.init({"w": jnp.ones(2), "b": jnp.ones(2)})


def test_partition_array_labels_raise_type_error_naming_the_leaf():
    tx = gl.partition({"a": gl.sgd(0.1)}, lambda p: jax.tree.map(lambda x: jnp.asarray(1), p))
    with pytest.raises(TypeError, match=r"labels leaf \['w'\] must be a hashable label"):
        tx.init({"w": jnp.ones(2)})


def test_partition_packed_equals_unpacked():
    params = flax_params()
    make = lambda: gl.partition({k: m() for k, (m, _) in GROUPS.items()}, labels_fn)  # noqa: E731
    plain, _ = run(make(), params)
    fast, state = run(gl.packed(make(), max_leaf_size=8), params)
    assert_trees_close(fast, plain)
    # each group packed on its own: its state holds its own leaves only
    kernel_state = state.inner.inner_states["kernel"]
    assert isinstance(kernel_state, gl.PackedState)


# ----------------------------------------------------------------- masked, freeze


def test_flax_weight_decay_mask_skips_biases_and_norm_scales(run_mode):
    """chain(masked(add_decayed_weights), sgd) against the formula, leaf by leaf."""
    params, lr, wd = flax_params(), 0.1, 0.5
    tx = gl.chain(gl.masked(gl.add_decayed_weights(wd), decay_mask), gl.sgd(lr))
    ours, _ = run(tx, params, steps=3, wrap=run_mode)
    mask = decay_mask(params)
    expected = jax.tree.map(np.asarray, params)
    for k in range(3):
        g = jax.tree.map(np.asarray, grads_at(expected, np.float32(k)))
        expected = jax.tree.map(lambda p, g, m: p - lr * (g + wd * p * m), expected, g, mask)
        assert_trees_close(ours[k], expected)
    # biases and norm scales: plain sgd (no decay); kernels decayed
    assert not mask["norm"]["scale"] and not mask["dense1"]["bias"] and mask["dense2"]["kernel"]


def test_masked_inner_sees_only_the_masked_leaves_like_optax_masked():
    """A global-norm clip inside the mask measures the masked leaves only."""
    params = flax_params()
    mask = {"dense1": True, "norm": False, "dense2": {"kernel": True, "bias": False}}
    inner = gl.chain(gl.clip_by_global_norm(0.3), gl.adam(0.05))
    ours, state = run(gl.masked(inner, mask), params)
    with OPTAX_PROMOTION:
        ref_inner = optax.chain(optax.clip_by_global_norm(0.3), optax.adam(0.05))
        full_mask = gl._masks.resolve(mask, params)
        ref, _ = run(optax.masked(ref_inner, full_mask), params, apply=optax.apply_updates)
    assert_trees_close(ours, ref)
    # unmasked leaves got their raw gradient as update; the state skips them
    assert isinstance(state.inner_state[1][0].mu["norm"]["scale"], gl.MaskedNode)
    assert state.inner_state[1][0].mu["dense1"]["kernel"].shape == (3, 4)


def test_freeze_zeroes_the_frozen_leaves_with_a_prefix_mask(run_mode):
    params = flax_params()
    tx = gl.chain(gl.adam(0.05), gl.freeze({"dense1": True, "norm": False, "dense2": False}))
    ours, _ = run(tx, params, wrap=run_mode)
    assert_trees_equal(ours[-1]["dense1"], params["dense1"])
    with OPTAX_PROMOTION:
        ref, _ = run(optax.adam(0.05), params, apply=optax.apply_updates)
    assert_trees_close(
        {k: ours[-1][k] for k in ("norm", "dense2")}, {k: ref[-1][k] for k in ("norm", "dense2")}
    )


@pytest.mark.parametrize("make", [lambda m: gl.masked(gl.sgd(0.1), m), gl.freeze])
def test_mask_structure_mismatch_shows_both_structures(make):
    tx = make({"w": True, "bias": False})
    with pytest.raises(
        ValueError, match=r"mask tree is neither.*\n  params: .*'b'.*\n  mask: .*'bias'"
    ):
        tx.update(
            {"w": jnp.ones(2), "b": jnp.ones(2)}, tx.init({"w": jnp.ones(2), "b": jnp.ones(2)})
        )


@pytest.mark.parametrize("make", [lambda m: gl.masked(gl.sgd(0.1), m), gl.freeze])
def test_mask_that_is_not_one_static_bool_per_leaf_raises_naming_the_leaf(make):
    params = {"w": jnp.ones(2), "b": jnp.ones(2)}
    tx = make({"w": True, "b": jnp.array([True, False])})
    with pytest.raises(TypeError, match=r"mask leaf \['b'\] must be a bool known when tracing"):
        tx.update(params, tx.init(params), params)


def test_masked_rejects_a_non_transformation():
    with pytest.raises(TypeError, match="inner must be a GradientTransformation"):
        gl.masked("adam", {"w": True})


# ----------------------------------------------------------------- named_chain


def test_named_chain_keys_state_by_name_and_matches_optax():
    params = flax_params()
    tx = gl.named_chain(("clip", gl.clip_by_global_norm(0.5)), ("adam", gl.adam(0.05)))
    ours, state = run(tx, params)
    assert set(state) == {"clip", "adam"} and isinstance(state["adam"][0], gl.ScaleByAdamState)
    with OPTAX_PROMOTION:
        ref_tx = optax.named_chain(
            ("clip", optax.clip_by_global_norm(0.5)), ("adam", optax.adam(0.05))
        )
        ref, _ = run(ref_tx, params, apply=optax.apply_updates)
    assert_trees_close(ours, ref)


@pytest.mark.parametrize(
    "members, error, words",
    [
        ((("a", gl.sgd(0.1)), ("a", gl.adam(0.1))), ValueError, "unique, got 'a' twice"),
        ((gl.sgd(0.1),), TypeError, "argument 0 must be a (name, transformation) pair"),
        ((("a", "sgd"),), TypeError, "named_chain member 'a' must be a GradientTransformation"),
    ],
)
def test_named_chain_bad_members_raise(members, error, words):
    with pytest.raises(error) as info:
        gl.named_chain(*members)
    assert words in str(info.value)


# ----------------------------------------------------------------- apply_if_finite


def _poison(tree, value):
    """``tree`` with one element of one leaf set to ``value`` (NaN or Inf)."""
    return {**tree, "norm": {**tree["norm"], "scale": tree["norm"]["scale"].at[1].set(value)}}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_apply_if_finite_keeps_params_and_inner_state_bit_identical_on_a_bad_step(bad, run_mode):
    params = flax_params()
    tx = gl.apply_if_finite(gl.adam(0.05), max_consecutive_errors=3)
    update = run_mode(tx.update)
    state = tx.init(params)
    updates, state = update(grads_at(params, 0.0), state, params)
    params = gl.apply_updates(params, updates)
    before = state
    updates, state = update(_poison(grads_at(params, 1.0), bad), state, params)
    assert_trees_equal(state.inner_state, before.inner_state)
    assert_trees_equal(gl.apply_updates(params, updates), params)
    assert all(not np.any(u) for u in jax.tree.leaves(updates))
    assert (int(state.notfinite_count), bool(state.last_finite), int(state.total_notfinite)) == (
        1,
        False,
        1,
    )


def test_apply_if_finite_gives_up_after_max_consecutive_errors_and_resets_the_count():
    """max_consecutive_errors=2: two bad steps in a row are skipped, the third is
    applied (its NaN reaches the params and the inner state), then the count restarts."""
    params = {"w": jnp.asarray([1.0, 2.0])}
    tx = gl.apply_if_finite(gl.sgd(0.5, momentum=0.9), max_consecutive_errors=2)
    pattern = [True, False, False, False, False, True, False, False, False]
    state, applied, counts, totals = tx.init(params), [], [], []
    step = jax.jit(tx.update)
    for finite in pattern:
        g = {"w": jnp.asarray([1.0, 1.0]) if finite else jnp.asarray([1.0, np.nan])}
        momentum_before = state.inner_state[0].trace["w"]
        updates, state = step(g, state, params)
        applied.append(
            not np.array_equal(state.inner_state[0].trace["w"], momentum_before, equal_nan=True)
            or bool(np.any(updates["w"]))
        )
        counts.append(int(state.notfinite_count))
        totals.append(int(state.total_notfinite))
    assert applied == [True, False, False, True, False, True, False, False, True]
    assert counts == [0, 1, 2, 0, 1, 0, 1, 2, 0]
    assert totals == [0, 1, 2, 3, 4, 4, 5, 6, 7]
    # after giving up, the inner state holds the non-finite gradient (as documented)
    assert np.isnan(state.inner_state[0].trace["w"][1])


def test_apply_if_finite_skips_like_optax_until_optax_gives_up_for_good():
    params = flax_params()
    bad = {1, 2, 5}  # never 3 in a row: Optax (max 2) and gradlab agree on every step
    grads = lambda p, k: jax.lax.cond(  # noqa: E731
        jnp.isin(k, jnp.asarray(sorted(bad), jnp.float32)),
        lambda: _poison(grads_at(p, k), jnp.nan),
        lambda: grads_at(p, k),
    )
    ours, state = run(gl.apply_if_finite(gl.adam(0.05), 2), params, steps=7, grads=grads)
    with OPTAX_PROMOTION:
        ref, ref_state = run(
            optax.apply_if_finite(optax.adam(0.05), 2),
            params,
            steps=7,
            grads=grads,
            apply=optax.apply_updates,
        )
    assert_trees_close(ours, ref)
    assert int(state.total_notfinite) == int(ref_state.total_notfinite) == 3


def test_apply_if_finite_checks_the_whole_tree_in_one_reduction():
    """One reduce over a concatenation of the small leaves, one over the stacked
    flags: not a reduction per leaf (100 leaves here)."""
    tree = {f"b{i}": jnp.ones(7) for i in range(100)}
    jaxpr = jax.make_jaxpr(gl.combinators._guards.all_finite)(tree)
    reductions = [e for e in jaxpr.eqns if e.primitive.name.startswith("reduce_")]
    assert len(reductions) == 2, [e.primitive.name for e in jaxpr.eqns]
    assert bool(gl.combinators._guards.all_finite(tree))
    assert not bool(gl.combinators._guards.all_finite({**tree, "b7": tree["b7"].at[3].set(np.inf)}))


# ----------------------------------------------------------------- MultiSteps


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_multisteps_of_4_equals_one_step_on_the_mean_of_4_gradients(name, run_mode):
    make = {
        "sgd": (lambda: gl.sgd(0.1), lambda: optax.sgd(0.1)),
        "adam": (lambda: gl.adam(0.05), lambda: optax.adam(0.05)),
    }[name]
    params = flax_params()
    tx = gl.MultiSteps(make[0](), every_k_schedule=4)
    ours, state = run(tx, params, steps=8, wrap=run_mode)
    # Reference: Optax's optimizer stepped on the mean of each group of 4 gradients
    # (the params do not move within a group, so the gradients are grads_at(p, k)).
    ref_tx, p = make[1](), params
    ref_state = ref_tx.init(p)
    with OPTAX_PROMOTION:
        for cycle in range(2):
            start = params if cycle == 0 else ours[4 * cycle - 1]
            for k in range(4 * cycle, 4 * cycle + 3):
                assert_trees_equal(ours[k], start)  # zero updates while accumulating
            mean = jax.tree.map(
                lambda *g: sum(g) / 4, *(grads_at(p, np.float32(4 * cycle + i)) for i in range(4))
            )
            u, ref_state = ref_tx.update(mean, ref_state, p)
            p = optax.apply_updates(p, u)
            assert_trees_close(ours[4 * cycle + 3], p, rtol=1e-6, atol=1e-6)
    assert bool(gl.MultiSteps.has_updated(state)) and bool(tx.has_updated(state))


def test_multisteps_state_holds_one_accumulator_per_param():
    params = flax_params()
    state = gl.MultiSteps(gl.sgd(0.1, momentum=0.9), 4).init(params)
    assert jax.tree.structure(state.acc_grads) == jax.tree.structure(params)
    size = lambda tree: sum(x.size for x in jax.tree.leaves(tree) if x.ndim)  # noqa: E731
    assert size(state) == 2 * size(params)  # the momentum and ONE accumulator


def test_multisteps_with_a_schedule_follows_optax_and_a_static_1_is_the_inner_itself():
    params = flax_params()
    every_k = lambda step: jnp.where(step < 2, 2, 3)  # noqa: E731
    ours, state = run(gl.MultiSteps(gl.adam(0.05), every_k), params, steps=10)
    with OPTAX_PROMOTION:
        ref, _ = run(
            optax.MultiSteps(optax.adam(0.05), every_k).gradient_transformation(),
            params,
            steps=10,
            apply=optax.apply_updates,
        )
    assert_trees_close(ours, ref)
    # steps 2, 4, 7, 10 updated (k = 2, 2, 3, 3)
    assert int(state.gradient_step) == 4 and int(state.mini_step) == 0
    one, _ = run(gl.MultiSteps(gl.adam(0.05), 1), params)
    plain, _ = run(gl.adam(0.05), params)
    assert_trees_equal(one, plain)
    assert gl.MultiSteps(gl.adam(0.05), 1).init(params).acc_grads == ()
    traced_one = gl.MultiSteps(gl.adam(0.05), jnp.asarray(1)).init(params)
    assert jax.tree.structure(traced_one.acc_grads) == jax.tree.structure(params)


def test_multisteps_bad_k_raises():
    with pytest.raises(ValueError, match="every_k_schedule must be >= 1, got 0"):
        gl.MultiSteps(gl.sgd(0.1), 0)


# ----------------------------------------------------------------- lookahead


@pytest.mark.parametrize("reset_state", [False, True])
def test_lookahead_matches_optax_fast_and_slow_params(reset_state):
    params = flax_params()
    tx = gl.lookahead(
        gl.sgd(0.1, momentum=0.5), sync_period=3, slow_step_size=0.5, reset_state=reset_state
    )
    ours, state = run(tx, params, steps=7)
    with OPTAX_PROMOTION:
        ref_tx = optax.lookahead(optax.sgd(0.1, momentum=0.5), 3, 0.5, reset_state=reset_state)
        lp = optax.LookaheadParams.init_synced(params)
        ref_state = ref_tx.init(lp)
        for k in range(7):
            u, ref_state = ref_tx.update(grads_at(lp.fast, np.float32(k)), ref_state, lp)
            lp = optax.apply_updates(lp, u)
            assert_trees_close(ours[k], lp.fast, rtol=1e-6, atol=1e-6)
    assert_trees_close(gl.lookahead_params(state), lp.slow, rtol=1e-6, atol=1e-6)
    assert int(state.steps_since_sync) == 1


def test_lookahead_params_found_inside_a_chain_and_errors():
    params = flax_params()
    state = gl.chain(gl.clip(1.0), gl.lookahead(gl.sgd(0.1), 2, 0.5)).init(params)
    assert_trees_equal(gl.lookahead_params(state), params)
    with pytest.raises(ValueError, match="no LookaheadState"):
        gl.lookahead_params(gl.sgd(0.1).init(params))
    two = gl.chain(gl.lookahead(gl.sgd(0.1), 2, 0.5), gl.lookahead(gl.sgd(0.1), 2, 0.5))
    with pytest.raises(ValueError, match=r"several LookaheadStates.*\[0\].*\[1\]"):
        gl.lookahead_params(two.init(params))
    with pytest.raises(ValueError, match="sync_period must be >= 1"):
        gl.lookahead(gl.sgd(0.1), 0, 0.5)
    with pytest.raises(ValueError, match="slow_step_size must be in"):
        gl.lookahead(gl.sgd(0.1), 2, 1.5)
