"""Adaptive scaling blocks: Adam's moments, RMS and the root of the sum of squares."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import (
    check_bools,
    check_float_dtype,
    check_in_range,
    check_nonnegative,
    check_scalars,
    check_state,
)
from gradlab._core import ELEMENTWISE, GradientTransformation


class ScaleByAdamState(NamedTuple):
    """``count``: int32 steps; ``mu``/``nu``: first/second moment EMAs (params' tree)."""

    count: jax.Array
    mu: Any
    nu: Any


class ScaleByRmsState(NamedTuple):
    """``nu``: EMA of ``g**2``; ``mu``: EMA of ``g`` (centered only, else ``()``)."""

    nu: Any
    mu: Any


class ScaleByRssState(NamedTuple):
    """``sum_of_squares``: running sum of ``g**2`` (params' tree)."""

    sum_of_squares: Any


def _check_decay(name: str, value: Any) -> None:
    check_in_range(name, value, 0.0, 1.0, hi_open=True)


def _check_adam_like(b1: Any, b2: Any, eps: Any, eps_root: Any, mu_dtype: Any) -> None:
    """The checks of Adam's hyperparameters (shared by its variants)."""
    check_scalars(b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    _check_decay("b1", b1)
    _check_decay("b2", b2)
    check_nonnegative("eps", eps)
    check_nonnegative("eps_root", eps_root)
    check_float_dtype("mu_dtype", mu_dtype)


def _init_adam_state(params: Any, mu_dtype: Any) -> ScaleByAdamState:
    """``(count 0, m = 0 in mu_dtype, v = 0)`` (shared by Adam's variants)."""
    return ScaleByAdamState(
        _tree.step_counter(params), _tree.zeros_like(params, mu_dtype), _tree.zeros_like(params)
    )


def scale_by_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Adam's direction (Kingma & Ba 2015, Alg. 1), before the learning rate.

    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g²``,
    ``m̂ = m/(1-b1^t)``, ``v̂ = v/(1-b2^t)``, output ``m̂ / (sqrt(v̂ + eps_root) + eps)``.

    ``nesterov=True`` uses Dozat's (2016) look-ahead first moment
    ``m̂ = b1 m/(1-b1^(t+1)) + (1-b1) g/(1-b1^t)`` (as ``optax.scale_by_adam``).
    ``mu_dtype`` sets the storage dtype of ``m`` (default: the param's). The
    direction reads ``m`` and ``v`` as stored, as torch's in-place update of
    low-precision state does (Optax steps with the unrounded ``m`` and casts
    it after: with ``mu_dtype=bfloat16`` the two differ by ~0.1%).
    Matches ``torch.optim.Adam`` / ``optax.scale_by_adam``.
    """
    check_bools(nesterov=nesterov)
    _check_adam_like(b1, b2, eps, eps_root, mu_dtype)

    def init(params):
        return _init_adam_state(params, mu_dtype)

    def update(updates, state, params=None, **extra):
        check_state("scale_by_adam", state, ScaleByAdamState)
        count = _tree.safe_increment(state.count)
        count_next = _tree.safe_increment(count)

        def scalars(dt):  # traced once per dtype, not per leaf
            b1_, b2_ = _tree.hp(b1, dt), _tree.hp(b2, dt)
            c1 = _tree.debias(b1_, count, dt)
            c1_next = _tree.debias(b1_, count_next, dt) if nesterov else None
            return (
                b1_,
                1 - b1_,
                b2_,
                1 - b2_,
                c1,
                c1_next,
                _tree.debias(b2_, count, dt),
                _tree.hp(eps, dt),
                _tree.hp(eps_root, dt),
            )

        consts = _tree.per_dtype(scalars)

        def leaf(g, m, v):
            # mu_dtype may be wider than v's and g's dtype: compute in the widest.
            dt = np.result_type(*(_tree.compute_dtype(x.dtype) for x in (m, v, g)))
            b1_, cb1, b2_, cb2, c1, c1_next, c2, eps_, eps_root_ = consts(dt)
            # The output reads the moments as stored (see _tree.as_stored).
            m_new = _tree.as_stored(_tree.moment_step(g, m, b1_, 1, cb1, dt), m.dtype)
            v_new = _tree.as_stored(_tree.moment_step(g, v, b2_, 2, cb2, dt), v.dtype)
            # Nesterov (Dozat 2016): look ahead one step with the current gradient.
            m_hat = b1_ * m_new / c1_next + cb1 * g.astype(dt) / c1 if nesterov else m_new / c1
            out = m_hat / (_tree.root(v_new / c2 + eps_root_) + eps_)
            return out.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        out = _tree.map_like(leaf, updates, state.mu, state.nu)
        new_updates, mu, nu = _tree.split_outputs(out, updates, 3)
        return new_updates, ScaleByAdamState(count, mu, nu)

    return GradientTransformation(init, update, packing=ELEMENTWISE)


def scale_by_rms(
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    centered: bool = False,
    *,
    eps_in_sqrt: bool = False,
) -> GradientTransformation:
    """RMSprop's direction (Hinton 2012), before the learning rate.

    ``v <- decay v + (1-decay) g²``; output ``g / (sqrt(v) + eps)``. With
    ``centered=True`` also ``m <- decay m + (1-decay) g`` and output
    ``g / (sqrt(v - m²) + eps)``. ``eps`` is outside the square root as in
    ``torch.optim.RMSprop``; ``eps_in_sqrt=True`` puts it inside,
    ``g / sqrt(v + eps)`` (``g / sqrt(v - m² + eps)`` centered), Optax's default
    (``optax.scale_by_rms``/``scale_by_stddev``). ``v`` starts at ``initial_scale``.
    """
    check_bools(centered=centered, eps_in_sqrt=eps_in_sqrt)
    check_scalars(decay=decay, eps=eps, initial_scale=initial_scale)
    _check_decay("decay", decay)
    check_nonnegative("eps", eps)
    check_nonnegative("initial_scale", initial_scale)

    def init(params):
        nu = _tree.full_like(params, initial_scale)
        return ScaleByRmsState(nu, _tree.zeros_like(params) if centered else ())

    def update(updates, state, params=None, **extra):
        check_state("scale_by_rms", state, ScaleByRmsState)
        consts = _tree.per_dtype(
            lambda dt: (_tree.hp(decay, dt), 1 - _tree.hp(decay, dt), _tree.hp(eps, dt))
        )

        def leaf(g, v, m=None):
            dt = np.result_type(_tree.compute_dtype(v.dtype), _tree.compute_dtype(g.dtype))
            d, cd, eps_ = consts(dt)
            # The output reads the moments as stored (see _tree.as_stored).
            v_new = _tree.as_stored(_tree.moment_step(g, v, d, 2, cd), v.dtype)
            var = v_new
            if centered:
                m_new = _tree.as_stored(_tree.moment_step(g, m, d, 1, cd), m.dtype)
                # rounding can dip below 0; g² overflowing to inf must not give inf - inf
                var = jnp.where(jnp.isinf(v_new), v_new, jnp.maximum(v_new - m_new * m_new, 0))
            denom = _tree.root(var + eps_) if eps_in_sqrt else _tree.root(var) + eps_
            out = g.astype(dt) / denom
            extra_out = (m_new.astype(m.dtype),) if centered else ()
            return (out.astype(g.dtype), v_new.astype(v.dtype), *extra_out)

        trees = (state.nu, state.mu) if centered else (state.nu,)
        out = _tree.map_like(leaf, updates, *trees)
        parts = _tree.split_outputs(out, updates, 3 if centered else 2)
        return parts[0], ScaleByRmsState(parts[1], parts[2] if centered else ())

    return GradientTransformation(init, update, packing=ELEMENTWISE)


def scale_by_rss(initial_accumulator_value: Any = 0.1, eps: Any = 1e-7) -> GradientTransformation:
    """AdaGrad's direction (Duchi et al. 2011), before the learning rate.

    ``G <- G + g²`` (``G`` starts at ``initial_accumulator_value``); output
    ``g / (sqrt(G) + eps)`` — ``eps`` outside the root as in
    ``torch.optim.Adagrad`` (Optax: ``g / sqrt(G + eps)``; the two agree to
    ~eps).
    """
    check_scalars(initial_accumulator_value=initial_accumulator_value, eps=eps)
    check_nonnegative("initial_accumulator_value", initial_accumulator_value)
    check_nonnegative("eps", eps)

    def init(params):
        return ScaleByRssState(_tree.full_like(params, initial_accumulator_value))

    def update(updates, state, params=None, **extra):
        check_state("scale_by_rss", state, ScaleByRssState)
        eps_as = _tree.per_dtype(lambda dt: _tree.hp(eps, dt))

        def leaf(g, s):
            dt = _tree.compute_dtype(s.dtype)
            gx = g.astype(dt)
            s_new = _tree.as_stored(s.astype(dt) + gx * gx, s.dtype)
            out = gx / (_tree.root(s_new) + eps_as(dt))
            return out.astype(g.dtype), s_new.astype(s.dtype)

        out = _tree.map_like(leaf, updates, state.sum_of_squares)
        new_updates, sos = _tree.split_outputs(out, updates, 2)
        return new_updates, ScaleByRssState(sos)

    return GradientTransformation(init, update, packing=ELEMENTWISE)
