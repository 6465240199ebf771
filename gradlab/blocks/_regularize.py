"""Blocks that use the params: weight decay, gradient noise, non-negativity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import check_int, check_nonnegative, check_scalars, short_structure
from gradlab._core import EmptyState, GradientTransformation


class AddNoiseState(NamedTuple):
    """``count``: int32 steps; ``rng_key``: the PRNG key (uint32 key data)."""

    count: jax.Array
    rng_key: jax.Array


class ZeroNansState(NamedTuple):
    """``found_nan``: per leaf, whether the last update held a NaN (bool scalars)."""

    found_nan: Any


def _need_params(name: str, params: Any) -> None:
    if params is None:
        raise ValueError(f"{name} uses the params: call update(updates, state, params)")


def resolve_mask(mask: Any, params: Any) -> Any:
    """The mask as a tree of bools shaped like ``params`` (callables are applied).

    Leaves may be Python bools (decided when tracing) or boolean arrays. As in
    Optax, the mask may be a *prefix* of the params: ``{"dense": True, "ln":
    False}`` covers every leaf under ``dense`` and ``ln``.
    """
    tree = mask(params) if callable(mask) else mask
    if jax.tree.structure(tree) == jax.tree.structure(params):
        return tree
    try:
        return jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), tree, params)
    except (ValueError, TypeError):
        raise ValueError(
            "mask tree is neither the params tree nor a prefix of it.\n"
            f"  params: {short_structure(params)}\n"
            f"  mask: {short_structure(tree)}"
        ) from None


def add_decayed_weights(
    weight_decay: Any = 0.0, mask: Any | Callable[[Any], Any] = None
) -> GradientTransformation:
    """Decoupled weight decay: ``u <- u + weight_decay * p`` (``optax.add_decayed_weights``).

    ``mask`` (a tree of bools like the params, or ``params -> tree``) limits the
    decay to leaves where it is True — e.g. skip biases and norm scales.
    Followed by ``scale_by_learning_rate`` this is AdamW's
    ``p <- p - lr * wd * p`` (Loshchilov & Hutter 2019).
    """
    check_scalars(weight_decay=weight_decay)
    check_nonnegative("weight_decay", weight_decay)

    def update(updates, state, params=None, **extra):
        _need_params("add_decayed_weights", params)
        layout = extra.get("_packing")  # set by `packed`: params arrive packed
        if mask is None:
            m = jax.tree.map(lambda _: True, params)
        elif layout is None:
            m = resolve_mask(mask, params)
        else:
            m = layout.pack_mask(resolve_mask(mask, layout.unpack(params)))

        def leaf(u, p, on):
            if isinstance(on, bool | np.bool_) and not on:
                return u
            dt = _tree.compute_dtype(u.dtype)
            decayed = u.astype(dt) + _tree.hp(weight_decay, dt) * p.astype(dt)
            if not isinstance(on, bool | np.bool_):
                decayed = jnp.where(on, decayed, u.astype(dt))
            return decayed.astype(u.dtype)

        return _tree.map_like(leaf, updates, params, m, tree_name="params"), state

    return GradientTransformation(lambda params: EmptyState(), update)


def add_noise(eta: Any, gamma: Any, seed: Any) -> GradientTransformation:
    """Annealed Gaussian gradient noise (Neelakantan et al. 2015).

    ``u <- u + N(0, eta / (1 + t)**gamma)`` at 0-based step ``t``
    (``optax.add_noise``). ``eta >= 0``, ``gamma >= 0``; ``seed`` an int.
    """
    check_scalars(eta=eta, gamma=gamma)
    check_nonnegative("eta", eta)
    check_nonnegative("gamma", gamma)
    check_int("seed", seed)

    def init(params):
        return AddNoiseState(_tree.step_counter(), jax.random.key_data(jax.random.key(seed)))

    def update(updates, state, params=None, **extra):
        updates = _tree.as_updates(updates)
        # Under `packed` the leaves are buffers: draw the noise per *param*
        # leaf anyway (same keys, same numbers as unpacked), then pack it.
        layout = extra.get("_packing")
        if layout is None:
            leaves = jax.tree.leaves(updates)
            shapes, dtypes = [u.shape for u in leaves], [u.dtype for u in leaves]
        else:
            shapes, dtypes = layout.shapes, layout.dtypes
        key, *keys = jax.random.split(jax.random.wrap_key_data(state.rng_key), len(shapes) + 1)
        noise = [
            jax.random.normal(k, s, _tree.compute_dtype(d))
            for k, s, d in zip(keys, shapes, dtypes, strict=True)
        ]
        if layout is not None:
            noise = layout.pack(layout.treedef.unflatten(noise))
        else:
            noise = jax.tree.structure(updates).unflatten(noise)
        t = state.count.astype(jnp.float32)
        std = jnp.sqrt(jnp.asarray(eta, jnp.float32) / (1 + t) ** jnp.asarray(gamma, jnp.float32))

        def noisy(u, z):
            dt = _tree.compute_dtype(u.dtype)
            return (u.astype(dt) + std.astype(dt) * z).astype(u.dtype)

        out = jax.tree.map(noisy, updates, noise)
        new_state = AddNoiseState(_tree.safe_increment(state.count), jax.random.key_data(key))
        return out, new_state

    return GradientTransformation(init, update)


def keep_params_nonnegative() -> GradientTransformation:
    """Clip updates so that ``p + u >= 0``: ``u <- where(p + u < 0, -p, u)``.

    ``optax.keep_params_nonnegative``; params must start non-negative.
    """

    def update(updates, state, params=None, **extra):
        _need_params("keep_params_nonnegative", params)

        def leaf(u, p):
            return jnp.where(p + u.astype(p.dtype) < 0, -p.astype(u.dtype), u)

        return _tree.map_like(leaf, updates, params, tree_name="params"), state

    return GradientTransformation(lambda params: EmptyState(), update)
