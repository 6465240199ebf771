"""``reduce_on_plateau``: lower the step when the loss stops improving."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab import _tree
from gradlab._checks import (
    COUNT_MAX,
    check_choice,
    check_in_range,
    check_int,
    check_nonnegative,
    check_real,
    check_scalars,
    check_state,
)
from gradlab._core import ELEMENTWISE, GradientTransformation


class ReduceLROnPlateauState(NamedTuple):
    """``scale``: the current factor on the updates; ``best_value``:
    the best (averaged) value so far; ``plateau_count``: int32 decisions without
    improvement; ``cooldown_count``: int32 decisions left in the cooldown;
    ``count``: int32 values averaged toward the next decision; ``avg_value``:
    their running mean. The three floats are float32, or float64 when
    ``jax_enable_x64`` is on at ``init`` (as a Python float or torch's)."""

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array
    avg_value: jax.Array


def reduce_on_plateau(
    factor: Any = 0.1,
    patience: Any = 10,
    rtol: Any = 1e-4,
    atol: Any = 0.0,
    cooldown: Any = 0,
    min_scale: Any = 0.0,
    accumulation_size: Any = 1,
    mode: str = "min",
) -> GradientTransformation:
    """Multiply the updates by a scale that drops by ``factor`` when the loss stalls.

    Pass the monitored value with each step: ``update(grads, state, params,
    value=loss)`` (chains forward it). Every ``accumulation_size`` values,
    their mean ``a`` is compared with the best so far: it improves when
    ``a + atol < best * (1 - rtol)`` (mode ``"min"``; ``"max"``:
    ``a - atol > best * (1 + rtol)``). After more than ``patience``
    decisions without improvement, ``scale <- max(scale * factor, min_scale)``
    (never raised: a ``min_scale`` above the scale keeps it, as torch does),
    then ``cooldown`` decisions are ignored. This step's updates already use
    the scale decided with this step's value. So with a validation loss of
    the current params passed at the next step, the rates are torch's; with
    ``accumulation_size`` averaging an epoch's training losses, the cut lands
    on the epoch's last step, where torch's usual loop (an epoch, then
    ``scheduler.step(mean_loss)``) applies it from the next epoch's first.

    These are ``torch.optim.lr_scheduler.ReduceLROnPlateau``'s semantics,
    with ``lr = base_lr * scale``: ``rtol`` is its ``threshold`` with
    ``threshold_mode="rel"`` (set ``atol=0``), ``atol`` its ``threshold`` with
    ``threshold_mode="abs"`` (set ``rtol=0``; both > 0 require both margins),
    ``min_scale = min_lr / base_lr``; torch's ``eps`` (skip a reduction
    smaller than 1e-8) is not reproduced. Optax's ``reduce_on_plateau``
    reduces one decision earlier (after ``patience``, not ``patience + 1``).
    The comparison runs in float32 (float64 when ``jax_enable_x64`` is on at
    ``init``: torch compares Python floats), the same eager, jitted and in
    ``lax.scan``; so a value within a float32 rounding of the margin
    (``a + atol`` a hair from ``best``) can decide otherwise than torch's
    float64 comparison.
    Compose it with a schedule (warm-up, then reduce on plateau) by chaining:
    ``chain(adam(warmup_schedule), reduce_on_plateau())``. The current scale
    is ``state.scale``.

    >>> tx = gl.chain(gl.adam(1e-3), gl.reduce_on_plateau(factor=0.5, patience=5))
    >>> f = lambda x: jnp.sum(x**2)
    >>> params = jnp.ones(2)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jax.grad(f)(params), state, params, value=f(params))
    """
    check_scalars(
        factor=factor, patience=patience, rtol=rtol, atol=atol, cooldown=cooldown,
        min_scale=min_scale, accumulation_size=accumulation_size,
    )  # fmt: skip
    check_in_range("factor", factor, 0.0, 1.0, lo_open=True, hi_open=True)
    check_int("patience", patience, minimum=0, maximum=COUNT_MAX)
    check_in_range("rtol", rtol, 0.0, 1.0)
    check_nonnegative("atol", atol)
    check_int("cooldown", cooldown, minimum=0, maximum=COUNT_MAX)
    check_nonnegative("min_scale", min_scale)
    check_int("accumulation_size", accumulation_size, minimum=1, maximum=COUNT_MAX)
    check_choice("mode", mode, ("min", "max"))

    def init(params):
        # a buffer each (one buffer twice in a state cannot be donated), each
        # replicated over the params' devices (scalar_like); float64 under x64
        f = jax.dtypes.canonicalize_dtype(jnp.float64)

        def scalar(value, dtype=f):
            return _tree.scalar_like(params, value, dtype)

        worst = scalar(jnp.inf if mode == "min" else -jnp.inf)
        counter = lambda: _tree.step_counter(params)  # noqa: E731
        return ReduceLROnPlateauState(
            scalar(1.0), worst, counter(), counter(), counter(), scalar(0.0)
        )

    def improves(value, best):
        f = best.dtype
        # value + atol < best * (1 - rtol), not value < best * (1 - rtol) - atol:
        # under jit XLA fuses a multiply feeding an add into one FMA (one
        # rounding, eagerly two), and a value at the threshold would be
        # decided differently. Here no product feeds a sum.
        if mode == "min":
            margin, c, better = value + jnp.asarray(atol, f), 1 - jnp.asarray(rtol, f), jnp.less
        else:
            margin, c, better = value - jnp.asarray(atol, f), 1 + jnp.asarray(rtol, f), jnp.greater
        # The first best is +-inf, and inf * c would be an inf that no input
        # holds (a false alarm under jax.debug_infs): there the comparison is
        # the one IEEE's product gives, without the product: with best for
        # c > 0, with -best for c < 0 (an rtol set past 1 at run time, as
        # margin beats -best exactly when best beats -margin), and none for
        # c = 0 (rtol = 1: inf * 0 is NaN, which nothing beats).
        finite = jnp.isfinite(best)
        at_finite = better(margin, jnp.where(finite, best, 0) * c)
        at_inf = jnp.where(c > 0, better(margin, best), (c < 0) & better(best, -margin))
        return jnp.where(finite, at_finite, at_inf)

    def decide(state, value):
        """torch's ReduceLROnPlateau.step(value)."""
        better = improves(value, state.best_value)
        best = jnp.where(better, value, state.best_value)
        bad = jnp.where(better, 0, _tree.safe_increment(state.plateau_count))
        cooling = state.cooldown_count > 0
        cooldown_left = jnp.where(cooling, state.cooldown_count - 1, 0)
        bad = jnp.where(cooling, 0, bad)  # bad decisions in the cooldown are ignored
        reduce = bad > jnp.asarray(patience, jnp.int32)
        f = state.scale.dtype
        lowered = jnp.maximum(state.scale * jnp.asarray(factor, f), jnp.asarray(min_scale, f))
        lowered = jnp.minimum(lowered, state.scale)  # a min_scale above the scale never raises it
        scale = jnp.where(reduce, lowered, state.scale)
        cooldown_left = jnp.where(reduce, jnp.asarray(cooldown, jnp.int32), cooldown_left)
        return scale, best, jnp.where(reduce, 0, bad), cooldown_left

    def update(updates, state, params=None, *, value=None, **extra):
        check_state("reduce_on_plateau", state, ReduceLROnPlateauState)
        if value is None:
            raise ValueError(
                "reduce_on_plateau needs the monitored loss: call update(grads, state, params, "
                "value=loss) (inside an Optax wrapper -- optax.chain, MultiSteps, "
                "apply_if_finite, multi_transform drop extras for members that are not "
                "GradientTransformationExtraArgs -- wrap it as "
                "optax.GradientTransformationExtraArgs(*tx))"
                + (f"; it got the extras {sorted(extra)}" if extra else "")
            )
        check_real("value", value, "the monitored loss, a real scalar")
        value = jnp.asarray(value)
        if value.shape != ():
            raise ValueError(f"value must be a scalar loss, got an array of shape {value.shape}")
        f = state.avg_value.dtype
        value = value.astype(f)
        count = _tree.safe_increment(state.count)
        # The running mean avg + (value - avg) / n (exactly v for a window of equal
        # values); where value - avg is not finite (an infinite value, or a
        # difference that overflows), weighted instead: [inf, 1] gave inf - inf.
        n = count.astype(f)
        finite = jnp.isfinite(value - state.avg_value)  # also where it overflows
        avg = jnp.where(
            finite,
            state.avg_value + (value - state.avg_value) / n,
            state.avg_value * ((n - 1) / n) + value / n,
        )
        ready = count >= jnp.asarray(accumulation_size, jnp.int32)
        decided = decide(state, avg)
        kept = (state.scale, state.best_value, state.plateau_count, state.cooldown_count)
        scale, best, bad, cooldown_left = (
            jnp.where(ready, d, k) for d, k in zip(decided, kept, strict=True)
        )
        # a NaN rtol or atol (traced) decides nothing: the scale turns NaN, not cut
        # as if no loss ever improved
        unknown = jnp.isnan(jnp.asarray(rtol, f)) | jnp.isnan(jnp.asarray(atol, f))
        scale = jnp.where(unknown, jnp.nan, scale)
        new_state = ReduceLROnPlateauState(
            scale,
            best,
            bad,
            cooldown_left,
            jnp.where(ready, 0, count),
            jnp.where(ready, 0, avg).astype(f),
        )
        return _tree.scale(updates, scale), new_state

    return GradientTransformation(init, update, packing=ELEMENTWISE)
