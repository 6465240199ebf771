"""Combinators (API.md §4) against Optax, torch and NumPy references: partition,
masked, freeze, named_chain, apply_if_finite, MultiSteps, lookahead, their
nesting, Optax interop and ``gl.packed``.

Every test runs a few steps on a small Flax-style parameter dict (kernels,
biases, a norm scale) with gradients that depend on the params and the step.
"""

from __future__ import annotations

import functools

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


@pytest.mark.parametrize("fixed", [True, False], ids=["labels tree", "labels function"])
@pytest.mark.parametrize("outer", ["gl.masked", "gl.partition", "optax.masked"])
def test_partition_under_a_wrapper_that_hides_a_group_runs_like_optax(outer, fixed):
    # The outer wrapper hides the 'bias' leaves: the inner partition's 'bias'
    # group is empty, not a typo (it raised "label no param leaf").
    params = flax_params()
    labels = labels_fn(params)
    mask = jax.tree.map(lambda k: k != "bias", labels)

    def inner(lib):
        t = {"kernel": lib.adam(0.02), "bias": lib.sgd(0.05), "norm": lib.sgd(0.01)}
        return lib.partition(t, labels if fixed or lib is optax else labels_fn)

    def outer_of(lib, tx):
        if outer.endswith("masked"):
            return lib.masked(tx, mask)
        return lib.partition({"kernel": tx, "norm": tx, "bias": lib.sgd(0.2)}, labels)

    lib = gl if outer.startswith("gl") else optax
    with OPTAX_PROMOTION:  # Optax mixes Python floats and int32 counts
        ours, _ = run(outer_of(lib, inner(gl)), params)
        ref, _ = run(outer_of(optax, inner(optax)), params, apply=optax.apply_updates)
    assert_trees_close(ours, ref)


def test_partition_with_a_fixed_labels_tree_refuses_an_unnamed_transform_when_built():
    # Inside a wrapper that hides leaves the init-time check is off; a labels
    # tree that never names 'kernl' shows the typo before any params (review7).
    labels = {"w": "kernel", "b": "bias"}
    with pytest.raises(ValueError, match="'kernl' label no param leaf"):
        groups = {"kernel": gl.sgd(0.1), "bias": gl.sgd(0.1), "kernl": gl.sgd(1.0)}
        gl.masked(gl.partition(groups, labels), {"w": True, "b": False})


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


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        # hunt67: the first two were told "must be a bool known when tracing"
        (jnp.array([True, False]), r"must be one bool for the whole leaf.*shape \(2,\)"),
        (1, r"must be a bool \(one per param leaf\), got 1 \(int\)"),
        (jnp.array([1, 0]), r"must be a bool \(one per param leaf\), got .*\(int32\)"),
        (None, "must be a bool known when tracing"),  # traced: see below
    ],
)
@pytest.mark.parametrize("make", [lambda m: gl.masked(gl.sgd(0.1), m), gl.freeze])
def test_mask_that_is_not_one_static_bool_per_leaf_raises_naming_the_leaf(make, leaf, message):
    params = {"w": jnp.ones(2), "b": jnp.ones(2)}
    if leaf is None:  # a bool computed from the params under jit
        tx = make(lambda p: {"w": True, "b": p["b"][0] > 0})
        step = jax.jit(lambda p: tx.update(p, tx.init(p), p))
    else:  # a callable mask (a tree with an int leaf is refused at construction)
        tx = make(lambda p: {"w": True, "b": leaf})
        step = lambda p: tx.update(p, tx.init(p), p)  # noqa: E731
    with pytest.raises(TypeError, match=r"mask leaf \['b'\] " + message):
        step(params)


def test_masked_rejects_a_non_transformation():
    with pytest.raises(TypeError, match="transform must be a GradientTransformation"):
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


