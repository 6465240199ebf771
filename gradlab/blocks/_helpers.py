"""Small helpers shared by the modern blocks (candidates for ``_tree.py``).

Each block of ``_adaptive_variants``, ``_sign``, ``_trust``, ``_factored``,
``_sm3``, ``_rprop``, ``_orthogonal`` and ``_clipping_more`` maps one fused
per-leaf function over the updates and its state trees; these helpers keep
that to one line and name the per-dtype constants (STYLE habit 16).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import leaf_paths, path_difference, short_structure

Tree = Any


def widest(*xs: jax.Array) -> np.dtype:
    """The dtype a leaf's arithmetic runs in: the widest compute dtype of ``xs``
    (float32 for bfloat16/float16 leaves, float64 when any of them is)."""
    return np.result_type(*(_tree.compute_dtype(x.dtype) for x in xs))


def constants(fn: Callable[[np.dtype], dict[str, Any]]) -> Callable[[Any], SimpleNamespace]:
    """``fn(dtype) -> {name: value}`` memoised per dtype, read as attributes.

    Hyperparameter casts and scalar terms (``1 - b1``, bias corrections) are
    then traced once per dtype, not once per leaf (see ``_tree.per_dtype``).
    """
    return _tree.per_dtype(lambda dt: SimpleNamespace(**fn(dt)))


def leafwise(
    fn: Callable[..., tuple[jax.Array, ...]],
    updates: Tree,
    *trees: Tree,
    n_out: int,
    tree_name: str = "optimizer state",
) -> tuple[Tree, ...]:
    """``fn(g, *state_leaves) -> n_out arrays`` over the leaves, as ``n_out``
    trees shaped like ``updates``; structures and shapes checked first
    (``_tree.map_like``: a mismatch names both trees)."""
    out = _tree.map_like(fn, updates, *trees, tree_name=tree_name)
    return _tree.split_outputs(out, updates, n_out)


def leaf_subtrees(updates: Tree, tree: Tree, what: str = "optimizer state") -> list[Any]:
    """The subtrees of ``tree`` at each leaf position of ``updates`` (per-leaf
    state that is not shaped like the leaf: SM3's per-axis accumulators), or a
    ``ValueError`` showing both structures."""
    try:
        return jax.tree.structure(updates).flatten_up_to(tree)
    except (ValueError, TypeError):
        where = path_difference(
            leaf_paths(tree), leaf_paths(updates), f"the {what}", "the gradient", prefix=True
        )
        raise ValueError(
            f"gradient tree does not match the {what} tree.\n"
            f"  {what}: {short_structure(tree)}\n"
            f"  gradient: {short_structure(updates)}\n"
            f"{where}\n"
            "(Was the optimizer state initialised with different params?)"
        ) from None


def sign(x: jax.Array) -> jax.Array:
    """``sign(x)``, but NaN where ``x`` is infinite (or NaN): an infinite gradient
    must not become a finite-looking ±1 step (signSGD, Lion, Rprop would follow
    an overflowed coordinate forever, without a word)."""
    # x - x: NaN exactly where x is not finite, and no NaN made where it is
    # (an eager NaN constant trips jax_debug_nans on healthy gradients)
    return jnp.where(jnp.isfinite(x), jnp.sign(x), x - x)


def rms_all(xs: Sequence[jax.Array], dts: Sequence[Any]) -> list[jax.Array]:
    """``sqrt(mean(x²))`` of each whole leaf, in its ``dt`` (0 for an empty
    leaf; no overflow for finite x), with one overflow rescue for all the
    leaves (``_tree.norms``: a ``lax.cond`` per leaf costs compile time).

    A symbolic size (``jax.export``'s shape polymorphism) is >= 1 and its root
    is taken in ``dt``: the same number in float32 while the size is below
    2**24 (float64's root of such an integer rounds to float32's correctly
    rounded root)."""
    sized = [i for i, x in enumerate(xs) if x.size]
    roots = _tree.norms([xs[i] for i in sized], [dts[i] for i in sized])
    by_index = dict(zip(sized, roots, strict=True))
    out = []
    for i, (x, dt) in enumerate(zip(xs, dts, strict=True)):
        if i not in by_index:
            out.append(jnp.zeros((), dt))
            continue
        n = x.size
        root = np.sqrt(n).astype(dt) if isinstance(n, int) else jnp.sqrt(jnp.asarray(n, dt))
        out.append(by_index[i] / root)
    return out
