"""inject_hyperparams, get_hyperparams, set_hyperparams (API.md §4).

Injected runs are compared with plain runs bit for bit (the contract is
bit-identity, so the plain run is the reference), set values with the
hand-computed SGD step, vmapped runs with Optax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from combinator_helpers import (
    OPTAX_PROMOTION,
    assert_trees_close,
    assert_trees_equal,
    decay_mask,
    flax_params,
    grads_at,
    labels_fn,
    run,
)

import gradlab as gl

SCHEDULE = gl.schedules.warmup_cosine_decay(0.0, 0.05, 3, 20)

# (factory, hyperparameters, static_args)
INJECTED = {
    "sgd_nesterov_array_lr": (
        gl.sgd,
        {"learning_rate": jnp.asarray(0.05), "momentum": 0.9, "nesterov": True},
        (),
    ),
    "adam_schedule_b1": (gl.adam, {"learning_rate": SCHEDULE, "b1": 0.85}, ()),
    "adamw_mask": (
        gl.adamw,
        {"learning_rate": 0.01, "weight_decay": 0.1, "mask": decay_mask},
        ("mask",),
    ),
}


def _scanned(txs, params, steps=12):
    """Each transformation's trajectory, in one compiled scan."""

    @jax.jit
    def all_runs(params):
        out = []
        for tx in txs:

            def body(carry, k, tx=tx):
                p, s = carry
                u, s = tx.update(grads_at(p, k.astype(jnp.float32)), s, p)
                p = gl.apply_updates(p, u)
                return (p, s), p

            out.append(jax.lax.scan(body, (params, tx.init(params)), jnp.arange(steps))[1])
        return out

    return all_runs(params)


@pytest.mark.parametrize("name", sorted(INJECTED))
def test_injected_trajectory_is_bit_identical_to_the_plain_one(name):
    """In float32 and bfloat16 params (a float32 learning rate either way), jitted."""
    factory, hps, static = INJECTED[name]
    txs = (factory(**hps), gl.inject_hyperparams(factory, static_args=static)(**hps))
    params = (flax_params(jnp.float32), flax_params(jnp.bfloat16))
    plain, injected = _scanned(txs, params)
    assert_trees_equal(injected, plain)


def test_injected_trajectory_is_bit_identical_in_float64(x64):
    """float64 params: hyperparameters stored in float64, the dtype they compute in."""
    factory, hps, _ = INJECTED["adam_schedule_b1"]
    tx = gl.inject_hyperparams(factory)(**hps)
    plain, injected = _scanned((factory(**hps), tx), flax_params(jnp.float64), steps=4)
    assert_trees_equal(injected, plain)
    assert tx.init(flax_params(jnp.float64)).hyperparams["learning_rate"].dtype == jnp.float64


def test_injected_step_is_bit_identical_eagerly():
    params = {"w": jnp.asarray([0.5, -1.5, 2.0])}
    factory, hps, _ = INJECTED["adam_schedule_b1"]
    plain, _ = run(factory(**hps), params, steps=3)
    injected, _ = run(gl.inject_hyperparams(factory)(**hps), params, steps=3)
    assert_trees_equal(injected, plain)


def test_a_zero_weight_decay_gives_the_injected_bits_where_a_param_is_inf():
    # A known 0 must compute u + 0 * p as the injected (traced) 0 does: skipping
    # it gave -0.1 against the injected NaN, and the sign of a -0.0 update.
    params, grads = jnp.asarray([1.0, 2.0, jnp.inf]), jnp.asarray([-0.0, 0.5, 0.5])
    plain = gl.adamw(0.1, weight_decay=0.0)
    injected = gl.inject_hyperparams(gl.adamw)(learning_rate=0.1, weight_decay=0.0)
    a, _ = jax.jit(plain.update)(grads, plain.init(params), params)
    b, _ = jax.jit(injected.update)(grads, injected.init(params), params)
    np.testing.assert_array_equal(np.asarray(a).view(np.int32), np.asarray(b).view(np.int32))


