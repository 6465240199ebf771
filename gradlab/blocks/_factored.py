"""Adafactor's factored second moment: O(n + m) state for an n x m matrix."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import (
    COUNT_MAX,
    check_bools,
    check_int,
    check_nonnegative,
    check_number,
    check_same_structure,
    check_scalars,
    check_state,
    static_int,
)
from gradlab._core import PER_LEAF, GradientTransformation, structural
from gradlab.blocks._helpers import widest


class FactoredState(NamedTuple):
    """``count``: int32 steps. Per leaf, either the factored statistics
    ``v_row`` (the leaf's shape without its largest axis) and ``v_col``
    (without its second largest), or the full ``v`` (the leaf's shape); the
    unused ones are 0-d placeholders."""

    count: jax.Array
    v_row: Any
    v_col: Any
    v: Any


def factored_dims(
    shape: tuple[int, ...], factored: bool, min_dim_size_to_factor: int
) -> tuple[int, int] | None:
    """``(d1, d0)``: the second largest and the largest axis of a leaf that is
    factored, or None (rank < 2, or its second largest axis is shorter than
    ``min_dim_size_to_factor``: a full second moment costs little there)."""
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape, kind="stable")
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


@structural("min_dim_size_to_factor")
def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: Any = 0.8,
    step_offset: Any = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: Any = 1e-30,
) -> GradientTransformation:
    """Adafactor's direction (Shazeer & Stern 2018, Alg. 4 and 5), before clipping.

    ``b_t = 1 - t^(-decay_rate)`` at 1-based step ``t`` (minus ``step_offset``;
    steps before the offset count as the first),
    so the first step keeps ``g²`` whole. For a matrix ``G`` (the two largest
    axes of a leaf with both >= ``min_dim_size_to_factor``; other axes are
    batch axes), with ``G² + epsilon``:
    ``R <- b_t R + (1-b_t) rowmean(G²)``, ``C <- b_t C + (1-b_t) colmean(G²)``,
    ``V̂ = R C / mean(R)``; output ``G / sqrt(V̂)``. Other leaves keep the full
    ``V <- b_t V + (1-b_t) G²`` and output ``G / sqrt(V)``.

    The state of an n x m matrix is n + m numbers instead of n m. Runs per leaf
    under ``gl.packed``. ``optax.scale_by_factored_rms``.
    ``factored=False`` factors no leaf (each keeps the full ``V``).
    """
    check_bools(factored=factored)
    check_scalars(decay_rate=decay_rate, step_offset=step_offset, epsilon=epsilon)
    check_number("decay_rate", decay_rate)
    check_nonnegative("decay_rate", decay_rate)
    check_int("step_offset", step_offset, minimum=0, maximum=COUNT_MAX)
    min_dim_size_to_factor = static_int("min_dim_size_to_factor", min_dim_size_to_factor, 0)
    check_nonnegative("epsilon", epsilon)

    def dims(x):
        return factored_dims(np.shape(x), factored, min_dim_size_to_factor)

    def init(params):
        _tree.check_float_params(params, "init")

        def stats(p):
            p = _tree.as_param(p)
            # Distinct placeholder arrays: one array twice in a state cannot be donated.
            placeholder = lambda: _tree.full_along(p, ())  # noqa: E731
            d = dims(p)
            if d is None:
                return placeholder(), placeholder(), _tree.zeros_like(p)
            d1, d0 = d
            # Each statistic keeps the param's sharding along the axes it keeps.
            every = range(p.ndim)
            row = _tree.full_along(p, [a for a in every if a != d0])
            col = _tree.full_along(p, [a for a in every if a != d1])
            return row, col, placeholder()

        out = jax.tree.map(stats, params)
        v_row, v_col, v = _tree.split_outputs(out, params, 3)
        return FactoredState(_tree.step_counter(params), v_row, v_col, v)

    def update(updates, state, params=None, **extra):
        check_state("scale_by_factored_rms", state, FactoredState)
        updates = _tree.as_updates(updates)
        for tree in (state.v_row, state.v_col, state.v):
            check_same_structure(tree, updates, "optimizer state", "gradient")
        # The statistics' shapes follow the params' (not equal to them): a
        # gradient of another shape is named here, not as a broadcast error.
        treedef = jax.tree.structure(updates)
        want = [treedef.flatten_up_to(t) for t in jax.eval_shape(lambda u: init(u)[1:], updates)]
        have = [treedef.flatten_up_to(t) for t in (state.v_row, state.v_col, state.v)]
        for i, (path, g) in enumerate(jax.tree_util.tree_flatten_with_path(updates)[0]):
            if any(np.shape(w[i]) != np.shape(h[i]) for w, h in zip(want, have, strict=True)):
                raise ValueError(
                    f"gradient leaf {jax.tree_util.keystr(path) or '(root)'} has shape "
                    f"{np.shape(g)}, unlike the params the optimizer state was made for"
                )
        t = state.count

        def consts(dt):
            # in floats: the int32 t + 1 overflows once t saturates at 2**31 - 1;
            # steps before the offset count as the first (t - offset + 1 <= 0
            # would give beta = NaN; Optax's formula has that hole)
            step = jnp.maximum(t - jnp.asarray(step_offset, t.dtype), 0).astype(dt) + 1
            beta = 1 - step ** (-_tree.hp(decay_rate, dt))
            return beta, 1 - beta, _tree.hp(epsilon, dt)

        consts = _tree.per_dtype(consts)

        def leaf(g, v_row, v_col, v):
            dt = widest(g, v_row, v_col, v)
            beta, cbeta, eps = consts(dt)
            g2 = jnp.square(g.astype(dt)) + eps
            d = dims(g)
            if d is None:
                v_new = _tree.as_stored(beta * v.astype(dt) + cbeta * g2, v.dtype)
                out = g.astype(dt) * jax.lax.rsqrt(v_new)
                return out.astype(g.dtype), v_row, v_col, v_new.astype(v.dtype)
            d1, d0 = d
            row = beta * v_row.astype(dt) + cbeta * jnp.mean(g2, axis=d0)
            col = beta * v_col.astype(dt) + cbeta * jnp.mean(g2, axis=d1)
            row = _tree.as_stored(row, v_row.dtype)
            col = _tree.as_stored(col, v_col.dtype)
            # V̂ = R C / mean(R): the row statistics normalised by their mean
            # along the other factored axis (d1 is one lower once d0 is gone).
            row_mean = jnp.mean(row, axis=d1 - 1 if d1 > d0 else d1, keepdims=True)
            # inf / inf (squares that overflow) is NaN: read it as a ratio of 1, so
            # V̂ = R C / mean(R) is inf there and the update 0, as Adam's; a NaN
            # gradient keeps its NaN (the row statistic is NaN, not inf, then).
            # Not where g itself is infinite: V̂ is undefined there, and the rest
            # of the row must not come out finite (Optax: all non-finite).
            ratio = row / row_mean
            overflow = jnp.isinf(row) & jnp.isinf(row_mean) & jnp.all(jnp.isfinite(g))
            ratio = jnp.where(overflow, jnp.ones((), dt), ratio)
            row_factor = jax.lax.rsqrt(ratio)
            col_factor = jax.lax.rsqrt(col)
            out = g.astype(dt) * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(col_factor, d1)
            return out.astype(g.dtype), row.astype(v_row.dtype), col.astype(v_col.dtype), v

        out = jax.tree.map(leaf, updates, state.v_row, state.v_col, state.v)
        out, v_row, v_col, v = _tree.split_outputs(out, updates, 4)
        return out, FactoredState(_tree.safe_increment(state.count), v_row, v_col, v)

    return GradientTransformation(init, update, packing=PER_LEAF)
