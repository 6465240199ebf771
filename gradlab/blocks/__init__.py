"""Building blocks: each a small GradientTransformation; optimizers chain them."""

from gradlab.blocks._adaptive import (
    ScaleByAdamState,
    ScaleByRmsState,
    ScaleByRssState,
    scale_by_adam,
    scale_by_rms,
    scale_by_rss,
)
from gradlab.blocks._clipping import clip, clip_by_global_norm, zero_nans
from gradlab.blocks._momentum import EmaState, TraceState, ema, trace
from gradlab.blocks._regularize import (
    AddNoiseState,
    ZeroNansState,
    add_decayed_weights,
    add_noise,
    keep_params_nonnegative,
)
from gradlab.blocks._scaling import (
    ScaleByScheduleState,
    identity,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
)

__all__ = [
    "AddNoiseState",
    "EmaState",
    "ScaleByAdamState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "ScaleByScheduleState",
    "TraceState",
    "ZeroNansState",
    "add_decayed_weights",
    "add_noise",
    "clip",
    "clip_by_global_norm",
    "ema",
    "identity",
    "keep_params_nonnegative",
    "scale",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_schedule",
    "trace",
    "zero_nans",
]
