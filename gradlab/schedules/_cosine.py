"""Cosine annealing, with and without warm restarts (SGDR)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradlab import _tree
from gradlab._checks import check_in_range
from gradlab.schedules._common import (
    Schedule,
    as_float,
    as_step,
    check_factor,
    check_scalar,
    check_steps,
    check_value,
    fraction,
    step_cycle,
    stepped,
)


def cosine_factor(
    pct: jnp.ndarray, exponent: ArrayLike = 1.0, rest: jnp.ndarray | None = None
) -> jnp.ndarray:
    """``((1 + cos(pi pct)) / 2) ** exponent``: 1 at ``pct=0``, 0 at ``pct=1``.

    Given ``rest = 1 - pct`` computed from the end, as ``cos(pi pct / 2)**2``
    in the first half and ``sin(pi rest / 2)**2`` in the second (the same
    value): near the end ``1 + cos(pi pct)`` cancels in float32 (a 2e6-step
    cosine reached ``end_value`` ~10 steps early), and each form keeps its
    derivative precise where its argument is small."""
    if rest is None:
        c = 0.5 * (1.0 + jnp.cos(jnp.pi * pct))
    else:
        half = 0.5 * jnp.pi
        c = jnp.where(pct <= 0.5, jnp.square(jnp.cos(half * pct)), jnp.square(jnp.sin(half * rest)))
    if isinstance(exponent, int | float) and exponent == 1:
        return c  # skip pow: it is not bit-exact in XLA
    return _tree.pow_or_zero(c, as_float(exponent))  # c is 0 at pct = 1


def cosine_decay(
    init_value: ArrayLike,
    decay_steps: ArrayLike,
    end_value: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    """Cosine annealing from ``init_value`` to ``end_value`` over ``decay_steps``.

    ``s = min(t, decay_steps)``,
    ``lr_t = end + (init - end) * ((1 + cos(pi s / decay_steps)) / 2) ** exponent``,
    then constant at ``end_value``. This is the first half period of PyTorch
    ``CosineAnnealingLR(T_max=decay_steps, eta_min=end_value)`` (which would
    rise again after ``T_max``) and Optax ``cosine_decay_schedule`` with
    ``alpha = end_value / init_value``.

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.cosine_decay(1.0, decay_steps=100, end_value=0.1)
        >>> [round(s(k).item(), 4) for k in (0, 50, 100, 1000)]
        [1.0, 0.55, 0.1, 0.1]
    """
    check_value("init_value", init_value)
    check_steps("decay_steps", decay_steps, 1)
    check_value("end_value", end_value)
    check_factor("exponent", exponent)

    def schedule(step: ArrayLike):
        n, t = as_float(decay_steps), as_step(step)
        pct, rest = fraction(t, n), fraction(n - t, n)
        init, end = as_float(init_value), as_float(end_value)
        return end + (init - end) * cosine_factor(pct, exponent, rest)

    return stepped(schedule)


def _restart_position(step, first_period, period_mult):
    """Cycle index ``i``, position ``t_i`` in it and its length ``T_i``.

    Cycle ``i`` lasts ``T_0 m^i`` steps and starts at ``T_0 (m^i - 1)/(m - 1)``
    (``T_0 i`` when ``m = 1``). The closed-form ``i`` from a logarithm can be
    off by one at a boundary through rounding, so it is corrected once.
    """
    t, t0, m = as_step(step), as_float(first_period), as_float(period_mult)
    i1, pos1 = step_cycle(step, first_period)  # m == 1 (exact for integers)
    # m > 1; a dummy m = 2 keeps the unused branch finite when m == 1.
    mg = jnp.where(m == 1.0, 2.0, m)
    integral = (m == jnp.round(m)) & (t0 == jnp.round(t0))

    log_m = jnp.log1p(mg - 1.0)  # m - 1 is exact; log(m) and m**i - 1 would cancel

    def start(i):
        # m**i - 1 as expm1(i log m): computed as 1.0201 - 1 in float32, m = 1.01
        # lost ~1e-3 of a step at step 201, beyond the snap below (a late restart)
        # (an integer m keeps m**i - 1 exact: power, as before)
        grown = jnp.where(integral, jnp.power(mg, i) - 1.0, jnp.expm1(i * log_m))
        s = t0 * grown / (mg - 1.0)
        # The formula rounds: under jit XLA divides by the constant m - 1 as a
        # multiplication by its reciprocal, and T_0 (m - 1) / (m - 1) can land a
        # hair above T_0: that restart would come a step late. With integer m
        # and T_0 the starts are integers: round them. Otherwise snap a start
        # only within a few ulps of an integer (a fixed 1e-5 relative tolerance
        # moved a start of 74808.28 to 74808, a restart one step early).
        r = jnp.round(s)
        ulps = 4 * jnp.finfo(s.dtype).eps * jnp.maximum(jnp.abs(r), 1.0)
        # the snapped value with the formula's derivative (round's is 0: the
        # hypergradients on period_mult and first_period were lost from cycle 2)
        snapped = s + jax.lax.stop_gradient(r - s)
        return jnp.where(integral | (jnp.abs(s - r) <= ulps), snapped, s)

    i = jnp.floor(jnp.log1p(t / t0 * (mg - 1.0)) / log_m)
    i = jnp.where(t < start(i), i - 1.0, jnp.where(t >= start(i + 1.0), i + 1.0, i))
    i = jnp.maximum(i, 0.0)
    geometric = m != 1.0
    index = jnp.where(geometric, i, i1)
    # At m = 1 the start T_0 i with its first-order term in m - 1, T_0 i (i - 1) / 2,
    # and the length T_0 m^i: the same values, and the derivative in m is right
    # there too (a hypergradient on period_mult starting from 1 moves).
    # (m - 1) first: at m = 1 and a huge step, i1 * (i1 - 1) overflows and inf * 0 is NaN
    flat_pos = pos1 - t0 * 0.5 * ((m - 1.0) * i1) * (i1 - 1.0)
    pos = jnp.where(geometric, t - start(i), flat_pos)
    length = t0 * jnp.power(m, index)
    return index, pos, length


def cosine_warm_restarts(
    init_value: ArrayLike,
    first_period: ArrayLike,
    period_mult: ArrayLike = 1,
    end_value: ArrayLike = 0.0,
    decay_factor: ArrayLike = 1.0,
) -> Schedule:
    """Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

    Cycle ``i`` (from 0) lasts ``T_i = first_period * period_mult**i`` steps;
    with ``t_i`` the step within it,
    ``lr_t = end + (init * decay_factor**i - end) (1 + cos(pi t_i / T_i)) / 2``.
    PyTorch ``CosineAnnealingWarmRestarts(T_0=first_period, T_mult=period_mult,
    eta_min=end_value)`` when ``decay_factor=1``; ``decay_factor < 1`` lowers
    each restart's peak (timm's ``cycle_decay``). ``period_mult`` is a real
    number >= 1 (torch requires an integer).
    ``init`` is ``init_value`` and ``end`` is ``end_value``.

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.cosine_warm_restarts(1.0, first_period=10, period_mult=2)
        >>> [round(s(k).item(), 4) for k in (0, 5, 10, 20, 30)]
        [1.0, 0.5, 1.0, 0.5, 1.0]
    """
    check_value("init_value", init_value)
    check_steps("first_period", first_period, 1)
    check_scalar("period_mult", period_mult)
    check_in_range("period_mult", period_mult, 1.0)
    check_value("end_value", end_value)
    check_factor("decay_factor", decay_factor)

    def schedule(step: ArrayLike):
        i, pos, length = _restart_position(step, first_period, period_mult)
        peak = as_float(init_value) * jnp.power(as_float(decay_factor), i)
        end = as_float(end_value)
        rest = fraction(length - pos, length)
        return end + (peak - end) * cosine_factor(pos / length, rest=rest)

    return stepped(schedule)
