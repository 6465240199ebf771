"""Muon's block: momentum orthogonalised by a Newton-Schulz iteration."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab import _tree
from gradlab._checks import (
    check_bools,
    check_float_dtype,
    check_in_range,
    check_int,
    check_nonnegative,
    check_number,
    check_scalars,
    check_state,
)
from gradlab._core import PER_LEAF, GradientTransformation, structural
from gradlab.blocks._helpers import constants, leafwise, widest

DEFAULT_NS_COEFFS = (3.4445, -4.7750, 2.0315)
"""Keller Jordan's quintic coefficients: ``X <- a X + (b A + c A²) X``, ``A = X Xᵀ``,
tuned to push every singular value into roughly [0.7, 1.2] in 5 steps."""


class ScaleByMuonState(NamedTuple):
    """``count``: int32 steps; ``mu``: the momentum EMA (params' tree)."""

    count: jax.Array
    mu: Any


def _check_newton_schulz(ns_coeffs: Any, ns_steps: Any, eps: Any) -> None:
    """Three finite real coefficients, a step count >= 0, an ``eps >= 0``."""
    if isinstance(ns_coeffs, str) or not hasattr(ns_coeffs, "__len__") or len(ns_coeffs) != 3:
        raise ValueError(f"ns_coeffs must be three numbers (a, b, c), got {ns_coeffs!r}")
    coeffs = {f"ns_coeffs[{i}]": c for i, c in enumerate(ns_coeffs)}
    check_scalars(**coeffs)
    for name, c in coeffs.items():
        check_number(name, c)
    check_int("ns_steps", ns_steps, minimum=0)
    check_scalars(eps=eps)
    check_nonnegative("eps", eps)


def orthogonalize(
    x: jax.Array, ns_coeffs: Any = DEFAULT_NS_COEFFS, ns_steps: int = 5, eps: Any = 1e-8
) -> jax.Array:
    """The orthogonal factor ``U Vᵀ`` of ``x = U S Vᵀ``, approximately, by
    ``ns_steps`` Newton-Schulz iterations (Jordan et al. 2024, "Muon").

    ``x`` is a matrix (its last two axes; leading axes are a batch). It is
    first scaled to Frobenius norm <= 1 (``x / (||x||_F + eps)``), so every
    singular value is in (0, 1]; each step ``X <- a X + (b A + c A²) X`` with
    ``A = X Xᵀ`` maps them towards 1, leaving the singular vectors alone.
    Wide matrices are iterated as they are and tall ones transposed (``A`` is
    then the smaller Gram matrix). Computed in float32 for 16-bit inputs;
    returned in ``x``'s dtype. As ``orthogonalize_via_newton_schulz`` of
    ``optax.contrib._muon``.
    ``ns_coeffs`` is ``(a, b, c)`` (default: Keller Jordan's ``(3.4445, -4.7750, 2.0315)``).
    """
    if x.ndim < 2:
        raise ValueError(f"orthogonalize needs a matrix (ndim >= 2), got shape {x.shape}")
    _check_newton_schulz(ns_coeffs, ns_steps, eps)
    dt = widest(x)
    a, b, c = (_tree.hp(v, dt) for v in ns_coeffs)
    X = x.astype(dt)
    typed = _tree.explicit_sharding(x)
    if typed is not None:
        # Sharding in types: a product over a split axis is refused as
        # ambiguous. Every device iterates on the whole matrix (what XLA does
        # for the products in auto mode); a batch axis stays split.
        batch = _tree.padded_spec(typed.spec, x.ndim)[:-2]
        whole = jax.sharding.PartitionSpec(*batch, None, None)
        X = jax.reshard(X, jax.sharding.NamedSharding(typed.mesh, whole))
    tall = X.shape[-2] > X.shape[-1]
    if tall:
        X = jnp.swapaxes(X, -1, -2)
    X = X / (_tree.norm(X, dt, axis=(-2, -1), keepdims=True) + _tree.hp(eps, dt))
    for _ in range(int(ns_steps)):
        A = X @ jnp.swapaxes(X, -1, -2)
        X = a * X + (b * A + c * (A @ A)) @ X
    if tall:
        X = jnp.swapaxes(X, -1, -2)
    if typed is not None:
        X = jax.reshard(X, typed)  # back to x's layout: each device keeps its part
    return X.astype(x.dtype)


@structural("ns_steps")
def scale_by_muon(
    ns_coeffs: Any = DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    beta: Any = 0.95,
    eps: Any = 1e-8,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    """Muon's direction (Jordan et al. 2024), before the learning rate, for matrices.

    ``m <- beta m + (1-beta) g``; ``m̂`` its bias-corrected (Nesterov: look-
    ahead ``beta m/(1-beta^(t+1)) + (1-beta) g/(1-beta^t)``) value; output
    ``orthogonalize(m̂) * sqrt(max(1, fan_out / fan_in))`` for a ``(fan_in,
    fan_out)`` kernel (its last two axes; leading axes are a batch): every
    singular value of the step about 1, scaled up for wide layers. As
    ``optax.contrib.scale_by_muon`` followed by the shape scaling that
    ``optax.contrib.muon`` chains after it (``optax.contrib._muon.scale_by_shape``).
    Leaves of rank < 2 are refused (``gl.muon`` sends them to AdamW).
    Runs per leaf under ``gl.packed``.
    ``orthogonalize`` takes ``ns_steps`` Newton-Schulz steps with coefficients ``ns_coeffs``
    after dividing by ``||m̂||_F + eps``; ``m`` is stored in ``mu_dtype`` (default: the
    param's dtype); ``nesterov`` defaults to True.
    """
    check_bools(nesterov=nesterov)
    check_scalars(beta=beta)
    check_in_range("beta", beta, 0.0, 1.0, hi_open=True)
    _check_newton_schulz(ns_coeffs, ns_steps, eps)
    check_float_dtype("mu_dtype", mu_dtype)

    def init(params):
        for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
            if jnp.ndim(p) < 2:
                raise ValueError(
                    f"scale_by_muon orthogonalises matrices: param leaf "
                    f"{jax.tree_util.keystr(path) or '(root)'} has shape {jnp.shape(p)} "
                    "(gl.muon sends leaves of rank < 2 to AdamW)"
                )
        return ScaleByMuonState(_tree.step_counter(params), _tree.zeros_like(params, mu_dtype))

    def update(updates, state, params=None, **extra):
        check_state("scale_by_muon", state, ScaleByMuonState)
        count = _tree.safe_increment(state.count)
        consts = constants(
            lambda dt: {
                "b": _tree.hp(beta, dt),
                "cb": 1 - _tree.hp(beta, dt),
                "c1": _tree.debias(beta, count, dt),
                "c1_next": _tree.debias(beta, _tree.safe_increment(count), dt),
            }
        )

        def leaf(g, m):
            dt = widest(g, m)
            c = consts(dt)
            m_new = _tree.as_stored(_tree.moment_step(g, m, c.b, 1, c.cb, dt), m.dtype)
            if nesterov:
                m_hat = c.b * m_new / c.c1_next + c.cb * g.astype(dt) / c.c1
            else:
                m_hat = m_new / c.c1
            fan_in, fan_out = g.shape[-2], g.shape[-1]
            # An empty matrix (a (0, n) leaf) has nothing to orthogonalise.
            ratio = fan_out / fan_in if fan_in else 1.0
            out = orthogonalize(m_hat, ns_coeffs, ns_steps, eps) * math.sqrt(max(1.0, ratio))
            return out.astype(g.dtype), m_new.astype(m.dtype)

        out, mu = leafwise(leaf, updates, state.mu, n_out=2)
        return out, ScaleByMuonState(count, mu)

    return GradientTransformation(init, update, packing=PER_LEAF)
