"""Choosing between two computations on a runtime predicate, cheaply in both modes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree


def branch(pred: Any, if_true: Callable[[], Any], if_false: Callable[[], Any]) -> Any:
    """``if_true()`` where ``pred`` holds, else ``if_false()``; only one of them runs.

    Traced (under ``jit``, ``scan``): a ``lax.cond`` — the branch not taken costs
    nothing, and the one taken updates the state buffers in place (a ``where``
    over both results makes XLA copy them); under ``vmap`` JAX turns it into a
    select. Eagerly: a Python ``if`` on the concrete predicate, because a
    ``lax.cond`` of fresh closures is compiled anew at every call.
    """
    if isinstance(pred, jax.core.Tracer):
        return jax.lax.cond(pred, lambda _: if_true(), lambda _: if_false(), None)
    return if_true() if bool(pred) else if_false()


def zeros_shaped_like(fn: Callable[[], Any], like: Any = None) -> Any:
    """Zeros shaped like ``fn()``'s result, without running it.

    ``lax.cond``'s branches must agree on each leaf's whole type: shape,
    dtype and, over explicit mesh axes or inside ``shard_map``, its layout.
    Each zero is laid out like the matching leaf of ``like`` (the incoming
    updates, which an update's result mirrors leaf for leaf): a select on it
    with a constant predicate, folded to a broadcast when compiled (a NaN in
    ``like`` never reaches it). Otherwise from ``fn``'s abstract result.
    """
    shapes = jax.eval_shape(fn)
    leaves, treedef = jax.tree.flatten(shapes)
    given = jax.tree.leaves(like)
    if len(given) == len(leaves) and all(
        np.shape(a) == s.shape for a, s in zip(given, leaves, strict=True)
    ):
        # stop_gradient: no cotangent into the updates (0 * an infinite
        # derivative upstream would be NaN)
        return treedef.unflatten(
            [
                _tree.full_like(jax.lax.stop_gradient(a), 0, s.dtype)
                for a, s in zip(given, leaves, strict=True)
            ]
        )
    typed = [_tree.explicit_sharding(s) for s in leaves]
    if any(t is not None for t in typed) and not isinstance(jnp.zeros(()), jax.core.Tracer):
        # Not staged (eager, or vmap alone): an abstract mesh cannot place an
        # array; the zeros take their layout from fn's concrete result.
        return jax.tree.map(jnp.zeros_like, fn())
    return treedef.unflatten(
        [jnp.zeros(s.shape, s.dtype, out_sharding=t) for s, t in zip(leaves, typed, strict=True)]
    )