def test_hyperparameters_are_stored_as_float32_for_bfloat16_params():
    state = gl.inject_hyperparams(gl.adam)(learning_rate=1e-3).init(flax_params(jnp.bfloat16))
    assert {v.dtype for v in state.hyperparams.values()} == {jnp.dtype(jnp.float32)}
    assert float(state.hyperparams["learning_rate"]) == np.float32(1e-3)  # not bfloat16's 0.000999


def test_a_value_set_by_hand_is_stored_as_init_stores_it_and_a_scheduled_one_ignored():
    # Optax's documented ways: ``state.hyperparams[k] = 0.05`` and ``tree_set``.
    params = {"w": jnp.ones(2)}
    tx = gl.inject_hyperparams(gl.sgd)(learning_rate=0.1, momentum=gl.schedules.constant(0.5))
    state = tx.init(params)
    state.hyperparams["learning_rate"] = 0.05  # a Python float
    state.hyperparams["momentum"] = 0.9  # scheduled: the schedule wins, as in Optax
    out, state = tx.update({"w": jnp.ones(2)}, state, params)
    np.testing.assert_allclose(out["w"], -0.05, rtol=1e-6)
    for v in state.hyperparams.values():
        assert isinstance(v, jax.Array) and v.dtype == jnp.float32 and not v.weak_type
    assert float(state.hyperparams["momentum"]) == 0.5
    state = optax.tree_utils.tree_set(state, learning_rate=jnp.asarray(0.02))  # weak-typed
    _, state = jax.jit(tx.update)({"w": jnp.ones(2)}, state, params)
    lr = state.hyperparams["learning_rate"]
    assert lr.dtype == jnp.float32 and not lr.weak_type and float(lr) == np.float32(0.02)


def test_an_integer_set_by_hand_keeps_the_hyperparameters_kind():
    """``state.hyperparams["learning_rate"] = 1`` (a Python or NumPy int) was stored
    int32, and ``set_hyperparams`` float32 (hunt46): a jitted step compiled again and
    a scan carry changed type. A number set by hand takes the dtype init stored the
    hyperparameter in; an integer hyperparameter stays int32."""
    params = {"w": jnp.ones(2)}
    tx = gl.inject_hyperparams(gl.sgd)(learning_rate=0.1)
    step = jax.jit(tx.update)
    state = tx.init(params)
    _, state = step({"w": jnp.ones(2)}, state, params)
    for hand in (1, np.int64(2), jnp.int32(3)):
        state.hyperparams["learning_rate"] = hand
        out, state = step({"w": jnp.ones(2)}, state, params)
        np.testing.assert_array_equal(out["w"], np.full(2, -float(hand), np.float32))
        lr = state.hyperparams["learning_rate"]
        assert lr.dtype == jnp.float32 and not lr.weak_type  # the first step's types
    multi = gl.inject_hyperparams(gl.MultiSteps)(gl.sgd(0.1), every_k_schedule=2)
    state = multi.init(params)
    state.hyperparams["every_k_schedule"] = 3
    _, state = multi.update({"w": jnp.ones(2)}, state, params)
    assert state.hyperparams["every_k_schedule"].dtype == jnp.int32


def test_hyperparams_held_in_another_mapping_still_work():
    """A state whose ``hyperparams`` is a read-only Mapping (a Flax FrozenDict, a
    MappingProxy after a tree utility) was refused by the injected-names check as
    "lacks [...]; the injected ones are [...]" -- the same names (review8)."""
    import types as pytypes

    params = {"w": jnp.ones(2)}
    tx = gl.inject_hyperparams(gl.sgd)(learning_rate=0.1)
    state = tx.init(params)
    state = state._replace(hyperparams=pytypes.MappingProxyType(dict(state.hyperparams)))
    out, _ = tx.update({"w": jnp.ones(2)}, state, params)
    np.testing.assert_allclose(out["w"], -0.1, rtol=1e-6)


