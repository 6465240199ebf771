"""Finding and replacing wrapper states anywhere in a nested optimizer state.

Chains nest states in tuples, ``named_chain`` and ``partition`` in dicts,
wrappers in NamedTuples, ``packed`` in ``PackedState.inner``. These helpers
walk all of them (any pytree), with the path that leads to each state found,
including states nested inside a found one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.tree_util import DictKey, GetAttrKey

from gradlab._checks import short_structure

Path = tuple[Any, ...]


def find(state: Any, is_target: Callable[[Any], bool], prefix: Path = ()) -> list[tuple[Path, Any]]:
    """``(path, node)`` for every node of ``state`` where ``is_target`` holds.

    ``path`` is a tuple of JAX key entries (``DictKey``, ``SequenceKey``,
    ``GetAttrKey``). A found node's own fields are searched too.
    """
    out = []
    for path, node in jax.tree_util.tree_flatten_with_path(state, is_leaf=is_target)[0]:
        if is_target(node):
            full = (*prefix, *path)
            out.append((full, node))
            for field in node._fields:
                out += find(getattr(node, field), is_target, (*full, GetAttrKey(field)))
    return out


def rebuild(
    state: Any, is_target: Callable[[Any], bool], fn: Callable[[Path, Any], Any], prefix: Path = ()
) -> Any:
    """``state`` with every target node ``x`` (at ``path``) replaced by ``fn(path, x)``,
    nested targets first."""

    def visit(path, node):
        if not is_target(node):
            return node
        full = (*prefix, *path)
        fields = {
            f: rebuild(getattr(node, f), is_target, fn, (*full, GetAttrKey(f)))
            for f in node._fields
        }
        return fn(full, node._replace(**fields))

    return jax.tree_util.tree_map_with_path(visit, state, is_leaf=is_target)


def names(path: Path) -> list[str]:
    """The named steps of a path: ``named_chain`` names and ``partition`` labels (dict keys)."""
    return [str(k.key) for k in path if isinstance(k, DictKey)]


def describe(path: Path) -> str:
    """A path as text, e.g. ``[1].inner_states['head']``."""
    return jax.tree_util.keystr(path) or "(top level)"


def find_one(state: Any, state_type: type, what: str) -> Any:
    """The one ``state_type`` node in ``state`` (``state`` itself if it is one), or a
    ``ValueError`` saying that there is none or listing where the several are."""
    found = find(state, lambda x: isinstance(x, state_type))
    if len(found) == 1:
        return found[0][1]
    if not found:
        raise ValueError(
            f"{what}: no {state_type.__name__} in this state, a {type(state).__name__}: "
            f"{short_structure(state, 200)}"
        )
    where = ", ".join(describe(p) for p, _ in found)
    raise ValueError(
        f"{what}: several {state_type.__name__}s in this state (at {where}); pass the one you mean"
    )
