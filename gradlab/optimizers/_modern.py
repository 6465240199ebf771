"""The modern optimizer family, each a short chain of building blocks.

Every ``learning_rate`` is a number, an array (possibly traced) or a schedule
``step -> lr`` (``rprop``'s is its initial step size: no schedule); the
returned updates are already multiplied by ``-lr``. The docstrings give the
update rule, the paper, the Optax/PyTorch equivalent and where they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradlab._checks import (
    COUNT_MAX,
    check_bools,
    check_float_dtype,
    check_in_range,
    check_int,
    check_nonnegative,
    check_positive,
    check_scalars,
    check_schedule,
)
from gradlab._core import GradientTransformation, chain, structural
from gradlab.blocks import (
    add_decayed_weights,
    add_noise,
    clip_by_block_rms,
    ema,
    identity,
    scale,
    scale_by_adadelta,
    scale_by_adam,
    scale_by_adamax,
    scale_by_adan,
    scale_by_amsgrad,
    scale_by_belief,
    scale_by_factored_rms,
    scale_by_learning_rate,
    scale_by_lion,
    scale_by_novograd,
    scale_by_param_block_rms,
    scale_by_radam,
    scale_by_rprop,
    scale_by_sign,
    scale_by_sm3,
    scale_by_trust_ratio,
    scale_by_yogi,
    trace,
)

ScalarOrSchedule = Any  # float | jax.Array | Callable[[step], float]
Mask = Any | Callable[[Any], Any]


def _check_rate(name: str, value: Any) -> None:
    """A momentum-like rate in [0, 1], named as the optimizer's caller passed it."""
    check_scalars(**{name: value})
    check_in_range(name, value, 0.0, 1.0)


# ------------------------------------------------------------------ Adam family


def nadam(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    *,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """NAdam (Dozat 2016): Adam with Nesterov's look-ahead first moment.

    ``m̂ = b1 m/(1-b1^(t+1)) + (1-b1) g/(1-b1^t)``;
    ``p <- p - lr * m̂ / (sqrt(v̂ + eps_root) + eps)``. ``optax.nadam``;
    ``torch.optim.NAdam`` adds a momentum warm-up ``b1_t = b1 (1 - 0.5 *
    0.96^(0.004 t))`` (its ``momentum_decay``): without it (``momentum_decay``
    large) the two agree.
    ``v̂``: Adam's second moment at rate ``b2``; ``m`` is stored in ``mu_dtype`` (default:
    the param's dtype). ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = nadam(1e-3)
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=True),
        scale_by_learning_rate(learning_rate),
    )


def nadamw(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    weight_decay: Any = 1e-4,
    mask: Mask = None,
    *,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """NAdamW: NAdam plus decoupled weight decay (Loshchilov & Hutter 2019).

    ``p <- p - lr * (m̂_nesterov / (sqrt(v̂ + eps_root) + eps) + weight_decay * p)``
    where ``mask`` is True. ``optax.nadamw``; ``torch.optim.NAdam(
    decoupled_weight_decay=True)`` up to its momentum warm-up (see ``nadam``).
    ``m̂``, ``v̂``: Adam's moments at rates ``b1``, ``b2`` (``m`` stored in ``mu_dtype``;
    default: the param's dtype). ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = nadamw(1e-3, weight_decay=1e-2)
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=True),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    *,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """AMSGrad (Reddi et al. 2018): Adam whose second moment never decreases.

    ``v̂max <- max(v̂max, v/(1-b2^t))``; ``p <- p - lr * m̂ / (sqrt(v̂max + eps_root) + eps)``.
    ``optax.amsgrad``. ``torch.optim.Adam(amsgrad=True)`` takes the maximum of
    the raw ``v`` and divides it by ``1-b2^t`` after (a larger step early on).
    ``m̂ = m/(1-b1^t)`` with ``m <- b1 m + (1-b1) g``, stored in ``mu_dtype`` (default: the
    param's dtype). ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = amsgrad(1e-3)
    """
    return chain(
        scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype), scale_by_learning_rate(learning_rate)
    )


