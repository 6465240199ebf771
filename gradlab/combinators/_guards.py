"""``apply_if_finite``: skip the steps whose gradients hold NaN or Inf."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab import _tree
from gradlab._checks import (
    COUNT_MAX,
    check_int,
    check_scalars,
    check_state,
    check_transformation,
    keyword_alias,
)
from gradlab._core import GradientTransformation, TransformationLike, call_update
from gradlab.combinators._control import branch, zeros_shaped_like


class ApplyIfFiniteState(NamedTuple):
    """``notfinite_count``: int32 consecutive non-finite steps not applied yet (0
    after a finite step and after giving up); ``last_finite``: bool, whether the
    last step's gradients were all finite; ``total_notfinite``: int32 non-finite
    steps so far (saturating); ``inner_state``: the guarded transformation's state."""

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: Any

    # the inner transformation's updates are returned unchanged, or zeros with
    # its state kept (see gradlab.optimizers._linesearch.final_linesearch_state)
    passes_updates_of = "inner_state"


@keyword_alias("inner", "transform")
def apply_if_finite(
    transform: TransformationLike, max_consecutive_errors: Any
) -> GradientTransformation:
    """Skip steps whose gradients hold NaN or Inf, counting them in the state.

    On a step whose gradients are not all finite (one fused check over the
    whole tree) the updates are zeros and ``transform``'s state is kept
    bit-for-bit, so the params do not move; ``notfinite_count`` (consecutive),
    ``total_notfinite`` and ``last_finite`` record it. After
    ``max_consecutive_errors`` consecutive skipped steps, the next non-finite
    step is *applied anyway*: ``transform`` updates its state with those
    non-finite gradients and its (non-finite) updates are returned, so a
    training that keeps producing NaN does not stall silently; the consecutive
    count then restarts from 0 (Optax's ``apply_if_finite`` does not reset it
    and applies every later bad step too, its PR #1746).
    ``max_consecutive_errors=0`` applies every step (and only counts).
    ``optax.apply_if_finite`` (its keyword ``inner=`` is accepted too).

    >>> tx = gl.apply_if_finite(gl.adam(1e-3), max_consecutive_errors=5)
    """
    check_transformation("transform", transform)
    check_scalars(max_consecutive_errors=max_consecutive_errors)
    check_int("max_consecutive_errors", max_consecutive_errors, minimum=0, maximum=COUNT_MAX)
    return _guard(transform, max_consecutive_errors, transform)


def _guard(inner: Any, max_errors: Any, declared: Any) -> GradientTransformation:
    """``apply_if_finite`` around ``inner`` (``declared``: the user's inner, whose
    buffer form ``packed`` builds)."""

    def init(params):
        # separate counters: one buffer twice in a state cannot be donated
        count, total = _tree.step_counter(params), _tree.step_counter(params)
        last_finite = _tree.scalar_like(params, True, bool)
        return ApplyIfFiniteState(count, last_finite, total, inner.init(params))

    def update(updates, state, params=None, **extra):
        check_state("apply_if_finite", state, ApplyIfFiniteState)
        updates = _tree.as_updates(updates)
        finite = _tree.all_finite(updates)
        bad_run = jnp.where(finite, 0, _tree.safe_increment(state.notfinite_count))
        give_up = bad_run > jnp.asarray(max_errors, jnp.int32)

        def step():
            return call_update(inner, updates, state.inner_state, params, extra)

        def skip():  # zero updates, the inner state as it was
            return zeros_shaped_like(lambda: step()[0], updates), state.inner_state

        out, inner_state = branch(finite | give_up, step, skip)
        total = jnp.where(
            finite, state.total_notfinite, _tree.safe_increment(state.total_notfinite)
        )
        return out, ApplyIfFiniteState(jnp.where(give_up, 0, bad_run), finite, total, inner_state)

    def packing(ctx):
        # Finiteness over the packed buffers is finiteness over the leaves.
        ctx.reduces_whole_tree()
        return _guard(ctx.form(declared, "apply_if_finite inner"), max_errors, declared)

    return GradientTransformation(init, update, packing=packing)
