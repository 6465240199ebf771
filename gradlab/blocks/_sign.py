"""Sign-based blocks: signSGD's sign and Lion's interpolated sign."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from gradlab import _tree
from gradlab._checks import check_float_dtype, check_in_range, check_scalars, check_state
from gradlab._core import ELEMENTWISE, GradientTransformation, stateless
from gradlab.blocks._helpers import constants, leafwise, sign, widest


class ScaleByLionState(NamedTuple):
    """``mu``: Lion's momentum, the EMA of ``g`` with rate ``b2`` (params' tree)."""

    mu: Any


def scale_by_sign() -> GradientTransformation:
    """``u <- sign(u)`` elementwise (0 stays 0): signSGD (Bernstein et al. 2018).

    An infinite (or NaN) element gives NaN, not ±1: an overflowed gradient shows
    in the update instead of becoming a finite step (Optax gives ±1).

    ``optax.scale_by_sign``.
    """

    def update(updates, state, params=None, **extra):
        return jax.tree.map(sign, _tree.as_updates(updates)), state

    return stateless(update, packing=ELEMENTWISE)


def scale_by_lion(b1: Any = 0.9, b2: Any = 0.99, mu_dtype: Any = None) -> GradientTransformation:
    """Lion's direction (Chen et al. 2023, "Symbolic Discovery of Optimization
    Algorithms", Alg. 2), before the learning rate.

    ``c = b1 m + (1-b1) g``; output ``sign(c)``; then ``m <- b2 m + (1-b2) g``.
    One moment (``mu_dtype`` sets its dtype), every output element ±1 or 0.
    ``optax.scale_by_lion`` (mode ``"hard"``).
    """
    check_scalars(b1=b1, b2=b2)
    check_in_range("b1", b1, 0.0, 1.0)
    check_in_range("b2", b2, 0.0, 1.0)
    check_float_dtype("mu_dtype", mu_dtype)

    def init(params):
        return ScaleByLionState(_tree.zeros_like(params, mu_dtype))

    def update(updates, state, params=None, **extra):
        check_state("scale_by_lion", state, ScaleByLionState)
        consts = constants(
            lambda dt: {
                "b1": _tree.hp(b1, dt),
                "cb1": 1 - _tree.hp(b1, dt),
                "b2": _tree.hp(b2, dt),
                "cb2": 1 - _tree.hp(b2, dt),
            }
        )

        def leaf(g, m):
            dt = widest(g, m)
            c = consts(dt)
            out = sign(_tree.moment_step(g, m, c.b1, 1, c.cb1, dt))
            m_new = _tree.moment_step(g, m, c.b2, 1, c.cb2, dt)
            return out.astype(g.dtype), m_new.astype(m.dtype)

        out, mu = leafwise(leaf, updates, state.mu, n_out=2)
        return out, ScaleByLionState(mu)

    return GradientTransformation(init, update, packing=ELEMENTWISE)
