"""What ``sweep`` and ``lr_finder`` share: the training data and the initial params.

``batches`` is either an array (or a pytree of arrays) stacked along steps —
step ``k`` trains on ``batches[k % len]``, so a few stacked batches are
cycled through as epochs — or a pure function ``step -> batch`` (or
``(step, key) -> batch``, which gets a per-configuration key so that a sweep
over seeds also varies the data order). ``params`` is a pytree of arrays or a
function ``key -> params``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import check_scalar_output, is_function, required_positional


class Batches(NamedTuple):
    """The training data: ``stacked`` arrays (an argument of the compiled
    program, never a constant baked into it) or a ``fn`` of the step."""

    stacked: Any
    fn: Callable | None
    takes_key: bool

    def at(self, stacked: Any, step: jax.Array, key: jax.Array) -> Any:
        """The batch of ``step`` (``stacked`` is the program's argument)."""
        if self.fn is None:
            return jax.tree.map(
                lambda x: jax.lax.dynamic_index_in_dim(x, step % x.shape[0], keepdims=False),
                stacked,
            )
        return self.fn(step, key) if self.takes_key else self.fn(step)


def as_batches(batches: Any) -> Batches:
    """Validate ``batches`` (see the module docstring)."""
    if is_function(batches):
        n = required_positional(batches)
        if n not in (None, 1, 2):
            raise TypeError(
                "batches must be a function step -> batch or (step, key) -> batch, "
                f"got a function of {n} required arguments"
            )
        return Batches(None, batches, n == 2)
    leaves = jax.tree.leaves(batches)
    if not leaves:
        raise ValueError(
            "batches must be arrays stacked along steps or a function step -> batch, "
            f"got {batches!r}"
        )
    lengths = set()
    for leaf in leaves:
        if not isinstance(leaf, np.ndarray | jax.Array) or leaf.ndim < 1:
            raise TypeError(
                "batches must be arrays stacked along steps (leading axis = step), got a "
                f"leaf {type(leaf).__name__} of shape {np.shape(leaf)}"
            )
        lengths.add(leaf.shape[0])
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            f"every array of batches must have the same, non-zero leading (step) axis, got "
            f"lengths {sorted(lengths)}"
        )
    return Batches(jax.tree.map(jnp.asarray, batches), None, False)


KEY_NAMES = ("key", "rng", "rng_key", "prng_key", "seed")


def defaulted_key(fn: Callable | None) -> str | None:
    """The name of ``fn``'s second positional parameter when it has a default
    that looks like a PRNG key (a key array, a raw ``uint32[2]`` key, or a name
    in :data:`KEY_NAMES`): ``batches(step, key=jax.random.key(0))`` is called with
    the step only, so a seed never reaches it. (``batches(step, data=(x, y))``,
    data bound through a default, is not a key.)"""
    if fn is None:
        return None
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params if p.kind in kinds]
    if len(positional) < 2 or positional[1].default is inspect.Parameter.empty:
        return None
    name, default = positional[1].name, positional[1].default
    dtype = getattr(default, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == np.uint32 and np.shape(default) == (2,)
    return name if typed or raw or name in KEY_NAMES else None


def check_params(params: Any, name: str = "params") -> Any:
    """``params`` is a pytree of float arrays or a function ``key -> params``;
    returned with Python-number leaves as float arrays (the optimizers take
    them as floats, and ``jax.grad`` needs float inputs)."""
    if is_function(params):
        return params
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError(f"{name} must hold at least one array, got {params!r}")
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = getattr(leaf, "dtype", None)
        if _tree.is_number(leaf):
            continue
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{name} leaf {jax.tree_util.keystr(path) or '(root)'} must be a float array, "
                f"got {dtype or type(leaf).__name__}"
            )
    return _tree.numbers_as_params(params)


def check_loss(loss: Any) -> None:
    """``loss_fn`` returned a real scalar (checked when tracing)."""
    hint = "; take the mean over the batch (gl.losses return per-example values)"
    check_scalar_output("loss_fn", loss, hint)