@pytest.mark.parametrize(
    "make", [lambda: gl.apply_if_finite(gl.sgd(0.1), 3), lambda: gl.MultiSteps(gl.sgd(0.1), 2)]
)
def test_a_skipped_step_passes_no_gradient_to_the_skipped_updates_eagerly(make):
    # Meta-gradient through a skipped step: the zeros it returns must not send
    # a cotangent into the (here infinite) gradient, or 0 * inf = NaN.
    f = lambda p: jnp.sum(jnp.log(p))  # noqa: E731  (gradient 1/p: inf at 0)
    tx = make()

    def meta_loss(theta):
        u, _ = tx.update(jax.grad(f)(theta), tx.init(theta), theta)
        return jnp.sum(gl.apply_updates(theta, u))

    np.testing.assert_array_equal(jax.grad(meta_loss)(jnp.asarray([0.0, 1.0])), [1.0, 1.0])


def test_apply_if_finite_gives_up_after_max_consecutive_errors_and_resets_the_count():
    """max_consecutive_errors=2: two bad steps in a row are skipped, the third is
    applied (its NaN reaches the params and the inner state), then the count restarts."""
    params = {"w": jnp.asarray([1.0, 2.0])}
    tx = gl.apply_if_finite(gl.sgd(0.5, momentum=0.9), max_consecutive_errors=2)
    pattern = [True, False, False, False, False, True, False, False, False]
    state, applied, counts, totals, last = tx.init(params), [], [], [], []
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
        last.append(bool(state.last_finite))
    assert applied == [True, False, False, True, False, True, False, False, True]
    # a step applied on giving up still reports its gradient as not finite (hunt49)
    assert last == pattern
    assert counts == [0, 1, 2, 0, 1, 0, 1, 2, 0]
    assert totals == [0, 1, 2, 3, 4, 4, 5, 6, 7]
    # after giving up, the inner state holds the non-finite gradient (as documented)
    assert np.isnan(state.inner_state[0].trace["w"][1])


def test_apply_if_finite_skips_like_optax_until_optax_gives_up_for_good():
    params = flax_params()
    bad = {1, 2, 5}  # never 3 in a row: Optax (max 2) and gradlab agree on every step

    def grads(p, k):
        g = grads_at(p, k)
        return _poison(
            g,
            jnp.where(
                jnp.isin(k, jnp.asarray(sorted(bad), jnp.float32)), jnp.nan, g["norm"]["scale"][1]
            ),
        )

    ours, state = run(gl.apply_if_finite(gl.adam(0.05), 2), params, steps=7, grads=grads)
    with OPTAX_PROMOTION:  # jitted: eagerly, Optax's lax.cond compiles at every step
        ref_tx = optax.apply_if_finite(optax.adam(0.05), 2)
        ref, ref_state = run(
            ref_tx, params, steps=7, grads=grads, wrap=jax.jit, apply=optax.apply_updates
        )
    assert_trees_close(ours, ref)
    assert int(state.total_notfinite) == int(ref_state.total_notfinite) == 3


def test_apply_if_finite_checks_the_whole_tree_in_a_few_reductions():
    """One reduce per concatenation of 32 small leaves, one over the stacked
    flags: not a reduction per leaf (100 leaves here: 4 chunks)."""
    tree = {f"b{i}": jnp.ones(7) for i in range(100)}
    jaxpr = jax.make_jaxpr(gl._tree.all_finite)(tree)
    reductions = [e for e in jaxpr.eqns if e.primitive.name.startswith("reduce_")]
    assert len(reductions) == 4 + 1, [e.primitive.name for e in jaxpr.eqns]
    assert bool(gl._tree.all_finite(tree))
    assert not bool(gl._tree.all_finite({**tree, "b7": tree["b7"].at[3].set(np.inf)}))


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
        ref_tx = optax.MultiSteps(optax.adam(0.05), every_k).gradient_transformation()
        ref, _ = run(ref_tx, params, steps=10, wrap=jax.jit, apply=optax.apply_updates)
    assert_trees_close(ours, ref)
    # steps 2, 4, 7, 10 updated (k = 2, 2, 3, 3)
    assert int(state.gradient_step) == 4 and int(state.mini_step) == 0
    one, _ = run(gl.MultiSteps(gl.adam(0.05), 1), params)
    plain, _ = run(gl.adam(0.05), params)
    assert_trees_equal(one, plain)
    assert gl.MultiSteps(gl.adam(0.05), 1).init(params).acc_grads == ()
    traced_one = gl.MultiSteps(gl.adam(0.05), jnp.asarray(1)).init(params)
    assert jax.tree.structure(traced_one.acc_grads) == jax.tree.structure(params)