def test_untouched_hyperparameters_keep_their_dtype_whatever_the_gradients(x64):
    # float64 params, float32 gradients and no params to update: nothing flips
    params = {"w": jnp.ones(2, jnp.float64)}
    tx = gl.inject_hyperparams(gl.adam)(learning_rate=gl.schedules.constant(0.1), b1=0.9)
    state = tx.init(params)
    _, new = jax.jit(tx.update)({"w": jnp.ones(2, jnp.float32)}, state)
    assert jax.tree.map(lambda v: v.dtype, new.hyperparams) == jax.tree.map(
        lambda v: v.dtype, state.hyperparams
    )
    assert {v.dtype for v in new.hyperparams.values()} == {jnp.dtype(jnp.float64)}


def test_schedules_are_evaluated_at_the_step_and_the_value_stored(run_mode):
    tx = gl.inject_hyperparams(gl.sgd)(learning_rate=lambda k: 0.5 ** k.astype(jnp.float32))
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    seen = [float(gl.get_hyperparams(state)["learning_rate"])]
    update = run_mode(tx.update)
    for _ in range(3):
        _, state = update({"w": jnp.ones(2)}, state, params)
        seen.append(float(gl.get_hyperparams(state)["learning_rate"]))
    # at init: the first step's value; after step k: the value step k used
    assert seen == [1.0, 1.0, 0.5, 0.25]


def test_set_hyperparams_takes_effect_at_the_next_step_without_recompiling():
    tx = gl.inject_hyperparams(gl.sgd)(learning_rate=0.1)
    traces = []

    @jax.jit
    def step(p, s):
        traces.append(None)  # runs only when tracing
        u, s = tx.update({"w": 2 * p["w"]}, s, p)
        return gl.apply_updates(p, u), s

    params = {"w": jnp.asarray([1.0, -2.0])}
    state, expected = tx.init(params), np.asarray([1.0, -2.0], np.float32)
    for lr in [0.1, 0.1, 0.01, 0.01, 0.3]:
        state = gl.set_hyperparams(state, learning_rate=lr)
        params, state = step(params, state)
        expected = expected - np.float32(lr) * 2 * expected
        np.testing.assert_allclose(params["w"], expected, rtol=1e-6)
        assert float(gl.get_hyperparams(state)["learning_rate"]) == np.float32(lr)
    assert len(traces) == 1


def test_vmap_over_injected_hyperparameters_matches_separate_optax_runs():
    tx = gl.inject_hyperparams(gl.adam)(learning_rate=1e-3, b1=0.9)
    params = flax_params()
    lrs, b1s = jnp.asarray([0.01, 0.03, 0.1]), jnp.asarray([0.8, 0.9, 0.95])

    def train(lr, b1):
        state = gl.set_hyperparams(tx.init(params), learning_rate=lr, b1=b1)

        def body(carry, k):
            p, s = carry
            u, s = tx.update(grads_at(p, k.astype(jnp.float32)), s, p)
            return (gl.apply_updates(p, u), s), None

        return jax.lax.scan(body, (params, state), jnp.arange(5))[0][0]

    ours = jax.jit(jax.vmap(train))(lrs, b1s)
    with OPTAX_PROMOTION:
        for i in range(3):
            ref, _ = run(
                optax.adam(float(lrs[i]), b1=float(b1s[i])),
                params,
                steps=5,
                apply=optax.apply_updates,
            )
            assert_trees_close(jax.tree.map(lambda x, i=i: x[i], ours), ref[-1])


def _nested(head_lr=0.1, body_lr=0.01):
    """inject_hyperparams at two places, under partition, masked, named_chain,
    apply_if_finite, MultiSteps and packed."""
    groups = {
        "kernel": gl.inject_hyperparams(gl.adam)(learning_rate=head_lr),
        "bias": gl.masked(gl.inject_hyperparams(gl.sgd)(learning_rate=body_lr), True),
        "norm": gl.sgd(0.01),
    }
    inner = gl.named_chain(
        ("clip", gl.clip_by_global_norm(1.0)), ("opt", gl.partition(groups, labels_fn))
    )
    return gl.packed(gl.MultiSteps(gl.apply_if_finite(inner, 3), 2), max_leaf_size=8)


