"""Rprop: a step size per element, grown or shrunk by the gradient's sign."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import check_in_range, check_nonnegative, check_scalars, check_state, is_traced
from gradlab._core import ELEMENTWISE, GradientTransformation
from gradlab.blocks._helpers import constants, leafwise, sign, widest


class ScaleByRpropState(NamedTuple):
    """``step_sizes``: the current step size of every element; ``prev_grad``:
    the last gradient, 0 where its sign flipped (params' trees)."""

    step_sizes: Any
    prev_grad: Any


def scale_by_rprop(
    learning_rate: Any,
    eta_minus: Any = 0.5,
    eta_plus: Any = 1.2,
    min_step_size: Any = 1e-6,
    max_step_size: Any = 50.0,
) -> GradientTransformation:
    """Rprop's step (Riedmiller & Braun 1993; the iRprop- variant of Igel &
    Hüsken 2000, as ``torch.optim.Rprop``), *positive*: ``rprop`` negates it.

    Step sizes start at ``learning_rate``. With ``s = sign(g) sign(g_prev)``: where
    ``s > 0`` the step grows by ``eta_plus``, where ``s < 0`` it shrinks by
    ``eta_minus`` and the gradient is taken as 0 (no move, and no sign
    comparison at the next step), else it stays; then it is clipped to
    ``[min_step_size, max_step_size]``. Output ``sign(g) * step``.

    ``learning_rate`` is the *initial step size* (a number or array, possibly
    traced), not a factor on the update: a schedule has no meaning here and is
    refused. Optax's ``scale_by_rprop`` (0.2.8) differs: it emits the previous
    step's update (its first update is 0, then each one lags a step) and does
    not clip an unchanged step; this matches ``torch.optim.Rprop``.
    """
    if callable(learning_rate):
        raise TypeError(
            "rprop's learning_rate is the initial step size of every element (the steps "
            f"then adapt on their own); a schedule cannot be used, got {learning_rate!r}"
        )
    check_scalars(
        learning_rate=learning_rate,
        eta_minus=eta_minus,
        eta_plus=eta_plus,
        min_step_size=min_step_size,
        max_step_size=max_step_size,
    )
    check_nonnegative("learning_rate", learning_rate)
    # torch.optim.Rprop: "Invalid eta values" unless 0 < eta_minus < 1 < eta_plus.
    check_in_range("eta_minus", eta_minus, 0.0, 1.0, lo_open=True, hi_open=True)
    check_in_range("eta_plus", eta_plus, 1.0, lo_open=True)
    check_nonnegative("min_step_size", min_step_size)
    check_nonnegative("max_step_size", max_step_size)
    if not is_traced((min_step_size, max_step_size)) and np.any(
        np.asarray(max_step_size) < np.asarray(min_step_size)
    ):
        raise ValueError(
            f"max_step_size must be >= min_step_size, got max_step_size={max_step_size} "
            f"and min_step_size={min_step_size}"
        )

    def init(params):
        return ScaleByRpropState(_tree.full_like(params, learning_rate), _tree.zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_state("scale_by_rprop", state, ScaleByRpropState)
        consts = constants(
            lambda dt: {
                "minus": _tree.hp(eta_minus, dt),
                "plus": _tree.hp(eta_plus, dt),
                "lo": _tree.hp(min_step_size, dt),
                "hi": _tree.hp(max_step_size, dt),
            }
        )

        def leaf(g, step, g_prev):
            dt = widest(g, step, g_prev)
            c = consts(dt)
            gx = g.astype(dt)
            # signs, not g * g_prev: that product of two gradients below ~1e-19
            # is subnormal, flushed to 0 on CPU, and the steps stopped adapting
            s = jnp.sign(gx) * jnp.sign(g_prev.astype(dt))
            factor = jnp.where(s > 0, c.plus, jnp.where(s < 0, c.minus, jnp.ones((), dt)))
            step_new = _tree.as_stored(jnp.clip(step.astype(dt) * factor, c.lo, c.hi), step.dtype)
            g_kept = jnp.where(s < 0, jnp.zeros((), dt), gx)
            out = sign(g_kept) * step_new
            return out.astype(g.dtype), step_new.astype(step.dtype), g_kept.astype(g_prev.dtype)

        out, steps, prev = leafwise(leaf, updates, state.step_sizes, state.prev_grad, n_out=3)
        return out, ScaleByRpropState(steps, prev)

    return GradientTransformation(init, update, packing=ELEMENTWISE)