def test_multisteps_a_nan_mini_step_spoils_only_its_own_cycle():
    """Optax's accumulator is reset as acc * 0 and stays NaN for ever after."""
    tx = gl.MultiSteps(gl.sgd(0.1), 2)
    params, state, updates = {"w": jnp.ones(2)}, None, []
    state = tx.init(params)
    for g in [np.nan, 1.0, 1.0, 3.0]:
        u, state = tx.update({"w": jnp.full(2, g, jnp.float32)}, state, params)
        updates.append(float(u["w"][0]))
    np.testing.assert_equal(updates, [0.0, np.nan, 0.0, np.float32(-0.1) * 2])


SKIP_FNS = {
    "skip_not_finite": optax.skip_not_finite,
    "skip_large_updates": functools.partial(optax.skip_large_updates, max_squared_norm=30.0),
}


@pytest.mark.parametrize("skip", SKIP_FNS)
@pytest.mark.parametrize("k", [1, 3])
def test_multisteps_should_skip_update_fn_follows_optax(skip, k, run_mode):
    """Optax's own skip functions, as they are: a skipped gradient (NaN, inf, or a
    big one) leaves the counters, the accumulator and the inner state as they
    were; every update, has_updated and skip_state as ``optax.MultiSteps``'s."""
    params = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array(0.3)}
    scales = [1.0, np.nan, 2.0, 20.0, -1.0, np.inf, 0.5]  # NaN, big, inf: each skipped
    ours = gl.MultiSteps(gl.adam(0.05), k, should_skip_update_fn=SKIP_FNS[skip])
    theirs = optax.MultiSteps(optax.adam(0.05), k, should_skip_update_fn=SKIP_FNS[skip])
    update = run_mode(ours.update)
    p_ours, s_ours = params, ours.init(params)
    with OPTAX_PROMOTION:
        p_theirs, s_theirs = params, theirs.init(params)
    # init asks the function too (zero updates), so a scan's carry keeps its structure
    assert_trees_close(s_ours.skip_state, s_theirs.skip_state, rtol=0, atol=0)
    skipped = 0
    for c in scales:
        grads = jax.tree.map(lambda p, c=c: jnp.cos(p) * np.float32(c), p_ours)
        u_ours, s_ours = update(grads, s_ours, p_ours)
        with OPTAX_PROMOTION:
            u_theirs, s_theirs = jax.jit(theirs.update)(grads, s_theirs, p_theirs)
        # (Adam in float32: 1 - b2**t rounds differently, ~1e-5 of a step; tests/cases.py)
        assert_trees_close(u_ours, u_theirs, rtol=2e-5, atol=1e-6)
        assert bool(ours.has_updated(s_ours)) == bool(theirs.has_updated(s_theirs))
        assert_trees_close(s_ours.skip_state, s_theirs.skip_state, rtol=1e-6, atol=0)
        skipped += int(s_ours.skip_state["should_skip"])
        p_ours = gl.apply_updates(p_ours, u_ours)
        p_theirs = optax.apply_updates(p_theirs, u_theirs)
    assert skipped >= 2 and int(s_ours.gradient_step) == int(s_theirs.gradient_step) > 0
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(p_ours))


