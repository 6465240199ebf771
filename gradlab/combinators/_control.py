"""Choosing between two computations on a runtime predicate, cheaply in both modes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

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


def zeros_shaped_like(fn: Callable[[], Any]) -> Any:
    """Zeros shaped like ``fn()``'s result, without running it (its shapes, dtypes
    and, over explicit mesh axes, shardings: ``lax.cond``'s branches must agree)."""

    shapes = jax.eval_shape(fn)
    typed = [_tree.explicit_sharding(s) for s in jax.tree.leaves(shapes)]
    if any(t is not None for t in typed) and not isinstance(jnp.zeros(()), jax.core.Tracer):
        # Not staged (eager, or vmap alone): an abstract mesh cannot place an
        # array; the zeros take their layout from fn's concrete result.
        return jax.tree.map(jnp.zeros_like, fn())
    return jax.tree.map(
        lambda s, t: jnp.zeros(s.shape, s.dtype, out_sharding=t),
        shapes,
        jax.tree.unflatten(jax.tree.structure(shapes), typed),
    )
