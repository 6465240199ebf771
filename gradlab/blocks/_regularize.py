"""Blocks that use the params: weight decay, gradient noise, non-negativity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _masks, _tree
from gradlab._checks import (
    check_nonnegative,
    check_params,
    check_scalars,
    check_schedule,
    check_schedule_value,
    check_seed,
    check_state,
    is_traced,
)
from gradlab._core import ELEMENTWISE, PER_LEAF, GradientTransformation, stateless


class AddNoiseState(NamedTuple):
    """``count``: int32 steps; ``rng_key``: the PRNG key (uint32 key data)."""

    count: jax.Array
    rng_key: jax.Array


class WeightDecayScheduleState(NamedTuple):
    """``count``: int32 steps, for a weight decay given as a schedule."""

    count: jax.Array


class ZeroNansState(NamedTuple):
    """``found_nan``: per leaf, whether the last update held a NaN (bool scalars)."""

    found_nan: Any


def add_decayed_weights(
    weight_decay: Any = 0.0, mask: Any | Callable[[Any], Any] = None
) -> GradientTransformation:
    """Weight decay: ``u <- u + weight_decay * p`` (``optax.add_decayed_weights``).

    ``mask`` (a tree of bools like the params or a prefix of it, or
    ``params -> tree``; leaves may be boolean arrays of the param's shape,
    elementwise; any other shape is a ``ValueError``, not a broadcast) limits the
    decay to where it is True — e.g. skip biases and norm scales.
    Followed by ``scale_by_learning_rate`` this is AdamW's decoupled
    ``p <- p - lr * wd * p`` (Loshchilov & Hutter 2019); placed first, before
    an optimizer's scaling, it is torch's coupled ``weight_decay`` (L2:
    ``g + wd * p``), e.g. ``chain(add_decayed_weights(wd), sgd(lr, 0.9))``. With a weight decay
    known to be 0 (not traced) it runs without params, as the updates pass
    unchanged (so ``adadelta()`` does too); otherwise it needs them. Given
    params, it computes ``u + 0 * p`` even then (2 flops per param, which
    XLA cannot fold: ``0 * inf`` is NaN), so that a run with the decay
    injected (a traced 0) gives the same bits.

    ``weight_decay`` may be a schedule ``step -> value`` (as Optax's): the
    state then counts steps (``WeightDecayScheduleState``) and step ``k`` uses
    ``weight_decay(k)``.
    """
    _masks.check_spec("mask", mask)
    if callable(weight_decay):
        return _scheduled_decay(weight_decay, mask)
    check_scalars(weight_decay=weight_decay)
    check_nonnegative("weight_decay", weight_decay)
    no_decay = not is_traced(weight_decay) and not np.any(np.asarray(weight_decay))

    def update(updates, state, params=None, **extra):
        if params is None and no_decay:
            return _tree.as_updates(updates), state
        return _decayed(updates, params, weight_decay, mask), state

    if mask is None:
        return stateless(update, packing=ELEMENTWISE)
    # Packed, the mask is resolved against the real params tree and packed
    # like them; then the block is elementwise on the buffers.
    return stateless(update, packing=lambda ctx: add_decayed_weights(weight_decay, ctx.mask(mask)))


def _decayed(updates: Any, params: Any, weight_decay: Any, mask: Any) -> Any:
    """``u + weight_decay * p`` where ``mask`` (resolved against ``params``) is True."""
    check_params("add_decayed_weights", params)

    def decay_leaf(u, p):
        dt = _tree.compute_dtype(u.dtype)
        return (u.astype(dt) + _tree.hp(weight_decay, dt) * p.astype(dt)).astype(u.dtype)

    decayed = _tree.map_like(decay_leaf, updates, params, tree_name="params")
    return _masks.select_tree(mask, params, decayed, _tree.as_updates(updates))


def _scheduled_decay(schedule: Callable[[Any], Any], mask: Any) -> GradientTransformation:
    """:func:`add_decayed_weights` with ``weight_decay(count)`` at each step."""
    check_schedule("weight_decay", schedule)

    def init(params):
        return WeightDecayScheduleState(_tree.step_counter(params))

    def update(updates, state, params=None, **extra):
        check_state("add_decayed_weights", state, WeightDecayScheduleState)
        value = schedule(state.count)
        check_schedule_value("weight_decay", value)
        new_state = WeightDecayScheduleState(_tree.safe_increment(state.count))
        return _decayed(updates, params, value, mask), new_state

    if mask is None:
        return GradientTransformation(init, update, packing=ELEMENTWISE)
    return GradientTransformation(
        init, update, packing=lambda ctx: _scheduled_decay(schedule, ctx.mask(mask))
    )


def add_noise(eta: Any, gamma: Any, seed: Any) -> GradientTransformation:
    """Annealed Gaussian gradient noise (Neelakantan et al. 2015).

    ``u <- u + N(0, eta / (1 + t)**gamma)`` at 0-based step ``t``
    (``optax.add_noise``). ``eta >= 0``, ``gamma >= 0``; ``seed`` an int.
    """
    check_scalars(eta=eta, gamma=gamma)
    check_nonnegative("eta", eta)
    check_nonnegative("gamma", gamma)
    check_seed("seed", seed)
    if is_traced(seed):
        if not jnp.issubdtype(seed.dtype, jnp.integer):
            raise TypeError(f"seed must be an integer, got a traced {seed.dtype} value")
    elif jnp.issubdtype(np.asarray(seed).dtype, jnp.floating):  # 3.0 from a config file
        seed = int(np.asarray(seed).astype(np.float64))  # check_seed let it through

    def init(params):
        # + a zero that lives with the params: the key replicated over their devices
        key = jax.random.key_data(jax.random.key(seed)) + _tree.scalar_like(params, 0, jnp.uint32)
        return AddNoiseState(_tree.step_counter(params), key)

    def update(updates, state, params=None, **extra):
        check_state("add_noise", state, AddNoiseState)
        updates = _tree.as_updates(updates)
        leaves, treedef = jax.tree.flatten(updates)
        # One key per leaf: the noise depends on the leaves, so packed runs this per leaf.
        key, *keys = jax.random.split(jax.random.wrap_key_data(state.rng_key), len(leaves) + 1)

        @_tree.per_dtype
        def std(dt):  # in each leaf's compute dtype: float64 leaves get a float64 std
            t = state.count.astype(dt)
            return jnp.sqrt(_tree.hp(eta, dt) / (1 + t) ** _tree.hp(gamma, dt))

        def noisy(u, k):
            dt = _tree.compute_dtype(u.dtype)
            z = jax.random.normal(k, u.shape, dt)
            return (u.astype(dt) + std(dt) * z).astype(u.dtype)

        out = treedef.unflatten([noisy(u, k) for u, k in zip(leaves, keys, strict=True)])
        new_state = AddNoiseState(_tree.safe_increment(state.count), jax.random.key_data(key))
        return out, new_state

    return GradientTransformation(init, update, packing=PER_LEAF)


def keep_params_nonnegative() -> GradientTransformation:
    """Clip updates so that ``p + u >= 0``: ``u <- where(p + u < 0, -p, u)``.

    ``optax.keep_params_nonnegative``; params must start non-negative. The test
    ``p + u < 0`` is made in the wider of the two dtypes, as
    :func:`apply_updates` adds them; an update narrower than its param (bfloat16
    for a float32 param) gets ``-p`` rounded toward zero, so the param lands on
    0 or a hair above it, never below.
    """

    def update(updates, state, params=None, **extra):
        check_params("keep_params_nonnegative", params)

        def leaf(u, p):
            if p.dtype == u.dtype:
                return jnp.where(p + u < 0, -p, u)
            with jax.numpy_dtype_promotion("standard"):  # as apply_updates, even under "strict"
                wide = jnp.promote_types(p.dtype, u.dtype)
            p, u_wide = p.astype(wide), u.astype(wide)
            minus_p = (-p).astype(u.dtype)
            if wide != u.dtype:  # u narrower: -0.1 in bfloat16 is -0.10009765625, round inward
                fixed = jax.lax.stop_gradient(minus_p)  # (nextafter has no derivative)
                overshoots = fixed.astype(wide) < jax.lax.stop_gradient(-p)
                overshoots &= jnp.isfinite(fixed)  # -inf (p beyond u's range) stays -inf
                inward = jnp.nextafter(fixed, jnp.zeros_like(fixed)) + (minus_p - fixed)
                minus_p = jnp.where(overshoots, inward, minus_p)
            return jnp.where(p + u_wide < 0, minus_p, u)

        return _tree.map_like(leaf, updates, params, tree_name="params"), state

    return stateless(update, packing=ELEMENTWISE)
