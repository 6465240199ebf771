"""Optimizers: short chains of building blocks."""

from gradlab.optimizers._classic import adagrad, adam, adamw, rmsprop, sgd
from gradlab.optimizers._lbfgs import ScaleByLbfgsState, lbfgs, scale_by_lbfgs
from gradlab.optimizers._linesearch import (
    BacktrackingLinesearchState,
    LinesearchInfo,
    ZoomLinesearchState,
    scale_by_backtracking_linesearch,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)

__all__ = [
    "BacktrackingLinesearchState",
    "LinesearchInfo",
    "ScaleByLbfgsState",
    "ZoomLinesearchState",
    "adagrad",
    "adam",
    "adamw",
    "lbfgs",
    "rmsprop",
    "scale_by_backtracking_linesearch",
    "scale_by_lbfgs",
    "scale_by_zoom_linesearch",
    "sgd",
    "value_and_grad_from_state",
]
