"""Adam's relatives: AMSGrad, Adamax, RAdam, AdaBelief, Yogi, Adadelta, Adan,
NovoGrad and the bias-corrected RMS of schedule-free AdamW.

Each block is the optimizer's *direction*, before the learning rate; the
optimizers in ``gradlab.optimizers._modern`` chain it with
``scale_by_learning_rate``. Moments are read as stored (``_tree.as_stored``),
in each leaf's compute dtype (float32 for bfloat16 leaves).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab import _tree
from gradlab._checks import (
    check_bools,
    check_in_range,
    check_nonnegative,
    check_number,
    check_params,
    check_same_shapes,
    check_same_structure,
    check_scalars,
    check_state,
    is_traced,
)
from gradlab._core import ELEMENTWISE, PER_LEAF, GradientTransformation
from gradlab.blocks._adaptive import (
    ScaleByAdamState,
    _check_adam_like,
    _check_decay,
    _init_adam_state,
)
from gradlab.blocks._helpers import constants, leafwise, widest


class ScaleByAmsgradState(NamedTuple):
    """``count``: int32 steps; ``mu``/``nu``: Adam's moments; ``nu_max``: the
    running maximum of the bias-corrected second moment (params' tree)."""

    count: jax.Array
    mu: Any
    nu: Any
    nu_max: Any


class ScaleByBeliefState(NamedTuple):
    """``count``: int32 steps; ``mu``: EMA of ``g``; ``nu``: EMA of ``(g - mu)²``."""

    count: jax.Array
    mu: Any
    nu: Any


class ScaleByAdadeltaState(NamedTuple):
    """``e_g``: EMA of ``g²``; ``e_x``: EMA of the squared updates (params' tree)."""

    e_g: Any
    e_x: Any


class ScaleByAdanState(NamedTuple):
    """``count``: int32 steps; ``m``: EMA of ``g``; ``v``: EMA of ``g - g_prev``;
    ``n``: EMA of ``(g + b2' (g - g_prev))²``; ``prev_grad``: last gradient."""

    count: jax.Array
    m: Any
    v: Any
    n: Any
    prev_grad: Any


class ScaleByNovogradState(NamedTuple):
    """``count``: int32 steps; ``mu``: the momentum (params' tree); ``nu``: one
    scalar per leaf, the EMA of the leaf's squared gradient norm."""

    count: jax.Array
    mu: Any
    nu: Any


class ScaleByDebiasedRmsState(NamedTuple):
    """``count``: int32 steps; ``nu``: EMA of ``g²`` (params' tree)."""

    count: jax.Array
    nu: Any


def _adam_constants(b1: Any, b2: Any, eps: Any, eps_root: Any, count: jax.Array, nesterov: bool):
    """Adam's per-dtype scalars at (incremented) step ``count``."""

    def fn(dt):
        b1_, b2_ = _tree.hp(b1, dt), _tree.hp(b2, dt)
        return {
            "b1": b1_,
            "cb1": 1 - b1_,
            "b2": b2_,
            "cb2": 1 - b2_,
            "c1": _tree.debias(b1_, count, dt),
            "c1_next": _tree.debias(b1_, _tree.safe_increment(count), dt) if nesterov else None,
            "c2": _tree.debias(b2_, count, dt),
            "eps": _tree.hp(eps, dt),
            "eps_root": _tree.hp(eps_root, dt),
        }

    return constants(fn)


def _m_hat(c: Any, g: jax.Array, m: jax.Array, nesterov: bool, dt: Any) -> jax.Array:
    """Bias-corrected first moment; Nesterov (Dozat 2016) looks one step ahead."""
    if nesterov:
        return c.b1 * m / c.c1_next + c.cb1 * g.astype(dt) / c.c1
    return m / c.c1


def scale_by_amsgrad(
    b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0, mu_dtype: Any = None
) -> GradientTransformation:
    """AMSGrad's direction (Reddi et al. 2018), before the learning rate.

    Adam's moments, then ``v̂max <- max(v̂max, v̂)`` with ``v̂ = v/(1-b2^t)``;
    output ``m̂ / (sqrt(v̂max + eps_root) + eps)``. The maximum is of the
    *bias-corrected* moment, as ``optax.scale_by_amsgrad`` (the paper has no
    bias correction; ``torch.optim.Adam(amsgrad=True)`` keeps the maximum of
    the raw ``v`` and corrects it after).
    ``m <- b1 m + (1-b1) g`` is stored in ``mu_dtype`` (default: the param's dtype).
    """
    _check_adam_like(b1, b2, eps, eps_root, mu_dtype)

    def init(params):
        z = _tree.zeros_like
        count = _tree.step_counter(params)
        return ScaleByAmsgradState(count, z(params, mu_dtype), z(params), z(params))

    def update(updates, state, params=None, **extra):
        check_state("scale_by_amsgrad", state, ScaleByAmsgradState)
        count = _tree.safe_increment(state.count)
        consts = _adam_constants(b1, b2, eps, eps_root, count, False)

        def leaf(g, m, v, v_max):
            dt = widest(g, m, v, v_max)
            c = consts(dt)
            m_new = _tree.as_stored(_tree.moment_step(g, m, c.b1, 1, c.cb1, dt), m.dtype)
            v_new = _tree.as_stored(_tree.moment_step(g, v, c.b2, 2, c.cb2, dt), v.dtype)
            # one comparison picks the value and the derivative: jnp.maximum's rule
            # tests which side equals the maximum, and under jit XLA computed v/c2
            # twice, rounded differently, so neither side did (wrong jit(grad)).
            # A NaN on either side is kept, as jnp.maximum keeps it; at a tie the
            # derivative goes to the stored maximum (jnp.maximum splits it).
            v_hat, kept = v_new / c.c2, v_max.astype(dt)
            old = (kept >= v_hat) | jnp.isnan(kept)
            v_max_new = _tree.as_stored(jnp.where(old, kept, v_hat), v_max.dtype)
            out = (m_new / c.c1) / (_tree.root(v_max_new + c.eps_root) + c.eps)
            return (
                out.astype(g.dtype),
                m_new.astype(m.dtype),
                v_new.astype(v.dtype),
                v_max_new.astype(v_max.dtype),
            )

        out, mu, nu, nu_max = leafwise(leaf, updates, state.mu, state.nu, state.nu_max, n_out=4)
        return out, ScaleByAmsgradState(count, mu, nu, nu_max)

    return GradientTransformation(init, update, packing=ELEMENTWISE)


def scale_by_adamax(
    b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, mu_dtype: Any = None
) -> GradientTransformation:
    """Adamax's direction (Kingma & Ba 2015, §7.1: Adam with the infinity norm).

    ``m <- b1 m + (1-b1) g``, ``u <- max(b2 u, |g| + eps)``; output
    ``m / ((1-b1^t) u)``. ``eps`` inside the maximum as ``torch.optim.Adamax``
    and ``optax.scale_by_adamax``. State: ``ScaleByAdamState(count, mu, nu=u)``.
    ``m`` is stored in ``mu_dtype`` (default: the param's dtype); ``u`` keeps the param's.
    """
    _check_adam_like(b1, b2, eps, 0.0, mu_dtype)

    def init(params):
        return _init_adam_state(params, mu_dtype)

    def update(updates, state, params=None, **extra):
        check_state("scale_by_adamax", state, ScaleByAdamState)
        count = _tree.safe_increment(state.count)
        consts = _adam_constants(b1, b2, eps, 0.0, count, False)

        def leaf(g, m, u):
            dt = widest(g, m, u)
            c = consts(dt)
            m_new = _tree.as_stored(_tree.moment_step(g, m, c.b1, 1, c.cb1, dt), m.dtype)
            u_new = _tree.as_stored(
                jnp.maximum(c.b2 * u.astype(dt), jnp.abs(g.astype(dt)) + c.eps), u.dtype
            )
            out = m_new / (c.c1 * u_new)
            return out.astype(g.dtype), m_new.astype(m.dtype), u_new.astype(u.dtype)

        out, mu, nu = leafwise(leaf, updates, state.mu, state.nu, n_out=3)
        return out, ScaleByAdamState(count, mu, nu)

    return GradientTransformation(init, update, packing=ELEMENTWISE)


def scale_by_radam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    threshold: Any = 5.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Rectified Adam's direction (Liu et al. 2020, Alg. 2), before the learning rate.

    ``rho_inf = 2/(1-b2) - 1``, ``rho_t = rho_inf - 2 t b2^t / (1-b2^t)``.
    While ``rho_t < threshold`` the variance of the adaptive step is
    intractable and the output is the bias-corrected momentum ``m̂``; after,
    ``r_t m̂ / (sqrt(v̂ + eps_root) + eps)`` with
    ``r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))``,
    real for ``rho_t > 4`` only: ``threshold`` must be above 4 (a ``ValueError``
    otherwise; a traced one is not checked). As ``optax.scale_by_radam``
    (``>=`` threshold; ``torch.optim.RAdam`` uses ``> 5`` and puts ``eps`` on
    the uncorrected ``sqrt(v)``: ``m̂ sqrt(1-b2^t)/(sqrt(v) + eps)``, the same
    up to ``eps``). ``nesterov=True``: ``m̂`` is Dozat's look-ahead moment, as
    in :func:`gradlab.scale_by_adam`.
    ``m̂`` corrects ``m <- b1 m + (1-b1) g``, which is stored in ``mu_dtype`` (default: the
    param's dtype).
    """
    check_bools(nesterov=nesterov)
    _check_adam_like(b1, b2, eps, eps_root, mu_dtype)
    check_scalars(threshold=threshold)
    check_number("threshold", threshold)
    # r_t is real only for rho_t > 4: below, the rectified step would be a NaN
    # (Optax) or, clamped, a silent zero step.
    check_in_range("threshold", threshold, 4.0, lo_open=True)

    def init(params):
        return _init_adam_state(params, mu_dtype)

    def update(updates, state, params=None, **extra):
        check_state("scale_by_radam", state, ScaleByAdamState)
        count = _tree.safe_increment(state.count)
        adam = _adam_constants(b1, b2, eps, eps_root, count, nesterov)

        def rectifier(dt):
            b2_, t = _tree.hp(b2, dt), count.astype(dt)
            rho_inf = 2 / (1 - b2_) - 1
            b2t = _tree.count_power(b2_, t)
            rho = rho_inf - 2 * t * b2t / (1 - b2t)
            # The argument is negative while rho < 4 < threshold: that branch is not taken.
            arg = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
            # not rho >= threshold: a NaN b2 or threshold takes the rectified
            # branch, whose r is NaN, not the unrectified one (finite steps)
            thr = _tree.hp(threshold, dt)
            r = jnp.where(thr == thr, _tree.sqrt_or_zero(arg), jnp.nan)
            return {"r": r, "on": ~(rho < thr)}

        rect = constants(rectifier)

        def leaf(g, m, v):
            dt = widest(g, m, v)
            c, r = adam(dt), rect(dt)
            m_new = _tree.as_stored(_tree.moment_step(g, m, c.b1, 1, c.cb1, dt), m.dtype)
            v_new = _tree.as_stored(_tree.moment_step(g, v, c.b2, 2, c.cb2, dt), v.dtype)
            m_hat = _m_hat(c, g, m_new, nesterov, dt)
            # (eps = 0, v = 0 while the rectifier is off: no 0 / 0 in the branch
            # not taken, whose derivative would make reverse mode NaN)
            denominator = jnp.where(r.on, _tree.root(v_new / c.c2 + c.eps_root) + c.eps, 1)
            out = jnp.where(r.on, r.r * m_hat / denominator, m_hat)
            return out.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        out, mu, nu = leafwise(leaf, updates, state.mu, state.nu, n_out=3)
        return out, ScaleByAdamState(count, mu, nu)

    return GradientTransformation(init, update, packing=ELEMENTWISE)


def scale_by_belief(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-16,
    eps_root: Any = 1e-16,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """AdaBelief's direction (Zhuang et al. 2020, Alg. 2), before the learning rate.

    ``m <- b1 m + (1-b1) g``, ``s <- b2 s + (1-b2) (g - m)² + eps_root``
    (the "belief": how far the gradient is from its prediction ``m``);
    output ``m̂ / (sqrt(ŝ) + eps)`` with ``ŝ = s/(1-b2^t)``. ``nesterov=True``:
    ``m̂`` is Dozat's look-ahead moment, as in :func:`gradlab.scale_by_adam`.
    ``optax.scale_by_belief``.
    ``m`` is stored in ``mu_dtype`` (default: the param's dtype).
    """
    check_bools(nesterov=nesterov)
    _check_adam_like(b1, b2, eps, eps_root, mu_dtype)

    def init(params):
        return ScaleByBeliefState(
            _tree.step_counter(params), _tree.zeros_like(params, mu_dtype), _tree.zeros_like(params)
        )

    def update(updates, state, params=None, **extra):
        check_state("scale_by_belief", state, ScaleByBeliefState)
        count = _tree.safe_increment(state.count)
        consts = _adam_constants(b1, b2, eps, eps_root, count, nesterov)

        def leaf(g, m, s):
            dt = widest(g, m, s)
            c = consts(dt)
            m_new = _tree.as_stored(_tree.moment_step(g, m, c.b1, 1, c.cb1, dt), m.dtype)
            s_new = _tree.moment_step(g.astype(dt) - m_new, s, c.b2, 2, c.cb2, dt) + c.eps_root
            s_new = _tree.as_stored(s_new, s.dtype)
            out = _m_hat(c, g, m_new, nesterov, dt) / (_tree.root(s_new / c.c2) + c.eps)
            return out.astype(g.dtype), m_new.astype(m.dtype), s_new.astype(s.dtype)

        out, mu, nu = leafwise(leaf, updates, state.mu, state.nu, n_out=3)
        return out, ScaleByBeliefState(count, mu, nu)

    return GradientTransformation(init, update, packing=ELEMENTWISE)


def scale_by_yogi(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-3,
    eps_root: Any = 0.0,
    initial_accumulator_value: Any = 1e-6,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """Yogi's direction (Zaheer et al. 2018, Alg. 2), before the learning rate.

    ``m <- b1 m + (1-b1) g``; ``v <- v - (1-b2) sign(v - g²) g²`` (an additive
    update: ``v`` moves towards ``g²`` by at most ``(1-b2) g²``, so it cannot
    forget a large past gradient as fast as Adam's EMA); output
    ``m̂ / (sqrt(v̂ + eps_root) + eps)``. Both moments start at
    ``initial_accumulator_value`` and are bias-corrected like Adam's, as in
    ``optax.scale_by_yogi`` (the paper does not correct them).
    ``m`` is stored in ``mu_dtype`` (default: the param's dtype).
    """
    _check_adam_like(b1, b2, eps, eps_root, mu_dtype)
    check_scalars(initial_accumulator_value=initial_accumulator_value)
    check_nonnegative("initial_accumulator_value", initial_accumulator_value)

    def init(params):
        return ScaleByAdamState(
            _tree.step_counter(params),
            _tree.full_like(params, initial_accumulator_value, mu_dtype),
            _tree.full_like(params, initial_accumulator_value),
        )

    def update(updates, state, params=None, **extra):
        check_state("scale_by_yogi", state, ScaleByAdamState)
        count = _tree.safe_increment(state.count)
        consts = _adam_constants(b1, b2, eps, eps_root, count, False)

        def leaf(g, m, v):
            dt = widest(g, m, v)
            c = consts(dt)
            m_new = _tree.as_stored(_tree.moment_step(g, m, c.b1, 1, c.cb1, dt), m.dtype)
            g2 = jnp.square(g.astype(dt))
            v_old = v.astype(dt)
            # v = g² = inf (a gradient whose square overflows, twice) leaves v at inf:
            # sign(inf - inf) and 0 * inf would be NaN. A NaN gradient stays NaN.
            diff = v_old - g2
            direction = jnp.sign(jnp.where(jnp.isnan(diff) & ~jnp.isnan(g2), 0, diff))
            move = jnp.where(direction == 0, jnp.zeros((), dt), c.cb2 * direction * g2)
            v_new = _tree.as_stored(v_old - move, v.dtype)
            out = (m_new / c.c1) / (_tree.root(v_new / c.c2 + c.eps_root) + c.eps)
            return out.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        out, mu, nu = leafwise(leaf, updates, state.mu, state.nu, n_out=3)
        return out, ScaleByAdamState(count, mu, nu)

    return GradientTransformation(init, update, packing=ELEMENTWISE)


def scale_by_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> GradientTransformation:
    """Adadelta's direction (Zeiler 2012, Alg. 1), before the learning rate.

    ``E[g²] <- rho E[g²] + (1-rho) g²``;
    ``d = sqrt(E[dx²] + eps) / sqrt(E[g²] + eps) * g``;
    ``E[dx²] <- rho E[dx²] + (1-rho) d²``; output ``d`` (the learning rate,
    1 in the paper, scales it after). ``torch.optim.Adadelta``,
    ``optax.scale_by_adadelta``.
    """
    check_scalars(rho=rho, eps=eps)
    check_in_range("rho", rho, 0.0, 1.0)
    check_nonnegative("eps", eps)

    def init(params):
        return ScaleByAdadeltaState(_tree.zeros_like(params), _tree.zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_state("scale_by_adadelta", state, ScaleByAdadeltaState)
        consts = constants(
            lambda dt: {
                "rho": _tree.hp(rho, dt),
                "crho": 1 - _tree.hp(rho, dt),
                "eps": _tree.hp(eps, dt),
            }
        )

        def leaf(g, e_g, e_x):
            dt = widest(g, e_g, e_x)
            c = consts(dt)
            e_g_new = _tree.as_stored(_tree.moment_step(g, e_g, c.rho, 2, c.crho, dt), e_g.dtype)
            d = jnp.sqrt(e_x.astype(dt) + c.eps) / jnp.sqrt(e_g_new + c.eps) * g.astype(dt)
            e_x_new = _tree.moment_step(d, e_x, c.rho, 2, c.crho, dt)
            return d.astype(g.dtype), e_g_new.astype(e_g.dtype), e_x_new.astype(e_x.dtype)

        out, e_g, e_x = leafwise(leaf, updates, state.e_g, state.e_x, n_out=3)
        return out, ScaleByAdadeltaState(e_g, e_x)

    return GradientTransformation(init, update, packing=ELEMENTWISE)


def scale_by_adan(
    b1: Any = 0.98, b2: Any = 0.92, b3: Any = 0.99, eps: Any = 1e-8, eps_root: Any = 0.0
) -> GradientTransformation:
    """Adan's direction (Xie et al. 2022, Alg. 1, with bias correction), before the
    learning rate.

    With ``Δ = g - g_prev`` (0 at the first step): ``m <- b1 m + (1-b1) g``,
    ``v <- b2 v + (1-b2) Δ``, ``n <- b3 n + (1-b3) (g + b2 Δ)²``; output
    ``(m̂ + b2 v̂) / (sqrt(n̂ + eps_root) + eps)``, hats the Adam-style bias
    corrections. ``b1, b2, b3`` are decay rates (the paper's ``β1 = 0.02`` is
    ``1 - b1``), so the paper's ``(1 - β2)`` on ``Δ`` and on ``v`` is ``b2``: as
    Alg. 1 and the authors' code (sail-sg/Adan: ``grad + beta2 * diff``).
    ``optax.scale_by_adan`` (0.2.8) weighs them by ``1 - b2`` instead, 0.08
    rather than 0.92 by default (its open PR #1715); the two agree at
    ``b2 = 0.5`` and at the first step.
    """
    check_scalars(b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root)
    for name, value in (("b1", b1), ("b2", b2), ("b3", b3)):
        _check_decay(name, value)
    check_nonnegative("eps", eps)
    check_nonnegative("eps_root", eps_root)

    def init(params):
        z = _tree.zeros_like
        count = _tree.step_counter(params)
        return ScaleByAdanState(count, z(params), z(params), z(params), z(params))

    def update(updates, state, params=None, **extra):
        check_state("scale_by_adan", state, ScaleByAdanState)
        first = state.count == 0
        count = _tree.safe_increment(state.count)

        def fn(dt):
            b = {k: _tree.hp(v, dt) for k, v in (("b1", b1), ("b2", b2), ("b3", b3))}
            return {
                **b,
                **{f"c{k}": 1 - v for k, v in b.items()},
                **{f"d{k}": _tree.debias(v, count, dt) for k, v in b.items()},
                "eps": _tree.hp(eps, dt),
                "eps_root": _tree.hp(eps_root, dt),
            }

        consts = constants(fn)

        def leaf(g, m, v, n, g_prev):
            dt = widest(g, m, v, n, g_prev)
            c = consts(dt)
            gx = g.astype(dt)
            diff = jnp.where(first, jnp.zeros_like(gx), gx - g_prev.astype(dt))
            m_new = _tree.as_stored(_tree.moment_step(gx, m, c.b1, 1, c.cb1, dt), m.dtype)
            v_new = _tree.as_stored(_tree.moment_step(diff, v, c.b2, 1, c.cb2, dt), v.dtype)
            n_new = _tree.moment_step(gx + c.b2 * diff, n, c.b3, 2, c.cb3, dt)
            n_new = _tree.as_stored(n_new, n.dtype)
            direction = m_new / c.db1 + c.b2 * v_new / c.db2
            out = direction / (_tree.root(n_new / c.db3 + c.eps_root) + c.eps)
            return (
                out.astype(g.dtype),
                m_new.astype(m.dtype),
                v_new.astype(v.dtype),
                n_new.astype(n.dtype),
                g.astype(g_prev.dtype),
            )

        out, m, v, n, g_prev = leafwise(
            leaf, updates, state.m, state.v, state.n, state.prev_grad, n_out=5
        )
        return out, ScaleByAdanState(count, m, v, n, g_prev)

    return GradientTransformation(init, update, packing=ELEMENTWISE)


def scale_by_novograd(
    b1: Any = 0.9,
    b2: Any = 0.25,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    weight_decay: Any = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """NovoGrad's direction (Ginsburg et al. 2019, Alg. 1), before the learning rate.

    Per leaf (layer) ``l``: ``v_l <- b2 v_l + (1-b2) ||g_l||²`` (``v_l = ||g_l||²``
    at the first step), ``m_l <- b1 m_l + g_l / (sqrt(v_l + eps_root) + eps) +
    weight_decay p_l``; output ``m_l``. One second moment per *leaf*, not per
    element, so it runs per leaf under ``gl.packed``. ``optax.scale_by_novograd``.
    ``m`` is stored in ``mu_dtype`` (default: the param's dtype).
    """
    _check_adam_like(b1, b2, eps, eps_root, mu_dtype)
    check_scalars(weight_decay=weight_decay)
    check_nonnegative("weight_decay", weight_decay)
    # Without weight decay the params are not needed (known only if it is a number).
    uses_params = is_traced(weight_decay) or not (
        isinstance(weight_decay, int | float) and weight_decay == 0
    )

    def init(params):
        _tree.check_float_params(params, "init")
        nu = jax.tree.map(lambda p: _tree.full_along(p, ()), params)  # replicated scalars
        mu = _tree.zeros_like(params, mu_dtype)
        return ScaleByNovogradState(_tree.step_counter(params), mu, nu)

    def update(updates, state, params=None, **extra):
        check_state("scale_by_novograd", state, ScaleByNovogradState)
        if uses_params:
            check_params("scale_by_novograd (with weight_decay)", params)
        first = state.count == 0
        consts = constants(
            lambda dt: {
                "b1": _tree.hp(b1, dt),
                "b2": _tree.hp(b2, dt),
                "cb2": 1 - _tree.hp(b2, dt),
                "eps": _tree.hp(eps, dt),
                "eps_root": _tree.hp(eps_root, dt),
                "wd": _tree.hp(weight_decay, dt),
            }
        )

        def leaf(g, m, nu, p=None):
            dt = widest(g, m, nu)
            c = consts(dt)
            gx = g.astype(dt)
            g_norm2 = _tree.sum_of_squares(g, dt)  # its own convert: no dt copy of g
            nu_new = jnp.where(first, g_norm2, c.b2 * nu.astype(dt) + c.cb2 * g_norm2)
            nu_new = _tree.as_stored(nu_new, nu.dtype)
            d = gx / (_tree.root(nu_new + c.eps_root) + c.eps)
            if p is not None:
                d = d + c.wd * p.astype(dt)
            m_new = _tree.as_stored(c.b1 * m.astype(dt) + d, m.dtype)
            return m_new.astype(g.dtype), m_new.astype(m.dtype), nu_new.astype(nu.dtype)

        # nu holds one scalar per leaf: its structure is checked, not its shapes.
        check_same_structure(state.nu, updates, "optimizer state", "gradient")
        for tree, name in ((state.mu, "optimizer state"), (params, "params")):
            if tree is not None:
                check_same_structure(tree, updates, name, "gradient")
                check_same_shapes(tree, updates, name, "gradient")
        trees = (state.mu, state.nu) + (
            (jax.tree.map(_tree.as_param, params),) if uses_params else ()
        )
        out = jax.tree.map(leaf, _tree.as_updates(updates), *trees)
        out, mu, nu = _tree.split_outputs(out, updates, 3)
        return out, ScaleByNovogradState(_tree.safe_increment(state.count), mu, nu)

    return GradientTransformation(init, update, packing=PER_LEAF)


def scale_by_debiased_rms(decay: Any = 0.999, eps: Any = 1e-8) -> GradientTransformation:
    """RMSprop with Adam's bias correction (Adam without momentum), before the lr.

    ``v <- decay v + (1-decay) g²``; output ``g / (sqrt(v/(1-decay^t)) + eps)``.
    The base step of schedule-free AdamW (Defazio et al. 2024), whose
    averaging replaces the momentum; ``optax.scale_by_rms(decay, eps,
    eps_in_sqrt=False, bias_correction=True)``.
    """
    check_scalars(decay=decay, eps=eps)
    _check_decay("decay", decay)
    check_nonnegative("eps", eps)

    def init(params):
        return ScaleByDebiasedRmsState(_tree.step_counter(params), _tree.zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_state("scale_by_debiased_rms", state, ScaleByDebiasedRmsState)
        count = _tree.safe_increment(state.count)
        consts = constants(
            lambda dt: {
                "d": _tree.hp(decay, dt),
                "cd": 1 - _tree.hp(decay, dt),
                "c": _tree.debias(decay, count, dt),
                "eps": _tree.hp(eps, dt),
            }
        )

        def leaf(g, v):
            dt = widest(g, v)
            c = consts(dt)
            v_new = _tree.as_stored(_tree.moment_step(g, v, c.d, 2, c.cd, dt), v.dtype)
            out = g.astype(dt) / (_tree.root(v_new / c.c) + c.eps)
            return out.astype(g.dtype), v_new.astype(v.dtype)

        out, nu = leafwise(leaf, updates, state.nu, n_out=2)
        return out, ScaleByDebiasedRmsState(count, nu)

    return GradientTransformation(init, update, packing=ELEMENTWISE)