def test_get_and_set_hyperparams_anywhere_in_a_nested_state():
    params = flax_params()
    tx = _nested()
    state = tx.init(params)
    found = gl.get_hyperparams(state)
    assert sorted(found) == [
        "b1",
        "b2",
        "bias/learning_rate",
        "eps",
        "eps_root",
        "kernel/learning_rate",
    ]
    assert float(found["kernel/learning_rate"]) == np.float32(0.1)
    new = gl.set_hyperparams(state, **{"bias/learning_rate": 0.5, "b1": 0.7})
    found = gl.get_hyperparams(new)
    assert float(found["bias/learning_rate"]) == 0.5 and float(found["b1"]) == np.float32(0.7)
    assert float(found["kernel/learning_rate"]) == np.float32(0.1)
    # running from the set state equals building with that value
    ref, _ = run(_nested(body_lr=0.5), params, steps=4)
    state, p, step = (
        gl.set_hyperparams(state, **{"bias/learning_rate": 0.5}),
        params,
        jax.jit(tx.update),
    )
    for k in range(4):
        u, state = step(grads_at(p, jnp.float32(k)), state, p)
        p = gl.apply_updates(p, u)
    assert_trees_close(p, ref[-1])


def test_chain_positions_qualify_names_that_dict_keys_do_not_tell_apart():
    tx = gl.chain(gl.inject_hyperparams(gl.sgd)(0.1), gl.inject_hyperparams(gl.sgd)(0.2))
    assert sorted(gl.get_hyperparams(tx.init({"w": jnp.ones(2)}))) == [
        "0/learning_rate",
        "1/learning_rate",
    ]


def test_optax_injected_state_inside_a_gradlab_chain_is_found_and_set():
    """optax.tree.get(state, "learning_rate") raises "Found multiple values" here."""
    params = {"w": jnp.ones(2)}
    with OPTAX_PROMOTION:
        tx = gl.chain(
            gl.clip(1.0),
            optax.inject_hyperparams(optax.sgd)(learning_rate=optax.linear_schedule(0.1, 0.0, 10)),
        )
        state = tx.init(params)
        assert float(gl.get_hyperparams(state)["learning_rate"]) == np.float32(0.1)
        _, state = tx.update({"w": jnp.ones(2)}, state, params)
        state = gl.set_hyperparams(state, learning_rate=0.5)
    assert float(gl.get_hyperparams(state)["learning_rate"]) == 0.5


def test_unknown_or_ambiguous_names_raise_key_error_listing_the_names():
    state = gl.partition(
        {"a": gl.inject_hyperparams(gl.sgd)(0.1), "b": gl.inject_hyperparams(gl.sgd)(0.2)},
        {"w": "a", "v": "b"},
    ).init({"w": jnp.ones(2), "v": jnp.ones(2)})
    with pytest.raises(
        KeyError, match=r"'learning_rate' is ambiguous.*'a/learning_rate', 'b/learning_rate'"
    ):
        gl.set_hyperparams(state, learning_rate=0.1)
    with pytest.raises(
        KeyError, match=r"no injected hyperparameter 'lr'; available: 'a/learning_rate'"
    ):
        gl.set_hyperparams(state, lr=0.1)
    with pytest.raises(KeyError, match="none: no injected hyperparameters"):
        gl.set_hyperparams(gl.sgd(0.1).init({"w": jnp.ones(2)}), learning_rate=0.1)


def test_set_hyperparams_refuses_floats_for_integers_and_wrong_shapes():
    state = gl.inject_hyperparams(gl.lookahead, static_args=("fast",))(gl.sgd(0.1), 2, 0.5).init(
        {"w": jnp.ones(2)}
    )
    assert state.hyperparams["sync_period"].dtype == jnp.int32
    with pytest.raises(TypeError, match="'sync_period' is stored as int32"):
        gl.set_hyperparams(state, sync_period=2.5)
    with pytest.raises(ValueError, match=r"'slow_step_size' has shape \(\), got shape \(2,\)"):
        gl.set_hyperparams(state, slow_step_size=jnp.ones(2))


