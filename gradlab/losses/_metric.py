"""Metric-learning losses: contrastive and triplet, plus a safe Euclidean distance.

Embeddings are ``(..., D)`` arrays: the last axis is the embedding dimension
and every leading axis is a batch axis, so the losses return ``(...)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import check_nonnegative
from gradlab.losses._common import (
    Array,
    ArrayLike,
    as_float,
    cast,
    check_broadcasts_to,
    check_label_values,
    check_same_shape,
)

__all__ = ["contrastive", "euclidean_distance", "triplet_margin"]


def euclidean_distance(a: ArrayLike, b: ArrayLike) -> Array:
    """Euclidean distance ``sqrt(sum((a - b)**2, axis=-1))`` with a safe gradient.

    The plain formula has an infinite derivative at ``a == b`` (``d sqrt(s) =
    ds / (2 sqrt(s))``) and gives NaN gradients for identical points, e.g. a
    pair that a contrastive loss has already pulled together. Here the
    gradient at 0 is 0 (a valid subgradient), using the double ``where``: the
    square root is never evaluated at 0 in the branch that is differentiated.
    A NaN (or ``inf - inf``) coordinate gives NaN, as the plain formula does.

    Args:
      a, b: ``(..., D)`` arrays of the same shape.

    Returns:
      ``(...)``, in ``a``'s dtype.

    >>> import jax, jax.numpy as jnp
    >>> from gradlab import losses
    >>> print(losses.euclidean_distance(jnp.array([0.0, 0.0]), jnp.array([3.0, 4.0])))
    5.0
    >>> print(jax.grad(losses.euclidean_distance)(jnp.ones(2), jnp.ones(2)))
    [0. 0.]
    """
    return _distance(a, b, "a", "b")


def _distance(a: ArrayLike, b: ArrayLike, name_a: str, name_b: str) -> Array:
    """:func:`euclidean_distance`, its errors naming the caller's arguments."""
    check_same_shape(name_a, a, name_b, b)
    if jnp.ndim(a) < 1:
        raise ValueError(
            f"{name_a} and {name_b} must have a last (feature) axis, got shape {jnp.shape(a)}"
        )
    a = as_float(a, name_a)
    # 16-bit inputs are summed in float32: in float16 a distance of 256 would
    # square to inf and one of 2e-4 to 0 (torch gets both right).
    acc = a.dtype if jnp.finfo(a.dtype).bits >= 32 else jnp.float32
    sq = jnp.sum(jnp.square(a.astype(acc) - cast(b, a.dtype, name_b).astype(acc)), axis=-1)
    # sq == 0, not sq > 0: a NaN sum must stay NaN (a diverged embedding reaches
    # the loss, visibly), where sq > 0 took it for a distance 0
    zero = sq == 0
    return jnp.where(zero, 0, jnp.sqrt(jnp.where(zero, 1, sq))).astype(a.dtype)


def _rounding(dtype: Any) -> float:
    """How far below 0 a computed distance may round: a few ulps of 1 (0 for ints)."""
    return 4 * float(jnp.finfo(dtype).eps) if _tree.is_float(dtype) else 0.0


def contrastive(distance: ArrayLike, is_dissimilar: ArrayLike, margin: ArrayLike = 1.0) -> Array:
    """Contrastive loss (Hadsell, Chopra & LeCun 2006), elementwise over pairs.

    For a pair at distance ``D`` with ``Y = is_dissimilar``::

        (1 - Y) * D**2 / 2  +  Y * max(0, margin - D)**2 / 2

    Similar pairs (``Y = 0``) are pulled together; dissimilar pairs
    (``Y = 1``) are pushed apart until they are ``margin`` away, then ignored.
    Note the label convention: ``Y = 1`` means *dissimilar*, as in the paper;
    some libraries (e.g. ``pytorch_metric_learning``) use 1 for similar.

    Args:
      distance: ``(...)`` non-negative distances, e.g.
        :func:`euclidean_distance` of two embeddings. Concrete values below
        ``-4 eps`` of their dtype raise ``ValueError`` (a rounding such as
        ``1 - cos`` of identical embeddings, and NaN, pass to the loss).
      is_dissimilar: ``(...)`` labels in ``[0, 1]`` (bool, int or float).
      margin: ``>= 0``, a number or an array, possibly traced.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> d = jnp.array([0.5, 0.5, 2.0])
    >>> print(losses.contrastive(d, jnp.array([0, 1, 1]), margin=1.0))
    [0.125 0.125 0.   ]
    """
    check_nonnegative("margin", margin)
    check_same_shape("distance", distance, "is_dissimilar", is_dissimilar)
    check_label_values("is_dissimilar", is_dissimilar, lambda a: (a >= 0) & (a <= 1), "in [0, 1]")
    # Negative distances are mostly similarities passed by mistake (hunt80); a
    # NaN passes, so a diverged embedding reaches the loss, visibly; and so does
    # a rounding below 0 (1 - cos of identical embeddings is -1.2e-7 in float32).
    check_label_values(
        "distance",
        distance,
        lambda a: np.isnan(a) | (a >= -_rounding(a.dtype)),
        "non-negative (a similarity? pass a distance, e.g. euclidean_distance)",
    )
    check_broadcasts_to("margin", margin, jnp.shape(distance))
    d = as_float(distance, "distance")
    dc = d.astype(_tree.compute_dtype(d.dtype))  # 0.5 * D**2 fits float16 where D**2 may not
    y = cast(is_dissimilar, dc.dtype, "is_dissimilar")
    margin = cast(margin, dc.dtype, "margin")
    loss = 0.5 * ((1 - y) * jnp.square(dc) + y * jnp.square(jax.nn.relu(margin - dc)))
    return loss.astype(d.dtype)


def triplet_margin(
    anchor: ArrayLike, positive: ArrayLike, negative: ArrayLike, margin: ArrayLike = 1.0
) -> Array:
    """Triplet margin loss (Schroff et al. 2015, FaceNet), one value per triplet.

    ``max(d(a, p) - d(a, n) + margin, 0)`` with ``d`` the Euclidean distance
    over the last axis (:func:`euclidean_distance`, so identical anchor and
    positive give a finite gradient). Same as
    ``torch.nn.TripletMarginLoss(margin, p=2, eps=0, reduction="none")``;
    ``optax.losses.triplet_margin_loss`` adds ``eps = 1e-6`` inside the square
    root instead.

    Args:
      anchor, positive, negative: ``(..., D)`` embeddings of the same shape.
      margin: ``>= 0``, a number or an array, possibly traced.

    Returns:
      ``(...)``, in ``anchor``'s dtype.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> a, p, n = jnp.zeros(2), jnp.array([1.0, 0.0]), jnp.array([0.0, 3.0])
    >>> print(losses.triplet_margin(a, p, n, margin=1.0), losses.triplet_margin(a, n, p))
    0.0 3.0
    """
    check_nonnegative("margin", margin)
    # The distances' own checks, in the names the caller used (not a and b: hunt80).
    d_pos = _distance(anchor, positive, "anchor", "positive")
    d_neg = _distance(anchor, negative, "anchor", "negative")
    check_broadcasts_to("margin", margin, d_pos.shape)
    return jax.nn.relu(d_pos - d_neg + cast(margin, d_pos.dtype, "margin"))
