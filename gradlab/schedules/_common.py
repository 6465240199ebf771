"""Helpers shared by every schedule: dtypes, step conversion, validation.

Every schedule follows the same rules, implemented once here:

* parameters are validated at construction when concrete and never inspected
  when traced (``gradlab._checks``), so a sweep can ``vmap`` over any of them;
* the step is converted to the default float dtype *before* any arithmetic, so
  ``int32`` steps near ``2**31`` cannot overflow (``step + warmup`` would);
* negative steps are treated as step 0;
* a step that is not a number (``None``, a string) is a ``TypeError``
  (:func:`stepped` wraps every schedule).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradlab._checks import (
    check_in_range,
    check_int,
    check_nonnegative,
    check_number,
    check_real,
    check_scalars,
    is_traced,
)

Schedule: TypeAlias = Callable[[ArrayLike], jax.Array]


def power(gamma: ArrayLike, t: jax.Array) -> jax.Array:
    """``gamma ** t``, for a concrete ``gamma > 0`` as ``r ** t * exp(t log(gamma / r))``
    with ``r`` the float32 (float64) rounding of ``gamma`` and the log of their
    ratio taken in float64: ``r ** t`` alone, with ``gamma = 0.99999`` off by
    1.4e-8, is 1.4e-2 off at step 10**6; the correction takes that to ~1e-7, and
    a rate the dtype holds exactly (0.5) stays exact (the correction is 0). A
    traced ``gamma`` is already rounded: ``gamma ** t`` as is."""
    if is_traced(gamma) or isinstance(gamma, jax.Array):
        return jnp.power(as_float(gamma), t)
    g = float(np.asarray(gamma, np.float64))
    if not (g > 0 and g != 1):  # 0 ** 0 = 1 and 1 ** t = 1, exactly
        return jnp.power(as_float(gamma), t)
    r = float(np.asarray(g, float_dtype()))  # rounded on the host (no tracer under jit)
    residual = math.log(g) - math.log(r)
    value = jnp.power(as_float(r), t)
    if residual == 0:
        return value
    # past float32's range (a growth to inf, a decay to 0) the correction, a
    # factor near 1 for any step that stays in range, would make inf * 0 = NaN:
    # its exponent is 0 there (a where on the product would still differentiate
    # 0 * inf, a NaN gradient)
    done = (value == 0) | jnp.isinf(value)
    return value * jnp.exp(jnp.where(done, 0.0, t * as_float(residual)))


def float_dtype() -> jnp.dtype:
    """The default float dtype now: float32, or float64 under ``jax_enable_x64``."""
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def as_float(value: ArrayLike) -> jax.Array:
    """A parameter as an array of the default float dtype (an explicit cast, so
    a float32 tracer under x64, or a float64 NumPy value without it, is fine).

    Concrete values go through NumPy's float64 first: a step count or boundary
    beyond int32 (``10**10``) is a valid Python int that ``jnp.asarray`` would
    refuse with an ``OverflowError`` when x64 is off.
    """
    if not isinstance(value, jax.Array) and not is_traced(value):
        value = np.asarray(value, np.float64)
    return jnp.asarray(value).astype(float_dtype())


def as_step(step: ArrayLike) -> jax.Array:
    """The step as a float array, clipped below at 0.

    Converting first keeps ``int32`` arithmetic from overflowing near
    ``2**31 - 1``. In float32, steps above ``2**24`` (16.7M) are rounded to a
    multiple of 2 (of 256 near ``2**31``): a decay moves by less than one part
    in ten million. Where a step or a cycle starts, integer steps are compared
    or divided as integers (:func:`step_cycle`, ``multistep_decay``'s
    milestones), so staircases and restarts turn at their exact step; a
    geometric ``period_mult`` and float steps still round (enable x64).
    """
    return jnp.maximum(as_float(step), 0.0)


def stepped(schedule: Schedule) -> Schedule:
    """``schedule`` with its step checked first: ``None``, a string or another
    non-number is a ``TypeError`` naming ``step`` (``None`` became NaN through
    ``as_float`` and ``"7"`` the value at step 7). Only the type is looked at, so
    traced steps cost nothing."""

    @functools.wraps(schedule)
    def checked(step: ArrayLike) -> jax.Array:
        check_real("a schedule's step", step, "a number or an array of numbers")
        return schedule(step)

    return checked


# --------------------------------------------------------------------------- checks


def check_scalar(name: str, value: Any) -> None:
    """One real number: 0-d (traced or not), and finite if concrete.

    A schedule's value is one number per step: an array parameter would turn a
    schedule of an array of steps into a broadcasting error deep in JAX (or be
    silently ignored where the parameter is unused). A sweep vmaps instead,
    where each traced value is a scalar.
    """
    check_number(name, value)
    check_scalars(**{name: value})


def check_value(name: str, value: Any) -> None:
    """A schedule value (a learning rate, a momentum, a scale): a scalar >= 0.

    Negative values are rejected because a schedule feeds a hyperparameter that
    is non-negative; a negative learning rate would silently ascend.
    """
    check_scalar(name, value)
    check_nonnegative(name, value)


def check_factor(name: str, value: Any, hi: float | None = None) -> None:
    """A multiplicative factor (``gamma``, ``decay_rate``): a scalar > 0."""
    check_scalar(name, value)
    if hi is None:
        check_in_range(name, value, 0.0, lo_open=True)
    else:
        check_in_range(name, value, 0.0, hi, lo_open=True)


def check_steps(name: str, value: Any, minimum: int) -> None:
    """A step count: a scalar integer (or integral float) ``>= minimum``."""
    check_scalar(name, value)
    check_int(name, value, minimum)


def check_greater(name: str, value: Any, other_name: str, other: Any) -> None:
    """``value > other`` when both are concrete (e.g. ``decay_steps > warmup_steps``)."""
    if is_traced(value) or is_traced(other):
        return
    if not np.all(np.asarray(value) > np.asarray(other)):
        raise ValueError(
            f"{name} must be > {other_name} ({np.asarray(other).tolist()!r}), "
            f"got {np.asarray(value).tolist()!r}"
        )


def as_sequence(name: str, value: Any, *, minimum: int, sort: bool = True) -> Any:
    """Validate a 1-D sequence of step boundaries; return it as an array.

    Accepts lists, tuples, NumPy and JAX arrays (traced ones included: their
    shape and dtype are static, their values are not inspected). Concrete
    sequences must be integers ``>= minimum`` in non-decreasing order. Booleans
    are refused (``[True]`` is not step 1), as everywhere a number is expected.
    """
    if isinstance(value, str | bytes | dict):
        raise TypeError(f"{name} must be a sequence or 1-D array of integers, got {value!r}")
    if isinstance(value, list | tuple) and any(isinstance(v, bool | np.bool_) for v in value):
        raise TypeError(f"{name} must be integers (step numbers), got booleans: {value!r}")
    if is_traced(value):
        value = jnp.asarray(value)
    else:
        try:
            value = np.asarray(value)
        except Exception as e:  # ragged nested lists
            raise TypeError(f"{name} must be a 1-D sequence of integers, got {value!r}") from e
    if value.dtype == np.bool_:
        got = "a traced boolean array" if is_traced(value) else repr(value.tolist())
        raise TypeError(f"{name} must be integers (step numbers), got booleans: {got}")
    if not is_traced(value):
        if value.size == 0:
            return np.zeros((0,), np.int32)
        check_number(name, value)
        check_int(name, value, minimum)
    shape = jnp.shape(value)
    if len(shape) != 1:
        raise ValueError(f"{name} must be a 1-D sequence, got shape {shape}")
    if sort and not is_traced(value) and np.any(np.diff(np.asarray(value)) < 0):
        raise ValueError(
            f"{name} must be sorted in non-decreasing order, got {np.asarray(value).tolist()!r}"
        )
    return value


# --------------------------------------------------------------------------- maths


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` with a zero denominator read as 1, for phases of length 0.

    Only reached by traced step counts (concrete ones are validated positive) or
    degenerate one-cycle phases; the selected branch never divides by zero.
    """
    return num / jnp.where(den == 0, 1.0, den)