def test_multisteps_should_skip_update_fn_is_checked_and_packed_refuses_it():
    params = {"w": jnp.ones(2)}
    with pytest.raises(TypeError, match="should_skip_update_fn must be None or a callable"):
        gl.MultiSteps(gl.sgd(0.1), 2, should_skip_update_fn=True)
    pair = gl.MultiSteps(gl.sgd(0.1), 2, should_skip_update_fn=lambda u, t, p: jnp.array(True))
    with pytest.raises(TypeError, match="must return a pair"):
        pair.init(params)
    scalar = gl.MultiSteps(gl.sgd(0.1), 2, should_skip_update_fn=lambda u, t, p: (1.0, ()))
    with pytest.raises(ValueError, match="boolean scalar first, got a float"):
        scalar.init(params)
    vector = lambda u, t, p: (jnp.isnan(u["w"]), ())  # noqa: E731
    with pytest.raises(ValueError, match=r"boolean scalar first, got bool of shape \(2,\)"):
        gl.MultiSteps(gl.sgd(0.1), 2, should_skip_update_fn=vector).init(params)
    with pytest.raises(TypeError, match=r"packed cannot run MultiSteps \(at .*\) with a should"):
        tx = gl.packed(gl.MultiSteps(gl.sgd(0.1), 2, should_skip_update_fn=optax.skip_not_finite))
        tx.update(params, tx.init(params), params)
    # inject_hyperparams keeps the function static (it is no schedule of the step)
    injected = gl.inject_hyperparams(gl.MultiSteps)(
        gl.sgd(0.1), 1, should_skip_update_fn=optax.skip_not_finite
    )
    state = injected.init(params)
    u, state = injected.update({"w": jnp.array([np.nan, 1.0])}, state, params)
    np.testing.assert_array_equal(u["w"], [0.0, 0.0])
    u, state = injected.update({"w": jnp.array([1.0, 2.0])}, state, params)
    np.testing.assert_allclose(u["w"], [-0.1, -0.2], rtol=1e-6)


def test_multisteps_bad_k_raises():
    with pytest.raises(ValueError, match="every_k_schedule must be >= 1, got 0"):
        gl.MultiSteps(gl.sgd(0.1), 0)


def test_multisteps_fractional_schedule_steps_alike_eager_and_jitted():
    """A schedule of k giving no integer -- ``linear(1, 4, 6)`` gives 1.5, 2, 2.5,
    ... -- updates at the first call count ``n >= k``, eager (with a warning) as
    jitted: it was truncated to int32 (1.5 -> 1), and an eager error would make a
    debug run differ from the jitted one (review21)."""
    params = {"w": jnp.zeros(2)}
    schedule = gl.schedules.linear(1.0, 4.0, 6)

    def emitted(update):
        tx = gl.MultiSteps(gl.sgd(0.1), every_k_schedule=schedule)
        state, out = tx.init(params), []
        for i in range(10):
            _, state = update(tx)({"w": jnp.full(2, float(i + 1))}, state, params)
            out.append(bool(tx.has_updated(state)))
        return out

    with pytest.warns(UserWarning, match="every_k_schedule returned 1.5, not an integer"):
        eager = emitted(lambda tx: tx.update)
    jitted = emitted(lambda tx: jax.jit(tx.update))
    expected, n, updates = [], 0, 0  # the reference: count calls, update once n >= k
    for _ in range(10):
        n += 1
        k = 1.0 + 3.0 * min(updates, 6) / 6  # linear(1, 4, 6) at the update count
        expected.append(n >= k)
        n, updates = (0, updates + 1) if expected[-1] else (n, updates)
    assert eager == jitted == expected
    assert expected != [True, True, False, True, False, True, False, False, True, False]  # old


