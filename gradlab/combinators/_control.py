"""Choosing between two computations on a runtime predicate, cheaply in both modes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


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
    """Zeros shaped like ``fn()``'s result, without running it (its shapes and dtypes)."""
    return jax.tree.map(lambda s: jax.numpy.zeros(s.shape, s.dtype), jax.eval_shape(fn))
