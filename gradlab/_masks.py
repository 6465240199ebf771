"""Masks and labels resolved against the params tree — in one place.

``add_decayed_weights(mask=)``, ``masked``, ``freeze`` and ``partition`` all
take a tree shaped like the params (or a prefix of it, as Optax accepts), or a
function ``params -> tree``; :func:`resolve` turns any of these into a tree
with exactly the params' structure, or raises a ``ValueError`` showing both
structures. ``gl.packed`` resolves them here too, against the real params
tree, before packing (so a callable mask never sees packed buffers). Labels
(``partition``) are the same mechanism with one hashable label per leaf
instead of a bool (:func:`resolve_labels`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab._checks import is_function, leaf_paths, path_difference, short_structure

Tree = Any


def resolve(spec: Any, params: Tree, what: str = "mask") -> Tree:
    """``spec`` (a tree, a prefix of ``params``, or ``params -> tree``) as a tree
    with ``params``' structure, each prefix leaf broadcast over its subtree.

    Leaves may be Python values (decided when tracing) or arrays. A ``params``
    tree with no leaves has nothing to mask or label: it is returned as is, the
    callable not called (``optax.tree_utils.tree_map_params`` initialises the
    state with such a placeholder to find the params-shaped parts).
    """
    if not jax.tree.leaves(params):
        return params
    tree = spec(params) if is_function(spec) else spec
    if jax.tree.structure(tree) == jax.tree.structure(params):
        return tree
    try:
        return jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), tree, params)
    except (ValueError, TypeError):
        where = path_difference(
            leaf_paths(params), leaf_paths(tree), "params", f"the {what}", prefix=True
        )
        raise ValueError(
            f"{what} tree is neither the params tree nor a prefix of it.\n"
            f"  params: {short_structure(params)}\n"
            f"  {what}: {short_structure(tree)}\n"
            f"{where}"
        ) from None


def _is_bool_leaf(leaf: Any) -> bool:
    return isinstance(leaf, bool | np.bool_) or getattr(leaf, "dtype", None) == np.bool_


def check_spec(name: str, spec: Any) -> None:
    """At construction: a mask given as a tree (not None, not a callable) holds
    bools or boolean arrays only. ``mask="w"`` or ``1.5`` would otherwise be
    read as True (``0.0`` as False) without a word."""
    if spec is None or is_function(spec):
        return
    for path, leaf in jax.tree_util.tree_flatten_with_path(spec)[0]:
        if not _is_bool_leaf(leaf):
            where = f" leaf {jax.tree_util.keystr(path)}" if path else ""
            raise TypeError(f"{name}{where} must be a bool or a boolean array, got {leaf!r}")


def static_bool(value: Any) -> bool | None:
    """A mask leaf's value when it is known now (a Python/NumPy bool or a
    concrete 0-d bool array), else None (a traced or elementwise mask)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, jax.Array | np.ndarray) and value.shape == () and value.dtype == bool:
        return bool(value)
    return None


def select(on: Any, a: Any, b: Any) -> Any:
    """``a`` where the mask leaf ``on`` is True, else ``b``. A static mask picks
    without a select, so XLA drops the unused side; an array mask (maybe
    elementwise, maybe traced) selects elementwise."""
    static = static_bool(on)
    if static is not None:
        return a if static else b
    return jnp.where(jnp.asarray(on, bool), a, b)


def select_tree(
    spec: Any, params: Tree, on: Tree, off: Tree, what: str = "mask", elementwise: bool = True
) -> Tree:
    """:func:`select` leaf by leaf, ``spec`` resolved against ``params``
    (``spec=None``: everything selected). ``elementwise=False``: one bool per
    leaf (a trust ratio is a whole leaf's)."""
    if spec is None:
        return on
    tree = check_shapes(check_bools(resolve(spec, params, what), what), params, what, elementwise)
    return jax.tree.map(select, tree, on, off)


def check_shapes(tree: Tree, params: Tree, what: str = "mask", elementwise: bool = True) -> Tree:
    """``tree`` (a resolved mask) when each array leaf is 0-d or, elementwise,
    exactly its param's shape; else a ``ValueError`` naming the leaf and both
    shapes. A ``(3,)`` mask on a ``(2, 3)`` param would otherwise broadcast over
    the rows without a word (or fail inside JAX); with ``elementwise=False``
    any leaf of more than one element is a ``TypeError``."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    for (path, m), p in zip(leaves, jax.tree.leaves(params), strict=True):
        shape, want = np.shape(m), np.shape(p)
        if shape == () or (elementwise and shape == want):
            continue
        where = f"{what} leaf {jax.tree_util.keystr(path) or '(root)'}"
        if not elementwise:
            raise TypeError(
                f"{where} must be one bool for the whole leaf, got an array of shape {shape}"
            )
        raise ValueError(
            f"{where} has shape {shape}, but its param has shape {want}: give one bool "
            "for the leaf or a boolean array of the param's shape"
        )
    return tree


def check_bools(tree: Tree, what: str = "mask") -> Tree:
    """``tree`` (a mask resolved against the params) when every leaf is a bool
    or a boolean array, else a ``TypeError`` naming the leaf by its path in the
    params (a callable mask is only checked once resolved)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not _is_bool_leaf(leaf):
            raise TypeError(
                f"{what} leaf {jax.tree_util.keystr(path) or '(root)'} must be a bool or a "
                f"boolean array, got {leaf!r}"
            )
    return tree


def resolve_static(spec: Any, params: Tree, what: str = "mask") -> list[bool]:
    """The mask resolved as one static bool per leaf (for combinators that choose
    which leaves an inner transformation sees), or a ``TypeError`` naming the leaf."""
    tree = resolve(spec, params, what)
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        value = static_bool(leaf)
        if value is None:
            where = f"{what} leaf {jax.tree_util.keystr(path) or '(root)'}"
            if not _is_bool_leaf(leaf):  # the type is wrong, known or not: say so
                dtype = getattr(leaf, "dtype", type(leaf).__name__)
                raise TypeError(
                    f"{where} must be a bool (one per param leaf), got {leaf!r} ({dtype}): "
                    "write True or False"
                )
            if np.ndim(leaf) > 0:
                raise TypeError(
                    f"{where} must be one bool for the whole leaf (it chooses which leaves "
                    f"the inner transformation sees), got {leaf!r} of shape {np.shape(leaf)}"
                )
            raise TypeError(
                f"{where} must be a bool known when tracing (one per param leaf), got {leaf!r}"
            )
        out.append(value)
    return out


def resolve_labels(spec: Any, params: Tree, what: str = "labels") -> list[Any]:
    """The labels resolved as one static, hashable label per param leaf (in the
    params' leaf order), or a ``TypeError`` naming the leaf whose label is an
    array (labels choose which transformation sees a leaf, so they are static)."""
    tree = resolve(spec, params, what)
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array | np.ndarray) or not _hashable(leaf):
            raise TypeError(
                f"{what} leaf {jax.tree_util.keystr(path) or '(root)'} must be a hashable "
                f"label known when tracing (e.g. a string), got {leaf!r}"
            )
        out.append(leaf)
    return out


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


MaskSpec = Any | Callable[[Tree], Tree]
