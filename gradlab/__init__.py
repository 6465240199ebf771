"""gradlab: composable gradient transformations, schedules and losses for JAX.

The whole public surface is declared here. ``gl.schedules`` and ``gl.losses``
are submodules; ``gl.plot`` (matplotlib) is imported only when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from gradlab._core import (
    ELEMENTWISE,
    PER_LEAF,
    EmptyState,
    GradientTransformation,
    apply_updates,
    chain,
    elementwise,
    per_leaf,
)
from gradlab._packing import Packed, PackedState, packed
from gradlab._sharding import state_shardings
from gradlab.blocks import (
    AddNoiseState,
    EmaState,
    ScaleByAdamState,
    ScaleByRmsState,
    ScaleByRssState,
    ScaleByScheduleState,
    TraceState,
    ZeroNansState,
    add_decayed_weights,
    add_noise,
    clip,
    clip_by_global_norm,
    ema,
    identity,
    keep_params_nonnegative,
    scale,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    scale_by_schedule,
    trace,
    zero_nans,
)
from gradlab.optimizers import (
    BacktrackingLinesearchState,
    LinesearchInfo,
    ScaleByLbfgsState,
    ZoomLinesearchState,
    adagrad,
    adam,
    adamw,
    lbfgs,
    rmsprop,
    scale_by_backtracking_linesearch,
    scale_by_lbfgs,
    scale_by_zoom_linesearch,
    sgd,
    value_and_grad_from_state,
)
from gradlab.run import (
    LRFinderResult,
    MinimizeResult,
    SweepBest,
    SweepResult,
    lr_finder,
    minimize,
    sweep,
)

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("schedules", "losses", "plot")

__all__ = [
    "ELEMENTWISE",
    "PER_LEAF",
    "AddNoiseState",
    "BacktrackingLinesearchState",
    "EmaState",
    "EmptyState",
    "GradientTransformation",
    "LRFinderResult",
    "LinesearchInfo",
    "MinimizeResult",
    "Packed",
    "PackedState",
    "ScaleByAdamState",
    "ScaleByLbfgsState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "ScaleByScheduleState",
    "SweepBest",
    "SweepResult",
    "TraceState",
    "ZeroNansState",
    "ZoomLinesearchState",
    "adagrad",
    "adam",
    "adamw",
    "add_decayed_weights",
    "add_noise",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_global_norm",
    "elementwise",
    "ema",
    "identity",
    "keep_params_nonnegative",
    "lbfgs",
    "losses",
    "lr_finder",
    "minimize",
    "packed",
    "per_leaf",
    "plot",
    "rmsprop",
    "scale",
    "scale_by_adam",
    "scale_by_backtracking_linesearch",
    "scale_by_lbfgs",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_schedule",
    "scale_by_zoom_linesearch",
    "schedules",
    "sgd",
    "state_shardings",
    "sweep",
    "trace",
    "value_and_grad_from_state",
    "zero_nans",
]


def __getattr__(name: str) -> Any:
    # Submodules load on first access: `gl.plot` must not import matplotlib
    # before a plot is asked for, and the others are cheap either way.
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"gradlab.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'gradlab' has no attribute {name!r}")
