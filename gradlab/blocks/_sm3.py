"""SM3: AdaGrad with one accumulator per row, column, ... instead of per element."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab import _tree
from gradlab._checks import (
    check_in_range,
    check_nonnegative,
    check_same_shapes,
    check_same_structure,
    check_scalars,
    check_state,
)
from gradlab._core import PER_LEAF, GradientTransformation
from gradlab.blocks._helpers import leaf_subtrees, widest


class ScaleBySM3State(NamedTuple):
    """``mu``: per leaf, a tuple of one accumulator per axis (a leaf of shape
    ``(n, m)`` has one of ``n`` and one of ``m`` numbers; a vector or a scalar
    has one the size of the leaf); ``nu``: the momentum (params' tree)."""

    mu: Any
    nu: Any


def _axis_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """``shape`` with every axis but ``axis`` set to 1 (for broadcasting)."""
    return tuple(n if i == axis else 1 for i, n in enumerate(shape))


def scale_by_sm3(b1: Any = 0.9, eps: Any = 1e-8) -> GradientTransformation:
    """SM3-II (Anil et al. 2019, "Memory-Efficient Adaptive Optimization", Alg. 2).

    For a leaf of rank >= 2, one accumulator ``mu_r`` per index of each axis;
    each element takes the smallest cover: ``nu'(i) = min_{r ∋ i} mu_r + g(i)²``,
    then ``mu_r <- max_{i ∈ r} nu'(i)``. Vectors and scalars keep the full
    AdaGrad sum. Direction ``g / sqrt(nu' + eps)`` (0 where ``nu' = 0``), then
    momentum ``m <- b1 m + (1-b1) direction``; output ``m``.
    ``optax.scale_by_sm3`` (with its ``b2 = 1``). Per leaf under ``gl.packed``.
    """
    check_scalars(b1=b1, eps=eps)
    check_in_range("b1", b1, 0.0, 1.0)
    check_nonnegative("eps", eps)

    def init(params):
        _tree.check_float_params(params, "init")

        def accumulators(p):
            p = _tree.as_param(p)
            if p.ndim <= 1:
                return (_tree.zeros_like(p),)
            # The accumulator of axis i is sharded as the param is along i.
            return tuple(_tree.full_along(p, (i,)) for i in range(p.ndim))

        return ScaleBySM3State(jax.tree.map(accumulators, params), _tree.zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_state("scale_by_sm3", state, ScaleBySM3State)
        updates = _tree.as_updates(updates)
        consts = _tree.per_dtype(
            lambda dt: (_tree.hp(b1, dt), 1 - _tree.hp(b1, dt), _tree.hp(eps, dt))
        )

        def leaf(g, accs, m):
            dt = widest(g, m, *accs)
            decay, cdecay, eps_ = consts(dt)
            g2 = jnp.square(g.astype(dt))
            if g.ndim <= 1:
                nu = g2 + accs[0].astype(dt)
                new_accs = (nu,)
            else:
                covers = [
                    jnp.reshape(a.astype(dt), _axis_shape(g.shape, i)) for i, a in enumerate(accs)
                ]
                nu = g2 + functools.reduce(jnp.minimum, covers)
                every = tuple(range(g.ndim))
                # initial=0: nu >= 0, and an empty leaf's (0, n) has no max
                new_accs = tuple(
                    jnp.max(nu, axis=tuple(j for j in every if j != i), initial=0) for i in every
                )
            # rsqrt(0) (eps = 0) in the branch not taken would make reverse mode NaN;
            # nu + eps, not nu: a gradient below ~1e-19 has g² flushed to 0 and was
            # zeroed although eps keeps its step finite (hunt47)
            positive = ~(nu + eps_ <= 0)  # a NaN eps is not a zero step: NaN
            direction = g.astype(dt) * jnp.where(
                positive, jax.lax.rsqrt(jnp.where(positive, nu + eps_, 1)), 0
            )
            m_new = _tree.moment_step(direction, m, decay, 1, cdecay, dt)
            new_accs = tuple(a.astype(old.dtype) for a, old in zip(new_accs, accs, strict=True))
            return m_new.astype(g.dtype), new_accs, m_new.astype(m.dtype)

        # each leaf's accumulators in order, whatever sequence holds them (a tuple;
        # an ``nnx.State`` keyed 0, 1, ... once Flax NNX has stored the state)
        accs = [tuple(jax.tree.leaves(a)) for a in leaf_subtrees(updates, state.mu)]
        check_same_structure(state.nu, updates, "optimizer state", "gradient")
        check_same_shapes(state.nu, updates, "optimizer state", "gradient")
        moms = jax.tree.leaves(state.nu)
        leaves, treedef = jax.tree.flatten(updates)
        outs = [leaf(g, a, m) for g, a, m in zip(leaves, accs, moms, strict=True)]
        out = treedef.unflatten([o[0] for o in outs])
        mu = treedef.unflatten([o[1] for o in outs])
        nu = treedef.unflatten([o[2] for o in outs])
        return out, ScaleBySM3State(mu, nu)

    return GradientTransformation(init, update, packing=PER_LEAF)
