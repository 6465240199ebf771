"""Masking: run a transformation on some leaves only (``masked``), or zero some (``freeze``).

A masked transformation sees the params tree with every leaf outside the mask
replaced by :class:`MaskedNode` (an empty node, as ``optax.MaskedNode``): its
state holds the masked leaves only, and tree-wide reductions inside it (a
global norm) run over those leaves. ``partition`` builds on the same two
helpers, :func:`subtree` and :func:`merge`. Masks are resolved by
:mod:`gradlab._masks` (a tree, a prefix of the params tree, or a callable),
one static bool per leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab import _masks, _tree
from gradlab._checks import (
    check_same_structure,
    check_state,
    check_transformation,
    keyword_alias,
)
from gradlab._core import (
    ELEMENTWISE,
    GradientTransformation,
    TransformationLike,
    call_update,
    stateless,
)
from gradlab._packing import PackContext, packed

Tree = Any


class MaskedNode(NamedTuple):
    """Stands in for a param leaf a masked or partitioned transformation does not
    see. It has no leaves, so the inner state holds nothing for it."""


class MaskedState(NamedTuple):
    """``inner_state``: the masked transformation's state (over the masked leaves)."""

    inner_state: Any


def subtree(tree: Tree, keep: list[bool]) -> Tree:
    """``tree`` with each leaf whose ``keep`` is False replaced by a :class:`MaskedNode`."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef.unflatten([x if k else MaskedNode() for x, k in zip(leaves, keep, strict=True)])


def merge(tree: Tree, keep: list[bool], sub: Tree) -> Tree:
    """``tree`` with the kept leaves taken from ``sub`` (a :func:`subtree` of it)."""
    leaves, treedef = jax.tree.flatten(tree)
    new = treedef.flatten_up_to(sub)
    return treedef.unflatten([n if k else x for x, n, k in zip(leaves, new, keep, strict=True)])


@keyword_alias("inner", "transform")
def masked(
    transform: TransformationLike, mask: Any | Callable[[Tree], Tree]
) -> GradientTransformation:
    """Apply ``transform`` only to the leaves where ``mask`` is True; pass the others through.

    ``mask``: a tree of bools like the params, a prefix of it (``{"encoder":
    False, "head": True}``), or a function ``params -> tree`` (called on the
    params, or on the updates when ``update`` gets no params). One bool per
    leaf, known when tracing. ``transform`` sees the params tree with the other
    leaves replaced by :class:`MaskedNode`, so its state covers the masked
    leaves only (``optax.masked``; its keyword ``inner=`` is accepted too).
    The state is :class:`MaskedState`.

    Under :func:`gradlab.packed`, a ``transform`` whose members all run
    elementwise on the buffers is run on them with the unmasked elements zeroed,
    and its output selected by the packed mask; its state then spans the packed
    buffers. Any other ``transform`` -- with a per-leaf member, or a reduction over
    the whole tree such as a global norm, which must not count the unmasked
    leaves -- runs on the masked leaves, packed on its own. Masks inside
    ``transform`` are resolved against the tree it sees, as unpacked.

    >>> decay_weights = gl.masked(gl.add_decayed_weights(1e-4), lambda p: {k: k != "b" for k in p})
    """
    check_transformation("transform", transform)
    _masks.check_spec("mask", mask)

    def init(params):
        return MaskedState(transform.init(subtree(params, _masks.resolve_static(mask, params))))

    def update(updates, state, params=None, **extra):
        check_state("masked", state, MaskedState)
        if params is not None:
            check_same_structure(params, updates, "params", "updates")
        keep = _masks.resolve_static(mask, updates if params is None else params)
        sub_params = None if params is None else subtree(params, keep)
        out, inner_state = call_update(
            transform, subtree(updates, keep), state.inner_state, sub_params, extra
        )
        return merge(updates, keep, out), MaskedState(inner_state)

    def packing(ctx):
        keep = _masks.resolve_static(mask, ctx.tree)  # the same errors as unpacked
        seen = ctx.seeing(subtree(ctx.tree, keep), keep)
        form, on_buffers = seen.runs_on_buffers(transform, "masked inner")
        if not on_buffers:
            return ctx.per_leaf(masked(packed_apart(ctx, transform, "masked inner"), mask))
        return _masked_buffers(form, ctx.mask(mask))

    return GradientTransformation(init, update, packing=packing)


def _masked_buffers(form: GradientTransformation, on: Any) -> GradientTransformation:
    """``masked`` on packed buffers: ``form`` runs on every element, the unmasked
    ones zeroed on the way in and restored on the way out. ``on`` is the mask
    packed like the updates. ``form`` has no whole-tree reduction (see
    :meth:`PackContext.runs_on_buffers`), so each masked element of its output
    depends on that element alone; what it outputs (and stores) for the
    unmasked ones is never used."""

    def update(updates, state, params=None, **extra):
        check_state("masked", state, MaskedState)
        zeroed = jax.tree.map(lambda m, u: _masks.select(m, u, jnp.zeros_like(u)), on, updates)
        out, inner_state = call_update(form, zeroed, state.inner_state, params, extra)
        return jax.tree.map(_masks.select, on, out, updates), MaskedState(inner_state)

    return GradientTransformation(
        lambda params: MaskedState(form.init(params)), update, packing=ELEMENTWISE
    )


def freeze(mask: Any | Callable[[Tree], Tree]) -> GradientTransformation:
    """Zero the updates of the leaves where ``mask`` is True (a frozen backbone).

    ``mask`` as in :func:`masked` (tree, prefix or callable; one bool per leaf).
    Stateless. ``optax.freeze``. Put it after the optimizer in a chain —
    ``chain(adam(1e-3), freeze(mask))`` — or, to keep no optimizer state for
    the frozen leaves at all, use ``partition({"train": adam(1e-3), "frozen":
    freeze(True)}, labels)``.

    >>> tx = gl.chain(gl.adam(1e-3), gl.freeze({"backbone": True, "head": False}))
    """
    _masks.check_spec("mask", mask)

    def update(updates, state, params=None, **extra):
        updates = _tree.as_updates(updates)
        frozen = _masks.resolve_static(mask, updates if params is None else params)
        leaves, treedef = jax.tree.flatten(updates)
        # _tree.zeros_like, not jnp's: a constant would be replicated on every
        # device under jit; these zeros keep the update's sharding.
        out = [_tree.zeros_like(u) if f else u for u, f in zip(leaves, frozen, strict=True)]
        return treedef.unflatten(out), state

    def packing(ctx):
        _masks.resolve_static(mask, ctx.tree)  # the same errors as unpacked
        on = ctx.mask(mask)

        def update_buffers(updates, state, params=None, **extra):
            return jax.tree.map(
                lambda m, u: _masks.select(m, jnp.zeros_like(u), u), on, updates
            ), state

        return stateless(update_buffers, packing=ELEMENTWISE)

    return stateless(update, packing=packing)


# ------------------------------------------------------------ packed forms


def packed_apart(ctx: PackContext, tx: Any, where: str) -> GradientTransformation:
    """``gl.packed(tx)``, for a combinator that runs on the real leaves and packs
    its member on its own; an undeclared member is refused here, named ``where``."""
    if getattr(tx, "packing", None) is None:
        ctx.form(tx, where)  # raises the core's refusal, naming the member
    return packed(tx)