def test_multisteps_under_x64_and_strict_promotion(x64):
    """Under x64 a Python int k is int64 and a float schedule value float64: both
    met the int32 call counter in "strict" promotion (hunt81). Reference: the
    mean of each k gradients, applied every k-th call (SGD, lr 1)."""
    params = jnp.zeros(2, jnp.float32)
    for k in (2, lambda step: jnp.asarray(2.0, jnp.float64)):
        tx = gl.MultiSteps(gl.sgd(1.0), every_k_schedule=k)
        state, out = tx.init(params), []
        for i in range(4):
            u, state = tx.update(jnp.full(2, float(i + 1), jnp.float32), state, params)
            out.append(float(u[0]))
        assert out == [0.0, -1.5, 0.0, -3.5]


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


# ----------------------------------------------------------------- nesting


def _kernel_bias_norm(learning_rate, weight_decay, lib):
    """A masked chain inside a partition, in gradlab (lib=gl) or Optax (lib=optax)."""
    decayed = lib.masked(
        lib.chain(lib.clip_by_global_norm(1.0), lib.add_decayed_weights(weight_decay)), decay_mask
    )
    groups = {
        "kernel": lib.chain(decayed, lib.sgd(learning_rate, momentum=0.9)),
        "bias": lib.adam(learning_rate),
        "norm": lib.set_to_zero() if lib is optax else gl.freeze(True),
    }
    return lib.partition(groups, labels_fn)


def _nested_training(lib, steps=8, nan_at=7):
    """``lr -> final params``: MultiSteps(2) of apply_if_finite(3) of
    inject_hyperparams of the partition, trained in a lax.scan with a NaN
    gradient at mini-step ``nan_at``: the last cycle is skipped (an earlier one
    would stay NaN in Optax's accumulator, which it resets by multiplying by 0)."""
    params = flax_params()

    def train(lr):
        make = functools.partial(_kernel_bias_norm, lib=lib)
        if lib is gl:
            inner = gl.inject_hyperparams(make)(learning_rate=0.01, weight_decay=0.1)
        else:
            inner = optax.inject_hyperparams(make, static_args="lib")(
                learning_rate=lr, weight_decay=0.1
            )
        tx = lib.MultiSteps(lib.apply_if_finite(inner, 3), 2)
        state = tx.init(params)
        if lib is gl:  # set the vmapped learning rate into the state
            state = gl.set_hyperparams(state, learning_rate=lr)

        def body(carry, k):
            p, s = carry
            g = grads_at(p, k.astype(jnp.float32))
            g = jax.tree.map(lambda x: jnp.where(k == nan_at, jnp.nan, x), g)
            u, s = tx.update(g, s, p)
            return (lib.apply_updates(p, u), s), None

        return jax.lax.scan(body, (params, state), jnp.arange(steps))[0]

    return jax.jit(jax.vmap(train))


def test_nested_combinators_under_jit_vmap_and_scan_match_optax():
    """A masked chain inside a partition inside inject_hyperparams inside
    apply_if_finite inside MultiSteps, vmapped over the injected learning rate."""
    lrs = jnp.asarray([0.02, 0.05])
    ours, state = _nested_training(gl)(lrs)
    with OPTAX_PROMOTION:
        ref, ref_state = _nested_training(optax)(lrs)
    assert_trees_close(ours, ref)
    np.testing.assert_allclose(gl.get_hyperparams(state)["learning_rate"], lrs)
    inner = state.inner_opt_state
    assert inner.total_notfinite.tolist() == [1, 1]  # the NaN cycle was skipped
    assert inner.total_notfinite.tolist() == ref_state.inner_opt_state.total_notfinite.tolist()
    assert sorted(gl.get_hyperparams(state)) == ["learning_rate", "weight_decay"]


# ----------------------------------------------------------------- packed

