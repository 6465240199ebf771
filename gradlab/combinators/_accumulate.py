"""``MultiSteps``: gradient accumulation over mini-steps."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradlab import _tree
from gradlab._checks import (
    COUNT_MAX,
    check_bools,
    check_float_dtype,
    check_int,
    check_schedule,
    check_schedule_value,
    check_state,
    check_transformation,
    is_traced,
    keyword_alias,
)
from gradlab._core import GradientTransformation, TransformationLike, as_schedule, call_update
from gradlab.combinators._control import branch, zeros_shaped_like
from gradlab.combinators._walk import find_one


class MultiStepsState(NamedTuple):
    """``mini_step``: int32 gradients accumulated since the last inner update;
    ``gradient_step``: int32 inner updates so far; ``inner_opt_state``: the inner
    transformation's state; ``acc_grads``: the running mean of this cycle's
    gradients (their sum with ``use_grad_mean=False``, as in Optax; ONE
    params-sized tree; ``()`` when ``every_k_schedule`` is the Python int 1,
    where nothing is accumulated); ``skip_state``: what
    ``should_skip_update_fn`` returned last (``()`` without one)."""

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_opt_state: Any
    acc_grads: Any
    skip_state: Any = ()


class _MultiStepsTransformation(GradientTransformation):
    """The declared type of ``MultiSteps(...)``, for type checkers: a
    :class:`~gradlab.GradientTransformation` with the two Optax-style attributes
    that ``MultiSteps.__new__`` sets on it. Never instantiated: the object
    returned is a plain ``GradientTransformation`` carrying them."""

    has_updated: Callable[[Any], jax.Array]
    gradient_transformation: Callable[[], GradientTransformation]


class MultiSteps:
    """Gradient accumulation: ``transform`` steps once every ``k`` calls, on the mean gradient.

    ``MultiSteps(transform, every_k_schedule)`` returns a
    :class:`~gradlab.GradientTransformation`. Each call adds the gradient to
    a running mean (``acc <- acc + (g - acc) / n`` at the ``n``-th mini-step)
    and returns zero updates, except at the ``k``-th call, where ``transform`` runs
    on the mean and its updates are returned; then the mean restarts.
    ``every_k_schedule`` is an int (or an integer array) or a schedule ``gradient_step -> k``
    (evaluated at the number of inner updates so far, so the batch size can
    grow during training; a value that is no integer >= 1, such as ``1.5`` from
    ``linear(1, 4, n)``, updates at the first call count ``n >= k``, eager (with
    a warning) as under ``jit``).
    Keyword extras (``value=``) reach ``transform`` at its update only (the last
    mini-step's ones).

    Memory: one accumulator per param, stored in the param's dtype (or
    ``accumulator_dtype``; the mean is computed in float32 at least), and
    ``transform`` runs only on the steps it updates (a ``lax.cond``). With
    ``every_k_schedule=1`` (a Python int) it is ``transform`` itself, without an
    accumulator (``acc_grads=()``; a traced or array ``1`` keeps one, so that
    the state structure stays that of other ``k``).
    ``MultiSteps.has_updated(state)`` (also ``tx.has_updated(state)``) says
    whether the last call updated. ``use_grad_mean=False`` steps on the sum
    of the ``k`` gradients instead of their mean. ``optax.MultiSteps`` (its
    keyword ``opt=`` is accepted too, and ``tx.gradient_transformation()``
    returns ``tx``).

    ``should_skip_update_fn(updates, gradient_step, params) -> (skip, skip_state)``
    (Optax's): where ``skip`` (a boolean scalar) holds, the call returns zero
    updates and leaves the counters, the accumulator and ``transform``'s state as
    they were, as if the gradient had not come; ``skip_state`` (any tree, e.g.
    the norm it looked at) is kept in ``state.skip_state`` either way, and at
    ``init`` comes from a call on zero updates. ``optax.skip_not_finite`` and
    ``optax.skip_large_updates`` work as they are.

    >>> tx = gl.MultiSteps(gl.adam(1e-3), every_k_schedule=4)
    >>> params = grads = jnp.ones(2)
    >>> state = tx.init(params)
    >>> for _ in range(4):
    ...     updates, state = tx.update(grads, state, params)
    ...     print(bool(gl.MultiSteps.has_updated(state)), updates)
    False [0. 0.]
    False [0. 0.]
    False [0. 0.]
    True [-0.001 -0.001]
    """

    @keyword_alias("opt", "transform")
    def __new__(  # type: ignore[misc]  # returns no MultiSteps instance (see its type)
        cls,
        transform: TransformationLike,
        every_k_schedule: ArrayLike | Callable[[Any], Any],
        *,
        accumulator_dtype: Any = None,
        use_grad_mean: bool = True,
        should_skip_update_fn: Callable[[Any, Any, Any], tuple[Any, Any]] | None = None,
    ) -> _MultiStepsTransformation:
        check_transformation("transform", transform)
        if should_skip_update_fn is not None and not callable(should_skip_update_fn):
            raise TypeError(
                "should_skip_update_fn must be None or a callable (updates, gradient_step, "
                f"params) -> (skip, skip_state), got {should_skip_update_fn!r}"
            )
        check_float_dtype("accumulator_dtype", accumulator_dtype)
        check_bools(use_grad_mean=use_grad_mean)
        if callable(every_k_schedule):
            check_schedule("every_k_schedule", every_k_schedule)
        else:
            check_int("every_k_schedule", every_k_schedule, minimum=1, maximum=COUNT_MAX)
        tx = cast(
            _MultiStepsTransformation,
            _skipping(
                _multi_steps(
                    transform, every_k_schedule, accumulator_dtype, use_grad_mean, transform
                ),
                should_skip_update_fn,
            ),
        )
        tx.has_updated = MultiSteps.has_updated  # Optax spells it opt.has_updated(state)
        tx.gradient_transformation = lambda: tx  # Optax's MultiSteps(...).gradient_transformation()
        return tx

    # for inject_hyperparams(gl.MultiSteps); set by keyword_alias
    keyword_aliases = __new__.keyword_aliases  # type: ignore[attr-defined]
    # for inject_hyperparams(gl.MultiSteps): a callable that is no schedule (static)
    structural_args = ("should_skip_update_fn",)

    @staticmethod
    def has_updated(state: Any) -> jax.Array:
        """Whether the last ``update`` ran the inner optimizer (bool array).

        ``state`` is a :class:`MultiStepsState` or any state holding exactly one.
        """
        state = find_one(state, MultiStepsState, "MultiSteps.has_updated")
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)


def _static_one(k: Any) -> bool:
    """``k`` is the Python (or NumPy) integer 1: a structural choice, not a value."""
    return isinstance(k, int | np.integer) and not isinstance(k, bool) and k == 1


def _warn_if_not_a_count(k: Any) -> None:
    """A concrete (eager) schedule value that is no count >= 1 -- ``linear(1, 4, 6)``
    gives 1.5 -- is used as under ``jit`` (the first call count ``n >= k``), with a
    warning: an error here would make an eager debug run differ from the jitted one."""
    if is_traced(k):
        return
    value = np.asarray(k, np.float64)
    if not (value >= 1 and value == np.round(value)):
        warnings.warn(
            f"every_k_schedule returned {float(value)!r}, not an integer >= 1: MultiSteps "
            "updates at the first call count n >= k (k rounded up, at least 1)",
            stacklevel=4,
        )


def _reached(n: jax.Array, k: Any) -> jax.Array:
    """``n >= k`` without rounding ``k``: a traced float ``k = 2.5`` emits at the
    third call, not truncated to 2 (Optax cannot trace a float-valued schedule);
    an int64 ``k`` is compared in int64, not wrapped to int32."""
    k = jnp.asarray(k)
    with jax.numpy_dtype_promotion("standard"):  # int64 (x64) and int32 under "strict" too
        if jnp.issubdtype(k.dtype, jnp.floating):
            dt = jnp.promote_types(k.dtype, jnp.float32)
        else:
            dt = jnp.promote_types(k.dtype, jnp.int32)
    return n.astype(dt) >= k.astype(dt)


def _multi_steps(
    opt: Any, k: Any, acc_dtype: Any, use_mean: bool, declared: Any
) -> GradientTransformation:
    """``MultiSteps`` around ``opt`` (``declared``: the user's ``opt``, whose buffer
    form ``packed`` builds)."""
    every_k = as_schedule(k)
    skip_accumulation = _static_one(k)

    def init(params):
        acc = () if skip_accumulation else _tree.zeros_like(params, acc_dtype)
        # separate counters: one buffer twice in a state cannot be donated
        counter = _tree.step_counter
        return MultiStepsState(counter(params), counter(params), opt.init(params), acc)

    def update(updates, state, params=None, **extra):
        check_state("MultiSteps", state, MultiStepsState)
        if skip_accumulation:  # k = 1: opt itself, nothing accumulated
            out, inner = call_update(opt, updates, state.inner_opt_state, params, extra)
            step = _tree.safe_increment(state.gradient_step)
            return out, MultiStepsState(state.mini_step, step, inner, (), state.skip_state)
        updates = _tree.as_updates(updates)
        n = _tree.safe_increment(state.mini_step)

        def running(g, acc):  # the running mean (Welford), or the running sum
            dt = np.result_type(_tree.compute_dtype(g.dtype), _tree.compute_dtype(acc.dtype))
            a = acc.astype(dt)
            if not use_mean:  # a plain sum: inf + 1 stays inf (n * mean made it NaN)
                return a + g.astype(dt)
            return a + (g.astype(dt) - a) / n.astype(dt)

        k_now = every_k(state.gradient_step)
        check_schedule_value("every_k_schedule", k_now)
        _warn_if_not_a_count(k_now)
        emit = _reached(n, k_now)

        # The mean (sum) is computed inside each branch, fused into its consumer
        # (the accumulator written in place, or opt's first kernel), never materialised.
        def mean(dtype_like):
            out = _tree.map_like(running, updates, state.acc_grads)
            return jax.tree.map(lambda m, x: m.astype(x.dtype), out, dtype_like)

        def step():  # opt on the mean (sum); the accumulator restarts from zeros
            g = mean(updates)
            out, inner = call_update(opt, g, state.inner_opt_state, params, extra)
            return out, inner, jax.tree.map(jnp.zeros_like, state.acc_grads)

        def accumulate():  # zero updates (shaped like opt's, whose dtype may differ)
            zeros = zeros_shaped_like(lambda: step()[0], updates)
            return zeros, state.inner_opt_state, mean(state.acc_grads)

        out, inner, acc = branch(emit, step, accumulate)
        gradient_step = jnp.where(
            emit, _tree.safe_increment(state.gradient_step), state.gradient_step
        )
        new = MultiStepsState(jnp.where(emit, 0, n), gradient_step, inner, acc, state.skip_state)
        return out, new

    def packing(ctx):
        # The accumulator is elementwise: it runs on the buffers around opt's form.
        form = ctx.form(declared, "MultiSteps inner")
        return _multi_steps(form, k, acc_dtype, use_mean, declared)

    return GradientTransformation(init, update, packing=packing)


def _skipping(tx: GradientTransformation, should_skip: Any) -> GradientTransformation:
    """``tx`` (a ``MultiSteps``) that first asks ``should_skip``: where it says so,
    zero updates and the state as it was, but for the new ``skip_state``."""
    if should_skip is None:
        return tx

    def ask(updates, gradient_step, params):
        answer = should_skip(updates, gradient_step, params)
        if not (isinstance(answer, tuple) and len(answer) == 2):
            raise TypeError(
                "should_skip_update_fn must return a pair (skip, skip_state), "
                f"got {type(answer).__name__}"
            )
        skip, skip_state = answer
        dtype, shape = getattr(skip, "dtype", None), jnp.shape(skip)
        if (
            shape != ()
            or (dtype is None and not isinstance(skip, bool))
            or (dtype is not None and dtype != jnp.bool_)
        ):
            raise ValueError(
                "should_skip_update_fn must return a boolean scalar first, got "
                f"{'a ' + type(skip).__name__ if dtype is None else dtype} of shape {shape}"
            )
        return jnp.asarray(skip), skip_state

    def init(params):
        state = tx.init(params)
        _, skip_state = ask(_tree.zeros_like(params), state.gradient_step, params)
        return state._replace(skip_state=skip_state)

    def update(updates, state, params=None, **extra):
        check_state("MultiSteps", state, MultiStepsState)
        updates = _tree.as_updates(updates)
        skip, skip_state = ask(updates, state.gradient_step, params)

        def taken():
            out, new = call_update(tx, updates, state, params, extra)
            return out, new._replace(skip_state=skip_state)

        def skipped():
            zeros = zeros_shaped_like(lambda: taken()[0], updates)
            return zeros, state._replace(skip_state=skip_state)

        return branch(skip, skipped, taken)

    def packing(ctx):
        raise TypeError(
            f"packed cannot run MultiSteps (at {' > '.join(ctx.path) or 'the top'}) with a "
            "should_skip_update_fn: the function reads the gradient tree, which packed "
            "holds as buffers. Use MultiSteps unpacked, around gl.packed(transform)."
        )

    return GradientTransformation(init, update, packing=packing)