def test_inject_hyperparams_validates_at_construction():
    with pytest.raises(ValueError, match="learning_rate must be >= 0, got -1"):
        gl.inject_hyperparams(gl.adam)(learning_rate=-1.0)
    with pytest.raises(ValueError, match=r"static_args \['masks'\] are not parameters of adamw"):
        gl.inject_hyperparams(gl.adamw, static_args="masks")


def test_injected_under_packed_equals_plain():
    params = flax_params()
    make = lambda: gl.inject_hyperparams(gl.adamw, static_args="mask")(  # noqa: E731
        learning_rate=SCHEDULE, weight_decay=0.1, mask=decay_mask
    )
    plain, _ = run(make(), params)
    fast, state = run(gl.packed(make(), max_leaf_size=8), params)
    assert_trees_close(fast, plain, rtol=1e-6, atol=1e-7)
    assert "learning_rate" in gl.get_hyperparams(state)


def test_a_mask_callable_is_static_and_a_callable_that_is_no_schedule_is_refused():
    # Optax evaluates a callable mask at the step count: this mask then reads a
    # 0-d count, says False for every leaf, and weight decay silently stops.
    params = {"b": jnp.ones(2), "w": jnp.full((2, 2), 2.0)}
    matrices = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
    injected = gl.inject_hyperparams(gl.adamw)(0.1, weight_decay=0.5, mask=matrices)
    plain = gl.adamw(0.1, weight_decay=0.5, mask=matrices)
    got, _ = injected.update(params, injected.init(params), params)
    want, _ = plain.update(params, plain.init(params), params)
    np.testing.assert_array_equal(got["w"], want["w"])
    np.testing.assert_array_equal(got["b"], want["b"])
    assert float(got["w"][0, 0]) == pytest.approx(-0.1 - 0.1 * 0.5 * 2.0)  # decayed
    assert "mask" not in injected.init(params).hyperparams
    # A callable whose value at step 0 is not a number is named, with the way out.
    with pytest.raises(
        TypeError, match=r"learning_rate schedule must return a real .*bool.*static_args"
    ):
        gl.inject_hyperparams(gl.sgd)(lambda count: count > 3)
    with pytest.raises(TypeError, match=r"momentum schedule must return a real .*\{'a': 0.9\}"):
        gl.inject_hyperparams(gl.sgd)(0.1, momentum=lambda count: {"a": 0.9})


@pytest.mark.parametrize(
    ("factory", "kwargs", "fixed"),
    [
        (gl.adafactor, {"learning_rate": 0.01, "min_dim_size_to_factor": 2}, "min_dim_size_to_factor"),  # noqa: E501
        (gl.muon, {"learning_rate": 1e-2, "ns_steps": 3}, "ns_steps"),
        (gl.lbfgs, {"learning_rate": 0.5, "linesearch": None}, "memory_size"),
    ],
    ids=["adafactor", "muon", "lbfgs"],
)  # fmt: skip
def test_structural_integers_stay_static_and_the_injected_run_equals_the_plain_one(
    factory, kwargs, fixed
):
    # A state's shape or a loop's length cannot be traced: these ints were
    # injected as arrays and the first (jitted) update failed.
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.ones(4)}
    runs = []
    for tx in (gl.inject_hyperparams(factory)(**kwargs), factory(**kwargs)):
        p, state, step = params, tx.init(params), jax.jit(tx.update)
        for _ in range(3):
            updates, state = step(p, state, p)
            p = gl.apply_updates(p, updates)
        runs.append(p)
    assert fixed not in gl.inject_hyperparams(factory)(**kwargs).init(params).hyperparams
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # jit folds constants


