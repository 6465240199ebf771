"""Shared pieces of the combinator tests: a small Flax-style params dict,
a deterministic gradient, a step runner and tree assertions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

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
    """A deterministic, step-dependent gradient in the params' dtypes (computed in
    float32, or float64 for float64 params)."""

    def leaf(p):
        x = p.astype(jnp.float64 if p.dtype == jnp.float64 else jnp.float32)
        k = jnp.asarray(step).astype(x.dtype)
        return (jnp.sin(x * (k + 1) + 0.3) + 0.1 * x).astype(p.dtype)

    return jax.tree.map(leaf, params)


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


def assert_trees_close(actual, desired, rtol=1e-5, atol=1e-5):
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