def adamax(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """Adamax (Kingma & Ba 2015, §7.1): Adam with the infinity norm.

    ``u <- max(b2 u, |g| + eps)``; ``p <- p - lr/(1-b1^t) * m / u``.
    ``torch.optim.Adamax``, ``optax.adamax`` (same conventions).
    ``m <- b1 m + (1-b1) g`` is stored in ``mu_dtype`` (default: the param's dtype). ``lr``:
    ``learning_rate`` (a number, array or schedule).

    >>> tx = adamax(2e-3)
    """
    return chain(scale_by_adamax(b1, b2, eps, mu_dtype), scale_by_learning_rate(learning_rate))


def adamaxw(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 1e-4,
    mask: Mask = None,
    *,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """Adamax with decoupled weight decay: ``p <- p - lr * (m̂/u + weight_decay * p)``.

    ``optax.adamaxw``. (``torch.optim.Adamax``'s ``weight_decay`` is coupled:
    it is added to the gradient.)
    ``m̂``, ``u`` as in ``adamax`` (``b1``, ``b2``, ``eps``; ``m`` stored in ``mu_dtype``,
    default: the param's dtype). ``mask`` (tree of bools or ``params -> tree``) selects the
    decayed leaves. ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = adamaxw(2e-3, weight_decay=1e-2)
    """
    return chain(
        scale_by_adamax(b1, b2, eps, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def radam(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    threshold: Any = 5.0,
    *,
    eps_root: Any = 0.0,
    nesterov: bool = False,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """RAdam (Liu et al. 2020): Adam with the variance of its adaptive step rectified.

    ``p <- p - lr * m̂`` while ``rho_t < threshold`` (too few steps for ``v̂``
    to be trusted), then ``p <- p - lr * r_t m̂ / (sqrt(v̂ + eps_root) + eps)``
    (see ``scale_by_radam``). ``optax.radam``; ``torch.optim.RAdam`` switches
    at ``rho_t > 5`` and adds ``eps`` to the uncorrected ``sqrt(v)``.
    ``nesterov=True``: ``m̂`` is Dozat's look-ahead moment, as in
    :func:`gradlab.scale_by_adam`.
    ``eps_root`` is keyword-only: the fifth positional argument is
    ``threshold``, as the API fixes it (Optax's fifth is ``eps_root``).
    ``m̂``, ``v̂``: Adam's moments at rates ``b1``, ``b2`` (``m`` stored in ``mu_dtype``;
    default: the param's dtype). ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = radam(1e-3)
    """
    return chain(
        scale_by_radam(b1, b2, eps, eps_root, threshold, mu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def adadelta(
    learning_rate: ScalarOrSchedule = 1.0,
    rho: Any = 0.9,
    eps: Any = 1e-6,
    weight_decay: Any = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    """Adadelta (Zeiler 2012): steps sized by the RMS of past steps over the RMS of gradients.

    ``g <- g + weight_decay * p`` (coupled L2, where ``mask``);
    ``E[g²] <- rho E[g²] + (1-rho) g²``; ``d = sqrt(E[dx²] + eps)/sqrt(E[g²] + eps) g``;
    ``E[dx²] <- rho E[dx²] + (1-rho) d²``; ``p <- p - lr * d``.
    ``torch.optim.Adadelta``, ``optax.adadelta`` (``mask`` is Optax's ``weight_decay_mask``).
    ``lr``: ``learning_rate`` (default 1, as in the paper; a number, array or schedule).

    >>> tx = adadelta()
    """
    return chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(learning_rate),
    )


def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-16,
    eps_root: Any = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """AdaBelief (Zhuang et al. 2020): Adam with the variance of ``g`` around its EMA.

    ``s <- b2 s + (1-b2)(g - m)² + eps_root``; ``p <- p - lr * m̂ / (sqrt(ŝ) + eps)``.
    ``nesterov=True``: ``m̂`` is Dozat's look-ahead moment, as in
    :func:`gradlab.scale_by_adam`. ``optax.adabelief``.
    ``m <- b1 m + (1-b1) g`` is stored in ``mu_dtype`` (default: the param's dtype). ``lr``:
    ``learning_rate`` (a number, array or schedule).

    >>> tx = adabelief(1e-3)
    """
    return chain(
        scale_by_belief(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def yogi(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-3,
    initial_accumulator_value: Any = 1e-6,
    *,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """Yogi (Zaheer et al. 2018): Adam with an additive second-moment update.

    ``v <- v - (1-b2) sign(v - g²) g²``; ``p <- p - lr * m̂ / (sqrt(v̂) + eps)``.
    ``optax.yogi`` (moments start at ``initial_accumulator_value`` and are
    bias-corrected; the paper does not correct them).
    ``m <- b1 m + (1-b1) g`` is stored in ``mu_dtype`` (default: the param's dtype). ``lr``:
    ``learning_rate`` (a number, array or schedule).

    >>> tx = yogi(1e-2)
    """
    return chain(
        scale_by_yogi(b1, b2, eps, 0.0, initial_accumulator_value, mu_dtype),
        scale_by_learning_rate(learning_rate),
    )


def adan(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.98,
    b2: Any = 0.92,
    b3: Any = 0.99,
    eps: Any = 1e-8,
    eps_root: Any = 1e-8,
    weight_decay: Any = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    """Adan (Xie et al. 2022): Nesterov momentum from gradient differences.

    ``p <- p - lr * ((m̂ + b2 v̂) / (sqrt(n̂ + eps_root) + eps) + weight_decay * p)``
    (see ``scale_by_adan``: the paper's Alg. 1 and the authors' code, where
    ``optax.adan`` weighs the gradient differences by ``1 - b2``). The paper
    decays as ``p / (1 + lr weight_decay)`` (the same to first order in
    ``lr``); ``eps_root`` is Optax's default, the authors' code has none
    (``eps_root=0``).
    ``b1``, ``b2``, ``b3``: the decay rates of ``m``, ``v``, ``n``. ``mask`` (tree of bools
    or ``params -> tree``) selects the decayed leaves. ``lr``: ``learning_rate`` (a number,
    array or schedule).

    >>> tx = adan(1e-3, weight_decay=0.02)
    """
    return chain(
        scale_by_adan(b1, b2, b3, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def novograd(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.25,
    eps: Any = 1e-6,
    eps_root: Any = 0.0,
    weight_decay: Any = 0.0,
    *,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """NovoGrad (Ginsburg et al. 2019): layer-wise second moments, decay inside momentum.

    Per leaf ``l``: ``v_l <- b2 v_l + (1-b2) ||g_l||²``, except ``v_l = ||g_l||²``
    at the first step (the paper's Alg. 1); ``m_l <- b1 m_l +
    g_l/(sqrt(v_l + eps_root) + eps) + weight_decay p_l``; ``p <- p - lr * m``.
    State: one moment (1x) plus a scalar per leaf. ``optax.novograd``.
    ``m`` is stored in ``mu_dtype`` (default: the param's dtype). ``lr``: ``learning_rate``
    (a number, array or schedule).

    >>> tx = novograd(1e-2)
    """
    return chain(
        scale_by_novograd(b1, b2, eps, eps_root, weight_decay, mu_dtype),
        scale_by_learning_rate(learning_rate),
    )


# ------------------------------------------------------------ layer-wise, sign


def lamb(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-6,
    weight_decay: Any = 0.0,
    mask: Mask = None,
    *,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """LAMB (You et al. 2020): AdamW's step rescaled per layer to the layer's norm.

    ``r = m̂/(sqrt(v̂ + eps_root) + eps) + weight_decay p``;
    ``p <- p - lr * ||p|| / ||r|| * r`` per leaf (ratio 1 where a norm is 0).
    ``optax.lamb`` (no clipping of ``||p||``, the paper's ``φ``). ``eps_root``
    is keyword-only: the fifth positional argument is ``weight_decay``, as the
    API fixes it (Optax's fifth is ``eps_root``).
    ``m̂``, ``v̂``: Adam's moments at rates ``b1``, ``b2`` (``m`` stored in ``mu_dtype``;
    default: the param's dtype). ``mask`` (tree of bools or ``params -> tree``) selects the
    decayed leaves. ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = lamb(1e-3, weight_decay=1e-2)
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )


def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: Any = 0.0,
    trust_coefficient: Any = 0.001,
    momentum: Any = 0.9,
    nesterov: bool = False,
    eps: Any = 0.0,
    weight_decay_mask: Mask = None,
    trust_ratio_mask: Mask = None,
) -> GradientTransformation:
    """LARS (You et al. 2017): SGD with momentum and a layer-wise trust ratio.

    ``d = g + weight_decay p``; ``d <- trust_coefficient ||p|| / (||d|| + eps) d``
    per leaf (where ``trust_ratio_mask``; ratio 1 where a norm is 0);
    ``b <- momentum b + lr d``; ``p <- p - b`` (Nesterov: ``p - (lr d + momentum b)``).
    ``optax.lars`` (the paper's ratio is ``||p|| / (||g|| + wd ||p||)``).
    ``nesterov=True`` takes the Nesterov step. ``weight_decay_mask`` (tree of bools or
    ``params -> tree``) selects the decayed leaves. ``lr``: ``learning_rate`` (a number,
    array or schedule).

    >>> tx = lars(0.1, weight_decay=1e-4, trust_ratio_mask=lambda p: {k: k != "b" for k in p})
    """
    _check_rate("momentum", momentum)  # named as the caller knows it, not trace's "decay"
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps, mask=trust_ratio_mask),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov=nesterov),
    )


def lion(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.99,
    weight_decay: Any = 1e-3,
    mask: Mask = None,
    *,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """Lion (Chen et al. 2023): the sign of an interpolated momentum.

    ``p <- p - lr * (sign(b1 m + (1-b1) g) + weight_decay p)``; then
    ``m <- b2 m + (1-b2) g``. One moment (1x). Use a learning rate 3-10x
    smaller than AdamW's (every coordinate moves by ``lr``). ``optax.lion``.
    ``m`` is stored in ``mu_dtype`` (default: the param's dtype). ``mask`` (tree of bools or
    ``params -> tree``) selects the decayed leaves. ``lr``: ``learning_rate`` (a number,
    array or schedule).

    >>> tx = lion(1e-4, weight_decay=1e-2)
    """
    return chain(
        scale_by_lion(b1, b2, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    """signSGD (Bernstein et al. 2018): ``p <- p - lr * sign(g)``. ``optax.sign_sgd``.

    ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = sign_sgd(1e-3)
    """
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


def signum(
    learning_rate: ScalarOrSchedule, beta: Any = 0.9, *, mu_dtype: Any = None
) -> GradientTransformation:
    """Signum (Bernstein et al. 2018): signSGD with momentum.

    ``m <- beta m + (1-beta) g``; ``p <- p - lr * sign(m)``. ``optax.signum``
    (``mu_dtype`` is its ``accumulator_dtype``).
    ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = signum(1e-3)
    """
    _check_rate("beta", beta)
    check_float_dtype("mu_dtype", mu_dtype)  # under its own name (ema calls it accumulator_dtype)
    return chain(
        ema(beta, debias=False, accumulator_dtype=mu_dtype),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
    )


# ------------------------------------------------------ memory-saving, others


def _relative_step(count: Any) -> jax.Array:
    """Adafactor's relative step size ``rho_t = min(1e-2, 1/sqrt(t))``, 1-based ``t``
    (in the default float dtype: float64 under x64)."""
    return jnp.minimum(1e-2, jax.lax.rsqrt(jnp.asarray(count, float) + 1))


@structural("min_dim_size_to_factor")
def adafactor(
    learning_rate: ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: Any = 0.8,
    decay_offset: Any = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: Any = 1.0,
    momentum: Any = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: Any = None,
    eps: Any = 1e-30,
    factored: bool = True,
    weight_decay_mask: Mask = None,
) -> GradientTransformation:
    """Adafactor (Shazeer & Stern 2018): factored second moments, relative steps, clipping.

    ``U = G / sqrt(V̂)`` with ``V̂`` factored as ``R C / mean(R)`` for matrices
    (``scale_by_factored_rms``: n + m numbers of state for an n x m matrix,
    instead of Adam's 2 n m); ``U <- U / max(1, RMS(U)/clipping_threshold)``;
    ``p <- p - rho_t max(1e-3, RMS(p)) U`` (``multiply_by_parameter_scale``;
    otherwise ``p - rho_t U``), with optional momentum (``dtype_momentum``)
    and weight decay ``- weight_decay_rate p`` (not scaled by the step).
    ``R``, ``C``, ``V`` are EMAs with decay ``1 - t^(-decay_rate)`` of ``G² + eps``. A leaf
    is factored when its two largest axes are both >= ``min_dim_size_to_factor``
    (``factored=False``: none is). ``weight_decay_mask`` selects the leaves decayed.

    ``learning_rate=None`` is the paper's relative step ``rho_t = min(1e-2,
    1/sqrt(t))`` (§8, as Hugging Face's ``relative_step=True``); a number or
    schedule replaces it. Optax's ``adafactor`` has the same chain and
    argument names, but with ``learning_rate=None`` it applies no step size
    at all (``rho_t = 1``); given the same learning rate the two agree
    (to float32 precision with float64 params: Optax computes the decay rate
    ``1 - t^-decay_rate`` in float32, gradlab in the params' precision; and
    except with ``decay_offset > 0``, where Optax's first step is NaN and
    gradlab counts the steps before the offset as the first).

    >>> tx = adafactor()  # relative steps
    """
    check_bools(multiply_by_parameter_scale=multiply_by_parameter_scale)  # factored: its block
    if momentum is not None:
        _check_rate("momentum", momentum)
        check_float_dtype("dtype_momentum", dtype_momentum)
    check_scalars(decay_offset=decay_offset)
    check_int("decay_offset", decay_offset, minimum=0, maximum=COUNT_MAX)
    # checked under the names given here (their blocks say epsilon, threshold, weight_decay)
    check_scalars(eps=eps)
    check_nonnegative("eps", eps)
    if clipping_threshold is not None:
        check_scalars(clipping_threshold=clipping_threshold)
        check_positive("clipping_threshold", clipping_threshold)
    if weight_decay_rate is not None and not callable(weight_decay_rate):  # (or a schedule)
        check_scalars(weight_decay_rate=weight_decay_rate)
        check_nonnegative("weight_decay_rate", weight_decay_rate)
    elif weight_decay_rate is not None:
        check_schedule("weight_decay_rate", weight_decay_rate)
    lr = _relative_step if learning_rate is None else learning_rate
    return chain(
        scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps),
        identity() if clipping_threshold is None else clip_by_block_rms(clipping_threshold),
        scale_by_learning_rate(lr, flip_sign=False),
        scale_by_param_block_rms() if multiply_by_parameter_scale else identity(),
        identity()
        if momentum is None
        else ema(momentum, debias=False, accumulator_dtype=dtype_momentum),
        identity()
        if weight_decay_rate is None
        else add_decayed_weights(weight_decay_rate, weight_decay_mask),
        scale(-1.0),
    )


def sm3(
    learning_rate: ScalarOrSchedule, momentum: Any = 0.9, eps: Any = 1e-8
) -> GradientTransformation:
    """SM3 (Anil et al. 2019): AdaGrad with one accumulator per row/column/...

    ``nu'(i) = min over the accumulators covering i + g(i)²``, accumulators the
    maxima of ``nu'`` over their rows/columns; ``m <- momentum m + (1-momentum)
    g/sqrt(nu' + eps)``; ``p <- p - lr * m``. State: the sum of the dimensions per
    matrix plus the momentum (1x). ``optax.sm3``.
    ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = sm3(0.1)
    """
    _check_rate("momentum", momentum)
    return chain(scale_by_sm3(momentum, eps), scale_by_learning_rate(learning_rate))


def rprop(
    learning_rate: Any,
    eta_minus: Any = 0.5,
    eta_plus: Any = 1.2,
    min_step_size: Any = 1e-6,
    max_step_size: Any = 50.0,
) -> GradientTransformation:
    """Rprop (Riedmiller & Braun 1993; iRprop-): per-element steps adapted by sign agreement.

    ``p <- p - sign(g) * step`` with ``step`` grown by ``eta_plus`` while the
    gradient keeps its sign, shrunk by ``eta_minus`` (and no move) when it
    flips, clipped to ``[min_step_size, max_step_size]``; ``learning_rate``
    is the initial step (a number or array; no schedule). For full-batch
    training. ``torch.optim.Rprop`` (``optax.rprop`` lags it by a step: see
    :func:`gradlab.scale_by_rprop`).

    >>> tx = rprop(1e-2)
    """
    return chain(
        scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size),
        scale(-1.0),
    )


def noisy_sgd(
    learning_rate: ScalarOrSchedule, eta: Any = 0.01, gamma: Any = 0.55, seed: int = 0
) -> GradientTransformation:
    """SGD with annealed Gaussian gradient noise (Neelakantan et al. 2015).

    ``p <- p - lr * (g + N(0, eta / (1 + k)**gamma))`` at 0-based step ``k``.
    ``optax.noisy_sgd`` (its ``key`` is ``seed`` here; the noise streams differ).
    ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = noisy_sgd(1e-2)
    """
    return chain(add_noise(eta, gamma, seed), scale_by_learning_rate(learning_rate))
