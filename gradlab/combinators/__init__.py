"""Combinators: transformations built from other transformations.

Masks and labels are resolved against the params tree by :mod:`gradlab._masks`;
members are called with Optax's extra-argument rule (:func:`gradlab._core.call_update`);
each combinator declares how it runs under :func:`gradlab.packed`.
"""

from gradlab.combinators._masking import MaskedNode, MaskedState, freeze, masked
from gradlab.combinators._named import named_chain
from gradlab.combinators._partition import PartitionState, partition

__all__ = [
    "MaskedNode",
    "MaskedState",
    "PartitionState",
    "freeze",
    "masked",
    "named_chain",
    "partition",
]