def fraction(x: jax.Array, n: jax.Array) -> jax.Array:
    """``x / n`` clipped to [0, 1], and exactly 1 once ``x >= n > 0``.

    XLA rewrites a division by a constant as a multiplication by its
    reciprocal (and fuses ``1 - x * (1/n)`` into an FMA), so under ``jit``
    ``41 / 41`` is 0.99999994 and ``1 - 10/10`` is -1.5e-8: a linear decay
    would end slightly below ``end_value`` (a tiny ascent at ``end_value=0``)
    and ``(1 - s/n) ** 0.5`` would be NaN from the last step on.
    """
    return jnp.where((x >= n) & (n > 0), 1.0, jnp.clip(safe_div(x, n), 0.0, 1.0))


def is_int(x: Any) -> bool:
    """A signed integer (Python, NumPy or JAX) of at most 64 bits: unsigned
    ones would wrap negative in a signed comparison, so they (and floats) are
    compared as floats, as before."""
    if isinstance(x, bool | np.bool_):
        return False
    if isinstance(x, int):
        return -(2**63) <= x < 2**63
    dtype = getattr(x, "dtype", None)
    return dtype is not None and bool(jnp.issubdtype(dtype, jnp.signedinteger))


def step_cycle(step: ArrayLike, period: Any, begin: Any = 0) -> tuple[jax.Array, jax.Array]:
    """``(c, p)``, floats: the cycle ``c`` (from 0) of ``s = max(step - begin, 0)``
    (``step`` clipped at 0 first) in cycles of ``period`` steps, and the position
    ``p = s - c * period`` in it.

    Exact, in integers, when ``step``, ``period`` and ``begin`` are signed integers
    (a step counter always is): in float32 a step past 2**24 rounds to an even
    number (a multiple of 128 near 2**31), and a staircase dropped, or a cycle
    restarted, a step or more early (step 19,999,999 with a period of 10**6 was
    20,000,000). Otherwise :func:`cycle_position` on floats.
    """
    values = (step, period, begin)
    if all(is_int(x) for x in values) and not any(
        isinstance(x, jax.Array) or is_traced(x) for x in values
    ):  # Python/NumPy integers: in int64, exact beyond int32 too
        t = np.maximum(np.asarray(step, np.int64), 0)
        t = np.maximum(t - np.asarray(begin, np.int64), 0)
        n = np.asarray(period, np.int64)
        whole = t // n
        return as_float(whole), as_float(t - whole * n)
    idt = jax.dtypes.canonicalize_dtype(np.int64)  # int32 unless x64
    info = np.iinfo(idt)

    def concrete(x: Any) -> bool:
        return not isinstance(x, jax.Array) and not is_traced(x)

    beyond = any(  # a period or offset past the range (never reached by such a step),
        # or a concrete step past it (as int32 it would saturate): as floats
        concrete(x) and not np.all((info.min <= np.asarray(x)) & (np.asarray(x) <= info.max))
        for x in values
    )
    if beyond or not all(is_int(x) for x in values):
        t = jnp.maximum(as_step(step) - as_float(begin), 0.0)
        return cycle_position(t, as_float(period))

    def as_int(x: Any) -> jax.Array:
        return jnp.asarray(x) if not concrete(x) else jnp.asarray(np.asarray(x, np.int64), idt)

    s, n, b = as_int(step), as_int(period), as_int(begin)
    with jax.numpy_dtype_promotion("standard"):  # the int32 step, int64 periods (x64), "strict"
        dt = jnp.promote_types(jnp.promote_types(s.dtype, n.dtype), b.dtype)
    s, n, b = s.astype(dt), n.astype(dt), b.astype(dt)
    s = jnp.maximum(jnp.maximum(s, 0) - b, 0)
    c = s // n
    return c.astype(float_dtype()), (s - c * n).astype(float_dtype())


def cycle_position(t: jax.Array, period: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(c, p)`` with ``t = c * period + p`` and ``0 <= p < period``.

    ``floor(t / period)`` can round either way near a multiple of the period
    (under ``jit``, ``41 / 41`` is 0.99999994); the correction keeps ``p`` in
    range so a cycle (or a staircase step) never starts early or late.
    """
    c = jnp.floor(t / period)
    p = t - c * period
    c = jnp.where(p < 0, c - 1.0, jnp.where(p >= period, c + 1.0, c))
    p = t - c * period
    return c, p
