"""Layer-wise scaling by the params: trust ratios (LARS, LAMB) and Adafactor's
relative step. Each leaf is scaled by norms of *that leaf*, so these blocks run
per leaf under ``gl.packed``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from gradlab import _masks, _tree
from gradlab._checks import check_nonnegative, check_number, check_params, check_scalars
from gradlab._core import PER_LEAF, GradientTransformation, stateless
from gradlab.blocks._helpers import rms_all, widest


def scale_by_trust_ratio(
    min_norm: Any = 0.0,
    trust_coefficient: Any = 1.0,
    eps: Any = 0.0,
    mask: Any | Callable[[Any], Any] = None,
) -> GradientTransformation:
    """Layer-wise trust ratio (You et al. 2017 LARS, 2020 LAMB), per leaf:

    ``u <- u * trust_coefficient * ||p|| / (||u|| + eps)`` with both norms
    floored at ``min_norm``; the ratio is 1 where either norm is 0 (a zero-init
    layer still moves). ``mask`` (tree, prefix or ``params -> tree``; one
    bool per leaf) limits it to where True (LARS excludes biases and norm scales).
    ``optax.scale_by_trust_ratio`` (plus ``optax.masked`` for the mask).
    """
    check_scalars(min_norm=min_norm, trust_coefficient=trust_coefficient, eps=eps)
    check_nonnegative("min_norm", min_norm)
    check_nonnegative("trust_coefficient", trust_coefficient)
    check_nonnegative("eps", eps)
    _masks.check_spec("mask", mask)

    def update(updates, state, params=None, **extra):
        check_params("scale_by_trust_ratio", params)

        treedef, (us, ps) = _tree.leaves_like(updates, params, tree_name="params")
        dts = [widest(u, p) for u, p in zip(us, ps, strict=True)]
        # every leaf's two norms at once: one overflow rescue for all (_tree.norms)
        all_norms = _tree.norms(ps + us, dts + dts)
        p_norms, u_norms = all_norms[: len(us)], all_norms[len(us) :]

        def leaf(u, dt, p_norm, u_norm):
            floor = _tree.hp(min_norm, dt)
            p_norm = jnp.maximum(p_norm, floor)
            u_norm = jnp.maximum(u_norm, floor)
            # the division guarded by its own where: |p| / 0 (eps = 0, a zero
            # update) in the branch not taken made reverse-mode gradients NaN
            zero = (p_norm == 0) | (u_norm == 0)
            denominator = jnp.where(zero, 1, u_norm + _tree.hp(eps, dt))
            ratio = _tree.hp(trust_coefficient, dt) * p_norm / denominator
            ratio = jnp.where(zero, jnp.ones((), dt), ratio)
            return (u.astype(dt) * ratio).astype(u.dtype)

        scaled = treedef.unflatten(map(leaf, us, dts, p_norms, u_norms))
        kept = _tree.as_updates(updates)
        return _masks.select_tree(mask, params, scaled, kept, elementwise=False), state

    return stateless(update, packing=PER_LEAF)


def scale_by_param_block_rms(min_scale: Any = 1e-3) -> GradientTransformation:
    """``u <- u * max(RMS(p), min_scale)`` per leaf: Adafactor's relative step
    size (Shazeer & Stern 2018, §8: ``α_t = max(ε2, RMS(X_{t-1})) ρ_t``).
    ``optax.scale_by_param_block_rms``.
    """
    check_scalars(min_scale=min_scale)
    check_number("min_scale", min_scale)
    check_nonnegative("min_scale", min_scale)

    def update(updates, state, params=None, **extra):
        check_params("scale_by_param_block_rms", params)

        treedef, (us, ps) = _tree.leaves_like(updates, params, tree_name="params")
        dts = [widest(u, p) for u, p in zip(us, ps, strict=True)]

        def leaf(u, dt, p_rms):
            scale = jnp.maximum(p_rms, _tree.hp(min_scale, dt))
            return (u.astype(dt) * scale).astype(u.dtype)

        return treedef.unflatten(map(leaf, us, dts, rms_all(ps, dts))), state

    return stateless(update, packing=PER_LEAF)
