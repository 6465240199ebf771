"""Combinators: transformations built from other transformations.

Masks and labels are resolved against the params tree by :mod:`gradlab._masks`;
members are called with Optax's extra-argument rule (:func:`gradlab._core.call_update`);
each combinator declares how it runs under :func:`gradlab.packed`.
"""

from gradlab.combinators._accumulate import MultiSteps, MultiStepsState
from gradlab.combinators._guards import ApplyIfFiniteState, apply_if_finite
from gradlab.combinators._hyperparams import (
    InjectHyperparamsState,
    get_hyperparams,
    inject_hyperparams,
    set_hyperparams,
)
from gradlab.combinators._lookahead import LookaheadState, lookahead, lookahead_params
from gradlab.combinators._masking import MaskedNode, MaskedState, freeze, masked
from gradlab.combinators._named import named_chain
from gradlab.combinators._partition import PartitionState, partition
from gradlab.combinators._plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = [
    "ApplyIfFiniteState",
    "InjectHyperparamsState",
    "LookaheadState",
    "MaskedNode",
    "MaskedState",
    "MultiSteps",
    "MultiStepsState",
    "PartitionState",
    "ReduceLROnPlateauState",
    "apply_if_finite",
    "freeze",
    "get_hyperparams",
    "inject_hyperparams",
    "lookahead",
    "lookahead_params",
    "masked",
    "named_chain",
    "partition",
    "reduce_on_plateau",
    "set_hyperparams",
]
