"""Warm-up schedules: linear warm-up followed by a cosine, linear, or
stable-then-decay phase (the transformer-style schedules)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradlab import _tree
from gradlab._checks import check_choice, is_traced
from gradlab.schedules._common import (
    Schedule,
    as_float,
    as_step,
    check_factor,
    check_greater,
    check_steps,
    check_value,
    fraction,
    safe_div,
    stepped,
)
from gradlab.schedules._cosine import cosine_factor

_DECAYS = ("linear", "cosine", "sqrt")


def _check_warmup_then_decay(init_value, peak_value, warmup_steps, decay_steps, end_value):
    check_value("init_value", init_value)
    check_value("peak_value", peak_value)
    check_steps("warmup_steps", warmup_steps, 0)
    check_steps("decay_steps", decay_steps, 1)
    check_greater("decay_steps", decay_steps, "warmup_steps", warmup_steps)
    check_value("end_value", end_value)


def _warmup_then(init_value, peak_value, warmup_steps, decay_steps, end_value, factor):
    """Linear ``init -> peak`` on ``[0, warmup]``, then ``end + (peak - end) *
    factor(pct, rest)`` with ``pct`` going 0 -> 1 on ``[warmup, decay_steps]``
    and ``rest = 1 - pct`` computed as ``(decay_steps - t) / (decay_steps -
    warmup)``: exact near the end, where ``1 - pct`` cancels (at 2e6 steps the
    last values were 2-7% off, relative)."""

    def schedule(step: ArrayLike):
        t = as_step(step)
        w, n = as_float(warmup_steps), as_float(decay_steps)
        init, peak, end = as_float(init_value), as_float(peak_value), as_float(end_value)
        warm = init + (peak - init) * safe_div(t, w)
        pct, rest = fraction(t - w, n - w), fraction(n - t, n - w)
        return jnp.where(t < w, warm, end + (peak - end) * factor(pct, rest))

    return stepped(schedule)


def warmup_cosine_decay(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: ArrayLike,
    decay_steps: ArrayLike,
    end_value: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then cosine decay to ``end_value``.

    Both step counts are measured from the start (Optax
    ``warmup_cosine_decay_schedule``): ``lr`` rises linearly from
    ``init_value`` at step 0 to ``peak_value`` at ``warmup_steps``, then
    ``lr_t = end + (peak - end) ((1 + cos(pi (t - W) / (D - W))) / 2) ** exponent``
    reaches ``end_value`` at ``decay_steps`` (``D > W``) and stays there.

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.warmup_cosine_decay(0.0, 1.0, warmup_steps=10, decay_steps=110)
        >>> [round(s(k).item(), 4) for k in (0, 5, 10, 60, 110, 500)]
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    _check_warmup_then_decay(init_value, peak_value, warmup_steps, decay_steps, end_value)
    check_factor("exponent", exponent)
    return _warmup_then(
        init_value,
        peak_value,
        warmup_steps,
        decay_steps,
        end_value,
        lambda pct, rest: cosine_factor(pct, exponent, rest),
    )


def warmup_linear_decay(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: ArrayLike,
    decay_steps: ArrayLike,
    end_value: ArrayLike = 0.0,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then linear decay to ``end_value``.

    Same step convention as ``warmup_cosine_decay``: ``peak_value`` at step
    ``warmup_steps``, ``end_value`` at step ``decay_steps``, both counted from
    the start; ``lr_t = end + (peak - end)(1 - (t - W)/(D - W))`` in between
    (the BERT / Hugging Face ``get_linear_schedule_with_warmup`` shape).
    The warm-up rises linearly from ``init_value`` at step 0.

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.warmup_linear_decay(0.0, 1.0, warmup_steps=10, decay_steps=30)
        >>> [s(k).item() for k in (0, 5, 10, 20, 30, 40)]
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    _check_warmup_then_decay(init_value, peak_value, warmup_steps, decay_steps, end_value)
    return _warmup_then(
        init_value, peak_value, warmup_steps, decay_steps, end_value, lambda pct, rest: rest
    )


def warmup_stable_decay(
    peak_value: ArrayLike,
    warmup_steps: ArrayLike,
    stable_steps: ArrayLike,
    decay_steps: ArrayLike,
    init_value: ArrayLike = 0.0,
    end_value: ArrayLike = 0.0,
    decay: str = "linear",
) -> Schedule:
    """Warm-up / stable / decay (WSD, "trapezoidal") schedule.

    Three consecutive phases. ``warmup_steps`` and ``decay_steps`` count from
    the schedule's start, as in ``warmup_cosine_decay`` (the API's
    convention): linear ``init_value -> peak_value`` until step
    ``warmup_steps``; ``peak_value`` for ``stable_steps`` more steps; then a
    decay that reaches ``end_value`` at step ``decay_steps`` and holds
    (``decay_steps > warmup_steps + stable_steps``). With ``pct`` the fraction
    of the decay phase done, ``lr = end + (peak - end) f(pct)`` where ``f`` is
    ``1 - pct`` (``"linear"``), ``(1 + cos(pi pct)) / 2`` (``"cosine"``) or
    ``1 - sqrt(pct)`` (``"sqrt"``, the "1-sqrt" cooldown of Hägele et al.
    2024). Hugging Face ``get_wsd_schedule`` takes the decay's *length*
    instead: its ``num_decay_steps`` is ``decay_steps - warmup_steps -
    stable_steps`` here.

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.warmup_stable_decay(1.0, warmup_steps=2, stable_steps=3, decay_steps=9)
        >>> [s(k).item() for k in range(10)]
        [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    check_value("peak_value", peak_value)
    check_steps("warmup_steps", warmup_steps, 0)
    check_steps("stable_steps", stable_steps, 0)
    check_steps("decay_steps", decay_steps, 1)
    check_value("init_value", init_value)
    check_value("end_value", end_value)
    check_choice("decay", decay, _DECAYS)
    if not is_traced((warmup_steps, stable_steps, decay_steps)):
        start = np.asarray(warmup_steps) + np.asarray(stable_steps)
        if not np.all(np.asarray(decay_steps) > start):
            raise ValueError(
                f"decay_steps is the step where the decay ends, counted from the schedule's "
                f"start (as in warmup_cosine_decay), so it must be > warmup_steps + "
                f"stable_steps = {start.tolist()!r}, got {np.asarray(decay_steps).tolist()!r} "
                f"(for a decay phase of that length pass decay_steps="
                f"{(start + np.asarray(decay_steps)).tolist()!r})"
            )

    def schedule(step: ArrayLike):
        t = as_step(step)
        w, n = as_float(warmup_steps), as_float(decay_steps)
        start = w + as_float(stable_steps)
        init, peak, end = as_float(init_value), as_float(peak_value), as_float(end_value)
        warm = init + (peak - init) * safe_div(t, w)
        # rest = 1 - pct, computed from the end: exact in the last steps (see _warmup_then)
        pct, rest = fraction(t - start, n - start), fraction(n - t, n - start)
        if decay == "linear":
            f = rest
        elif decay == "cosine":
            f = cosine_factor(pct, rest=rest)
        else:  # 1 - sqrt(pct) = (1 - pct) / (1 + sqrt(pct)), without the cancellation
            f = rest / (1.0 + _tree.sqrt_or_zero(pct))
        return jnp.where(t < w, warm, end + (peak - end) * f)

    return stepped(schedule)
