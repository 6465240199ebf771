"""``gl.lr_finder``: Leslie Smith's learning-rate range test, in pure JAX.

Smith, "Cyclical Learning Rates for Training Neural Networks" (WACV 2017),
section 3.3; the smoothing, stopping and suggestion rules follow fastai's
``lr_find`` (``LRFinder`` callback and its ``steep``, ``minimum``, ``valley``
suggestion functions), re-derived here from their descriptions:

* the learning rate of step ``t`` (of ``T = num_steps``) grows from
  ``min_lr`` to ``max_lr``: ``lr_t = min_lr * (max_lr/min_lr)**(t/(T-1))``
  (``mode="exp"``) or ``min_lr + (max_lr - min_lr) * t/(T-1)`` (``"linear"``);
* the loss is smoothed with a bias-corrected EMA,
  ``a_t = beta a_{t-1} + (1-beta) loss_t``, ``s_t = a_t / (1 - beta**(t+1))``;
* the test stops once ``s_t - min s > (diverge_threshold - 1) |min s|``
  (fastai's ``s_t > 4 min s`` for a positive loss) or the loss is not
  finite. The scan still runs ``T`` steps, but from then on the params are
  frozen and the curve is NaN (masked), so the whole test is one compiled,
  vmappable computation (compiled anew at each call, like ``gl.sweep``'s).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

from gradlab._checks import (
    COUNT_MAX,
    check_choice,
    check_in_range,
    check_int,
    check_positive,
    check_scalars,
    check_seed,
    check_transformation,
    is_function,
    is_traced,
)
from gradlab._core import apply_updates
from gradlab.run import _grid
from gradlab.run._common import as_batches, check_loss, check_params

Params = Any
RULES = ("steepest", "minimum", "valley")
FELL = 1e-4  # the smoothed loss fell when it went this fraction of its first value below it
MODES = ("exp", "linear")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LRFinderResult:
    """What :func:`gradlab.lr_finder` returns (a pytree of arrays: it can be
    returned from ``jit``/``vmap``; a grid adds a leading configuration axis).

    Attributes:
        learning_rates: ``(num_steps,)`` the rate of each step.
        losses: raw loss of each step (before its update), NaN after the stop.
        smoothed: the bias-corrected EMA of the losses, NaN after the stop.
        stop_step: the step at which the smoothed loss exceeded the threshold
            (or the loss turned non-finite); ``num_steps`` if it never did.
            The suggestions use steps ``[0, stop_step)``.
        suggestions: ``{"steepest", "minimum", "valley"}`` -> learning rate:
            ``steepest``: where the smoothed loss falls fastest against
            ``log(lr)`` on its way down to its minimum, past the first 10% of
            the steps when the descent goes on past them (as fastai skips
            them: the smoothing has not yet averaged out the noise there);
            ``minimum``: the rate of the lowest smoothed loss, divided by 10;
            ``valley``: at the middle (or just before it) of the longest
            stretch over which the smoothed loss keeps falling. ``minimum``
            and ``valley`` read every step of ``[0, stop_step)``: fastai
            computes all three on ``[num_steps // 10, -5)`` of what it
            recorded, so on a curve still falling at the last step its
            ``minimum`` is 5 steps earlier, and its ``valley`` (which then
            cannot start in the first 10%) can land up to ~1.5x away. All within
            ``[min_lr, max_lr]`` -- or NaN when the smoothed loss never fell
            below its first value (by 0.01% of it: a flat start wobbles by an
            ulp), or the loss was NaN at step 0: there is nothing to suggest,
            and an eager call warns.
        suggestion: the rate of the chosen ``rule``.
        rule: which suggestion is the default (static).
        configs: the grid's configurations when one was given (static), else None.
    """

    learning_rates: jax.Array
    losses: jax.Array
    smoothed: jax.Array
    stop_step: jax.Array
    suggestions: dict[str, jax.Array]
    suggestion: jax.Array
    rule: str = dataclasses.field(default="steepest", metadata={"static": True})
    configs: tuple[tuple[tuple[str, Any], ...], ...] | None = dataclasses.field(
        default=None, metadata={"static": True}
    )

    def config_dicts(self) -> list[dict[str, Any]] | None:
        """The grid's configurations as dicts (None without a grid)."""
        return None if self.configs is None else [dict(c) for c in self.configs]

    def __str__(self) -> str:
        lrs = np.asarray(self.learning_rates)
        if lrs.ndim == 1:
            return self._describe(self, "lr_finder")
        lines = [f"lr_finder: {lrs.shape[0]} range test{'' if lrs.shape[0] == 1 else 's'}"]
        for i, config in enumerate(self.config_dicts() or [{}] * lrs.shape[0]):
            one = jax.tree.map(lambda x, i=i: x[i], self)
            label = ", ".join(f"{k}={v!r}" for k, v in config.items()) or f"#{i}"
            lines.append(self._describe(one, f"  [{label}]"))
        return "\n".join(lines)

    @staticmethod
    def _describe(one: LRFinderResult, head: str) -> str:
        lrs = np.asarray(one.learning_rates)
        stop = int(one.stop_step)
        where = (
            f"stopped at step {stop} (lr {lrs[stop]:.3g})"
            if stop < lrs.size
            else f"ran all {lrs.size} steps"
        )
        rules = ", ".join(
            f"{name} {float(v):.3g}" + (" (chosen)" if name == one.rule else "")
            for name, v in one.suggestions.items()
        )
        if np.isnan(float(one.suggestion)):
            rules = "none (the smoothed loss never fell below its first value)"
        return f"{head}: lr {lrs[0]:.3g} -> {lrs[-1]:.3g}, {where}; suggestions: {rules}"

    def __repr__(self) -> str:
        return str(self)


def learning_rates(min_lr: Any, max_lr: Any, num_steps: int, mode: str = "exp") -> jax.Array:
    """The range test's rates, ``min_lr`` at step 0 to ``max_lr`` at the last step."""
    frac = jnp.arange(num_steps, dtype=jnp.result_type(float)) / max(num_steps - 1, 1)
    lo = jnp.asarray(min_lr, frac.dtype)
    hi = jnp.asarray(max_lr, frac.dtype)
    if mode == "exp":
        return lo * (hi / lo) ** frac
    return lo + (hi - lo) * frac


def _suggestions(lrs, smoothed, stop_step, min_lr, max_lr) -> dict[str, jax.Array]:
    """The three rules on the valid points ``[0, stop_step)``, as traceable jnp."""
    n = lrs.shape[0]
    t = jnp.arange(n)
    valid = t < jnp.asarray(stop_step).astype(t.dtype)  # int32 vs int64 under x64
    s = jnp.where(valid, smoothed, jnp.inf)

    # minimum: lr at the lowest smoothed loss, / 10 (fastai's `minimum`).
    minimum = lrs[jnp.argmin(s)] / 10.0

    # steepest: the most negative forward difference d s / d log(lr) (fastai's
    # `steep`) on the way down, before the minimum: past it the curve is the
    # explosion, whose noise can hold steeper drops. Not in the first 10% of
    # the steps (as fastai's suggestions skip them) where a drop is there
    # before: the bias-corrected EMA barely averages the first losses
    # (s_1 = (l_0 + l_1) / 2), and their noise outran the real descent.
    log_lr = jnp.log(lrs)
    slope = (smoothed[1:] - smoothed[:-1]) / (log_lr[1:] - log_lr[:-1])
    down = t[1:] <= jnp.argmin(s)
    late = down & (t[:-1] >= n // 10)
    slope = jnp.where(jnp.where(jnp.any(late), late, down), slope, jnp.inf)
    steepest = lrs[jnp.argmin(slope)]

    # valley (fastai's `valley`, from ESRI's arcgis.learn): the longest strictly
    # decreasing subsequence of s, of `length` points ending at `end`; with
    # start = end - length (clipped at 0) and span = end - start, the rate at
    # start + floor(span/3) + floor(span/6): at the middle or just before it.
    def longest_ending_at(lds, i):
        earlier = (t < i) & valid & (smoothed > smoothed[i])
        best = jnp.max(jnp.where(earlier, lds, 0))
        return lds.at[i].set(jnp.where(valid[i], best + 1, 0)), None

    lds, _ = jax.lax.scan(longest_ending_at, jnp.zeros(n, t.dtype), t)
    end = jnp.argmax(lds)
    start = jnp.maximum(end - lds[end], 0)
    span = end - start
    index = start + span // 3 + span // 6
    valley = lrs[jnp.clip(index, 0, n - 1)]

    # Nothing to suggest where the smoothed loss never fell below its first
    # value (or the test stopped at step 0): NaN, not min_lr. "Below" by more
    # than FELL of it: a flat start wobbles by an ulp or two.
    lo, hi = jnp.asarray(min_lr, lrs.dtype), jnp.asarray(max_lr, lrs.dtype)
    fell = (stop_step > 0) & (smoothed[0] - jnp.min(s) > FELL * jnp.abs(smoothed[0]))
    clip = lambda v: jnp.where(fell, jnp.clip(v, lo, hi), jnp.nan)  # noqa: E731
    return {"valley": clip(valley), "steepest": clip(steepest), "minimum": clip(minimum)}


def _depends(jaxpr: Any, hit_in: Sequence[bool]) -> list[bool]:
    """Which outputs of ``jaxpr`` depend on the inputs flagged in ``hit_in``: a
    forward dataflow walk, entering calls (``jit``, ``closed_call``, ``checkpoint``)
    whose inner inputs match one to one; any other primitive's outputs (a
    loop's carry among them) all depend on any input that does."""
    dep = {v for v, h in zip(jaxpr.invars, hit_in, strict=True) if h}

    def on(v: Any) -> bool:
        return not isinstance(v, Literal) and v in dep

    for eqn in jaxpr.eqns:
        hit = [on(v) for v in eqn.invars]
        if not any(hit):
            continue
        inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
        inner = getattr(inner, "jaxpr", inner)  # a ClosedJaxpr's jaxpr
        call = eqn.primitive.name in ("jit", "closed_call", "remat2")  # jax.checkpoint: remat2
        call = call and hasattr(inner, "eqns")
        if call and len(inner.invars) == len(hit) and len(inner.outvars) == len(eqn.outvars):
            dep.update(o for o, d in zip(eqn.outvars, _depends(inner, hit), strict=True) if d)
        else:
            dep.update(eqn.outvars)
    return [on(v) for v in jaxpr.outvars]


def _check_state_ignores_rate(make_optimizer, lr, params, extra) -> None:
    """The range test builds ``make_optimizer(lr_t)`` anew each step and carries
    one state from ``make_optimizer(min_lr).init``: an optimizer whose update
    reads the rate from that state (``inject_hyperparams`` with a number;
    ``rprop``'s initial step sizes) would run every step at ``min_lr`` and
    suggest a rate never tried. Found by tracing (no arrays are made) whether
    ``make_optimizer(lr1).update(g, make_optimizer(lr0).init(p), p)`` depends on
    ``lr0``. (A state that latches the rate inside ``update`` is not seen.)"""

    def first_update(lr0, lr1, p, value):
        tx = make_optimizer(lr1, **extra)
        updates, _ = tx.update(p, make_optimizer(lr0, **extra).init(p), p, value=value)
        return jax.tree.leaves(updates)

    value = jnp.zeros((), jnp.result_type(float))
    jaxpr = jax.make_jaxpr(first_update)(lr, lr, params, value).jaxpr
    flags = [True] + [False] * (len(jaxpr.invars) - 1)
    if any(_depends(jaxpr, flags)):
        raise ValueError(
            "make_optimizer's update reads the learning rate its state was built with "
            "(inject_hyperparams keeps a numeric rate in its state; rprop starts its step "
            "sizes from it): lr_finder rebuilds the optimizer with each step's rate and carries "
            "one state, so every step would run at min_lr. Pass a factory whose update takes "
            "the rate it is built with, e.g. gl.adam rather than gl.inject_hyperparams(gl.adam)"
        )


def _range_test(
    make_optimizer, loss_fn, params, batches, stacked, key, lrs, smoothing, threshold, extra
):
    """One range test as traceable JAX: ``(losses, smoothed, stop_step)``."""
    grad_fn = jax.value_and_grad(loss_fn)
    tx = make_optimizer(lrs[0], **extra)
    check_transformation("make_optimizer(learning_rate, ...)", tx)
    _check_state_ignores_rate(make_optimizer, lrs[0], params, extra)
    check_loss(jax.eval_shape(loss_fn, params, batches.at(stacked, jnp.int32(0), key)))
    state = tx.init(params)
    dtype = lrs.dtype
    beta = jnp.asarray(smoothing, dtype)

    def body(carry, x):
        params, state, avg, lowest, alive = carry
        t, lr = x
        loss, grads = grad_fn(params, batches.at(stacked, t, key))
        loss = loss.astype(dtype)
        avg_new = beta * avg + (1 - beta) * loss
        smooth = avg_new / (1 - beta ** (t + 1).astype(dtype))
        lowest_new = jnp.minimum(lowest, smooth)
        exploded = ~jnp.isfinite(smooth) | (
            smooth - lowest_new > (threshold - 1) * jnp.abs(lowest_new)
        )
        updates, new_state = make_optimizer(lr, **extra).update(grads, state, params, value=loss)
        new_params = apply_updates(params, updates)
        go_on = alive & ~exploded
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(go_on, a, b), new, old)  # noqa: E731
        nan = jnp.asarray(jnp.nan, dtype)
        carry = (
            keep(new_params, params),
            keep(new_state, state),
            jnp.where(alive, avg_new, avg),
            jnp.where(alive, lowest_new, lowest),
            go_on,
        )
        return carry, (jnp.where(alive, loss, nan), jnp.where(alive, smooth, nan), go_on)

    n = lrs.shape[0]
    init = (params, state, jnp.zeros((), dtype), jnp.asarray(jnp.inf, dtype), jnp.array(True))
    _, (losses, smoothed, running) = jax.lax.scan(body, init, (jnp.arange(n), lrs))
    # The first step that did not go on; n if every one did.
    stop_step = jnp.where(jnp.all(running), n, jnp.argmin(running)).astype(jnp.int32)
    return losses, smoothed, stop_step


def lr_finder(
    make_optimizer: Callable[..., Any],
    loss_fn: Callable[[Params, Any], jax.Array],
    params: Params,
    batches: Any,
    *,
    min_lr: Any = 1e-7,
    max_lr: Any = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    smoothing: float = 0.98,
    diverge_threshold: float = 4.0,
    rule: str = "steepest",
    grid: Mapping[Any, Any] | Sequence[Mapping[str, Any]] | None = None,
    seed: int = 0,
) -> LRFinderResult:
    """Learning-rate range test (Smith 2017; fastai's ``lr_find``): train with
    a learning rate growing from ``min_lr`` to ``max_lr``, record the loss,
    stop when it explodes, and suggest a learning rate.

    ``lr_t = min_lr * (max_lr/min_lr)**(t/(num_steps-1))`` (``mode="exp"``;
    ``"linear"`` interpolates linearly); the loss is smoothed with the
    bias-corrected EMA ``s_t = a_t/(1-beta**(t+1))``, ``a_t = beta a_{t-1} +
    (1-beta) loss_t``; the test stops when ``s_t - min s > (diverge_threshold
    - 1)|min s|`` or the loss is NaN/Inf (masked inside the scan: params frozen,
    the rest of the curve NaN). Three suggestions are reported (see
    :class:`LRFinderResult`); ``rule`` picks the default one.

    The whole test is traceable: it can be ``jit``-ed, and ``jax.vmap``-ed over
    any hyperparameter of the optimizer::

        jax.vmap(lambda m: gl.lr_finder(lambda lr: gl.sgd(lr, momentum=m), ...))(
            jnp.array([0.5, 0.9]))

    To compare optimizers of different kinds (SGD-momentum and Adam) in one
    call, give a ``grid``: ``make_optimizer(lr, **config)`` is called per
    configuration, numbers are vmapped and structural values (names) grouped,
    as in :func:`gradlab.sweep`; the result gets a leading configuration axis.

    Args:
        make_optimizer: ``make_optimizer(learning_rate, **config) -> GradientTransformation``;
            called with a (traced) scalar rate each step, so the optimizer's
            update must take the rate it is built with, not one kept in the
            state: true of every gradlab optimizer but ``rprop`` (its step sizes
            start from the rate) and ``inject_hyperparams`` with a numeric rate
            (a schedule is fine), which are refused with a ``ValueError``.
        loss_fn: ``loss_fn(params, batch) -> scalar``.
        params: initial params (a pytree of float arrays).
        batches: arrays stacked along steps (cycled), ``step -> batch``, or
            ``(step, key) -> batch`` (the key is ``jax.random.key(seed)``).
        min_lr, max_lr: the range (``0 < min_lr < max_lr``).
        num_steps: steps of the test (>= 2).
        mode: ``"exp"`` or ``"linear"`` growth.
        smoothing: the EMA's ``beta`` in ``[0, 1)``.
        diverge_threshold: stop when the smoothed loss exceeds its minimum by
            this factor (> 1).
        rule: the default suggestion: ``"steepest"`` (Smith's "where the loss
            falls fastest"), ``"minimum"`` or ``"valley"`` (fastai's default).
            On the digits MLP of ``python -m gradlab`` (200-step tests) the
            steepest rule landed within 2x of the best constant rate of a full
            sweep for SGD, momentum, Adam and RMSprop; minimum/10 within 6x;
            valley 5-30x below it (the noisy plateau at tiny rates lengthens
            the decreasing subsequence leftwards).
        grid: optional configurations (see above).
        seed: the data key's seed for ``(step, key) -> batch``.

    Example:
        >>> def loss_fn(p, batch):
        ...     x, y = batch
        ...     return jnp.mean((x @ p - y) ** 2)
        >>> x = jax.random.normal(jax.random.key(0), (64, 3))
        >>> y = x @ jnp.array([1.0, -2.0, 0.5])
        >>> result = gl.lr_finder(gl.adam, loss_fn, jnp.zeros(3), lambda step: (x, y))
        >>> print(result)            # the curve's stop and all three suggestions  # doctest: +SKIP
        >>> tx = gl.adam(result.suggestion)
    """
    _check_args(
        make_optimizer, loss_fn, min_lr, max_lr, num_steps, mode, smoothing, diverge_threshold, rule
    )
    params = check_params(params)
    if is_function(params):
        raise TypeError("lr_finder's params must be a pytree of arrays, got a function")
    data = as_batches(batches)
    num_steps = int(num_steps)
    integral = isinstance(seed, int | np.integer) or (
        np.ndim(seed) == 0 and jnp.issubdtype(getattr(seed, "dtype", float), jnp.integer)
    )
    if isinstance(seed, bool | np.bool_) or not integral:
        raise TypeError(f"seed must be an integer, got {seed!r}")
    check_seed("seed", seed)
    key = jax.random.key(seed)

    def one(extra, min_lr, max_lr, params, stacked, key):
        lrs = learning_rates(min_lr, max_lr, num_steps, mode)
        losses, smoothed, stop_step = _range_test(
            make_optimizer,
            loss_fn,
            params,
            data,
            stacked,
            key,
            lrs,
            smoothing,
            diverge_threshold,
            extra,
        )
        suggestions = _suggestions(lrs, smoothed, stop_step, min_lr, max_lr)
        return LRFinderResult(
            lrs, losses, smoothed, stop_step, suggestions, suggestions[rule], rule
        )

    def warned(result: LRFinderResult) -> LRFinderResult:
        if not is_traced(result.suggestion) and np.isnan(np.asarray(result.suggestion)).any():
            warnings.warn(
                "lr_finder: the smoothed loss never fell below its first value (or was NaN "
                "at step 0), so there is no suggestion (NaN): lower min_lr, or check the "
                "loss and the optimizer",
                stacklevel=3,
            )
        return result

    def probe(static, numeric):  # one step of one configuration, to find untraceable names
        tx = make_optimizer(jnp.asarray(min_lr, jnp.result_type(float)), **static, **numeric)
        batch = data.at(data.stacked, jnp.int32(0), key)
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        return tx.update(grads, tx.init(params), params, value=loss)

    if grid is None:
        _grid.check_names(make_optimizer, "make_optimizer", [], fixed=1)
        return warned(jax.jit(one)({}, min_lr, max_lr, params, data.stacked, key))

    configs = _grid.expand(grid)
    _grid.check_names(make_optimizer, "make_optimizer", list(configs[0]), fixed=1)
    for i, config in enumerate(configs):
        try:
            check_transformation(
                f"make_optimizer(min_lr, **grid[{i}])", make_optimizer(min_lr, **config)
            )
        except (ValueError, TypeError) as e:
            raise type(e)(f"grid configuration {i} {config}: {e}") from e

    def run_group(g):
        # params, the batches and the key are arguments, not constants baked into
        # the program (a copy of the data in each group's executable)
        run = jax.jit(
            jax.vmap(
                lambda numeric, *shared: one({**g.static, **numeric}, *shared),
                in_axes=(0, None, None, None, None, None),
                axis_size=len(g.indices),
            )
        )
        numeric = {k: jnp.asarray(v) for k, v in g.numeric.items()}
        return run(numeric, min_lr, max_lr, params, data.stacked, key)

    done = _grid.build_groups(configs, run_group, probe, "make_optimizer")
    pieces = [result for _, result in done]
    order = [i for g, _ in done for i in g.indices]
    inverse = np.argsort(np.asarray(order))
    stacked = jax.tree.map(lambda *xs: jnp.concatenate(xs)[inverse], *pieces)
    frozen = tuple(tuple(c.items()) for c in configs)
    return warned(dataclasses.replace(stacked, configs=frozen))


def _check_args(
    make_optimizer, loss_fn, min_lr, max_lr, num_steps, mode, smoothing, threshold, rule
) -> None:
    if not callable(make_optimizer):
        raise TypeError(
            f"make_optimizer must be a callable lr -> optimizer, got {make_optimizer!r}"
        )
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable (params, batch) -> loss, got {loss_fn!r}")
    check_scalars(min_lr=min_lr, max_lr=max_lr)
    check_positive("min_lr", min_lr)
    check_positive("max_lr", max_lr)
    if not is_traced((min_lr, max_lr)):
        if not float(min_lr) < float(max_lr):
            raise ValueError(f"min_lr must be < max_lr, got min_lr={min_lr!r}, max_lr={max_lr!r}")
        # exp: the rates are min_lr * (max_lr / min_lr) ** frac, in float32 (float64
        # under x64); linear rates take no ratio
        info = jnp.finfo(jnp.result_type(float))
        tiny, top = float(info.tiny), float(info.max)  # compared as Python floats: no cast
        if mode == "exp" and float(min_lr) < tiny:
            raise ValueError(
                f"min_lr must be at least {info.tiny:.3g} (the smallest normal "
                f"{info.dtype}), got {min_lr!r}"
            )
        if mode == "exp" and float(max_lr) / float(min_lr) > top:
            raise ValueError(
                f"max_lr / min_lr must fit in {info.dtype} (at most {info.max:.3g}), got "
                f"min_lr={min_lr!r}, max_lr={max_lr!r}"
            )
    if isinstance(num_steps, bool) or is_traced(num_steps):
        raise TypeError(f"num_steps must be a Python int, got {num_steps!r}")
    check_int("num_steps", num_steps, 2, maximum=COUNT_MAX)
    check_choice("mode", mode, MODES)
    check_in_range("smoothing", smoothing, 0.0, 1.0, hi_open=True)
    check_in_range("diverge_threshold", threshold, 1.0, lo_open=True)
    check_choice("rule", rule, RULES)
