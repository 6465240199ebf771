"""Momentum blocks: heavy-ball ``trace`` and the exponential moving average ``ema``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from gradlab import _tree
from gradlab._checks import (
    check_bools,
    check_float_dtype,
    check_in_range,
    check_scalars,
    check_state,
)
from gradlab._core import ELEMENTWISE, GradientTransformation


class TraceState(NamedTuple):
    """``trace``: the momentum buffer ``v`` (same tree as the params)."""

    trace: Any


class EmaState(NamedTuple):
    """``count``: int32 step counter; ``ema``: the moving average (params' tree)."""

    count: jax.Array
    ema: Any


def trace(
    decay: Any, nesterov: bool = False, accumulator_dtype: Any = None
) -> GradientTransformation:
    """Heavy-ball momentum: ``v <- decay*v + g``; output ``v`` (or ``g + decay*v``).

    Nesterov's look-ahead (``nesterov=True``) outputs ``g + decay*v`` with the
    new ``v``. Matches ``torch.optim.SGD`` with ``dampening=0`` (and
    ``optax.trace``). ``decay`` must be in [0, 1].
    ``accumulator_dtype``: the storage dtype of ``v`` (default: the param's).
    """
    check_bools(nesterov=nesterov)
    check_scalars(decay=decay)
    check_in_range("decay", decay, 0.0, 1.0)
    check_float_dtype("accumulator_dtype", accumulator_dtype)

    def init(params):
        return TraceState(_tree.zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_state("trace", state, TraceState)
        decay_as = _tree.per_dtype(lambda dt: _tree.hp(decay, dt))

        def leaf(g, v):
            dt = np.result_type(_tree.compute_dtype(v.dtype), _tree.compute_dtype(g.dtype))
            d = decay_as(dt)
            v_new = _tree.as_stored(d * v.astype(dt) + g.astype(dt), v.dtype)
            out = g.astype(dt) + d * v_new if nesterov else v_new
            return out.astype(g.dtype), v_new.astype(v.dtype)

        out = _tree.map_like(leaf, updates, state.trace)
        new_updates, new_trace = _tree.split_outputs(out, updates, 2)
        return new_updates, TraceState(new_trace)

    return GradientTransformation(init, update, packing=ELEMENTWISE)


def ema(decay: Any, debias: bool = True, accumulator_dtype: Any = None) -> GradientTransformation:
    """Exponential moving average: ``v <- decay*v + (1-decay)*g``.

    With ``debias=True`` the output is ``v / (1 - decay**t)`` at step ``t``
    (1-based), as in Adam's first moment; otherwise ``v``. ``optax.ema``.
    ``decay`` must be in [0, 1) with ``debias`` (else [0, 1]).
    ``accumulator_dtype``: the storage dtype of ``v`` (default: the param's).
    """
    check_bools(debias=debias)
    check_scalars(decay=decay)
    check_in_range("decay", decay, 0.0, 1.0, hi_open=debias)
    check_float_dtype("accumulator_dtype", accumulator_dtype)

    def init(params):
        return EmaState(_tree.step_counter(params), _tree.zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_state("ema", state, EmaState)
        count = _tree.safe_increment(state.count)
        consts = _tree.per_dtype(
            lambda dt: (
                _tree.hp(decay, dt),
                1 - _tree.hp(decay, dt),
                _tree.debias(decay, count, dt),
            )
        )

        def leaf(g, v):
            dt = np.result_type(_tree.compute_dtype(v.dtype), _tree.compute_dtype(g.dtype))
            d, cd, correction = consts(dt)
            v_new = _tree.as_stored(_tree.moment_step(g, v, d, 1, cd), v.dtype)
            out = v_new / correction if debias else v_new
            return out.astype(g.dtype), v_new.astype(v.dtype)

        out = _tree.map_like(leaf, updates, state.ema)
        new_updates, new_ema = _tree.split_outputs(out, updates, 2)
        return new_updates, EmaState(count, new_ema)

    return GradientTransformation(init, update, packing=ELEMENTWISE)