PACKED_MASK = {"dense1": True, "norm": False, "dense2": True}
PACKED_CASES = {
    # inner elementwise: runs on the buffers, the unmasked elements zeroed
    "masked_on_buffers": lambda: gl.masked(
        gl.chain(gl.clip_by_global_norm(0.3), gl.adamw(0.05, weight_decay=0.1)), PACKED_MASK
    ),
    # a per-leaf member (one noise key per leaf it sees): the masked leaves, packed apart
    "masked_per_leaf": lambda: gl.masked(
        gl.chain(gl.add_noise(0.1, 0.5, 0), gl.sgd(0.1)), PACKED_MASK
    ),
    "freeze": lambda: gl.chain(gl.adam(0.05), gl.freeze(PACKED_MASK)),
    "named_chain": lambda: gl.named_chain(
        ("clip", gl.clip_by_global_norm(0.3)), ("adam", gl.adam(0.05))
    ),
    "apply_if_finite": lambda: gl.apply_if_finite(gl.adam(0.05), 1),
    "MultiSteps": lambda: gl.MultiSteps(gl.adam(0.05), 2),
    "lookahead": lambda: gl.lookahead(gl.adam(0.05), 2, 0.5),
    "reduce_on_plateau": lambda: gl.chain(gl.adam(0.05), gl.reduce_on_plateau(0.5, patience=0)),
}


@pytest.mark.parametrize("name", sorted(PACKED_CASES))
def test_packed_gives_the_same_numbers_as_unpacked(name):
    """max_leaf_size 8: the 12-element kernel stays loose, the rest is packed; a
    NaN gradient at step 1 (apply_if_finite gives up at step 2)."""
    params = flax_params()

    def grads(p, k):
        return jax.tree.map(lambda x: x * jnp.nan if k == 1 else x, grads_at(p, k))

    out = {}
    for kind, tx in (
        ("plain", PACKED_CASES[name]()),
        ("packed", gl.packed(PACKED_CASES[name](), max_leaf_size=8)),
    ):
        out[kind] = run(tx, params, steps=3, grads=grads, value=jnp.float32(1.0))  # flat loss
    (plain, plain_state), (packed, packed_state) = out["plain"], out["packed"]
    np.testing.assert_equal(
        [np.isnan(x).any() for x in jax.tree.leaves(plain)],
        [np.isnan(x).any() for x in jax.tree.leaves(packed)],
    )
    assert_trees_close(packed, plain, rtol=1e-6, atol=1e-6)
    if name.startswith("masked"):  # on the buffers (Packed state) or packed apart (PackedState)
        inner = packed_state.inner.inner_state
        on_buffers = any(
            isinstance(x, gl.Packed)
            for x in jax.tree.leaves(inner, is_leaf=lambda x: isinstance(x, gl.Packed))
        )
        assert on_buffers == (name == "masked_on_buffers")
    if name == "lookahead":
        assert_trees_close(gl.lookahead_params(packed_state), gl.lookahead_params(plain_state))


@pytest.mark.parametrize(
    "make, where",
    [
        (lambda t: gl.masked(t, PACKED_MASK), "masked inner"),
        (lambda t: gl.apply_if_finite(t, 2), "apply_if_finite inner"),
        (lambda t: gl.MultiSteps(t, 2), "MultiSteps inner"),
        (lambda t: gl.named_chain(("opt", t)), "opt"),
        (lambda t: gl.partition({"all": t}, "all"), "partition group 'all'"),
        (lambda t: gl.lookahead(t, 2, 0.5), "lookahead fast"),
    ],
)
def test_packed_refuses_optax_members_inside_combinators(make, where):
    with pytest.raises(TypeError, match=f"packed cannot run .*{where}.*gl.elementwise"):
        gl.packed(make(optax.adam(0.1))).init(flax_params())


# ----------------------------------------------------------------- Optax interop


OPTAX_PAIRS = {
    "masked": (lambda t: gl.masked(t, decay_mask), lambda t: optax.masked(t, decay_mask)),
    "apply_if_finite": (lambda t: gl.apply_if_finite(t, 2), lambda t: optax.apply_if_finite(t, 2)),
    "MultiSteps": (
        lambda t: gl.MultiSteps(t, 2),
        lambda t: optax.MultiSteps(t, 2).gradient_transformation(),
    ),
    "named_chain": (
        lambda t: gl.named_chain(("clip", gl.clip(0.5)), ("opt", t)),
        lambda t: optax.named_chain(("clip", optax.clip(0.5)), ("opt", t)),
    ),
    "inject_hyperparams": (
        lambda t: gl.inject_hyperparams(optax.adam)(learning_rate=0.05),
        lambda t: optax.inject_hyperparams(optax.adam)(learning_rate=0.05),
    ),
}


