"""Weight penalties over whole pytrees: L1, L2, elastic net.

Each returns a scalar: the penalty summed over every leaf of ``params``.
Convention: ``l2_penalty = 0.5 * sum(w**2)`` (as ``optax.l2_loss`` and
scikit-learn's ``ElasticNet``), so its gradient is ``w`` itself and
``lam * l2_penalty(params)`` added to a loss is exactly the weight decay
``add_decayed_weights(lam)`` does to plain SGD, and what PyTorch's
``weight_decay=lam`` adds to the gradient (``lam * w``). Keras' ``L2(lam)``
is ``lam * sum(w**2)``, i.e. twice this.

The result's dtype is the leaves' common float dtype (standard promotion:
bfloat16 and float32 leaves give float32); an empty tree gives 0.0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradlab._checks import check_nonnegative
from gradlab.losses._common import Array, ArrayLike, abs_, as_float, cast, check_broadcasts_to

__all__ = ["elastic_net_penalty", "l1_penalty", "l2_penalty"]


def _tree_sum(fn: Callable[[Array], Array], params: Any) -> tuple[Array, Any]:
    """``sum_leaves sum(fn(w))`` in at least float32, and the leaves' common dtype
    to round the penalty to once, at the very end (after its scaling: a float16
    ``0.5 * 300**2`` fits where ``300**2`` does not)."""
    leaves = [
        as_float(leaf, f"params leaf {jax.tree_util.keystr(path) or '(root)'}")
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    ]
    if not leaves:
        zero = jnp.zeros((), jnp.result_type(float))
        return zero, zero.dtype
    # The common dtype only; the sums themselves run leaf by leaf in strict mode,
    # each in at least float32 (a float16 300**2 overflows, a bfloat16 sum of
    # 1001 ones is 1000).
    with jax.numpy_dtype_promotion("standard"):
        dtype = jnp.result_type(*leaves)
        acc = jnp.result_type(dtype, jnp.float32)
    total = sum(
        (jnp.sum(fn(leaf.astype(acc))) for leaf in leaves[1:]),
        jnp.sum(fn(leaves[0].astype(acc))),
    )
    return total, dtype


def l1_penalty(params: Any) -> Array:
    """L1 norm of all parameters: ``sum_leaves sum(|w|)`` (a scalar).

    The lasso penalty: its constant-size gradient ``sign(w)`` drives small
    weights towards zero, and is 0 for a weight at 0 (``jnp.abs`` alone would
    push it away again). Keras ``L1(1.0)`` computes the same.
    ``params``: any pytree of arrays (``w`` runs over their elements).

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> print(losses.l1_penalty({"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}))
    3.5
    """
    total, dtype = _tree_sum(abs_, params)
    return total.astype(dtype)


def l2_penalty(params: Any) -> Array:
    """Half the squared L2 norm of all parameters: ``0.5 * sum_leaves sum(w**2)``.

    The ridge penalty, with gradient ``w``. Same as ``optax.l2_loss`` summed
    over the tree, and PyTorch's ``weight_decay``; half of Keras ``L2(1.0)``
    (see the module notes).
    ``params``: any pytree of arrays (``w`` runs over their elements).

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> print(losses.l2_penalty({"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}))
    2.625
    """
    total, dtype = _tree_sum(jnp.square, params)
    return (0.5 * total).astype(dtype)


def elastic_net_penalty(params: Any, l1: ArrayLike, l2: ArrayLike) -> Array:
    """Elastic net (Zou & Hastie 2005): ``l1 * l1_penalty + l2 * l2_penalty``.

    That is ``l1 * sum|w| + l2 * 0.5 * sum(w**2)``, the same scaling as
    scikit-learn's ``ElasticNet`` with ``l1 = alpha * l1_ratio`` and
    ``l2 = alpha * (1 - l1_ratio)``.

    Args:
      params: any pytree of arrays.
      l1, l2: non-negative strengths, scalars (numbers or 0-d arrays), possibly traced.

    >>> import jax.numpy as jnp
    >>> from gradlab import losses
    >>> print(losses.elastic_net_penalty({"w": jnp.array([1.0, -2.0])}, l1=0.1, l2=1.0))
    2.8
    """
    check_broadcasts_to("l1", l1, ())  # a (2,) l1 would give two penalties
    check_broadcasts_to("l2", l2, ())
    check_nonnegative("l1", l1)
    check_nonnegative("l2", l2)
    (l1_sum, dtype), (l2_sum, _) = _tree_sum(abs_, params), _tree_sum(jnp.square, params)
    acc = l1_sum.dtype
    return (cast(l1, acc, "l1") * l1_sum + cast(l2, acc, "l2") * (0.5 * l2_sum)).astype(dtype)
