"""Custom multi-term losses: ``L = w1 * L1 + w2 * L2 + ...`` with each term reported."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gradlab._checks import check_number
from gradlab.losses._common import Array, ArrayLike, as_float, cast

__all__ = ["weighted_sum"]


def weighted_sum(
    terms: Mapping[str, tuple[ArrayLike, ArrayLike]],
) -> tuple[Array, dict[str, Array]]:
    """Combine named loss terms: ``total = sum_name weight * value``.

    A detector's loss, for example, is a classification term plus a
    localisation term plus an objectness term, each with its own weight, and
    one wants to log each term as well as the total::

        total, parts = weighted_sum({
            "cls": (1.0, softmax_cross_entropy(cls_logits, cls_labels).mean()),
            "box": (5.0, huber(box_pred, box_true).mean()),
            "obj": (0.5, sigmoid_binary_cross_entropy(obj_logits, obj).mean()),
        })

    Args:
      terms: ``{name: (weight, value)}``. ``value`` is usually a scalar (an
        already-reduced loss); arrays are allowed and broadcast together.
        ``weight`` is a finite number or array, possibly traced; negative
        weights are allowed (e.g. an entropy bonus subtracted from a loss).
        A weight array must broadcast to the values' common shape without
        enlarging it (else ``ValueError`` naming the term).

    Returns:
      ``(total, parts)`` where ``parts[name] = weight * value`` is the
      *weighted* term, so ``total == sum(parts.values())`` and the parts show
      how much each term contributes to the total. Everything is in the
      values' common float dtype. With ``jax.value_and_grad(...,
      has_aux=True)`` return ``(total, parts)`` from the loss function and
      the parts come back alongside the gradient.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> total, parts = losses.weighted_sum({"cls": (1.0, 0.7), "box": (5.0, jnp.array(0.1))})
    >>> print(total.round(3), parts["box"])
    1.2 0.5
    """
    if not isinstance(terms, Mapping):
        raise TypeError(
            f"terms must be a mapping {{name: (weight, value)}}, got a {type(terms).__name__}: "
            f"{terms!r}"
        )
    if not terms:
        raise ValueError("terms must hold at least one (weight, value) pair, got {}")
    values = {}
    for name, pair in terms.items():
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise TypeError(f"terms[{name!r}] must be a (weight, value) pair, got {pair!r}")
        check_number(f"weight of {name!r}", pair[0])
        values[name] = as_float(pair[1], f"the value of {name!r}")
    with jax.numpy_dtype_promotion("standard"):
        dtype = jnp.result_type(*values.values())
    try:
        shape = jnp.broadcast_shapes(*(v.shape for v in values.values()))
    except ValueError:
        shapes = ", ".join(f"{name!r} {v.shape}" for name, v in values.items())
        raise ValueError(f"loss values have shapes that do not broadcast: {shapes}") from None
    # Against the values' common shape, not only the term's own value: a (3,)
    # weight on a scalar next to a (2,) value failed in JAX, naming no term, and
    # a (3, 1) weight on a (2,) value made the total (3, 2) (hunt80).
    for name, value in values.items():
        ws = jnp.shape(terms[name][0])
        try:
            ok = np.broadcast_shapes(ws, shape) == shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"the weight of {name!r} has shape {ws}, which does not broadcast to the "
                f"values' shape {shape} without changing it (its value's shape: {value.shape})"
            )
    parts = {
        name: cast(terms[name][0], dtype, f"the weight of {name!r}") * values[name].astype(dtype)
        for name in values
    }
    names = list(parts)
    total = parts[names[0]]
    for name in names[1:]:
        total = total + parts[name]
    return total, parts
