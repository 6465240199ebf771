"""``partition``: a different transformation per group of parameters."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

from gradlab import _masks, _tree
from gradlab._checks import (
    check_same_structure,
    check_transformation,
    is_function,
    keyword_alias,
)
from gradlab._core import GradientTransformation, TransformationLike, call_update
from gradlab.combinators._masking import merge, packed_apart, subtree

Tree = Any


class PartitionState(NamedTuple):
    """``inner_states``: ``{label: state}``, each over its own group's leaves only."""

    inner_states: dict[Hashable, Any]


@keyword_alias("param_labels", "labels")
def partition(
    transforms: Mapping[Any, TransformationLike],
    labels: Any | Callable[[Tree], Tree],
) -> GradientTransformation:
    """Per-group transformations: each param leaf is updated by ``transforms[label]``.

    ``transforms``: ``{label: transformation}``, a dict or any Mapping (a Flax
    ``FrozenDict``); gradlab and Optax transformations alike.
    ``labels``: a tree of labels like the params, a prefix of it
    (``{"encoder": "slow", "head": "fast"}``), or a function ``params -> tree``
    (called on the params, or on the updates when ``update`` gets no params;
    Optax's keyword ``param_labels=`` is accepted too). Each group's
    transformation sees the params tree with the other groups' leaves replaced
    by :class:`MaskedNode`: its state holds its own leaves only, and
    reductions inside it (a global norm) run over its group. A label with
    no transformation, or a transformation that labels no leaf, raises
    ``ValueError`` naming it -- a fixed labels tree when the partition is
    built; a group may be empty where an outer ``masked``/``partition`` hid
    its leaves, as in Optax (then a labels function is not checked for
    transformations it never names). ``optax.partition``;
    PyTorch's param groups. The state is ``PartitionState({label: state})``.

    Per-layer learning rates, and no weight decay on biases::

        labels = lambda p: {k: "bias" if k.startswith("b") else "weight" for k in p}
        groups = {"weight": gl.adamw(1e-3, weight_decay=0.1), "bias": gl.adam(1e-2)}
        tx = gl.partition(groups, labels)

    Under :func:`gradlab.packed` each group is packed on its own (its state
    stays its own), and the partition itself runs on the real leaves.
    """
    if not isinstance(transforms, Mapping) or not transforms:
        raise TypeError(
            "transforms must be a non-empty dict {label: GradientTransformation}, "
            f"got {transforms!r}"
        )
    transforms = dict(transforms)  # any Mapping (a FrozenDict), as in Optax
    for label, tx in transforms.items():
        check_transformation(f"transforms[{label!r}]", tx)
    if not is_function(labels):  # a fixed tree: every label it uses is known now, and
        # a transformation it never names is unused whatever wraps the partition
        _check_labels(_masks.resolve_labels(labels, labels), transforms, every_transform_used=True)

    def groups(tree):
        found = _masks.resolve_labels(labels, tree)
        # A group may be empty where an outer masked/partition hid its leaves:
        # only a tree with nothing hidden shows that a transformation is unused.
        _check_labels(
            found, transforms, every_transform_used=bool(found) and not _tree.hides_leaves(tree)
        )
        return {label: [x == label for x in found] for label in transforms}

    def init(params):
        keep = groups(params)
        return PartitionState({k: t.init(subtree(params, keep[k])) for k, t in transforms.items()})

    def update(updates, state, params=None, **extra):
        if params is not None:
            check_same_structure(params, updates, "params", "updates")
        keep = groups(updates if params is None else params)
        if not isinstance(state, PartitionState) or set(state.inner_states) != set(transforms):
            raise ValueError(
                f"partition over labels {sorted(map(repr, transforms))} got a state that is not "
                "its own PartitionState; was it created by this partition's init?"
            )
        new_states = {}
        for label, tx in transforms.items():
            sub_params = None if params is None else subtree(params, keep[label])
            out, new_states[label] = call_update(
                tx, subtree(updates, keep[label]), state.inner_states[label], sub_params, extra
            )
            updates = merge(updates, keep[label], out)
        return updates, PartitionState(new_states)

    def packing(ctx):
        groups = {k: packed_apart(ctx, t, f"partition group {k!r}") for k, t in transforms.items()}
        return ctx.per_leaf(partition(groups, labels))

    return GradientTransformation(init, update, packing=packing)


def _check_labels(found: list, transforms: dict, every_transform_used: bool) -> None:
    names = ", ".join(repr(k) for k in transforms)
    missing = [x for x in dict.fromkeys(found) if x not in transforms]
    if missing:
        raise ValueError(
            f"labels {', '.join(map(repr, missing))} have no transformation in transforms "
            f"(which has {names})"
        )
    unused = [k for k in transforms if k not in set(found)]
    if every_transform_used and unused:
        raise ValueError(
            f"transforms {', '.join(map(repr, unused))} label no param leaf "
            f"(the labels used are {', '.join(map(repr, dict.fromkeys(found)))})"
        )
