"""Classification losses: cross-entropies, hinge, focal.

Shapes:

* Binary losses (``binary_cross_entropy``, ``sigmoid_binary_cross_entropy``,
  ``hinge``, ``squared_hinge``, ``sigmoid_focal``) are elementwise: the
  prediction and the label have the same shape, which is the output's shape.
  Multi-label problems are the same thing with a class axis: ``(batch,
  classes)`` in, ``(batch, classes)`` out.
* Multi-class losses (``categorical_cross_entropy``, ``softmax_cross_entropy``,
  ``softmax_cross_entropy_with_integer_labels``) read the *last* axis as the
  classes and sum over it: ``(..., C)`` in, ``(...)`` out.

The probability forms clip probabilities to ``[eps, 1 - eps]`` with ``eps``
the machine epsilon of the dtype, so probabilities of exactly 0 or 1 give a
finite loss (at most ``-log(eps)``: 15.9 in float32) and a finite gradient:
the unclipped one on ``[eps, 1 - eps]``, bounds included (``-y/p + (1-y)/(1-p)``
for BCE, as torch's ``BCELoss``), zero strictly outside. Prefer the logit
forms when you have logits: they are exact for any finite logit and never
saturate the gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradlab._checks import check_in_range, check_nonnegative, check_real
from gradlab.losses._common import (
    Array,
    ArrayLike,
    as_float,
    cast,
    check_broadcasts_to,
    check_class_axis,
    check_label_values,
    check_same_shape,
    prob_eps,
    python_ints,
    safe_log,
)

__all__ = [
    "binary_cross_entropy",
    "categorical_cross_entropy",
    "hinge",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "squared_hinge",
]


def _in_unit_interval(a: np.ndarray) -> np.ndarray:
    return (a >= 0) & (a <= 1)


def _probability(a: np.ndarray) -> np.ndarray:
    # NaN passes: a diverged model's NaN must reach the loss, visibly.
    return np.isnan(a) | _in_unit_interval(a)


def _plus_minus_one(a: np.ndarray) -> np.ndarray:
    return (a == 1) | (a == -1)


def _clip_probs(p: Array) -> Array:
    """``p`` clipped to ``[eps, 1 - eps]`` with derivative 1 on the bounds too.

    ``jnp.clip`` is ``minimum(maximum(...))``, whose derivative at a tie is 0.5:
    the gradient at ``p = 1 - eps`` (float32 ``sigmoid(x)`` for every x in
    [15.5, 16.6]) came out halved (hunt80). ``where`` passes ``p`` itself there.
    """
    eps = prob_eps(p.dtype)
    return jnp.where(p < eps, eps, jnp.where(p > 1 - eps, 1 - eps, p))


def _binary_inputs(
    x: ArrayLike, labels: ArrayLike, x_name: str, labels_name: str = "labels"
) -> tuple[Array, Array]:
    check_same_shape(x_name, x, labels_name, labels)
    check_label_values(labels_name, labels, _in_unit_interval, "in [0, 1]")
    x = as_float(x, x_name)
    return x, cast(labels, x.dtype, labels_name)


def binary_cross_entropy(probs: ArrayLike, labels: ArrayLike) -> Array:
    """Binary cross-entropy from probabilities, elementwise.

    ``-(y * log(p) + (1 - y) * log(1 - p))`` with ``p`` clipped to
    ``[eps, 1 - eps]``, ``eps = finfo(dtype).eps`` (see the module notes).
    ``torch.nn.BCELoss(reduction="none")`` and Keras ``binary_crossentropy``
    (``from_logits=False``) compute the same up to their clipping constants.
    If you have logits, use :func:`sigmoid_binary_cross_entropy`.

    Args:
      probs: predicted probabilities of the positive class, any shape.
      labels: targets in ``[0, 1]`` (hard 0/1 or soft), same shape; ints and
        bools are fine.

    Returns:
      An array of ``probs``' shape and dtype.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> loss = losses.binary_cross_entropy(jnp.array([0.95, 0.1]), jnp.array([1, 0]))
    >>> [round(v, 3) for v in loss.tolist()]
    [0.051, 0.105]
    """
    p, y = _binary_inputs(probs, labels, "probs")
    # Concrete probabilities outside [0, 1] are logits passed by mistake: clipped,
    # they would give a finite, meaningless loss.
    check_label_values(
        "probs",
        probs,
        _probability,
        "probabilities in [0, 1] (logits? use sigmoid_binary_cross_entropy)",
    )
    p = _clip_probs(p)
    # log1p(-p) keeps log(1 - p) accurate for small p.
    return -(y * jnp.log(p) + (1 - y) * jnp.log1p(-p))


def sigmoid_binary_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> Array:
    """Binary cross-entropy from logits, elementwise; ``p = sigmoid(logits)``.

    ``-(y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x)))``, computed as
    ``y * softplus(-x) + (1 - y) * softplus(x)``: exact for every finite logit
    (no ``log(0)``, no cancellation for large ``|x|``) with gradient
    ``sigmoid(x) - y``. Same as ``optax.losses.sigmoid_binary_cross_entropy``
    and ``torch.nn.BCEWithLogitsLoss(reduction="none")``.

    Args:
      logits: real-valued scores, any shape.
      labels: targets in ``[0, 1]``, same shape.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> print(losses.sigmoid_binary_cross_entropy(jnp.array([0.0, 1e4]), jnp.array([1, 1])))
    [0.6931472 0.       ]
    """
    x, y = _binary_inputs(logits, labels, "logits")
    # -log(sigmoid(x)) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x).
    return y * jax.nn.softplus(-x) + (1 - y) * jax.nn.softplus(x)


def _multiclass_inputs(x: ArrayLike, one_hot: ArrayLike, x_name: str) -> tuple[Array, Array]:
    check_class_axis(x_name, x)
    check_same_shape(x_name, x, "one_hot", one_hot)
    # Concrete labels outside [0, 1] are mostly a teacher's logits given for its
    # probabilities (distillation): the loss would be finite, even negative.
    check_label_values(
        "one_hot", one_hot, _in_unit_interval, "in [0, 1] (logits? apply softmax first)"
    )
    x = as_float(x, x_name)
    return x, cast(one_hot, x.dtype, "one_hot")


def _xlogy_sum(y: Array, log_p: Array) -> Array:
    """``sum(y * log_p, -1)`` with ``0 * log 0 = 0`` (masked ``-inf`` logits).

    Only a ``-inf`` log-probability under a zero label is replaced (by 0), so
    the gradient with respect to the labels is ``log_p`` everywhere else --
    zero labels included, as soft labels, learned label smoothing and
    distillation need (Optax and torch give the same).
    """
    masked = (y == 0) & jnp.isneginf(log_p)
    return jnp.sum(y * jnp.where(masked, 0, log_p), axis=-1)


def categorical_cross_entropy(probs: ArrayLike, one_hot: ArrayLike) -> Array:
    """Categorical cross-entropy from probabilities over the last axis.

    ``-sum_c y_c * log(p_c)`` with ``p`` clipped to ``[eps, 1 - eps]``
    (``eps = finfo(dtype).eps``). ``probs`` should sum to 1 over the last axis;
    they are *not* renormalised (Keras ``categorical_crossentropy`` with
    ``from_logits=False`` renormalises). With logits, use
    :func:`softmax_cross_entropy`.

    Args:
      probs: ``(..., C)`` class probabilities.
      one_hot: ``(..., C)`` one-hot or soft labels (each row sums to 1), in
        ``[0, 1]``: concrete values outside raise ``ValueError``.

    Returns:
      ``(...)``: one value per example, in ``probs``' dtype.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> p = jnp.array([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]])
    >>> loss = losses.categorical_cross_entropy(p, jnp.array([[0, 1, 0], [1, 0, 0]]))
    >>> [round(v, 3) for v in loss.tolist()]
    [0.223, 0.357]
    """
    p, y = _multiclass_inputs(probs, one_hot, "probs")
    check_label_values(
        "probs", probs, _probability, "probabilities in [0, 1] (logits? use softmax_cross_entropy)"
    )
    return -_xlogy_sum(y, jnp.log(_clip_probs(p)))


def softmax_cross_entropy(logits: ArrayLike, one_hot: ArrayLike) -> Array:
    """Softmax cross-entropy from logits over the last axis.

    ``-sum_c y_c * log_softmax(x)_c`` where ``log_softmax(x) = x - logsumexp(x)``
    (computed stably by shifting by the max). Labels may be one-hot or soft
    (label smoothing, distillation). Logits of ``-inf`` (masked classes) are
    allowed where the label is 0. Same as ``optax.losses.softmax_cross_entropy``,
    ``torch.nn.CrossEntropyLoss(reduction="none")`` with probability targets
    (class axis last here, second in PyTorch).

    Args:
      logits: ``(..., C)`` unnormalised scores.
      one_hot: ``(..., C)`` one-hot or soft labels in ``[0, 1]`` (concrete values
        outside, e.g. a teacher's logits, raise ``ValueError``).

    Returns:
      ``(...)``: one value per example, in ``logits``' dtype.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> print(losses.softmax_cross_entropy(jnp.zeros((1, 4)), jnp.array([[0, 0, 1, 0]])))
    [1.3862944]
    """
    x, y = _multiclass_inputs(logits, one_hot, "logits")
    return -_xlogy_sum(y, jax.nn.log_softmax(x, axis=-1))


def softmax_cross_entropy_with_integer_labels(logits: ArrayLike, labels: ArrayLike) -> Array:
    """Softmax cross-entropy with class indices: ``logsumexp(x) - x[label]``
    (computed as ``-log_softmax(x)[label]``, shifted by the max).

    Same as ``optax.losses.softmax_cross_entropy_with_integer_labels`` and
    ``torch.nn.CrossEntropyLoss(reduction="none")`` with index targets.
    Equal to :func:`softmax_cross_entropy` with ``one_hot(labels, C)``, without
    building the one-hot array.

    Args:
      logits: ``(..., C)`` unnormalised scores.
      labels: ``(...)`` integer class indices in ``[0, C)``. Concrete
        out-of-range labels raise ``ValueError``; under ``jit`` (where they
        cannot be inspected) they give NaN rather than a silently wrong loss.

    Returns:
      ``(...)``: one value per example, in ``logits``' dtype.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> loss = losses.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0, 2]))
    >>> [round(v, 3) for v in loss.tolist()]
    [0.24, 1.099]
    """
    check_class_axis("logits", logits)
    check_real("labels", labels, "integer class indices")  # a string: not JAX's error
    # NumPy labels are range-checked as given: JAX's int32 (x64 off) wraps an
    # int64 2**32 + 2 to the valid class 2
    labels = python_ints(labels)  # Python ints beyond int32: range-checked, not OverflowError
    numpy_labels = labels if isinstance(labels, np.ndarray | np.generic) else None
    labels = jnp.asarray(labels)
    given_dtype = labels.dtype if numpy_labels is None else numpy_labels.dtype
    if not jnp.issubdtype(given_dtype, jnp.integer):
        raise TypeError(
            f"labels must be integer class indices, got dtype {given_dtype}; "
            "for one-hot or soft labels use softmax_cross_entropy"
        )
    x = as_float(logits, "logits")
    n_classes = x.shape[-1]
    if labels.shape != x.shape[:-1]:
        raise ValueError(
            f"labels shape {labels.shape} must be the logits shape {x.shape} without "
            f"its last (class) axis, i.e. {x.shape[:-1]}"
        )
    check_label_values(
        "labels",
        labels if numpy_labels is None else numpy_labels,
        lambda a: (a >= 0) & (a < n_classes),
        f"class indices in [0, {n_classes})",
    )
    # Checked and clipped in the labels' own dtype: a cast to int32 first
    # would wrap a uint64 2**32 + 2 to the valid class 2, or a uint32 to -1.
    # Where the dtype cannot hold C (uint8, 300 classes) every label is < C.
    top = int(np.iinfo(labels.dtype).max)
    valid = labels >= 0
    if top >= n_classes:
        valid &= labels < n_classes
    index = jnp.clip(labels, 0, min(n_classes - 1, top)).astype(jnp.int32)[..., None]
    # -log_softmax(x)[label], the logits shifted by their max first: the
    # unshifted logsumexp(x) - x[label] is a small loss as the difference of
    # two large numbers (bfloat16 logits [100, 99]: 0.5 instead of 0.3133).
    loss = -jnp.take_along_axis(jax.nn.log_softmax(x, axis=-1), index, axis=-1)[..., 0]
    return jnp.where(valid, loss, jnp.nan)


def _margin_inputs(scores: ArrayLike, labels_pm1: ArrayLike) -> Array:
    check_same_shape("scores", scores, "labels_pm1", labels_pm1)
    check_label_values(
        "labels_pm1", labels_pm1, _plus_minus_one, "-1 or +1 (map 0/1 labels with 2 * y - 1)"
    )
    s = as_float(scores, "scores")
    return s * cast(labels_pm1, s.dtype, "labels_pm1")


def hinge(scores: ArrayLike, labels_pm1: ArrayLike) -> Array:
    """Hinge loss ``max(0, 1 - y * s)`` for labels ``y`` in ``{-1, +1}``, elementwise.

    The SVM loss: zero once an example is on the right side with margin 1.
    Same as ``optax.losses.hinge_loss`` and Keras ``hinge`` (Keras also maps
    0/1 labels to -1/+1; here 0/1 labels raise ``ValueError`` when concrete).

    Args:
      scores: real-valued decision values, any shape.
      labels_pm1: labels in ``{-1, +1}``, same shape (ints or floats).

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> print(losses.hinge(jnp.array([2.0, 0.5, -1.0]), jnp.array([1, 1, 1])))
    [0.  0.5 2. ]
    """
    return jax.nn.relu(1 - _margin_inputs(scores, labels_pm1))


def squared_hinge(scores: ArrayLike, labels_pm1: ArrayLike) -> Array:
    """Squared hinge loss ``max(0, 1 - y * s)**2`` for ``y`` in ``{-1, +1}``.

    Differentiable everywhere (unlike :func:`hinge`) and harsher on badly
    misclassified points. Same as Keras ``squared_hinge`` (for -1/+1 labels).
    ``s``: ``scores`` (any shape); ``y``: ``labels_pm1`` (same shape, ints or floats).

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> print(losses.squared_hinge(jnp.array([2.0, 0.5, -1.0]), jnp.array([1, 1, 1])))
    [0.   0.25 4.  ]
    """
    return jnp.square(jax.nn.relu(1 - _margin_inputs(scores, labels_pm1)))


def sigmoid_focal(
    logits: ArrayLike,
    labels: ArrayLike,
    alpha: ArrayLike | None = None,
    gamma: ArrayLike = 2.0,
) -> Array:
    """Sigmoid focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection").

    With ``p = sigmoid(x)`` and ``p_t = y * p + (1 - y) * (1 - p)`` (the
    probability given to the true label)::

        focal = alpha_t * (1 - p_t)**gamma * BCE(x, y)
        alpha_t = alpha * y + (1 - alpha) * (1 - y)     (1 when alpha is None)

    ``(1 - p_t)**gamma`` down-weights easy, well-classified examples: at
    ``p_t = 0.9`` and ``gamma = 2`` an example counts 1/100 of its BCE; at
    ``p_t = 0.2``, 64/100. ``gamma = 0`` and ``alpha = None`` give
    :func:`sigmoid_binary_cross_entropy`. The factor is computed as
    ``exp(gamma * log(1 - p_t))`` with ``log(1 - p_t)`` from log-sigmoids, so
    it stays finite (with finite gradients) for logits of any size and any
    ``gamma >= 0``. Same as ``optax.losses.sigmoid_focal_loss`` and
    ``torchvision.ops.sigmoid_focal_loss(reduction="none")``.

    The gradient with respect to ``logits`` is exact everywhere; with respect
    to ``labels`` (soft labels being learned) it is exact inside ``(0, 1)``,
    but at a hard label 0 or 1 with ``gamma > 0`` it misses the term of the
    absent class's log (its ``0 * log 0`` is taken as constant), as Optax's
    does.

    Args:
      logits: real-valued scores, any shape.
      labels: targets in ``[0, 1]``, same shape (soft labels allowed).
      alpha: weight of the positive class in ``[0, 1]``, or ``None`` for no
        class weighting. May be an array (e.g. per class, broadcast).
      gamma: focusing parameter, ``>= 0``.

    Returns:
      An array of ``logits``' shape and dtype.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> x, y = jnp.array([2.197, -1.386]), jnp.array([1, 1])  # p = 0.9 and 0.2
    >>> focal = losses.sigmoid_focal(x, y)  # 0.01 and 0.64 of the BCE
    >>> [round(v, 3) for v in focal.tolist()]
    [0.001, 1.03]
    """
    check_nonnegative("gamma", gamma)
    if alpha is not None:
        check_in_range("alpha", alpha, 0.0, 1.0)
    x, y = _binary_inputs(logits, labels, "logits")
    for name, value in (("alpha", alpha), ("gamma", gamma)):
        if value is not None:
            check_broadcasts_to(name, value, x.shape)
    bce = y * jax.nn.softplus(-x) + (1 - y) * jax.nn.softplus(x)
    # 1 - p_t = y * sigmoid(-x) + (1 - y) * sigmoid(x); in log space:
    log_one_minus_pt = jnp.logaddexp(
        safe_log(y) + jax.nn.log_sigmoid(-x), safe_log(1 - y) + jax.nn.log_sigmoid(x)
    )
    loss = jnp.exp(cast(gamma, x.dtype, "gamma") * log_one_minus_pt) * bce
    if alpha is None:
        return loss
    alpha = cast(alpha, x.dtype, "alpha")
    return (alpha * y + (1 - alpha) * (1 - y)) * loss