@pytest.mark.parametrize("name", sorted(OPTAX_PAIRS))
def test_optax_members_inside_gradlab_combinators_with_value_passed(name):
    """value= reaches gradlab members and is not passed to Optax's (Optax's rule)."""
    ours_make, ref_make = OPTAX_PAIRS[name]
    params = flax_params()
    with OPTAX_PROMOTION:
        tx, ref_tx = ours_make(optax.adam(0.05)), ref_make(optax.adam(0.05))
        state, ref_state, p, q = tx.init(params), ref_tx.init(params), params, params
        ref_update = jax.jit(ref_tx.update)  # eagerly, Optax's lax.cond compiles at every step
        for k in range(2):
            u, state = tx.update(grads_at(p, np.float32(k)), state, p, value=jnp.float32(1.0))
            v, ref_state = ref_update(grads_at(q, np.float32(k)), ref_state, q)
            p, q = gl.apply_updates(p, u), optax.apply_updates(q, v)
    assert_trees_close(p, q)


def test_gradlab_combinators_inside_optax_chain_with_value_passed():
    params = flax_params()
    members = (
        gl.masked(gl.adamw(0.05, weight_decay=0.1), decay_mask),
        gl.apply_if_finite(gl.clip(1.0), 2),
    )
    with OPTAX_PROMOTION:
        ours = optax.chain(*members)
        state = ours.init(params)
        u, _ = ours.update(grads_at(params, 0.0), state, params, value=jnp.float32(1.0))
    ref = gl.chain(*members)
    v, _ = ref.update(grads_at(params, 0.0), ref.init(params), params, value=jnp.float32(1.0))
    assert_trees_close(u, v)


# ----------------------------------------------------------------- state contract

SHARED = jnp.asarray(0.1)
STATEFUL = {
    "partition": lambda: gl.partition({"a": gl.adam(0.1), "b": gl.sgd(0.1)}, labels_fn_ab),
    "masked": lambda: gl.masked(gl.adam(0.1), decay_mask),
    "named_chain": lambda: gl.named_chain(("a", gl.adam(0.1)), ("b", gl.trace(0.9))),
    "apply_if_finite": lambda: gl.apply_if_finite(gl.adam(0.1), 2),
    "MultiSteps": lambda: gl.MultiSteps(gl.adam(0.1), 2),
    "lookahead": lambda: gl.lookahead(gl.adam(0.1), 2, 0.5),
    "inject_hyperparams": lambda: gl.inject_hyperparams(gl.sgd)(SHARED, momentum=SHARED),
    "reduce_on_plateau": lambda: gl.reduce_on_plateau(),
}


def labels_fn_ab(params):
    return jax.tree.map(lambda x: "a" if x.ndim == 2 else "b", params)


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_state_is_arrays_with_a_buffer_each_so_it_can_be_donated(name):
    """One buffer twice in a state makes a donating jitted step fail."""
    state = STATEFUL[name]().init(flax_params())
    leaves = jax.tree.leaves(state)
    assert all(isinstance(x, jax.Array) for x in leaves)
    pointers = [x.unsafe_buffer_pointer() for x in leaves]
    assert len(set(pointers)) == len(pointers)
    if name == "inject_hyperparams":
        state = gl.set_hyperparams(state, learning_rate=SHARED, momentum=SHARED)
        assert state.hyperparams["learning_rate"].unsafe_buffer_pointer() != (
            state.hyperparams["momentum"].unsafe_buffer_pointer()
        )
