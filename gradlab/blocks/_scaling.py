"""Scaling blocks: identity, constant factors, learning rates and schedules."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab import _tree
from gradlab._checks import (
    check_bools,
    check_learning_rate,
    check_number,
    check_scalars,
    check_schedule,
    check_schedule_value,
    check_state,
    keyword_alias,
)
from gradlab._core import ELEMENTWISE, GradientTransformation, as_schedule, stateless


class ScaleByScheduleState(NamedTuple):
    """``count``: int32 number of updates so far (saturating)."""

    count: jax.Array


def identity() -> GradientTransformation:
    """Pass updates through unchanged (``optax.identity``)."""
    return stateless(
        lambda updates, state, params=None, **extra: (updates, state), packing=ELEMENTWISE
    )


def scale(factor: Any) -> GradientTransformation:
    """``u <- factor * u`` with a fixed (possibly traced) factor (``optax.scale``)."""
    check_scalars(factor=factor)
    check_number("factor", factor)

    def update(updates, state, params=None, **extra):
        return _tree.scale(updates, factor), state

    return stateless(update, packing=ELEMENTWISE)


def scale_by_schedule(schedule: Any) -> GradientTransformation:
    """``u <- schedule(k) * u`` at 0-based step ``k`` (``optax.scale_by_schedule``).

    ``schedule`` may also be a constant; the state always holds the step
    counter, so switching between a constant and a schedule keeps the state's
    structure (a checkpoint or a vmap over configurations does not break).
    A schedule must return one real number (checked at construction and when
    tracing ``update``: a vector would otherwise scale each element of the
    update by its own factor, silently).
    """
    return _scale_by_schedule(schedule, "schedule", None)


@keyword_alias("lr", "learning_rate")
def scale_by_learning_rate(learning_rate: Any, *, flip_sign: bool = True) -> GradientTransformation:
    """``u <- -lr(k) * u`` (``flip_sign=False``: ``+lr(k) * u``).

    ``learning_rate`` may also be passed as ``lr=`` (the API's name for it).

    ``learning_rate`` is a number, an array (possibly traced, e.g. under a
    ``vmap`` over learning rates) or a schedule ``step -> lr``. Concrete
    negative values raise ``ValueError``; a schedule that does not return one
    real number raises ``TypeError``/``ValueError`` naming ``learning_rate``.
    """
    check_bools(flip_sign=flip_sign)
    check_learning_rate("learning_rate", learning_rate)
    return _scale_by_schedule(learning_rate, "learning_rate", -1.0 if flip_sign else 1.0)


def _scale_by_schedule(schedule: Any, name: str, sign: float | None) -> GradientTransformation:
    """``u <- sign * schedule(k) * u`` (``sign=None``: ``schedule(k) * u``); ``name``
    is the argument the user gave the schedule as (named in errors)."""
    if callable(schedule):
        check_schedule(name, schedule)
    else:
        check_number(name, schedule)
    fn = as_schedule(schedule)

    def init(params):
        # Every optimizer ends in this block: refuse integer params here, at
        # init, not at the first apply_updates (sgd keeps no other state).
        _tree.check_float_params(params, "init")
        return ScaleByScheduleState(_tree.step_counter(params))

    def update(updates, state, params=None, **extra):
        check_state("scale_by_schedule", state, ScaleByScheduleState)
        value = fn(state.count)
        check_schedule_value(name, value)
        integer = isinstance(value, jax.Array) and jnp.issubdtype(value.dtype, jnp.integer)
        if sign is not None and integer:  # sign * int32 fails under "strict" promotion
            value = value.astype(jnp.result_type(float))
        factor = value if sign is None else sign * value
        return _tree.scale(updates, factor), ScaleByScheduleState(_tree.safe_increment(state.count))

    return GradientTransformation(init, update, packing=ELEMENTWISE)
