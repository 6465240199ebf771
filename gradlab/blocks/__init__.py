"""Building blocks: each a small GradientTransformation; optimizers chain them."""

from gradlab.blocks._adaptive import (
    ScaleByAdamState,
    ScaleByRmsState,
    ScaleByRssState,
    scale_by_adam,
    scale_by_rms,
    scale_by_rss,
)
from gradlab.blocks._adaptive_variants import (
    ScaleByAdadeltaState,
    ScaleByAdanState,
    ScaleByAmsgradState,
    ScaleByBeliefState,
    ScaleByDebiasedRmsState,
    ScaleByNovogradState,
    scale_by_adadelta,
    scale_by_adamax,
    scale_by_adan,
    scale_by_amsgrad,
    scale_by_belief,
    scale_by_debiased_rms,
    scale_by_novograd,
    scale_by_radam,
    scale_by_yogi,
)
from gradlab.blocks._clipping import clip, clip_by_global_norm, zero_nans
from gradlab.blocks._clipping_more import (
    adaptive_grad_clip,
    centralize,
    clip_by_block_rms,
    normalize_by_update_norm,
)
from gradlab.blocks._factored import FactoredState, scale_by_factored_rms
from gradlab.blocks._momentum import EmaState, TraceState, ema, trace
from gradlab.blocks._orthogonal import ScaleByMuonState, orthogonalize, scale_by_muon
from gradlab.blocks._regularize import (
    AddNoiseState,
    WeightDecayScheduleState,
    ZeroNansState,
    add_decayed_weights,
    add_noise,
    keep_params_nonnegative,
)
from gradlab.blocks._rprop import ScaleByRpropState, scale_by_rprop
from gradlab.blocks._scaling import (
    ScaleByScheduleState,
    identity,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
)
from gradlab.blocks._sign import ScaleByLionState, scale_by_lion, scale_by_sign
from gradlab.blocks._sm3 import ScaleBySM3State, scale_by_sm3
from gradlab.blocks._trust import scale_by_param_block_rms, scale_by_trust_ratio

__all__ = [
    "AddNoiseState",
    "EmaState",
    "FactoredState",
    "ScaleByAdadeltaState",
    "ScaleByAdamState",
    "ScaleByAdanState",
    "ScaleByAmsgradState",
    "ScaleByBeliefState",
    "ScaleByDebiasedRmsState",
    "ScaleByLionState",
    "ScaleByMuonState",
    "ScaleByNovogradState",
    "ScaleByRmsState",
    "ScaleByRpropState",
    "ScaleByRssState",
    "ScaleBySM3State",
    "ScaleByScheduleState",
    "TraceState",
    "WeightDecayScheduleState",
    "ZeroNansState",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "add_noise",
    "centralize",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "ema",
    "identity",
    "keep_params_nonnegative",
    "normalize_by_update_norm",
    "orthogonalize",
    "scale",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_adan",
    "scale_by_amsgrad",
    "scale_by_belief",
    "scale_by_debiased_rms",
    "scale_by_factored_rms",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_muon",
    "scale_by_novograd",
    "scale_by_param_block_rms",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_rss",
    "scale_by_schedule",
    "scale_by_sign",
    "scale_by_sm3",
    "scale_by_trust_ratio",
    "scale_by_yogi",
    "trace",
    "zero_nans",
]
