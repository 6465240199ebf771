"""Loss functions — ``gl.losses``.

Every loss returns per-example values (no reduction: take ``.mean()``
yourself), works under ``jit``/``vmap``/``grad`` in float32, bfloat16 and
float64, and returns the floating dtype of its first argument.

* Regression (elementwise): :func:`squared_error`, :func:`absolute_error`,
  :func:`huber`.
* Classification: binary and elementwise — :func:`binary_cross_entropy`
  (probabilities), :func:`sigmoid_binary_cross_entropy` (logits),
  :func:`hinge`, :func:`squared_hinge`, :func:`sigmoid_focal`; multi-class over
  the last axis — :func:`categorical_cross_entropy` (probabilities),
  :func:`softmax_cross_entropy` (logits),
  :func:`softmax_cross_entropy_with_integer_labels`.
* Metric learning: :func:`euclidean_distance`, :func:`contrastive`,
  :func:`triplet_margin`.
* Penalties over a whole pytree (scalars): :func:`l1_penalty`,
  :func:`l2_penalty` (``0.5 * sum(w**2)``), :func:`elastic_net_penalty`.
* Multi-term losses: :func:`weighted_sum`.

Shapes never broadcast between prediction and label: a mismatch raises
``ValueError`` naming both shapes, also under ``jit``.
"""

from gradlab.losses._classification import (
    binary_cross_entropy,
    categorical_cross_entropy,
    hinge,
    sigmoid_binary_cross_entropy,
    sigmoid_focal,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
    squared_hinge,
)
from gradlab.losses._combine import weighted_sum
from gradlab.losses._metric import contrastive, euclidean_distance, triplet_margin
from gradlab.losses._penalties import elastic_net_penalty, l1_penalty, l2_penalty
from gradlab.losses._regression import absolute_error, huber, squared_error

__all__ = [
    "absolute_error",
    "binary_cross_entropy",
    "categorical_cross_entropy",
    "contrastive",
    "elastic_net_penalty",
    "euclidean_distance",
    "hinge",
    "huber",
    "l1_penalty",
    "l2_penalty",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "squared_error",
    "squared_hinge",
    "triplet_margin",
    "weighted_sum",
]
