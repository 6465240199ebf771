"""The classic optimizers, each a short chain of building blocks.

Every ``learning_rate`` is a number, an array (possibly traced) or a schedule
``step -> lr``; the returned updates are already multiplied by ``-lr``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradlab._checks import check_bools, check_float_dtype, check_in_range, check_scalars
from gradlab._core import GradientTransformation, chain
from gradlab.blocks import (
    add_decayed_weights,
    identity,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    trace,
)

ScalarOrSchedule = Any  # float | jax.Array | Callable[[step], float]


def _momentum(
    momentum: Any, nesterov: bool, accumulator_dtype: Any = None
) -> GradientTransformation:
    """``trace(momentum)`` or, for ``momentum=None``, nothing (nesterov needs momentum)."""
    if momentum is None:
        if nesterov:
            raise ValueError("nesterov=True requires a momentum, got momentum=None")
        return identity()
    check_scalars(momentum=momentum)
    check_in_range("momentum", momentum, 0.0, 1.0)
    if nesterov:  # torch.optim.SGD: "Nesterov momentum requires a momentum"
        check_in_range("momentum (with nesterov=True)", momentum, 0.0, 1.0, lo_open=True)
    return trace(momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: Any = None,
    nesterov: bool = False,
    *,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    ``v <- momentum*v + g``; ``p <- p - lr * v`` (Nesterov: ``p <- p - lr*(g + momentum*v)``).
    Matches ``torch.optim.SGD(lr, momentum, dampening=0, nesterov)``;
    ``accumulator_dtype`` stores ``v`` in that dtype (``optax.sgd``'s).
    ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = sgd(0.1, momentum=0.9)
    """
    check_bools(nesterov=nesterov)
    check_float_dtype("accumulator_dtype", accumulator_dtype)
    return chain(
        _momentum(momentum, nesterov, accumulator_dtype), scale_by_learning_rate(learning_rate)
    )


def adagrad(
    learning_rate: ScalarOrSchedule, initial_accumulator_value: Any = 0.1, eps: Any = 1e-7
) -> GradientTransformation:
    """AdaGrad (Duchi et al. 2011): ``G <- G + g²``; ``p <- p - lr * g / (sqrt(G) + eps)``.

    ``G`` starts at ``initial_accumulator_value``. Matches
    ``torch.optim.Adagrad(lr, lr_decay=0, initial_accumulator_value, eps)``
    given the same values: the defaults are Optax's (0.1, 1e-7), torch's are
    ``initial_accumulator_value=0``, ``eps=1e-10``. torch's ``lr_decay`` is the
    learning rate ``schedules.inverse_time_decay(lr, lr_decay)``.
    ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = adagrad(0.1)
    """
    return chain(
        scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate)
    )


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    centered: bool = False,
    momentum: Any = None,
    nesterov: bool = False,
    *,
    eps_in_sqrt: bool = False,
) -> GradientTransformation:
    """RMSprop (Hinton 2012): ``v <- decay v + (1-decay) g²``; ``d = g / (sqrt(v) + eps)``.

    ``v`` starts at ``initial_scale`` (0, as torch; Optax's default too).
    Centered: ``d = g / (sqrt(v - m²) + eps)`` with ``m`` the EMA of ``g``.
    With momentum ``b <- momentum*b + d``; ``p <- p - lr * b`` (else ``p - lr*d``);
    ``nesterov=True`` (with momentum) steps with ``d + momentum*b`` instead of
    ``b``, as ``optax.rmsprop(nesterov=True)`` (torch has no Nesterov RMSprop).
    Matches ``torch.optim.RMSprop(lr, alpha=decay, eps, momentum, centered)``
    given the same values: the default ``decay=0.9`` is Optax's, torch's
    ``alpha`` is 0.99. ``eps_in_sqrt=True``: ``d = g / sqrt(v + eps)`` (centered
    ``g / sqrt(v - m² + eps)``), ``optax.rmsprop``'s default (Optax code ported as is
    keeps its numbers with it; ``eps_in_sqrt=False`` is torch's, and gradlab's), except
    with momentum *and* a learning-rate schedule: Optax scales by ``lr_t`` before the
    momentum (``b <- momentum*b + lr_t d``, ``p <- p - b``), gradlab and torch after it
    (``p <- p - lr_t b``); the two agree while ``lr`` is constant.
    ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = rmsprop(1e-3, centered=True, momentum=0.9)
    """
    check_bools(nesterov=nesterov)  # centered: scale_by_rms checks it
    return chain(
        scale_by_rms(decay, eps, initial_scale, centered, eps_in_sqrt=eps_in_sqrt),
        _momentum(momentum, nesterov),
        scale_by_learning_rate(learning_rate),
    )


def adam(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    nesterov: bool = False,
    *,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """Adam (Kingma & Ba 2015) with bias correction.

    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g²``,
    ``p <- p - lr * m̂ / (sqrt(v̂ + eps_root) + eps)`` with ``m̂ = m/(1-b1^t)``,
    ``v̂ = v/(1-b2^t)``. Matches ``torch.optim.Adam`` / ``optax.adam``
    (``nesterov=True``: ``optax.adam(nesterov=True)``, NAdam's look-ahead).
    ``lr``: ``learning_rate`` (a number, array or schedule). ``m`` is stored in ``mu_dtype``
    (default: the param's dtype).

    >>> tx = adam(1e-3)
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 1e-4,
    mask: Any | Callable[[Any], Any] = None,
    *,
    eps_root: Any = 0.0,
    nesterov: bool = False,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """AdamW (Loshchilov & Hutter 2019): Adam plus decoupled weight decay.

    ``p <- p - lr * (m̂ / (sqrt(v̂) + eps) + weight_decay * p)``; ``mask``
    (tree of bools or ``params -> tree``) selects the decayed leaves.
    Matches ``torch.optim.AdamW`` / ``optax.adamw`` (whose keyword-only
    ``eps_root`` and ``nesterov`` work here too: ``nesterov=True`` is ``nadamw``).
    ``m̂``, ``v̂``: Adam's moments at rates ``b1``, ``b2`` (``m`` stored in ``mu_dtype``;
    default: the param's dtype). ``lr``: ``learning_rate`` (a number, array or schedule).

    >>> tx = adamw(1e-3, weight_decay=0.01)
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
