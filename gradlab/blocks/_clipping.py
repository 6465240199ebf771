"""Clipping and sanitising blocks."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradlab import _tree
from gradlab._checks import (
    check_nonnegative,
    check_positive,
    check_same_structure,
    check_scalars,
    check_state,
)
from gradlab._core import ELEMENTWISE, PER_LEAF, WHOLE_TREE, GradientTransformation, stateless
from gradlab.blocks._regularize import ZeroNansState


def clip(max_delta: Any) -> GradientTransformation:
    """Clip each element to ``[-max_delta, max_delta]`` (``optax.clip``); ``max_delta >= 0``."""
    check_scalars(max_delta=max_delta)
    check_nonnegative("max_delta", max_delta)

    def update(updates, state, params=None, **extra):
        def leaf(u):
            d = _tree.hp(max_delta, u.dtype)
            return jnp.clip(u, -d, d)

        return jax.tree.map(leaf, _tree.as_updates(updates)), state

    return stateless(update, packing=ELEMENTWISE)


def clip_by_global_norm(max_norm: Any) -> GradientTransformation:
    """Rescale so that the global norm is at most ``max_norm`` (Pascanu et al. 2013).

    ``u <- u * min(1, max_norm / ||u||)`` with ``||u||`` over all leaves
    (``optax.clip_by_global_norm``; ``torch.nn.utils.clip_grad_norm_`` without
    its 1e-6). ``max_norm > 0`` — a negative one would flip the update's sign.
    A NaN anywhere makes the norm NaN and every entry NaN, as in Optax and
    torch: the finite entries are not passed on unclipped (a ``zero_nans``
    after the clip then zeroes the whole step).
    """
    check_scalars(max_norm=max_norm)
    check_positive("max_norm", max_norm)

    def update(updates, state, params=None, **extra):
        updates = _tree.as_updates(updates)
        norm = _tree.global_norm(updates)
        limit = jnp.asarray(max_norm, norm.dtype)
        # u / (norm / limit), exactly u where norm <= limit: the factor
        # limit / norm would be subnormal, and flush to 0, for a norm above
        # ~8.5e37 * limit in float32. A NaN norm is not <= limit: NaN everywhere.
        return _tree.unscale(updates, jnp.where(norm <= limit, 1, norm / limit)), state

    # A whole-tree reduction gives the same norm over packed buffers (summed in
    # another order: equal to round-off); under a mask it must not see the rest.
    return stateless(update, packing=WHOLE_TREE)


def zero_nans() -> GradientTransformation:
    """Replace NaN entries of the updates by 0; record per leaf whether any was found.

    The flags are per leaf, so under ``gl.packed`` it runs on the unpacked leaves.
    """

    def init(params):
        return ZeroNansState(jax.tree.map(lambda p: _tree.full_along(p, (), False, bool), params))

    def update(updates, state, params=None, **extra):
        check_state("zero_nans", state, ZeroNansState)
        updates = _tree.as_updates(updates)
        check_same_structure(state.found_nan, updates, "optimizer state", "gradient")
        found = jax.tree.map(lambda u: jnp.any(jnp.isnan(u)), updates)
        clean = jax.tree.map(lambda u: jnp.where(jnp.isnan(u), jnp.zeros_like(u), u), updates)
        return clean, ZeroNansState(found)

    return GradientTransformation(init, update, packing=PER_LEAF)
