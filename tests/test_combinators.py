"""Combinators (API.md §4) against Optax, torch and NumPy references.

Every test runs a few steps on a small Flax-style parameter dict (kernels,
biases, a norm scale) with gradients that depend on the params and the step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradlab as gl

STEPS = 6
# Optax is not strict-promotion clean: its runs use JAX's standard rules.
OPTAX_PROMOTION = jax.numpy_dtype_promotion("standard")


def flax_params(dtype=jnp.float32):
    """A small Flax-style parameter dict: two dense layers and a layer norm."""
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "dense1": {"kernel": jax.random.normal(k1, (3, 4), dtype), "bias": jnp.zeros(4, dtype)},
        "norm": {"scale": jnp.ones(4, dtype), "bias": jnp.full(4, 0.1, dtype)},
        "dense2": {"kernel": jax.random.normal(k2, (4, 2), dtype), "bias": jnp.zeros(2, dtype)},
    }


def grads_at(params, step):
    """A deterministic, step-dependent gradient in the params' dtypes."""
    return jax.tree.map(
        lambda p: (jnp.sin(p * (step + 1.0) + 0.3) + 0.1 * p).astype(p.dtype), params
    )


def run(tx, params, steps=STEPS, wrap=jax.jit, apply=gl.apply_updates, grads=grads_at, **extra):
    """Params after each of ``steps`` steps (a list), the step function wrapped by ``wrap``."""

    def step(p, s, k):
        u, s = tx.update(grads(p, k), s, p, **extra)
        return apply(p, u), s

    step = wrap(step)
    state, out = tx.init(params), []
    for k in range(steps):
        params, state = step(params, state, jnp.float32(k))
        out.append(params)
    return out, state


def assert_trees_close(actual, desired, rtol=1e-5, atol=1e-6):
    for a, d in zip(jax.tree.leaves(actual), jax.tree.leaves(desired), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(d), rtol=rtol, atol=atol)


def assert_trees_equal(actual, desired):
    assert jax.tree.structure(actual) == jax.tree.structure(desired)
    for a, d in zip(jax.tree.leaves(actual), jax.tree.leaves(desired), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(d))


def kind_of(path, _):
    """Flax-style labels: "bias" for biases, "norm" for norm scales, else "kernel"."""
    name = path[-1].key
    return "bias" if name == "bias" else "norm" if name == "scale" else "kernel"


def labels_fn(params):
    return jax.tree_util.tree_map_with_path(kind_of, params)


def decay_mask(params):
    """Flax-style weight-decay mask: kernels only (no biases, no norm scales)."""
    return jax.tree.map(lambda label: label == "kernel", labels_fn(params))


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
