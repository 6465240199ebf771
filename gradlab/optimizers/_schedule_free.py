"""Schedule-free optimization (Defazio et al. 2024, "The Road Less Scheduled").

No learning-rate decay: the iterate ``z`` takes base-optimizer steps, ``x`` is
a weighted running average of the ``z``'s, and the gradient is taken at the
interpolation ``y = (1-b1) z + b1 x`` -- the params the training loop holds.
Evaluate at ``x`` (:func:`schedule_free_eval_params`): that is the point
whose loss matches a decayed schedule's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import (
    COUNT_MAX,
    check_float_dtype,
    check_in_range,
    check_int,
    check_learning_rate,
    check_nonnegative,
    check_params,
    check_scalars,
    check_schedule_value,
    check_state,
    check_transformation,
    short_structure,
)
from gradlab._core import (
    GradientTransformation,
    TransformationLike,
    as_schedule,
    call_update,
    chain,
)
from gradlab._packing import Layout, PackedState
from gradlab.blocks import add_decayed_weights, scale_by_learning_rate
from gradlab.blocks._adaptive_variants import scale_by_debiased_rms
from gradlab.blocks._helpers import leafwise, widest

ScalarOrSchedule = Any


class ScheduleFreeState(NamedTuple):
    """``b1``: the interpolation weight (kept so that the evaluation params can
    be computed from the state); ``weight_sum``: the sum of the averaging
    weights so far; ``max_lr``: the largest learning rate so far; ``count``:
    int32 steps; ``base_state``: the base optimizer's state; ``z``: the
    iterate the base optimizer moves (params' tree)."""

    b1: jax.Array
    weight_sum: jax.Array
    max_lr: jax.Array
    count: jax.Array
    base_state: Any
    z: Any


def _scalar_dtype(params: Any) -> np.dtype:
    """float32, or float64 when a param is (the averaging weights' precision)."""
    leaves = [x for x in jax.tree.leaves(params) if hasattr(x, "dtype")]
    if not leaves:
        return np.dtype(np.float32)
    return np.result_type(np.float32, *(_tree.compute_dtype(x.dtype) for x in leaves))


def schedule_free(
    base_optimizer: TransformationLike,
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    weight_lr_power: Any = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Make ``base_optimizer`` schedule-free (Defazio et al. 2024, eqs. 1-3 / Alg. 1).

    At 0-based step ``k`` with ``lr_k = learning_rate(k)`` (the base optimizer
    must use the same learning rate; it outputs ``Δz``, already times ``-lr``):
    ``z <- z + Δz(g(y))``; ``w_k = max_{i<=k} lr_i ** weight_lr_power``;
    ``c = w_k / Σ_{i<=k} w_i`` (0 while the sum is 0); ``x <- (1-c) x + c z``;
    ``y <- (1-b1) z + b1 x``. The params are ``y``; ``x`` is recovered from
    ``y`` and ``z`` (``x = (y - (1-b1) z)/b1``), so the state holds ``z`` only
    (``state_dtype`` sets its dtype). ``b1`` in (0, 1].

    Step 0 of a schedule is used (``lr_0``, e.g. 0 at the start of a warm-up,
    gives weight 0); ``optax.contrib.schedule_free`` evaluates the weights one
    step later than its base optimizer's learning rate (optax PR #1744), so
    the two differ under a schedule and agree for a constant learning rate.
    Params are required. Elementwise when the base optimizer is.
    """
    check_transformation("base_optimizer", base_optimizer)
    check_scalars(b1=b1, weight_lr_power=weight_lr_power)
    check_learning_rate("learning_rate", learning_rate)
    check_in_range("b1", b1, 0.0, 1.0, lo_open=True)
    check_nonnegative("weight_lr_power", weight_lr_power)
    check_float_dtype("state_dtype", state_dtype)
    lr_fn = as_schedule(learning_rate)

    def init(params):
        _tree.check_float_params(params, "init")
        dt = _scalar_dtype(params)
        # A copy, so that params and z can both be donated to a jitted step.
        z = jax.tree.map(lambda p: _tree.strong_copy(p, state_dtype), params)
        return ScheduleFreeState(
            b1=_tree.scalar_like(params, _tree.hp(b1, dt), dt),
            weight_sum=_tree.scalar_like(params, 0, dt),
            max_lr=_tree.scalar_like(params, 0, dt),
            count=_tree.step_counter(params),
            base_state=base_optimizer.init(params),
            z=z,
        )

    def update(updates, state, params=None, **extra):
        check_state("schedule_free", state, ScheduleFreeState)
        check_params("schedule_free", params)
        dt = state.weight_sum.dtype
        lr = lr_fn(state.count)
        check_schedule_value("learning_rate", lr)
        max_lr = jnp.maximum(state.max_lr, _tree.hp(lr, dt))
        # max_lr ** power, with finite derivatives where max_lr is 0 (a warm-up's
        # first step: d/dx x**p is infinite there for p < 1, NaN times a 0 tangent)
        power = _tree.hp(weight_lr_power, dt)
        # (power 1: x * x**0, so that d/dpower is x log x there too)
        one = max_lr * _tree.pow_or_zero(max_lr, power - 1)
        weight = jnp.where(power == 1, one, _tree.pow_or_zero(max_lr, power))
        weight_sum = state.weight_sum + weight
        # 0 only while the sum is 0: a NaN sum (a NaN weight_lr_power) stays NaN
        empty = weight_sum == 0
        c = jnp.where(empty, 0, weight / jnp.where(empty, 1, weight_sum))
        steps, base_state = call_update(base_optimizer, updates, state.base_state, params, extra)
        # The b1 this transformation was built with (inject_hyperparams rebuilds
        # it with the current value), placed like the state's copy, which
        # schedule_free_eval_params reads.
        b1_ = _tree.full_along(state.b1, (), b1, dt)

        def leaf(dz, y, z):
            dtl = widest(dz, y, z)
            b, cc = b1_.astype(dtl), c.astype(dtl)
            yx, z_old = y.astype(dtl), z.astype(dtl)
            z_new = _tree.as_stored(z_old + dz.astype(dtl), z.dtype)
            x = (yx - (1 - b) * z_old) / b
            x = (1 - cc) * x + cc * z_new
            y_new = b * x + (1 - b) * z_new
            return (y_new - yx).astype(dz.dtype), z_new.astype(z.dtype)

        out, z = leafwise(leaf, steps, params, state.z, n_out=2, tree_name="params")
        new_state = ScheduleFreeState(
            b1_, weight_sum, max_lr, _tree.safe_increment(state.count), base_state, z
        )
        return out, new_state

    def packing(ctx):
        base = ctx.form(base_optimizer, "schedule_free base_optimizer")
        return schedule_free(base, learning_rate, b1, weight_lr_power, state_dtype)

    return GradientTransformation(init, update, packing=packing)


def _with_warmup(learning_rate: ScalarOrSchedule, warmup_steps: Any) -> ScalarOrSchedule:
    """``learning_rate`` times a linear warm-up over ``warmup_steps`` (None: none):
    ``min(1, (k + 1) / warmup_steps)`` at 0-based step ``k``, the paper's
    ``min(1, t / T_warmup)`` at ``t = k + 1`` and the authors' code
    (facebookresearch/schedule_free), so the first step moves and ``0`` or
    ``1`` means none. Computed in at least float32 (a bfloat16 rate ramps in
    float32)."""
    if warmup_steps is None:
        return learning_rate
    check_learning_rate("learning_rate", learning_rate)  # before it is hidden in a schedule
    check_scalars(warmup_steps=warmup_steps)
    check_int("warmup_steps", warmup_steps, minimum=0, maximum=COUNT_MAX)
    fn = as_schedule(learning_rate)

    def schedule(count):
        lr = jnp.asarray(fn(count))
        dt = _tree.compute_dtype(lr.dtype) if _tree.is_float(lr.dtype) else jnp.float32
        k, n = jnp.asarray(count).astype(dt), jnp.asarray(warmup_steps).astype(dt)
        ramp = jnp.where(n > 0, jnp.minimum((k + 1) / jnp.where(n > 0, n, 1), 1), 1)
        return lr.astype(dt) * ramp

    return schedule


def schedule_free_sgd(
    learning_rate: ScalarOrSchedule = 1.0,
    warmup_steps: Any = None,
    b1: Any = 0.9,
    weight_decay: Any = 0.0,
    weight_lr_power: Any = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Schedule-free SGD (Defazio et al. 2024, Alg. 2 without its warm-up
    factor folded in): ``z <- z - lr_k (g(y) + weight_decay y)``, ``x`` the
    ``lr_max^2``-weighted average of the ``z``'s, ``y = (1-b1) z + b1 x``.

    ``warmup_steps``: a linear warm-up of the learning rate, ``lr_k * min(1,
    (k+1)/warmup_steps)`` at 0-based step ``k``, as the paper and the authors'
    code (``optax.contrib``'s starts at 0: its step 0 does not move). Evaluate
    at :func:`schedule_free_eval_params`. State: ``z`` (1x).
    ``optax.contrib.schedule_free_sgd`` (see :func:`schedule_free` for the
    one-step schedule offset there).
    ``lr_k``: ``learning_rate`` (a number, array or schedule; times the warm-up) at step
    ``k``; ``lr_max^2`` is ``lr_max ** weight_lr_power`` (default 2), ``lr_max`` the largest
    ``lr_k`` so far; ``state_dtype``: the dtype of ``z`` (default: the param's).

    >>> tx = schedule_free_sgd(1.0, warmup_steps=100)
    """
    lr = _with_warmup(learning_rate, warmup_steps)
    base = chain(add_decayed_weights(weight_decay), scale_by_learning_rate(lr))
    return schedule_free(base, lr, b1, weight_lr_power, state_dtype)


def schedule_free_adamw(
    learning_rate: ScalarOrSchedule = 0.0025,
    warmup_steps: Any = None,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    weight_lr_power: Any = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Schedule-free AdamW (Defazio et al. 2024, Alg. 1).

    ``v <- b2 v + (1-b2) g²`` at ``y``; ``z <- z - lr_k (g / (sqrt(v/(1-b2^t))
    + eps) + weight_decay y)``; ``x``, ``y`` as :func:`schedule_free`. No
    first moment: the averaging plays its part, so the state is ``z`` and
    ``v`` (2x). As ``optax.contrib.schedule_free_adamw``: the paper folds the
    bias correction into ``lr_t = lr sqrt(1-b2^t)`` (so ``eps`` is on the
    uncorrected ``sqrt(v)``, and its averaging weights grow with it); here,
    as in Optax, ``v`` is corrected and the weights use ``lr_k`` alone.
    ``lr_k``: ``learning_rate`` (a number, array or schedule; times the warm-up
    ``min(1, (k+1)/warmup_steps)``, as :func:`schedule_free_sgd`) at step
    ``k``; ``b1``, ``weight_lr_power`` and ``state_dtype`` (the dtype of ``z``) as in
    :func:`schedule_free`.

    >>> tx = schedule_free_adamw(2.5e-3, warmup_steps=100, weight_decay=1e-4)
    """
    check_scalars(b2=b2)
    check_in_range("b2", b2, 0.0, 1.0, hi_open=True)  # named b2, not the block's "decay"
    lr = _with_warmup(learning_rate, warmup_steps)
    base = chain(
        scale_by_debiased_rms(b2, eps),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(lr),
    )
    return schedule_free(base, lr, b1, weight_lr_power, state_dtype)


def _hides(x: Any) -> bool:
    """A masked/partition state (gradlab's or Optax's): its inner states hold
    ``MaskedNode`` for the leaves they do not see."""
    return type(x).__name__ in ("MaskedState", "PartitionState") and isinstance(x, tuple)


def _hidden(x: Any) -> bool:
    return type(x).__name__ == "MaskedNode"


def _find_state(state: Any) -> tuple[ScheduleFreeState, PackedState | None, bool]:
    """The one ``ScheduleFreeState`` in ``state``, the ``PackedState`` around it
    (or None), and whether a masked/partition state lies on the way."""
    found: list[tuple[ScheduleFreeState, PackedState | None, bool]] = []

    def visit(s, packed_state, hidden):
        is_leaf = lambda x: isinstance(x, ScheduleFreeState | PackedState) or _hides(x)  # noqa: E731
        for node in jax.tree.leaves(s, is_leaf=is_leaf):
            if isinstance(node, ScheduleFreeState):
                found.append((node, packed_state, hidden))
            elif isinstance(node, PackedState):
                visit(node.inner, node, hidden)
            elif _hides(node):
                visit(tuple(node), packed_state, True)

    visit(state, None, False)
    if len(found) != 1:
        raise ValueError(
            "schedule_free_eval_params needs the state of a schedule-free optimizer "
            f"(one ScheduleFreeState, possibly inside a chain or gl.packed), found {len(found)} "
            f"in a {type(state).__name__}: {short_structure(state, 200)}"
        )
    return found[0]


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    """The params to evaluate a schedule-free run at: ``x = (y - (1-b1) z) / b1``,
    the weighted average of the iterates (``params`` are ``y``).

    ``state`` is the optimizer's state (a ``ScheduleFreeState``, or a state
    holding one: a chain's, ``gl.packed``'s, ``masked``'s or ``partition``'s).
    ``optax.contrib.schedule_free_eval_params``. A leaf that a ``masked`` or
    ``partition`` keeps from the schedule-free optimizer is not averaged: its
    eval param is the param itself. Inside ``gl.packed`` together with
    ``masked``/``partition`` (either way round) the state does not say which
    leaves the optimizer saw, so that combination is refused.

    >>> tx = gl.schedule_free_sgd(0.1)
    >>> params = jnp.ones(2)
    >>> opt_state = tx.init(params)
    >>> for _ in range(3):
    ...     updates, opt_state = tx.update(params, opt_state, params)
    ...     params = gl.apply_updates(params, updates)
    >>> eval_params = gl.schedule_free_eval_params(opt_state, params)   # the averaged x, not y
    """
    sf, packed_state, hidden = _find_state(state)
    if packed_state is not None and hidden:
        raise ValueError(
            "schedule_free_eval_params: the schedule-free optimizer runs inside gl.packed "
            "together with masked/partition, and its packed state does not say which leaves "
            "it saw (a masked-out leaf's slot holds a stale value). Build it without "
            "gl.packed to read eval params, e.g. masked(schedule_free_adamw(...), mask)."
        )
    z = sf.z
    if packed_state is not None:
        layout = Layout.of_state(params, packed_state.offsets)
        if layout.packs_anything:
            z = layout.unpack(z, layout.packed_offsets(packed_state.offsets))

    def leaf(y, zi):
        y = _tree.as_param(y)
        dt = widest(y, zi)
        b = sf.b1.astype(dt)
        return ((y.astype(dt) - (1 - b) * zi.astype(dt)) / b).astype(y.dtype)

    if jax.tree.structure(params) != jax.tree.structure(z, is_leaf=_hidden):
        raise ValueError(
            "schedule_free_eval_params: params must have the structure of the params the "
            f"optimizer updates; got params {short_structure(params, 200)}, and the "
            f"schedule-free state's z is {short_structure(z, 200)}"
        )

    def leaf_or_param(path, zi, y):
        if _hidden(zi):  # kept from the schedule-free optimizer by masked/partition
            return y
        if jnp.shape(y) != jnp.shape(zi):
            raise ValueError(
                f"schedule_free_eval_params: params leaf {jax.tree_util.keystr(path)} has "
                f"shape {jnp.shape(y)}, the schedule-free state's z {jnp.shape(zi)}"
            )
        return leaf(y, zi)

    return jax.tree_util.tree_map_with_path(leaf_or_param, z, params, is_leaf=_hidden)
