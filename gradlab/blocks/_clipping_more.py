"""More clipping and normalising blocks: per-leaf RMS clipping (Adafactor),
adaptive gradient clipping (NFNets), normalisation by the update norm, and
gradient centralisation."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import (
    check_nonnegative,
    check_number,
    check_params,
    check_positive,
    check_scalars,
)
from gradlab._core import PER_LEAF, WHOLE_TREE, GradientTransformation, stateless, structural
from gradlab.blocks._helpers import rms_all, widest


def clip_by_block_rms(threshold: Any) -> GradientTransformation:
    """Per leaf ``u <- u / max(1, RMS(u) / threshold)`` (Shazeer & Stern 2018,
    Adafactor's update clipping, §6: ``d = threshold``). ``optax.clip_by_block_rms``.
    ``threshold > 0``.
    """
    check_scalars(threshold=threshold)
    check_positive("threshold", threshold)

    def update(updates, state, params=None, **extra):
        us, treedef = jax.tree.flatten(_tree.as_updates(updates))
        dts = [widest(u) for u in us]

        def leaf(u, dt, u_rms):
            denom = jnp.maximum(1, u_rms / _tree.hp(threshold, dt))
            return _tree.divide(u.astype(dt), denom).astype(u.dtype)

        return treedef.unflatten(map(leaf, us, dts, rms_all(us, dts))), state

    return stateless(update, packing=PER_LEAF)


def _unit_axes(x: jax.Array, axis: Any) -> tuple[int, ...]:
    """The axes a unit-wise norm reduces over (Optax's ``unitwise_norm``): the
    whole leaf for scalars and vectors, the input axes of a dense (``in, out``)
    or multi-head (``in, heads, out``) kernel, the spatial and input axes of a
    conv kernel (``HWIO``, ``DHWIO``)."""
    if axis is not None:
        axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
        if not all(-x.ndim <= a < x.ndim for a in axes):
            raise ValueError(
                f"adaptive_grad_clip: axis {axis!r} is out of range for a leaf of shape {x.shape}"
            )
        return tuple(int(a) for a in axes)
    if sum(d != 1 for d in x.shape) <= 1:
        return tuple(range(x.ndim))
    if x.ndim in (2, 3):
        return (0,)
    if x.ndim in (4, 5):
        return tuple(range(x.ndim - 1))
    raise ValueError(
        f"adaptive_grad_clip: no default unit for a leaf of shape {x.shape}; pass axis="
    )


@structural("axis")
def adaptive_grad_clip(clipping: Any, eps: Any = 1e-3, axis: Any = None) -> GradientTransformation:
    """Adaptive gradient clipping (Brock et al. 2021, NFNets, eq. 3), unit-wise:

    ``g <- g * clipping * max(||p||, eps) / ||g||`` where
    ``||g|| > clipping * max(||p||, eps)``, norms taken per output unit (see
    ``axis``; default as ``optax.adaptive_grad_clip``: per output column of a
    ``(in, out)`` kernel, the whole leaf for vectors). ``clipping > 0``. A unit
    whose gradient norm is NaN comes out NaN (as Optax's).

    The default unit is read from the shape alone, so two layouts are taken
    for another: a leaf with one dimension above 1, such as a ``(1, n)``
    Dense kernel of a single input feature, is a vector (one norm for the
    leaf: pass ``axis=0`` for one per output), and a 3-D leaf is a multi-head
    ``(in, heads, out)`` kernel (a Flax ``Conv1D`` kernel ``(width, in, out)``
    needs ``axis=(0, 1)``, as the paper's per-output-unit norm).
    """
    check_scalars(clipping=clipping, eps=eps)
    check_positive("clipping", clipping)
    check_nonnegative("eps", eps)
    axes = (axis,) if isinstance(axis, int | np.integer) else axis
    if axis is not None and not (
        isinstance(axes, tuple | list)
        and all(isinstance(a, int | np.integer) and not isinstance(a, bool) for a in axes)
    ):
        raise TypeError(f"axis must be None, an int or a tuple of ints, got {axis!r}")

    def update(updates, state, params=None, **extra):
        check_params("adaptive_grad_clip", params)

        treedef, (gs, ps) = _tree.leaves_like(updates, params, tree_name="params")
        dts = [widest(g, p) for g, p in zip(gs, ps, strict=True)]
        units = [_unit_axes(g, axis) for g in gs]
        # every leaf's two norms at once: one overflow rescue for all (_tree.norms)
        all_norms = _tree.norms(gs + ps, dts + dts, units + units, keepdims=True)
        g_norms, p_norms = all_norms[: len(gs)], all_norms[len(gs) :]

        def leaf(g, dt, g_norm, p_norm):
            gx = g.astype(dt)
            max_norm = _tree.hp(clipping, dt) * jnp.maximum(p_norm, _tree.hp(eps, dt))
            # Only where g_norm > max_norm >= 0 (or g_norm is NaN, which then
            # reaches the whole unit) is the division taken: no 0/0.
            keep = g_norm <= max_norm
            factor = max_norm / jnp.where(keep, 1, g_norm)
            return jnp.where(keep, gx, gx * factor).astype(g.dtype)

        return treedef.unflatten(map(leaf, gs, dts, g_norms, p_norms)), state

    return stateless(update, packing=PER_LEAF)


def normalize_by_update_norm(scale_factor: Any = 1.0, eps: Any = 1e-6) -> GradientTransformation:
    """``u <- scale_factor * u / (||u|| + eps)`` with the global norm over all
    leaves (normalised gradient descent). ``optax.normalize_by_update_norm``.

    A whole-tree reduction: on the buffers under ``gl.packed``, declared
    :data:`gradlab.WHOLE_TREE` (like ``clip_by_global_norm``).
    """
    check_scalars(scale_factor=scale_factor, eps=eps)
    check_number("scale_factor", scale_factor)
    check_nonnegative("eps", eps)

    def update(updates, state, params=None, **extra):
        updates = _tree.as_updates(updates)
        # (global_norm is floored at ~1e-19, and a factor below ~1e-38 flushes to 0
        # on CPU: see the README's numerics notes. The exact norm and a division
        # cost NaN derivatives at scale_factor=0 and 2x the compile time: review9.)
        n = _tree.global_norm(updates)
        factor = jnp.asarray(scale_factor, n.dtype) / (n + jnp.asarray(eps, n.dtype))
        return _tree.scale(updates, factor), state

    return stateless(update, packing=WHOLE_TREE)


@structural("unit_axis")
def centralize(unit_axis: int = 0) -> GradientTransformation:
    """Gradient centralisation (Yong et al. 2020): for leaves of rank >= 2,
    subtract the mean over all axes but ``unit_axis``, the axis of output
    units, so each unit's gradient has mean 0; vectors and scalars pass
    unchanged. Per leaf.

    The default ``unit_axis=0`` is ``optax.centralize`` and the paper's rule
    for PyTorch's ``(out, in)`` and ``(out, in, h, w)`` weights. JAX kernels
    put the outputs last (Flax ``Dense`` ``(in, out)``, ``Conv`` ``(h, w, in,
    out)``): pass ``unit_axis=-1`` there, or each input's gradient is centred
    across the output units instead.
    """
    if not isinstance(unit_axis, int | np.integer) or isinstance(unit_axis, bool):
        raise TypeError(f"unit_axis must be an int (an axis of each leaf), got {unit_axis!r}")
    unit_axis = int(unit_axis)

    def update(updates, state, params=None, **extra):
        def leaf(g):
            if g.ndim < 2:
                return g
            if not -g.ndim <= unit_axis < g.ndim:
                raise ValueError(
                    f"centralize: unit_axis {unit_axis} is out of range for a leaf of shape "
                    f"{g.shape}"
                )
            dt = widest(g)
            gx = g.astype(dt)
            axes = tuple(a for a in range(g.ndim) if a != unit_axis % g.ndim)
            return (gx - jnp.mean(gx, axis=axes, keepdims=True)).astype(g.dtype)

        return jax.tree.map(leaf, _tree.as_updates(updates)), state

    return stateless(update, packing=PER_LEAF)
