"""Monotone decays: constant, step, multistep, piecewise, exponential,
inverse-time, polynomial and linear schedules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradlab import _tree
from gradlab._checks import check_bools, check_nonnegative, is_traced
from gradlab.schedules._common import (
    Schedule,
    as_float,
    as_sequence,
    as_step,
    check_factor,
    check_steps,
    check_value,
    float_dtype,
    fraction,
    is_int,
    power,
    step_cycle,
    stepped,
)


def constant(value: ArrayLike) -> Schedule:
    """A schedule that always returns ``value``: ``lr_t = value``.

    The fixed learning rate, as a schedule (Optax ``constant_schedule``).

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.constant(0.1)
        >>> s(1000).item() == s(0).item()
        True
    """
    check_value("value", value)

    def schedule(step: ArrayLike):
        return jnp.zeros_like(as_step(step)) + as_float(value)

    return stepped(schedule)


def step_decay(init_value: ArrayLike, step_size: ArrayLike, gamma: ArrayLike = 0.1) -> Schedule:
    """Multiply by ``gamma`` every ``step_size`` steps.

    ``lr_t = init_value * gamma ** floor(t / step_size)``
    (PyTorch ``StepLR``).

    Example — reduce by 0.1x every 30 epochs:
        >>> from gradlab import schedules
        >>> s = schedules.step_decay(1.0, step_size=30, gamma=0.1)
        >>> [round(s(k).item(), 6) for k in (0, 29, 30, 59, 60, 89)]
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    """
    check_value("init_value", init_value)
    check_steps("step_size", step_size, 1)
    check_factor("gamma", gamma)

    def schedule(step: ArrayLike):
        k, _ = step_cycle(step, step_size)
        return as_float(init_value) * jnp.power(as_float(gamma), k)

    return stepped(schedule)


def multistep_decay(
    init_value: ArrayLike, milestones: Sequence[int] | ArrayLike, gamma: ArrayLike = 0.1
) -> Schedule:
    """Multiply by ``gamma`` at each milestone.

    ``lr_t = init_value * gamma ** #{m in milestones : m <= t}``
    (PyTorch ``MultiStepLR``; a repeated milestone applies ``gamma`` twice, as
    in torch). ``milestones`` is a sequence, set or 1-D array of steps in any
    order (the count does not depend on it, as in torch) and may be a traced
    array. An integer step is compared with them as an integer (exact at any
    step; as float32, beyond 2**24 a drop came early).

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.multistep_decay(1.0, milestones=[30, 80], gamma=0.5)
        >>> [s(k).item() for k in (0, 29, 30, 79, 80)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    check_value("init_value", init_value)
    if isinstance(milestones, set | frozenset):
        milestones = sorted(milestones)
    milestones = as_sequence("milestones", milestones, minimum=0, sort=False)
    check_factor("gamma", gamma)

    def schedule(step: ArrayLike):
        passed = _reached(step, milestones).astype(float_dtype())
        return as_float(init_value) * jnp.power(as_float(gamma), jnp.sum(passed, axis=-1))

    return stepped(schedule)


def _boundaries_and_scales(value: Any) -> tuple[Any, Any]:
    """Normalise the two accepted forms to a pair of 1-D arrays."""
    if value is None:
        return np.zeros((0,)), np.zeros((0,))
    if isinstance(value, Mapping):
        if any(is_traced(k) for k in value):
            raise TypeError("boundaries_and_scales dict keys must be concrete integers")
        items = sorted(value.items(), key=lambda kv: float(kv[0]))
        boundaries = [k for k, _ in items]
        scales = [v for _, v in items]
    elif isinstance(value, tuple | list) and len(value) == 2:
        boundaries, scales = value
    else:
        raise TypeError(
            "boundaries_and_scales must be a dict {boundary: scale} or a pair "
            f"(boundaries, scales) of 1-D sequences, got {value!r}"
        )
    boundaries = as_sequence("boundaries_and_scales boundaries", boundaries, minimum=0)
    scales = _scales(scales)
    if jnp.shape(boundaries) != jnp.shape(scales):
        raise ValueError(
            "boundaries_and_scales needs one scale per boundary, got "
            f"{jnp.shape(boundaries)[0]} boundaries and {jnp.shape(scales)[0]} scales"
        )
    return boundaries, scales


def _along_last(x: Any, t: Any) -> Any:
    """The 1-D ``x`` with ``t``'s dims before it: compared with ``t[..., None]``
    without an implicit rank promotion (``jax_numpy_rank_promotion="raise"``)."""
    return jnp.reshape(x, (1,) * jnp.ndim(t) + jnp.shape(x))


def _reached(step: ArrayLike, boundaries: Any) -> jax.Array:
    """``max(step, 0) >= boundary`` for each boundary (along a last axis), exact
    for an integer step and integer boundaries.

    Compared as floats (:func:`as_step`), a step above 2**24 rounds to a
    multiple of 2 (of 128 near 2**31) in float32, and a drop fired early: at
    30,000,001 two steps early, at 2,000,000,001 65 (Optax compares integers).
    Float steps or boundaries are compared as floats, as before.
    """
    if is_int(step) and is_int(boundaries):
        if not isinstance(step, jax.Array) and not is_traced(step):
            t = np.maximum(np.asarray(step, np.int64), 0)  # a Python int may pass int32
            if not is_traced(boundaries):
                return jnp.asarray(t[..., None] >= np.asarray(boundaries, np.int64))
            idt = jax.dtypes.canonicalize_dtype(np.int64)  # int32 unless x64
            step = jnp.asarray(np.minimum(t, np.iinfo(idt).max), idt)
        t = jnp.maximum(step, 0)
        if is_traced(boundaries) or isinstance(boundaries, jax.Array):
            dt = np.promote_types(t.dtype, boundaries.dtype)
            return t.astype(dt)[..., None] >= _along_last(boundaries.astype(dt), t)
        b = np.asarray(boundaries, np.int64)
        top = np.iinfo(t.dtype).max
        # a boundary past the step's integer range is never reached
        beyond = _along_last(jnp.asarray(b > top), t)
        b = np.minimum(b, top).astype(t.dtype)
        return (t[..., None] >= _along_last(jnp.asarray(b), t)) & ~beyond
    t = as_step(step)
    return t[..., None] >= _along_last(as_float(boundaries), t)


def _scales(scales: Any) -> Any:
    if isinstance(scales, list | tuple):  # NumPy cannot stack bfloat16 JAX scalars
        scales = [
            np.asarray(s, np.float64)
            if isinstance(s, jax.Array)
            and not is_traced(s)
            and jnp.issubdtype(s.dtype, jnp.floating)
            else s
            for s in scales
        ]
    if not is_traced(scales):
        check_nonnegative("boundaries_and_scales scales", scales)  # a 1-D array
    scales = jnp.asarray(scales) if is_traced(scales) else np.asarray(scales)
    if jnp.ndim(scales) != 1:
        raise ValueError(f"boundaries_and_scales scales must be 1-D, got shape {jnp.shape(scales)}")
    return scales


def piecewise_constant(
    init_value: ArrayLike,
    boundaries_and_scales: Mapping[int, float] | tuple[ArrayLike, ArrayLike] | None,
) -> Schedule:
    """Multiply by ``scale_i`` from step ``boundary_i`` on.

    ``lr_t = init_value * prod{scale_i : boundary_i <= t}``
    (Optax ``piecewise_constant_schedule``).

    ``boundaries_and_scales`` is either

    * the Optax dict ``{boundary: scale}`` (keys must be concrete), or
    * the pair ``(boundaries, scales)`` of two equal-length 1-D sequences or
      arrays — the traceable form: both may be traced, so a sweep can
      ``vmap`` over where the drops happen.

    Scales must be >= 0; boundaries sorted, non-negative integers. An integer
    step is compared with them as an integer: the drop comes at its step
    however large (as float32, beyond 2**24 it came early).

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.piecewise_constant(1.0, {100: 0.5, 200: 0.1})
        >>> [round(s(k).item(), 6) for k in (99, 100, 199, 200)]
        [1.0, 0.5, 0.5, 0.05]
        >>> s2 = schedules.piecewise_constant(1.0, ([100, 200], [0.5, 0.1]))
        >>> s2(150).item()
        0.5
    """
    check_value("init_value", init_value)
    boundaries, scales = _boundaries_and_scales(boundaries_and_scales)

    def schedule(step: ArrayLike):
        at = _reached(step, boundaries)
        along = jnp.reshape(as_float(scales), (1,) * (at.ndim - 1) + jnp.shape(scales))
        factors = jnp.where(at, along, 1.0)
        return as_float(init_value) * jnp.prod(factors, axis=-1)

    return stepped(schedule)


def exponential_decay(
    init_value: ArrayLike,
    decay_rate: ArrayLike,
    transition_steps: ArrayLike = 1,
    transition_begin: ArrayLike = 0,
    staircase: bool = False,
    end_value: ArrayLike | None = None,
) -> Schedule:
    """Exponential decay, held at ``init_value`` until ``transition_begin``.

    ``p = max(t - transition_begin, 0) / transition_steps`` (floored when
    ``staircase``), ``lr_t = init_value * decay_rate ** p``, then clipped at
    ``end_value`` — a lower bound when ``decay_rate < 1``, an upper bound
    otherwise (Optax ``exponential_decay``; with ``transition_steps=1`` it is
    PyTorch ``ExponentialLR(gamma=decay_rate)``). A growing schedule
    (``decay_rate > 1``) without ``end_value`` grows without bound. A concrete
    ``decay_rate`` is raised as ``exp(p log decay_rate)`` with the log in
    float64: a float32 ``0.99999`` made the rate 1.35% off at step 10**6.

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.exponential_decay(1.0, decay_rate=0.5, transition_steps=10)
        >>> [round(s(k).item(), 6) for k in (0, 10, 20)]
        [1.0, 0.5, 0.25]
    """
    check_bools(staircase=staircase)
    check_value("init_value", init_value)
    check_factor("decay_rate", decay_rate)
    check_steps("transition_steps", transition_steps, 1)
    check_steps("transition_begin", transition_begin, 0)
    if end_value is not None:
        check_value("end_value", end_value)

    def schedule(step: ArrayLike):
        if staircase:
            p, _ = step_cycle(step, transition_steps, transition_begin)
        else:
            p = jnp.maximum(as_step(step) - as_float(transition_begin), 0.0)
            p = p / as_float(transition_steps)
        rate = as_float(decay_rate)
        value = as_float(init_value) * power(decay_rate, p)  # the log in float64
        if end_value is not None:
            end = as_float(end_value)
            value = jnp.where(rate < 1.0, jnp.maximum(value, end), jnp.minimum(value, end))
        return value

    return stepped(schedule)


def inverse_time_decay(
    init_value: ArrayLike,
    decay_rate: ArrayLike,
    decay_steps: ArrayLike = 1,
    staircase: bool = False,
) -> Schedule:
    """Time-based decay: ``lr_t = init_value / (1 + decay_rate * t / decay_steps)``.

    With ``staircase``, ``t / decay_steps`` is floored (Keras
    ``InverseTimeDecay``; the classic Keras ``decay=`` argument is
    ``decay_steps=1``).

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.inverse_time_decay(1.0, decay_rate=1.0, decay_steps=10)
        >>> [s(k).item() for k in (0, 10, 30)]
        [1.0, 0.5, 0.25]
    """
    check_bools(staircase=staircase)
    check_value("init_value", init_value)
    check_value("decay_rate", decay_rate)
    check_steps("decay_steps", decay_steps, 1)

    def schedule(step: ArrayLike):
        p = step_cycle(step, decay_steps)[0] if staircase else as_step(step) / as_float(decay_steps)
        return as_float(init_value) / (1.0 + as_float(decay_rate) * p)

    return stepped(schedule)


def polynomial_decay(
    init_value: ArrayLike,
    end_value: ArrayLike,
    decay_steps: ArrayLike,
    power: ArrayLike = 1.0,
    transition_begin: ArrayLike = 0,
) -> Schedule:
    """Polynomial interpolation from ``init_value`` to ``end_value``.

    ``s = clip(t - transition_begin, 0, decay_steps)``,
    ``lr_t = end_value + (init_value - end_value) (1 - s / decay_steps) ** power``
    (Optax ``polynomial_schedule``; PyTorch ``PolynomialLR(total_iters=decay_steps,
    power)`` when ``end_value=0``). ``end_value`` may exceed ``init_value``
    (a polynomial warm-up).

    Example:
        >>> from gradlab import schedules
        >>> s = schedules.polynomial_decay(1.0, 0.0, decay_steps=10, power=2.0)
        >>> [round(s(k).item(), 6) for k in (0, 5, 10, 20)]
        [1.0, 0.25, 0.0, 0.0]
    """
    check_value("init_value", init_value)
    check_value("end_value", end_value)
    check_steps("decay_steps", decay_steps, 1)
    check_factor("power", power)
    check_steps("transition_begin", transition_begin, 0)
    return _polynomial(init_value, end_value, decay_steps, power, transition_begin)


def _polynomial(init_value, end_value, steps, power, begin) -> Schedule:
    """The shared body of ``polynomial_decay`` and ``linear`` (``power=None``)."""

    def schedule(step: ArrayLike):
        n = as_float(steps)
        # 1 - t/n computed from the end, (n - t)/n: exact in the last steps (1 - t/n
        # in float32 was 4.6% off at the last step of a 2e6-step decay), 0 at the end
        frac = fraction(n - (as_step(step) - as_float(begin)), n)
        if power is not None:
            frac = _tree.pow_or_zero(frac, as_float(power))  # frac is 0 once decayed
        init, end = as_float(init_value), as_float(end_value)
        return end + (init - end) * frac

    return stepped(schedule)


def linear(
    init_value: ArrayLike,
    end_value: ArrayLike,
    transition_steps: ArrayLike,
    transition_begin: ArrayLike = 0,
) -> Schedule:
    """Linear interpolation from ``init_value`` to ``end_value``.

    ``s = clip(t - transition_begin, 0, transition_steps)``,
    ``lr_t = init_value + (end_value - init_value) s / transition_steps``
    (Optax ``linear_schedule``; PyTorch ``LinearLR`` with
    ``init_value = base * start_factor``, ``end_value = base * end_factor``).

    Example — a linear warm-up over 4 steps:
        >>> from gradlab import schedules
        >>> s = schedules.linear(0.0, 1.0, transition_steps=4)
        >>> [s(k).item() for k in range(6)]
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    check_value("init_value", init_value)
    check_value("end_value", end_value)
    check_steps("transition_steps", transition_steps, 1)
    check_steps("transition_begin", transition_begin, 0)
    return _polynomial(init_value, end_value, transition_steps, None, transition_begin)
