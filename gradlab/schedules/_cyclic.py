"""Cyclical schedules: triangular cycles (CLR) and the one-cycle policy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradlab._checks import check_bools, check_choice, check_in_range
from gradlab.schedules._common import (
    Schedule,
    as_float,
    as_step,
    check_factor,
    check_scalar,
    check_steps,
    check_value,
    fraction,
    is_int,
    power,
    step_cycle,
    stepped,
)
from gradlab.schedules._cosine import cosine_factor

_MODES = ("triangular", "triangular2", "exp_range")
_ANNEALS = ("cos", "linear")


def cyclic(
    base_value: ArrayLike,
    max_value: ArrayLike,
    step_size_up: ArrayLike,
    step_size_down: ArrayLike | None = None,
    mode: str = "triangular",
    gamma: ArrayLike = 1.0,
) -> Schedule:
    """Cyclical learning rate (Smith 2017): linear up, linear down, repeat.

    A cycle lasts ``T = step_size_up + step_size_down`` steps
    (``step_size_down`` defaults to ``step_size_up``). With ``c = floor(t / T)``
    and ``p = t - c T``, the triangle is ``x = p / up`` while ``p <= up`` and
    ``(T - p) / down`` after, and

    ``lr_t = base + (max - base) * x * a``, where the amplitude ``a`` is
    ``1`` (``"triangular"``), ``2 ** -c`` (``"triangular2"``, halved each
    cycle) or ``gamma ** t`` (``"exp_range"``, per step; for a number ``gamma``
    computed from its float64 log, so it stays accurate over millions of steps).
    ``base`` is ``base_value`` and ``max`` is ``max_value``.

    PyTorch ``CyclicLR(base_lr, max_lr, step_size_up, step_size_down, mode,
    gamma)`` (its ``cycle`` is our ``c + 1``).

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.cyclic(0.0, 1.0, step_size_up=2, step_size_down=4)
        >>> [s(k).item() for k in range(7)]
        [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    check_value("base_value", base_value)
    check_value("max_value", max_value)
    check_steps("step_size_up", step_size_up, 1)
    if step_size_down is not None:
        check_steps("step_size_down", step_size_down, 1)
    check_choice("mode", mode, _MODES)
    check_factor("gamma", gamma, hi=1.0)

    def schedule(step: ArrayLike):
        t = as_step(step)
        up = as_float(step_size_up)
        down = up if step_size_down is None else as_float(step_size_down)
        period = up + down
        steps = step_size_up + (step_size_up if step_size_down is None else step_size_down)
        c, p = step_cycle(step, steps if is_int(steps) else period)  # exact for integers
        x = jnp.where(p <= up, fraction(p, up), fraction(period - p, down))
        if mode == "triangular2":
            x = x * jnp.exp2(-c)
        elif mode == "exp_range":
            x = x * power(gamma, t)
        base = as_float(base_value)
        return base + (as_float(max_value) - base) * x

    return stepped(schedule)


def _one_cycle_ends(total_steps, pct_start, three_phase):
    """Phase end steps, exactly as PyTorch ``OneCycleLR`` places them.

    They are *not* rounded: with ``total_steps=10, pct_start=0.25`` the first
    phase ends at step 1.5, so no step hits ``max_value`` exactly.
    """
    total, pct = as_float(total_steps), as_float(pct_start)
    if three_phase:
        return [pct * total - 1.0, 2.0 * pct * total - 2.0, total - 1.0]
    return [pct * total - 1.0, total - 1.0]


def _anneal(kind: str, start: jax.Array, end: jax.Array, pct: jax.Array, rest: jax.Array):
    """Move from ``start`` to ``end`` as ``pct`` goes from 0 to 1 (``rest = 1 - pct``,
    computed from the phase's end).

    ``"linear"``: ``start rest + end pct`` (torch's ``start + (end - start) pct``,
    rearranged to give ``end`` exactly at ``pct = 1``: a tiny end such as
    one-cycle's ``max / 25 / 1e9`` is below ``start``'s rounding error, and the
    torch form gives 0 there); ``"cos"``: ``end + (start - end)(1 + cos(pi pct))/2``
    with the factor from :func:`cosine_factor` given ``rest``. Both keep their
    relative precision in a long phase's last steps, where ``1 - pct`` and
    ``1 + cos(pi pct)`` cancel in float32 (one-cycle's final annealing reached
    its floor steps early; hunt77).
    """
    if kind == "linear":
        return start * rest + end * pct
    return end + (start - end) * cosine_factor(pct, rest=rest)


def _phased(step, ends, values, kind):
    """Anneal through consecutive phases: phase ``i`` runs from the end of
    phase ``i-1`` (step 0 for the first) to ``ends[i]``, moving from
    ``values[i][0]`` to ``values[i][1]``. Steps past the last end hold the
    final value (torch raises instead)."""
    t = jnp.minimum(as_step(step), ends[-1])
    starts = [jnp.zeros_like(ends[0]), *ends[:-1]]
    out = None
    for start, end, (a, b) in reversed(list(zip(starts, ends, values, strict=True))):
        pct = fraction(t - start, end - start)
        # a phase of length 0 (pct_start * total_steps == 1) has pct 0: rest is 1
        rest = jnp.where(end > start, fraction(end - t, end - start), 1.0 - pct)
        value = _anneal(kind, a, b, pct, rest)
        out = value if out is None else jnp.where(t <= end, value, out)
    return out


def _check_one_cycle(total_steps, pct_start, anneal_kind):
    check_steps("total_steps", total_steps, 1)
    check_scalar("pct_start", pct_start)
    check_in_range("pct_start", pct_start, 0.0, 1.0, lo_open=True, hi_open=True)
    check_choice("anneal", anneal_kind, _ANNEALS)


def one_cycle(
    total_steps: ArrayLike,
    max_value: ArrayLike,
    pct_start: ArrayLike = 0.3,
    anneal: str = "cos",
    div_factor: ArrayLike = 25.0,
    final_div_factor: ArrayLike = 1e4,
    three_phase: bool = False,
) -> Schedule:
    """The one-cycle policy (Smith & Topin 2017), PyTorch ``OneCycleLR`` exactly.

    With ``init = max_value / div_factor`` and ``min = init / final_div_factor``:

    * two phases: ``init -> max`` until step ``pct_start * total_steps - 1``,
      then ``max -> min`` until step ``total_steps - 1``;
    * ``three_phase``: ``init -> max`` until ``pct_start * total_steps - 1``,
      ``max -> init`` until ``2 pct_start total_steps - 2``, then
      ``init -> min`` until ``total_steps - 1``.

    Within a phase from step ``a`` to ``b``, ``pct = (t - a) / (b - a)`` and
    the value is annealed by ``"cos"`` (``end + (start - end)(1 + cos(pi pct))/2``)
    or ``"linear"``. Phase ends are not rounded, as in torch. Steps past
    ``total_steps - 1`` hold ``min`` (torch extrapolates the last phase at
    step ``total_steps`` and raises after it).
    ``anneal`` picks ``"cos"`` or ``"linear"``.

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.one_cycle(total_steps=100, max_value=1.0)
        >>> [round(s(k).item(), 4) for k in (0, 29, 99)]
        [0.04, 1.0, 0.0]
    """
    check_bools(three_phase=three_phase)
    _check_one_cycle(total_steps, pct_start, anneal)
    check_value("max_value", max_value)
    check_factor("div_factor", div_factor)
    check_factor("final_div_factor", final_div_factor)
    kind = anneal

    def schedule(step: ArrayLike):
        peak = as_float(max_value)
        init = peak / as_float(div_factor)
        low = init / as_float(final_div_factor)
        if three_phase:
            values = [(init, peak), (peak, init), (init, low)]
        else:
            values = [(init, peak), (peak, low)]
        return _phased(step, _one_cycle_ends(total_steps, pct_start, three_phase), values, kind)

    return stepped(schedule)


def one_cycle_momentum(
    total_steps: ArrayLike,
    pct_start: ArrayLike = 0.3,
    anneal: str = "cos",
    base_momentum: ArrayLike = 0.85,
    max_momentum: ArrayLike = 0.95,
    three_phase: bool = False,
) -> Schedule:
    """The momentum that goes with ``one_cycle``: high when the rate is low.

    Same phases as ``one_cycle``; the momentum moves
    ``max_momentum -> base_momentum`` while the rate rises and back while it
    falls (three-phase: then stays at ``max_momentum``). PyTorch ``OneCycleLR``
    with ``cycle_momentum=True`` (for Adam, this is ``b1``).
    ``pct_start``, ``anneal`` and ``three_phase`` as in ``one_cycle``.

    Example:
        >>> from gradlab import schedules
        >>> m = schedules.one_cycle_momentum(total_steps=100)
        >>> [round(m(k).item(), 4) for k in (0, 29, 99)]
        [0.95, 0.85, 0.95]
    """
    check_bools(three_phase=three_phase)
    _check_one_cycle(total_steps, pct_start, anneal)
    check_scalar("base_momentum", base_momentum)
    check_in_range("base_momentum", base_momentum, 0.0, 1.0)
    check_scalar("max_momentum", max_momentum)
    check_in_range("max_momentum", max_momentum, 0.0, 1.0)
    kind = anneal

    def schedule(step: ArrayLike):
        lo, hi = as_float(base_momentum), as_float(max_momentum)
        values = [(hi, lo), (lo, hi), (hi, hi)] if three_phase else [(hi, lo), (lo, hi)]
        return _phased(step, _one_cycle_ends(total_steps, pct_start, three_phase), values, kind)

    return stepped(schedule)