@pytest.mark.parametrize("make", [gl.schedule_free_sgd, gl.schedule_free_adamw])
def test_schedule_free_b1_set_between_steps_is_the_b1_the_step_uses(make):
    # b1 is also kept in the state (for schedule_free_eval_params); the update
    # read that copy, so an injected b1 changed with set_hyperparams did nothing.
    params = jnp.asarray([1.0, -2.0, 0.5])
    grad = lambda p: p * jnp.asarray([1.0, 3.0, 0.5]) - 0.2  # noqa: E731
    runs = {}
    for name, tx in {
        "injected": gl.inject_hyperparams(make)(learning_rate=0.1),
        "fresh": make(0.1, b1=0.5),
    }.items():
        p, s = params, tx.init(params)
        if name == "injected":
            s = gl.set_hyperparams(s, b1=0.5)
        for _ in range(3):
            u, s = tx.update(grad(p), s, p)
            p = gl.apply_updates(p, u)
        runs[name] = (p, gl.schedule_free_eval_params(s, p))
    for a, b in zip(runs["injected"], runs["fresh"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    default = gl.schedule_free_sgd(0.1) if make is gl.schedule_free_sgd else make(0.1)
    p, s = params, default.init(params)
    for _ in range(3):
        u, s = default.update(grad(p), s, p)
        p = gl.apply_updates(p, u)
    assert not np.allclose(p, runs["fresh"][0])  # b1 matters on this run


def test_names_qualified_at_a_level_deeper_than_a_path_keep_that_paths_own_names():
    """review20: a path with fewer names than the level was cut from the wrong end
    (``named[-1:]``), so ``a/b/learning_rate`` came out ``b/learning_rate``."""

    def injected():
        return gl.inject_hyperparams(gl.sgd)(learning_rate=0.1)

    tx = gl.named_chain(
        ("x", gl.named_chain(("a", gl.named_chain(("b", injected()))))),
        ("a", gl.named_chain(("b", injected()))),
    )
    state = tx.init(jnp.ones(2))
    assert sorted(gl.get_hyperparams(state)) == ["a/b/learning_rate", "x/a/b/learning_rate"]
    state = gl.set_hyperparams(state, **{"a/b/learning_rate": 0.5})
    assert float(gl.get_hyperparams(state)["a/b/learning_rate"]) == 0.5
    assert float(gl.get_hyperparams(state)["x/a/b/learning_rate"]) == np.float32(0.1)
    with pytest.raises(KeyError, match="'b/learning_rate' is ambiguous"):
        gl.set_hyperparams(state, **{"b/learning_rate": 0.5})


def test_a_name_in_several_places_is_never_left_bare():
    """A global weight decay in a chain next to a partition's two: the chain member
    (no name on its way) kept the bare key, so set_hyperparams(weight_decay=...)
    changed one of three without a KeyError (hunt81). API.md: an ambiguous name
    raises KeyError; here chain positions tell the three apart."""
    injected = gl.inject_hyperparams
    params = {"enc": jnp.ones(2), "head": jnp.ones(2)}
    tx = gl.chain(
        injected(gl.add_decayed_weights)(weight_decay=1e-4),
        gl.partition(
            {
                "enc": injected(gl.adamw)(learning_rate=1e-3, weight_decay=1e-2),
                "head": injected(gl.adamw)(learning_rate=1e-2, weight_decay=5e-2),
            },
            {"enc": "enc", "head": "head"},
        ),
    )
    state = tx.init(params)
    found = gl.get_hyperparams(state)
    decays = sorted(k for k in found if k.endswith("weight_decay"))
    assert decays == ["0/weight_decay", "1/enc/weight_decay", "1/head/weight_decay"]
    assert "enc/learning_rate" in found  # unique by its label: one level is enough
    with pytest.raises(KeyError, match="'weight_decay' is ambiguous"):
        gl.set_hyperparams(state, weight_decay=0.0)
    state = gl.set_hyperparams(state, **{"0/weight_decay": 0.0})
    found = gl.get_hyperparams(state)
    assert [float(found[k]) for k in decays] == [0.0, np.float32(1e-2), np.float32(5e-2)]
    # the outermost injection (an empty path) keeps the bare name: nothing can
    # qualify it, and the inner one keeps its chain position (review22)
    outer = injected(
        lambda learning_rate: gl.chain(injected(gl.sgd)(learning_rate=0.1), gl.scale(learning_rate))
    )(learning_rate=0.5)
    state = gl.set_hyperparams(outer.init(jnp.ones(2)), **{"0/learning_rate": 9.0})
    assert {k: float(v) for k, v in gl.get_hyperparams(state).items()} == {
        "0/learning_rate": 9.0,
        "learning_rate": 0.5,
    }


def test_integer_hyperparameters_keep_their_dtype_through_updates():
    """review20: an integer schedule came out of init int32 and out of update
    float32 (a scan carry changed type); a float set by hand for an integer
    hyperparameter was stored float32 where set_hyperparams refuses it."""
    tx = gl.inject_hyperparams(gl.MultiSteps)(gl.sgd(0.1), every_k_schedule=lambda step: 2)
    params = jnp.ones(2)
    state = tx.init(params)
    assert state.hyperparams["every_k_schedule"].dtype == jnp.int32

    def body(state, _):
        return tx.update(params, state, params)[1], None

    state, _ = jax.lax.scan(body, state, length=3)  # raised: carry types differ
    assert state.hyperparams["every_k_schedule"].dtype == jnp.int32

    plateau = gl.inject_hyperparams(gl.reduce_on_plateau)(patience=5)
    state = plateau.init(params)
    state.hyperparams["patience"] = 3.0
    with pytest.raises(TypeError, match="'patience' is stored as int32"):
        plateau.update(params, state, params, value=1.0)


def test_a_legacy_prng_key_stays_a_uint32_key_as_in_optax():
    """hunt75: jax.random.PRNGKey's uint32 words were stored int32 (and words >= 2**31
    wrapped), so the injected factory got an invalid key."""

    def noise(key, scale):
        def update(updates, state, params=None):
            k1, k2 = jax.random.split(state["key"])
            return jax.tree.map(lambda u: scale * jax.random.normal(k1, u.shape), updates), {
                "key": k2
            }

        return gl.GradientTransformation(lambda params: {"key": key}, update)

    key = jax.random.PRNGKey(2**32 - 5)
    with OPTAX_PROMOTION:
        ref_state = optax.inject_hyperparams(noise)(key=key, scale=1e-3).init(jnp.zeros(2))
        ref, _ = optax.inject_hyperparams(noise)(key=key, scale=1e-3).update(
            jnp.zeros(2), ref_state
        )
    tx = gl.inject_hyperparams(noise)(key=key, scale=1e-3)
    state = tx.init(jnp.zeros(2))
    assert state.hyperparams["key"].dtype == jnp.uint32
    np.testing.assert_array_equal(state.hyperparams["key"], key)
    out, state = jax.jit(tx.update)(jnp.zeros(2), state)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    assert state.hyperparams["key"].dtype == jnp.uint32


def test_integer_learning_rates_under_strict_promotion():
    """An int32 learning rate (a sweep turns a grid of whole numbers into int32)
    met the sign's Python float in "strict" promotion (hunt81). Reference: plain
    SGD in NumPy, p <- p - lr * g on f(p) = p^2 / 2 (g = p), so p_k = (1 - lr)^k p_0."""
    p0 = jnp.full((2,), 0.25, jnp.float32)
    for make in (
        lambda: gl.sgd(jnp.int32(2)),
        lambda: gl.sgd(np.int32(2)),
        lambda: gl.inject_hyperparams(gl.sgd)(learning_rate=2),
        lambda: gl.sgd(lambda step: jnp.int32(2)),
    ):
        tx = make()
        p, state = p0, tx.init(p0)
        for _ in range(3):
            u, state = tx.update(p, state, p)
            p = gl.apply_updates(p, u)
        np.testing.assert_allclose(p, 0.25 * (1 - 2) ** 3, rtol=1e-6)
    # and adam's first step is -lr * sign(g) (m_hat / sqrt(v_hat) = g / |g|)
    u, _ = gl.adam(jnp.int32(1)).update(p0, gl.adam(jnp.int32(1)).init(p0), p0)
    np.testing.assert_allclose(u, -1.0, rtol=1e-6)
    result = gl.sweep(
        gl.sgd,
        lambda p, b: 0.5 * jnp.sum(p**2),
        p0,
        jnp.zeros((3, 1), jnp.float32),
        {"learning_rate": [1, 2]},
        num_steps=3,
    )
    for p, lr in zip(result.params, (1, 2), strict=True):
        np.testing.assert_allclose(p, 0.25 * (1 - lr) ** 3, rtol=1e-6)
