"""Regression losses: squared error, absolute error, Huber.

Each is elementwise: ``pred`` and ``target`` must have the same shape and the
result has that shape (no reduction; ``.mean()`` gives MSE / MAE / mean Huber).
"""

from __future__ import annotations

import jax.numpy as jnp

from gradlab import _tree
from gradlab._checks import check_positive
from gradlab.losses._common import (
    Array,
    ArrayLike,
    abs_,
    as_float,
    cast,
    check_broadcasts_to,
    check_same_shape,
)

__all__ = ["absolute_error", "huber", "squared_error"]


def _residual(pred: ArrayLike, target: ArrayLike) -> Array:
    check_same_shape("pred", pred, "target", target)
    pred = as_float(pred, "pred")
    return pred - cast(target, pred.dtype, "target")


def squared_error(pred: ArrayLike, target: ArrayLike) -> Array:
    """Squared error ``(pred - target)**2``, elementwise; its mean is the MSE.

    Same as ``optax.losses.squared_error`` and ``torch.nn.MSELoss(reduction="none")``;
    note ``optax.losses.l2_loss`` is *half* of this.

    Args:
      pred: predictions, any shape, floating.
      target: targets, same shape as ``pred`` (cast to ``pred``'s dtype).

    Returns:
      An array of ``pred``'s shape and dtype.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> print(losses.squared_error(jnp.array([98.0, 140.0]), jnp.array([100.0, 120.0])))
    [  4. 400.]
    """
    return jnp.square(_residual(pred, target))


def absolute_error(pred: ArrayLike, target: ArrayLike) -> Array:
    """Absolute error ``|pred - target|``, elementwise; its mean is the MAE.

    Same as ``torch.nn.L1Loss(reduction="none")``, gradient included: it is
    ``sign(pred - target)``, 0 at a zero residual (``jnp.abs`` alone gives 1).

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> print(losses.absolute_error(jnp.array([98.0, 140.0]), jnp.array([100.0, 120.0])))
    [ 2. 20.]
    """
    return abs_(_residual(pred, target))


def huber(pred: ArrayLike, target: ArrayLike, delta: ArrayLike = 1.0) -> Array:
    """Huber loss: quadratic for small residuals, linear for large ones.

    With ``r = pred - target``::

        huber(r) = 0.5 * r**2                      if |r| <= delta
                   delta * (|r| - 0.5 * delta)     otherwise

    (Huber 1964). Equal to ``optax.losses.huber_loss(pred, target, delta=delta)`` and
    ``torch.nn.HuberLoss(reduction="none", delta=delta)``; PyTorch's
    ``SmoothL1Loss(beta)`` is this divided by ``beta``. The value and its
    gradient are continuous at ``|r| = delta``; the gradient is ``r`` inside
    and ``delta * sign(r)`` outside, so an outlier pulls with force ``delta``
    at most.

    Args:
      pred: predictions, any shape.
      target: targets, same shape as ``pred``.
      delta: where the quadratic becomes linear; ``> 0``. A number or an
        array (broadcast against the residual), possibly traced.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> print(losses.huber(jnp.array([98.0, 140.0]), jnp.array([100.0, 120.0]), delta=5.0))
    [ 2.  87.5]
    """
    check_positive("delta", delta)
    r = _residual(pred, target)
    check_broadcasts_to("delta", delta, r.shape)
    # In >= float32: 0.5 * r**2 fits float16 where r**2 overflows (r = 300).
    rc = r.astype(_tree.compute_dtype(r.dtype))
    delta = cast(delta, rc.dtype, "delta")
    abs_r = jnp.abs(rc)
    # Branch-free so a traced delta works: the part of |r| inside delta is
    # penalised quadratically, the rest linearly.
    inside = jnp.minimum(abs_r, delta)
    return (0.5 * jnp.square(inside) + delta * (abs_r - inside)).astype(r.dtype)
