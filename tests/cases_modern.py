"""The table of modern optimizer cases (as ``tests/cases.py`` for the classic ones).

Each case names its gradlab factory, its NumPy reference (``references_modern``,
from the paper's formula), its Optax twin and its torch twin where they exist,
with every convention difference said next to them.

The problem: ``g_k = c * p + noise_k`` on a dict of four leaves -- a vector,
a 3-D leaf (SM3's per-axis accumulators, Adafactor's batch axis), a scalar and
a matrix -- so per-leaf rules see real shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import references_modern as ref

import gradlab as gl

PARAM_SHAPES = {"b": (3,), "k": (2, 2, 3), "s": (), "w": (2, 4)}  # leaves order: b, k, s, w
KEYS = sorted(PARAM_SHAPES)
SIZES = {k: int(np.prod(s, dtype=int)) for k, s in PARAM_SHAPES.items()}
NUM_PARAMS = sum(SIZES.values())

NUM_STEPS = 60  # jitted runs (one lax.scan each)
EAGER_STEPS = 3  # eager runs (a Python loop, op by op)
LOW_PRECISION_STEPS = 4

_rng = np.random.default_rng(20250123)
INITIAL_FLAT = _rng.uniform(-1.5, 1.5, NUM_PARAMS).astype(np.float32)
CURVATURE = _rng.uniform(0.5, 2.0, NUM_PARAMS).astype(np.float32)
NOISE = _rng.normal(0.0, 1.0, (NUM_STEPS, NUM_PARAMS)).astype(np.float32)

DECAY_MASK = {"b": False, "k": True, "s": False, "w": True}  # decay the matrices only


def split(flat: np.ndarray, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    """A flat vector (keys sorted) as the params dict."""
    out, i = {}, 0
    for k in KEYS:
        out[k] = np.asarray(flat[i : i + SIZES[k]], dtype).reshape(PARAM_SHAPES[k])
        i += SIZES[k]
    return out


def reference_grad_fn(curvature=CURVATURE, noise=NOISE):
    """``g_k = c*p + noise_k`` per leaf, in float64, for the references."""
    c = split(curvature)
    z = [split(row) for row in np.asarray(noise, np.float64)]
    return lambda p, k: {n: c[n] * p[n] + z[k][n] for n in p}


def schedule_for(lr: float) -> Callable[[Any], Any]:
    """A simple exponential decay written with jnp (not gl.schedules)."""
    return lambda k: lr * 0.99 ** jnp.asarray(k, float)


def reference_lrs(lr: float, kind: str, num_steps: int) -> np.ndarray:
    if kind == "schedule":
        return lr * 0.99 ** np.arange(num_steps, dtype=np.float64)
    return np.full(num_steps, lr, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Case:
    """One optimizer configuration.

    ``make(lr)``: gradlab (``lr`` a float, a 0-d array -- maybe traced -- or a
    schedule). ``reference``: the NumPy rule. ``optax_make(lr)`` / ``torch_make
    (tensors, lr)``: second references (float lr), or None. ``lr_kinds``: the
    learning-rate forms the optimizer takes (``rprop``: no schedule; a case
    whose step size is built in: float only, lr ignored). ``rtol``/``atol``:
    float32 gradlab vs the float64 reference over ``NUM_STEPS`` steps.
    """

    name: str
    make: Callable[[Any], gl.GradientTransformation]
    reference: ref.Rule
    lr: float
    optax_make: Callable[[Any], Any] | None = None
    torch_make: Callable[[list, float], Any] | None = None
    lr_kinds: tuple[str, ...] = ("float", "array", "schedule", "vmap")
    rtol: float = 2e-5
    atol: float = 2e-5
    optax_atol: float = 2e-5
    low_precision_tol: float | None = 3e-2  # None: dtypes only
    low_precision_make: Callable[[Any], gl.GradientTransformation] | None = None

    def __repr__(self) -> str:
        return self.name


def _torch(cls_name: str, **kwargs):
    def make(tensors, lr):
        import torch

        return getattr(torch.optim, cls_name)(tensors, lr=lr, **kwargs)

    return make


def _optax_sm3(lr):
    return optax.sm3(lr)


CASES = [
    # --- Adam family ------------------------------------------------------
    # torch.optim.NAdam multiplies b1 by a momentum warm-up 1 - 0.5*0.96^(t*psi);
    # psi = 1e9 makes it exactly 1 (0.96^1e9 underflows), which is Dozat's NAdam.
    Case(
        "nadam",
        gl.nadam,
        ref.adam_like(nesterov=True),
        0.02,
        optax.nadam,
        _torch("NAdam", momentum_decay=1e9),
    ),
    Case(
        "nadamw_mask",
        lambda lr: gl.nadamw(lr, weight_decay=0.5, mask=DECAY_MASK),
        ref.adam_like(nesterov=True, weight_decay=0.5, mask=DECAY_MASK),
        0.02,
        lambda lr: optax.nadamw(lr, weight_decay=0.5, mask=DECAY_MASK),
    ),
    # torch's Adam(amsgrad=True) keeps max of the raw v (different numbers): no torch twin.
    Case("amsgrad", gl.amsgrad, ref.adam_like(amsgrad=True), 0.02, optax.amsgrad),
    Case("adamax", gl.adamax, ref.adamax(), 0.02, optax.adamax, _torch("Adamax")),
    Case(
        "adamaxw_mask",
        lambda lr: gl.adamaxw(lr, weight_decay=0.5, mask=DECAY_MASK),
        ref.adamax(weight_decay=0.5, mask=DECAY_MASK),
        0.02,
        lambda lr: optax.adamaxw(lr, weight_decay=0.5, mask=DECAY_MASK),
    ),
    # torch.optim.RAdam: eps on the uncorrected sqrt(v) (1e-8 here: negligible),
    # rectification at rho_t > 5 (here rho_t never equals 5).
    # rho_t = rho_inf - 2t b2^t/(1-b2^t) cancels in float32 (rho_6 = 5.994 comes out
    # as 6.0005 in NumPy float32): Optax's rectifier r_t rounds differently from
    # gradlab's by ~0.1% at t = 6, 6e-5 on the params (gradlab is within 2e-5 of
    # the float64 reference and torch).
    Case("radam", gl.radam, ref.radam(), 0.02, optax.radam, _torch("RAdam"), optax_atol=1e-4),
    Case(
        "radam_threshold",
        lambda lr: gl.radam(lr, b2=0.99, threshold=20.0),
        ref.radam(b2=0.99, threshold=20.0),
        0.02,
        lambda lr: optax.radam(lr, b2=0.99, threshold=20.0),
        lr_kinds=("float",),
    ),
    Case("adadelta", gl.adadelta, ref.adadelta(), 1.0, optax.adadelta, _torch("Adadelta")),
    Case(
        "adadelta_decay",
        lambda lr: gl.adadelta(lr, rho=0.8, eps=1e-4, weight_decay=0.1, mask=DECAY_MASK),
        ref.adadelta(rho=0.8, eps=1e-4, weight_decay=0.1, mask=DECAY_MASK),
        1.0,
        lambda lr: optax.adadelta(
            lr, rho=0.8, eps=1e-4, weight_decay=0.1, weight_decay_mask=DECAY_MASK
        ),
        lr_kinds=("float",),
    ),
    Case("adabelief", gl.adabelief, ref.adabelief(), 0.02, optax.adabelief),
    Case("yogi", gl.yogi, ref.yogi(), 0.05, optax.yogi),
    Case(
        "adan",
        lambda lr: gl.adan(lr, weight_decay=0.1, mask=DECAY_MASK),
        ref.adan(weight_decay=0.1, mask=DECAY_MASK),
        0.02,
        # optax.adan weighs the gradient differences by 1 - b2, not the paper's
        # b2 (its PR #1715): compared where the two agree, in test_modern.py
    ),
    Case(
        "novograd",
        lambda lr: gl.novograd(lr, weight_decay=0.1),
        ref.novograd(weight_decay=0.1),
        0.01,
        lambda lr: optax.novograd(lr, weight_decay=0.1),
    ),
    # --- layer-wise and sign ----------------------------------------------
    Case(
        "lamb",
        lambda lr: gl.lamb(lr, weight_decay=0.1, mask=DECAY_MASK),
        ref.lamb(weight_decay=0.1, mask=DECAY_MASK),
        0.02,
        lambda lr: optax.lamb(lr, weight_decay=0.1, mask=DECAY_MASK),
    ),
    Case(
        "lars",
        lambda lr: gl.lars(
            lr, weight_decay=0.1, trust_coefficient=0.02, trust_ratio_mask=DECAY_MASK
        ),
        ref.lars(weight_decay=0.1, trust_coefficient=0.02, trust_mask=DECAY_MASK),
        0.1,
        lambda lr: optax.lars(
            lr, weight_decay=0.1, trust_coefficient=0.02, trust_ratio_mask=DECAY_MASK
        ),
    ),
    Case(
        "lars_nesterov",
        lambda lr: gl.lars(lr, trust_coefficient=0.05, momentum=0.8, nesterov=True, eps=1e-3),
        ref.lars(trust_coefficient=0.05, momentum=0.8, nesterov=True, eps=1e-3),
        0.1,
        lambda lr: optax.lars(lr, trust_coefficient=0.05, momentum=0.8, nesterov=True, eps=1e-3),
        lr_kinds=("float",),
    ),
    Case("lion", gl.lion, ref.lion(), 0.005, optax.lion),
    Case(
        "lion_mask",
        lambda lr: gl.lion(lr, b1=0.8, b2=0.95, weight_decay=0.5, mask=DECAY_MASK),
        ref.lion(b1=0.8, b2=0.95, weight_decay=0.5, mask=DECAY_MASK),
        0.005,
        lambda lr: optax.lion(lr, b1=0.8, b2=0.95, weight_decay=0.5, mask=DECAY_MASK),
        lr_kinds=("float",),
    ),
    Case("sign_sgd", gl.sign_sgd, ref.sign_sgd(), 0.005, optax.sign_sgd),
    Case("signum", gl.signum, ref.signum(), 0.005, optax.signum),
    # --- memory-saving and others -----------------------------------------
    Case(
        "adafactor",
        lambda lr: gl.adafactor(lr, min_dim_size_to_factor=2),
        ref.adafactor(relative_step=False, min_dim=2),
        0.05,
        lambda lr: optax.adafactor(lr, min_dim_size_to_factor=2),
    ),
    # b_t counted from decay_offset (hunt52: its only test asserted "finite")
    Case(
        "adafactor_decay_offset",
        lambda lr: gl.adafactor(lr, min_dim_size_to_factor=2, decay_offset=3),
        ref.adafactor(relative_step=False, min_dim=2, decay_offset=3),
        0.05,
        lr_kinds=("float",),
    ),
    Case(
        "adafactor_momentum_decay",
        lambda lr: gl.adafactor(
            lr,
            min_dim_size_to_factor=2,
            decay_rate=0.6,
            clipping_threshold=0.5,
            momentum=0.9,
            weight_decay_rate=0.01,
            weight_decay_mask=DECAY_MASK,
            dtype_momentum=None,  # the params' (float64 in the float64 test)
        ),
        ref.adafactor(
            relative_step=False,
            min_dim=2,
            decay_rate=0.6,
            clip_threshold=0.5,
            momentum=0.9,
            weight_decay_rate=0.01,
            mask=DECAY_MASK,
        ),
        0.05,
        lambda lr: optax.adafactor(
            lr,
            min_dim_size_to_factor=2,
            decay_rate=0.6,
            clipping_threshold=0.5,
            momentum=0.9,
            weight_decay_rate=0.01,
            weight_decay_mask=DECAY_MASK,
        ),
        lr_kinds=("float",),
    ),
    # Unfactored (min_dim_size_to_factor large: the default 128 on small leaves),
    # absolute steps: Adafactor as a clipped, RMS-normalised RMSprop.
    Case(
        "adafactor_unfactored",
        lambda lr: gl.adafactor(lr, multiply_by_parameter_scale=False, clipping_threshold=None),
        ref.adafactor(relative_step=False, param_scale=False, clip_threshold=None),
        0.01,
        lambda lr: optax.adafactor(lr, multiply_by_parameter_scale=False, clipping_threshold=None),
        lr_kinds=("float",),
    ),
    # The default: relative steps rho_t = min(1e-2, 1/sqrt(t)) (the paper's; Optax
    # has no step size for learning_rate=None, so it is its twin with lr = 1e-2 here,
    # where rho_t = 1e-2 from t = 1). torch.optim.Adafactor(lr=1e-2) has the same
    # relative step; it factors every rank >= 2 leaf over its last two axes (here
    # the same axes), clamps V̂ at eps² = 1.4e-14 instead of adding 1e-30 to g².
    Case(
        "adafactor_relative_step",
        lambda lr: gl.adafactor(min_dim_size_to_factor=2),
        ref.adafactor(relative_step=True, min_dim=2),
        0.01,
        lambda lr: optax.adafactor(1e-2, min_dim_size_to_factor=2),
        _torch("Adafactor"),
        lr_kinds=("float",),
    ),
    Case("sm3", gl.sm3, ref.sm3(), 0.05, _optax_sm3),  # without the scalar leaf: see below
    # No Optax twin: optax.rprop applies each step's move one step late (its first
    # update is 0, its second the first's), and does not clip an unchanged step.
    Case(
        "rprop",
        gl.rprop,
        ref.rprop(),
        0.01,
        torch_make=_torch("Rprop"),
        lr_kinds=("float", "array", "vmap"),
    ),
    Case(
        "rprop_bounds",
        lambda lr: gl.rprop(
            lr, eta_minus=0.3, eta_plus=1.5, min_step_size=1e-3, max_step_size=0.05
        ),
        ref.rprop(eta_minus=0.3, eta_plus=1.5, min_step=1e-3, max_step=0.05),
        0.01,
        torch_make=_torch("Rprop", etas=(0.3, 1.5), step_sizes=(1e-3, 0.05)),
        lr_kinds=("float",),
    ),
    # eta = 0: the noise is tested on its own (statistics); the rule is SGD's.
    Case(
        "noisy_sgd_no_noise",
        lambda lr: gl.noisy_sgd(lr, eta=0.0),
        ref.sgd(),
        0.05,
    ),
    # Optax evaluates its schedule one step late in the averaging weights
    # (PR #1744): with a constant learning rate the two agree. With bfloat16
    # params z is kept in float32 (state_dtype), as advised for bfloat16 training:
    # z is a copy of the params, and in bfloat16 a step below half an ulp of z is
    # lost (z, hence the params, would stall as a bfloat16 param does under SGD).
    # Even so x = (y - (1-b1) z)/b1 is recovered from the rounded y (the
    # memory-saving form of Optax and of the authors' code): each step moves it
    # by c * (y's rounding), up to 10% of a 0.02 update in the first steps.
    Case(
        "schedule_free_sgd",
        lambda lr: gl.schedule_free_sgd(lr, weight_decay=0.1),
        ref.schedule_free("sgd", weight_decay=0.1),
        0.05,
        lambda lr: optax.contrib.schedule_free_sgd(lr, weight_decay=0.1),
        low_precision_make=lambda lr: gl.schedule_free_sgd(
            lr, weight_decay=0.1, state_dtype=jnp.float32
        ),
    ),
    Case(
        "schedule_free_adamw",
        lambda lr: gl.schedule_free_adamw(lr, b1=0.8, weight_decay=0.1),
        ref.schedule_free("adamw", b1=0.8, weight_decay=0.1),
        0.02,
        lambda lr: optax.contrib.schedule_free_adamw(lr, b1=0.8, weight_decay=0.1),
        low_precision_make=lambda lr: gl.schedule_free_adamw(
            lr, b1=0.8, weight_decay=0.1, state_dtype=jnp.float32
        ),
        low_precision_tol=0.1,
    ),
    Case(
        "schedule_free_adamw_warmup",
        lambda lr: gl.schedule_free_adamw(lr, warmup_steps=10, weight_lr_power=1.0),
        ref.schedule_free("adamw", warmup_steps=10, weight_lr_power=1.0),
        0.02,
        lr_kinds=("float",),
        low_precision_make=lambda lr: gl.schedule_free_adamw(
            lr, warmup_steps=10, weight_lr_power=1.0, state_dtype=jnp.float32
        ),
        low_precision_tol=None,  # warm-up steps below y's bfloat16 resolution
    ),
]

# Muon: the matrix "w" is orthogonalised, the vector, the scalar and the 3-D
# leaf get (Nesterov) AdamW, as in optax.contrib.muon.
CASES.append(
    Case(
        "muon",
        lambda lr: gl.muon(lr, beta=0.9, weight_decay=0.1, adam_weight_decay=0.05),
        ref.muon(beta=0.9, weight_decay=0.1, adam_weight_decay=0.05),
        0.02,
        lambda lr: optax.contrib.muon(lr, beta=0.9, weight_decay=0.1, adam_weight_decay=0.05),
    )
)

CASES_BY_NAME = {c.name: c for c in CASES}
OPTAX_CASES = [c for c in CASES if c.optax_make is not None]
TORCH_CASES = [c for c in CASES if c.torch_make is not None]

# SM3: Optax's scale_by_sm3 has no accumulator for 0-d leaves (IndexError), so
# its twin runs on the same problem without the scalar leaf.
OPTAX_WITHOUT_SCALAR = {"sm3": _optax_sm3}


# --------------------------------------------------------------------------
# Bad hyperparameters: (id, constructor, words the error must contain)
# --------------------------------------------------------------------------

BAD_HYPERPARAMETERS: list[tuple[str, Callable[[], Any], tuple[str, ...]]] = [
    ("nadam-negative-lr", lambda: gl.nadam(-1.0), ("learning_rate", "-1.0")),
    ("nadam-b1-1", lambda: gl.nadam(0.1, b1=1.0), ("b1", "1.0")),
    ("nadamw-negative-wd", lambda: gl.nadamw(0.1, weight_decay=-0.1), ("weight_decay", "-0.1")),
    ("amsgrad-b2-above-1", lambda: gl.amsgrad(0.1, b2=1.5), ("b2", "1.5")),
    ("amsgrad-negative-eps", lambda: gl.amsgrad(0.1, eps=-1e-8), ("eps", "-1e-08")),
    ("adamax-negative-lr", lambda: gl.adamax(-0.1), ("learning_rate", "-0.1")),
    ("adamax-b1-negative", lambda: gl.adamax(0.1, b1=-0.1), ("b1", "-0.1")),
    ("adamaxw-negative-wd", lambda: gl.adamaxw(0.1, weight_decay=-1.0), ("weight_decay",)),
    ("radam-b2-1", lambda: gl.radam(0.1, b2=1.0), ("b2", "1.0")),
    ("radam-nan-threshold", lambda: gl.radam(0.1, threshold=float("nan")), ("threshold", "nan")),
    ("adadelta-rho-above-1", lambda: gl.adadelta(rho=1.5), ("rho", "1.5")),
    ("adadelta-negative-eps", lambda: gl.adadelta(eps=-1.0), ("eps", "-1.0")),
    ("adadelta-negative-lr", lambda: gl.adadelta(-1.0), ("learning_rate", "-1.0")),
    ("adabelief-b1-1", lambda: gl.adabelief(0.1, b1=1.0), ("b1", "1.0")),
    ("adabelief-negative-eps-root", lambda: gl.adabelief(0.1, eps_root=-1.0), ("eps_root",)),
    ("yogi-negative-eps", lambda: gl.yogi(0.1, eps=-1e-3), ("eps", "-0.001")),
    (
        "yogi-negative-initial",
        lambda: gl.yogi(0.1, initial_accumulator_value=-1.0),
        ("initial_accumulator_value", "-1.0"),
    ),
    ("adan-b3-1", lambda: gl.adan(0.1, b3=1.0), ("b3", "1.0")),
    ("adan-negative-wd", lambda: gl.adan(0.1, weight_decay=-1.0), ("weight_decay", "-1.0")),
    ("novograd-b2-negative", lambda: gl.novograd(0.1, b2=-0.5), ("b2", "-0.5")),
    ("novograd-negative-wd", lambda: gl.novograd(0.1, weight_decay=-1.0), ("weight_decay",)),
    ("lamb-negative-lr", lambda: gl.lamb(-0.1), ("learning_rate", "-0.1")),
    ("lamb-negative-wd", lambda: gl.lamb(0.1, weight_decay=-0.1), ("weight_decay", "-0.1")),
    (
        "lars-negative-trust",
        lambda: gl.lars(0.1, trust_coefficient=-1.0),
        ("trust_coefficient", "-1.0"),
    ),
    ("lars-momentum-above-1", lambda: gl.lars(0.1, momentum=1.5), ("momentum", "1.5")),
    ("lars-negative-eps", lambda: gl.lars(0.1, eps=-1.0), ("eps", "-1.0")),
    ("lion-b1-above-1", lambda: gl.lion(0.1, b1=1.5), ("b1", "1.5")),
    ("lion-b2-negative", lambda: gl.lion(0.1, b2=-0.1), ("b2", "-0.1")),
    ("lion-vector-lr", lambda: gl.lion(jnp.ones(2)), ("learning_rate", "scalar")),
    ("sign_sgd-negative-lr", lambda: gl.sign_sgd(-1.0), ("learning_rate", "-1.0")),
    ("signum-beta-above-1", lambda: gl.signum(0.1, beta=1.5), ("beta", "1.5")),
    ("adafactor-negative-lr", lambda: gl.adafactor(-1.0), ("learning_rate", "-1.0")),
    ("adafactor-zero-clip", lambda: gl.adafactor(clipping_threshold=0.0), ("threshold", "0.0")),
    ("adafactor-negative-decay", lambda: gl.adafactor(decay_rate=-0.8), ("decay_rate", "-0.8")),
    ("adafactor-negative-eps", lambda: gl.adafactor(eps=-1.0), ("eps must be", "-1.0")),
    ("adafactor-momentum-2", lambda: gl.adafactor(momentum=2.0), ("momentum", "2.0")),
    ("adafactor-offset-float", lambda: gl.adafactor(decay_offset=2.5), ("decay_offset", "2.5")),
    ("adafactor-min-dim-negative", lambda: gl.adafactor(min_dim_size_to_factor=-1), ("min_dim",)),
    (
        "adafactor-int-momentum-dtype",
        lambda: gl.adafactor(momentum=0.9, dtype_momentum=jnp.int8),
        ("dtype_momentum", "int8"),
    ),
    ("sm3-momentum-above-1", lambda: gl.sm3(0.1, momentum=1.5), ("momentum", "1.5")),
    ("sm3-negative-lr", lambda: gl.sm3(-0.1), ("learning_rate", "-0.1")),
    ("rprop-negative-lr", lambda: gl.rprop(-0.1), ("learning_rate", "-0.1")),
    ("rprop-eta-minus-1", lambda: gl.rprop(0.1, eta_minus=1.0), ("eta_minus", "1.0")),
    ("rprop-eta-plus-below-1", lambda: gl.rprop(0.1, eta_plus=0.9), ("eta_plus", "0.9")),
    (
        "rprop-max-below-min",
        lambda: gl.rprop(0.1, min_step_size=1.0, max_step_size=0.5),
        ("max_step_size", "min_step_size"),
    ),
    ("noisy_sgd-negative-eta", lambda: gl.noisy_sgd(0.1, eta=-1.0), ("eta", "-1.0")),
    ("noisy_sgd-float-seed", lambda: gl.noisy_sgd(0.1, seed=1.5), ("seed", "1.5")),
    ("schedule_free_sgd-b1-0", lambda: gl.schedule_free_sgd(b1=0.0), ("b1", "0.0")),
    ("schedule_free_sgd-negative-lr", lambda: gl.schedule_free_sgd(-1.0), ("learning_rate",)),
    (
        "schedule_free_adamw-negative-power",
        lambda: gl.schedule_free_adamw(weight_lr_power=-1.0),
        ("weight_lr_power", "-1.0"),
    ),
    (
        "schedule_free_adamw-negative-warmup",
        lambda: gl.schedule_free_adamw(warmup_steps=-5),
        ("warmup_steps", "-5"),
    ),
    ("schedule_free_adamw-b2-1", lambda: gl.schedule_free_adamw(b2=1.0), ("b2", "1.0")),
    # blocks
    (
        "scale_by_trust_ratio-negative-min-norm",
        lambda: gl.scale_by_trust_ratio(-1.0),
        ("min_norm",),
    ),
    ("clip_by_block_rms-negative", lambda: gl.clip_by_block_rms(-1.0), ("threshold", "-1.0")),
    ("adaptive_grad_clip-zero", lambda: gl.adaptive_grad_clip(0.0), ("clipping", "0.0")),
    ("adaptive_grad_clip-negative-eps", lambda: gl.adaptive_grad_clip(0.1, eps=-1.0), ("eps",)),
    (
        "normalize_by_update_norm-nan",
        lambda: gl.normalize_by_update_norm(float("nan")),
        ("scale_factor", "nan"),
    ),
    (
        "scale_by_param_block_rms-negative",
        lambda: gl.scale_by_param_block_rms(-1.0),
        ("min_scale",),
    ),
    ("scale_by_muon-beta-1", lambda: gl.scale_by_muon(beta=1.0), ("beta", "1.0")),
    ("scale_by_muon-ns-steps", lambda: gl.scale_by_muon(ns_steps=2.5), ("ns_steps", "2.5")),
    ("scale_by_muon-ns-coeffs", lambda: gl.scale_by_muon(ns_coeffs=(1.0, 2.0)), ("ns_coeffs",)),
    ("scale_by_debiased_rms-decay-1", lambda: gl.scale_by_debiased_rms(1.0), ("decay", "1.0")),
    ("scale_by_lion-mu-dtype", lambda: gl.scale_by_lion(mu_dtype=jnp.int32), ("mu_dtype", "int32")),
]

TYPE_ERRORS: list[tuple[str, Callable[[], Any], tuple[str, ...]]] = [
    ("rprop-schedule", lambda: gl.rprop(lambda k: 0.1), ("learning_rate", "schedule")),
    ("lion-string-lr", lambda: gl.lion("0.1"), ("learning_rate",)),
    ("adan-string-b1", lambda: gl.adan(0.1, b1="0.9"), ("b1",)),
    ("schedule_free-not-a-transformation", lambda: gl.schedule_free(3, 0.1), ("base_optimizer",)),
]
