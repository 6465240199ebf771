"""Tables that drive the parameterized tests (in the spirit of torch's ``OptimizerInfo``).

* :data:`OPTIMIZER_CASES` — every optimizer configuration under test, with
  its gradlab factory, its NumPy reference and (where one exists) its Optax
  twin.
* :data:`BAD_HYPERPARAMETERS` / :data:`NON_NUMERIC_HYPERPARAMETERS` — bad
  constructor arguments and the argument name the error must mention.
* The test problem: a noisy quadratic on a small pytree of parameters.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
import references as ref

import gradlab as gl

# --------------------------------------------------------------------------
# The problem: f(p) = sum(c/2 * p²) + <noise_k, p>, so g_k = c*p + noise_k.
# Params are a small pytree; the references see the same numbers as one flat
# vector (every rule under test is elementwise), in jax.tree.leaves order.
# --------------------------------------------------------------------------

NUM_STEPS = 100  # jitted runs (one lax.scan)
EAGER_STEPS = 10  # eager runs (a Python loop, op by op)

PARAM_SHAPES = {"b": (3,), "s": (), "w": (2, 4)}  # leaves order: b, s, w
NUM_PARAMS = 12

_rng = np.random.default_rng(20240601)
INITIAL_FLAT = _rng.uniform(-1.5, 1.5, NUM_PARAMS).astype(np.float32)
CURVATURE = _rng.uniform(0.5, 2.0, NUM_PARAMS).astype(np.float32)
NOISE = _rng.normal(0.0, 1.0, (NUM_STEPS, NUM_PARAMS)).astype(np.float32)

# AdamW's mask in the tests: decay the matrix only (not the bias or the scalar).
DECAY_MASK = {"b": False, "s": False, "w": True}
DECAY_MASK_FLAT = np.concatenate(
    [np.full(int(np.prod(PARAM_SHAPES[k])), DECAY_MASK[k]) for k in sorted(PARAM_SHAPES)]
)


def unflatten(flat: np.ndarray, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """The flat vector as the params dict (NumPy, ``dtype``)."""
    out, i = {}, 0
    for k in sorted(PARAM_SHAPES):
        n = int(np.prod(PARAM_SHAPES[k]))
        out[k] = np.asarray(flat[i : i + n], dtype).reshape(PARAM_SHAPES[k])
        i += n
    return out


def reference_grad_fn(curvature: np.ndarray = CURVATURE, noise: np.ndarray = NOISE):
    """``g_k = c*p + noise_k`` in float64, for the references."""
    c = curvature.astype(np.float64)
    z = noise.astype(np.float64)
    return lambda p, k: c * p + z[k]


# --------------------------------------------------------------------------
# Optimizer cases
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OptimizerCase:
    """One optimizer configuration.

    ``make(lr)`` builds the gradlab transformation (``lr`` a float, an array —
    maybe traced — or a schedule). ``reference(p0, grad_fn, lrs)`` is the NumPy
    trajectory. ``optax_make(lr)`` the Optax twin, or None. ``rtol``/``atol``
    compare float32 gradlab with the float64 reference.
    """

    name: str
    make: Callable[[Any], gl.GradientTransformation]
    reference: Callable[..., np.ndarray]
    lr: float
    optax_make: Callable[[Any], Any] | None = None
    rtol: float = 1e-5
    atol: float = 1e-6
    optax_atol: float = 1e-6
    adaptive: bool = False  # normalises the gradient (adam, rmsprop, adagrad)

    def __repr__(self) -> str:  # short ids in pytest output
        return self.name


P = functools.partial

OPTIMIZER_CASES = [
    OptimizerCase("sgd", gl.sgd, ref.sgd, 0.05, optax.sgd),
    OptimizerCase(
        "sgd_momentum",
        lambda lr: gl.sgd(lr, momentum=0.9),
        P(ref.sgd, momentum=0.9),
        0.02,
        lambda lr: optax.sgd(lr, momentum=0.9),
    ),
    OptimizerCase(
        "sgd_nesterov",
        lambda lr: gl.sgd(lr, momentum=0.8, nesterov=True),
        P(ref.sgd, momentum=0.8, nesterov=True),
        0.02,
        lambda lr: optax.sgd(lr, momentum=0.8, nesterov=True),
    ),
    # Optax's adagrad puts eps inside the root (g/sqrt(G + eps)); with G >= 0.1
    # that differs from torch's g/(sqrt(G) + eps) by < 4*eps relative, far
    # below the tolerance — so Optax stays a useful second reference.
    OptimizerCase("adagrad", gl.adagrad, ref.adagrad, 0.1, optax.adagrad, adaptive=True),
    OptimizerCase(
        "adagrad_custom",
        lambda lr: gl.adagrad(lr, initial_accumulator_value=0.5, eps=1e-3),
        P(ref.adagrad, initial_accumulator_value=0.5, eps=1e-3),
        0.1,
        adaptive=True,
    ),
    # Optax's rmsprop with eps_in_sqrt=False has torch's (and gradlab's) convention.
    OptimizerCase(
        "rmsprop",
        gl.rmsprop,
        ref.rmsprop,
        0.01,
        lambda lr: optax.rmsprop(lr, eps_in_sqrt=False),
        adaptive=True,
    ),
    OptimizerCase(
        "rmsprop_centered",
        lambda lr: gl.rmsprop(lr, decay=0.95, eps=1e-6, initial_scale=0.1, centered=True),
        P(ref.rmsprop, alpha=0.95, eps=1e-6, initial_scale=0.1, centered=True),
        0.01,
        lambda lr: optax.rmsprop(
            lr, decay=0.95, eps=1e-6, initial_scale=0.1, centered=True, eps_in_sqrt=False
        ),
        adaptive=True,
    ),
    # eps_in_sqrt=True: Optax's default, g / sqrt(v + eps); an eps big enough to tell
    # (the plain form: BlockCase scale_by_rms_eps_in_sqrt)
    OptimizerCase(
        "rmsprop_centered_momentum_eps_in_sqrt",
        lambda lr: gl.rmsprop(lr, eps=1e-2, centered=True, momentum=0.9, eps_in_sqrt=True),
        P(ref.rmsprop, eps=1e-2, centered=True, momentum=0.9, eps_in_sqrt=True),
        0.002,
        lambda lr: optax.rmsprop(lr, eps=1e-2, centered=True, momentum=0.9),
        adaptive=True,
    ),
    OptimizerCase(
        "rmsprop_momentum",
        lambda lr: gl.rmsprop(lr, momentum=0.9),
        P(ref.rmsprop, momentum=0.9),
        0.002,
        lambda lr: optax.rmsprop(lr, momentum=0.9, eps_in_sqrt=False),
        adaptive=True,
    ),
    OptimizerCase(
        "rmsprop_centered_nesterov",
        lambda lr: gl.rmsprop(lr, centered=True, momentum=0.8, nesterov=True),
        P(ref.rmsprop, centered=True, momentum=0.8, nesterov=True),
        0.002,
        lambda lr: optax.rmsprop(lr, centered=True, momentum=0.8, nesterov=True, eps_in_sqrt=False),
        adaptive=True,
    ),
    # Adam's float32 round-off: b2=0.999 is 0.99900001 in float32, so 1-b2^t
    # (and v̂) is off by ~1.3e-5 relative and the update by ~6.5e-6 — inside
    # rtol=1e-5 on the params, which move by much less than their size.
    OptimizerCase("adam", gl.adam, ref.adam, 0.02, optax.adam, adaptive=True, optax_atol=1e-5),
    OptimizerCase(
        "adam_custom",
        lambda lr: gl.adam(lr, b1=0.8, b2=0.99, eps=1e-4),
        P(ref.adam, b1=0.8, b2=0.99, eps=1e-4),
        0.02,
        lambda lr: optax.adam(lr, b1=0.8, b2=0.99, eps=1e-4),
        adaptive=True,
    ),
    OptimizerCase(
        "adam_nesterov",
        lambda lr: gl.adam(lr, nesterov=True),
        P(ref.adam, nesterov=True),
        0.02,
        lambda lr: optax.adam(lr, nesterov=True),
        adaptive=True,
        optax_atol=1e-5,
    ),
    OptimizerCase(
        "adam_eps_root",
        lambda lr: gl.adam(lr, b2=0.99, eps_root=1e-3),
        P(ref.adam, b2=0.99, eps_root=1e-3),
        0.02,
        lambda lr: optax.adam(lr, b2=0.99, eps_root=1e-3),
        adaptive=True,
    ),
    OptimizerCase("adamw", gl.adamw, ref.adamw, 0.02, optax.adamw, adaptive=True, optax_atol=1e-5),
    OptimizerCase(
        "adamw_mask",
        lambda lr: gl.adamw(lr, weight_decay=0.5, mask=DECAY_MASK),
        P(ref.adamw, weight_decay=0.5, decay_mask=DECAY_MASK_FLAT),
        0.02,
        lambda lr: optax.adamw(lr, weight_decay=0.5, mask=DECAY_MASK),
        adaptive=True,
        optax_atol=1e-5,
    ),
    OptimizerCase(
        "adamw_callable_mask",
        lambda lr: gl.adamw(
            lr, weight_decay=0.5, mask=lambda params: {k: k == "w" for k in params}
        ),
        P(ref.adamw, weight_decay=0.5, decay_mask=DECAY_MASK_FLAT),
        0.02,
        adaptive=True,
    ),
]

OPTAX_CASES = [c for c in OPTIMIZER_CASES if c.optax_make is not None]
ADAPTIVE_CASES = [c for c in OPTIMIZER_CASES if c.adaptive]


def _packed(case: OptimizerCase) -> OptimizerCase:
    """The same case run through ``gl.packed`` (all three leaves share one buffer).

    Same reference, same tolerances: packing must not change the numbers.
    """
    return dataclasses.replace(
        case,
        name=f"{case.name}+packed",
        make=lambda lr, make=case.make: gl.packed(make(lr)),
        optax_make=None,
    )


PACKED_CASES = [_packed(c) for c in OPTIMIZER_CASES]


def schedule_for(lr: float) -> Callable[[Any], Any]:
    """A simple exponential decay written with jnp (not gl.schedules)."""
    # jnp.asarray(k, float) is float32, or float64 under x64 (strict promotion
    # forbids mixing the int32 step with a float).
    return lambda k: lr * 0.99 ** jnp.asarray(k, float)


def reference_lrs(lr: float, kind: str, num_steps: int) -> np.ndarray:
    """The learning rate of every step, as the schedule of ``kind`` defines it."""
    if kind == "schedule":
        return lr * 0.99 ** np.arange(num_steps, dtype=np.float64)
    return np.full(num_steps, lr, dtype=np.float64)


# --------------------------------------------------------------------------
# Bad hyperparameters: (id, constructor, words the ValueError must contain)
# --------------------------------------------------------------------------

BAD_HYPERPARAMETERS: list[tuple[str, Callable[[], Any], tuple[str, ...]]] = [
    ("sgd-negative-lr", lambda: gl.sgd(-0.1), ("learning_rate", "-0.1")),
    ("sgd-array-negative-lr", lambda: gl.sgd(jnp.array(-1.0)), ("learning_rate", "-1.0")),
    ("sgd-nan-lr", lambda: gl.sgd(float("nan")), ("learning_rate", "nan")),
    ("sgd-momentum-above-1", lambda: gl.sgd(0.1, momentum=1.5), ("momentum", "1.5")),
    ("sgd-momentum-negative", lambda: gl.sgd(0.1, momentum=-0.1), ("momentum", "-0.1")),
    ("sgd-nesterov-without-momentum", lambda: gl.sgd(0.1, nesterov=True), ("momentum", "None")),
    ("adagrad-negative-lr", lambda: gl.adagrad(-1.0), ("learning_rate", "-1.0")),
    (
        "adagrad-negative-initial-accumulator",
        lambda: gl.adagrad(0.1, initial_accumulator_value=-0.1),
        ("initial_accumulator_value", "-0.1"),
    ),
    ("adagrad-negative-eps", lambda: gl.adagrad(0.1, eps=-1e-7), ("eps", "-1e-07")),
    ("rmsprop-decay-1", lambda: gl.rmsprop(0.1, decay=1.0), ("decay", "1.0")),
    ("rmsprop-decay-2", lambda: gl.rmsprop(0.1, decay=2.0), ("decay", "2.0")),
    ("rmsprop-decay-negative", lambda: gl.rmsprop(0.1, decay=-0.5), ("decay", "-0.5")),
    ("rmsprop-negative-eps", lambda: gl.rmsprop(0.1, eps=-1.0), ("eps", "-1.0")),
    (
        "rmsprop-negative-initial-scale",
        lambda: gl.rmsprop(0.1, initial_scale=-1.0),
        ("initial_scale", "-1.0"),
    ),
    ("rmsprop-momentum-above-1", lambda: gl.rmsprop(0.1, momentum=1.1), ("momentum", "1.1")),
    (
        "rmsprop-nesterov-without-momentum",
        lambda: gl.rmsprop(0.1, nesterov=True),
        ("momentum", "None"),
    ),
    ("adam-negative-lr", lambda: gl.adam(-1e-3), ("learning_rate", "-0.001")),
    ("adam-b1-1", lambda: gl.adam(0.1, b1=1.0), ("b1", "1.0")),
    ("adam-b1-negative", lambda: gl.adam(0.1, b1=-0.1), ("b1", "-0.1")),
    ("adam-b1-array", lambda: gl.adam(0.1, b1=jnp.array(1.5)), ("b1", "1.5")),
    ("adam-b2-1", lambda: gl.adam(0.1, b2=1.0), ("b2", "1.0")),
    ("adam-b2-above-1", lambda: gl.adam(0.1, b2=1.5), ("b2", "1.5")),
    ("adam-negative-eps", lambda: gl.adam(0.1, eps=-1e-8), ("eps", "-1e-08")),
    ("adam-negative-eps-root", lambda: gl.adam(0.1, eps_root=-1.0), ("eps_root", "-1.0")),
    ("adamw-negative-lr", lambda: gl.adamw(-0.1), ("learning_rate", "-0.1")),
    ("adamw-b2-above-1", lambda: gl.adamw(0.1, b2=2.0), ("b2", "2.0")),
    ("adamw-negative-weight-decay", lambda: gl.adamw(0.1, weight_decay=-1e-4), ("weight_decay",)),
    (
        "adamw-array-negative-weight-decay",
        lambda: gl.adamw(0.1, weight_decay=jnp.array(-1.0)),
        ("weight_decay", "-1.0"),
    ),
    ("scale-nan", lambda: gl.scale(float("nan")), ("factor", "nan")),
    (
        "scale_by_learning_rate-negative",
        lambda: gl.scale_by_learning_rate(-1.0),
        ("learning_rate",),
    ),
    ("trace-decay-above-1", lambda: gl.trace(1.5), ("decay", "1.5")),
    ("trace-decay-negative", lambda: gl.trace(-0.5), ("decay", "-0.5")),
    ("ema-decay-1-debiased", lambda: gl.ema(1.0), ("decay", "1.0")),
    ("ema-decay-negative", lambda: gl.ema(-0.1, debias=False), ("decay", "-0.1")),
    ("scale_by_adam-b1", lambda: gl.scale_by_adam(b1=1.0), ("b1", "1.0")),
    ("scale_by_rms-decay", lambda: gl.scale_by_rms(decay=1.0), ("decay", "1.0")),
    ("scale_by_rms-eps", lambda: gl.scale_by_rms(eps=-1.0), ("eps", "-1.0")),
    ("scale_by_rss-initial", lambda: gl.scale_by_rss(-1.0), ("initial_accumulator_value",)),
    ("add_decayed_weights-negative", lambda: gl.add_decayed_weights(-0.1), ("weight_decay",)),
    ("clip-negative", lambda: gl.clip(-1.0), ("max_delta", "-1.0")),
    ("clip-array-negative", lambda: gl.clip(jnp.array(-2.0)), ("max_delta", "-2.0")),
    ("clip_by_global_norm-zero", lambda: gl.clip_by_global_norm(0.0), ("max_norm", "0.0")),
    ("clip_by_global_norm-minus-1", lambda: gl.clip_by_global_norm(-1), ("max_norm", "-1")),
    (
        "clip_by_global_norm-array",
        lambda: gl.clip_by_global_norm(jnp.array(-1.0)),
        ("max_norm", "-1.0"),
    ),
    ("add_noise-negative-eta", lambda: gl.add_noise(-0.1, 0.55, 0), ("eta", "-0.1")),
    ("add_noise-negative-gamma", lambda: gl.add_noise(0.1, -1.0, 0), ("gamma", "-1.0")),
    # torch.optim.SGD: "Nesterov momentum requires a momentum"
    (
        "sgd-nesterov-zero-momentum",
        lambda: gl.sgd(0.1, momentum=0.0, nesterov=True),
        ("momentum", "nesterov", "0.0"),
    ),
    ("adam-int-mu-dtype", lambda: gl.adam(0.1, mu_dtype=jnp.int32), ("mu_dtype", "int32")),
    # An array of hyperparameters would broadcast per element (or fail in update).
    ("adam-vector-lr", lambda: gl.adam(jnp.array([0.1, 0.2])), ("learning_rate", "scalar", "(2,)")),
    ("sgd-vector-momentum", lambda: gl.sgd(0.1, momentum=[0.9, 0.8]), ("momentum", "scalar")),
    (
        "adamw-vector-weight-decay",
        lambda: gl.adamw(0.1, weight_decay=np.ones(3)),
        ("weight_decay", "(3,)"),
    ),
    ("scale_by_adam-vector-b2", lambda: gl.scale_by_adam(b2=jnp.full((1,), 0.99)), ("b2", "(1,)")),
    (
        "clip_by_global_norm-vector",
        lambda: gl.clip_by_global_norm(jnp.ones(2)),
        ("max_norm", "scalar"),
    ),
    (
        "trace-int-accumulator",
        lambda: gl.trace(0.9, accumulator_dtype="int8"),
        ("accumulator_dtype", "int8"),
    ),
    (
        "ema-bool-accumulator",
        lambda: gl.ema(0.9, accumulator_dtype=bool),
        ("accumulator_dtype", "bool"),
    ),
]

NON_NUMERIC_HYPERPARAMETERS: list[tuple[str, Callable[[], Any], str]] = [
    ("sgd-string-lr", lambda: gl.sgd("0.1"), "learning_rate"),
    ("sgd-string-momentum", lambda: gl.sgd(0.1, momentum="0.9"), "momentum"),
    ("adam-string-b1", lambda: gl.adam(0.1, b1="0.9"), "b1"),
    ("rmsprop-string-decay", lambda: gl.rmsprop(0.1, decay="high"), "decay"),
    ("adagrad-string-eps", lambda: gl.adagrad(0.1, eps="tiny"), "eps"),
    ("clip-string", lambda: gl.clip("1"), "max_delta"),
    ("clip_by_global_norm-string", lambda: gl.clip_by_global_norm("1"), "max_norm"),
    ("scale-none", lambda: gl.scale(None), "factor"),
    ("adam-unknown-mu-dtype", lambda: gl.adam(0.1, mu_dtype="foo"), "mu_dtype"),
    (
        "trace-unknown-accumulator-dtype",
        lambda: gl.trace(0.9, accumulator_dtype="x"),
        "accumulator_dtype",
    ),
    ("packed-not-a-transformation", lambda: gl.packed(3), "transform"),
]


# --------------------------------------------------------------------------
# Building-block cases: a short sequence of updates through one block
# --------------------------------------------------------------------------

BLOCK_SHAPES = {"a": (3,), "b": (2, 2), "c": ()}  # leaves order: a, b, c
BLOCK_STEPS = 6
_block_rng = np.random.default_rng(7)
# Non-negative params (keep_params_nonnegative requires it); updates large
# enough that p + u often goes negative and some exceed the clip thresholds.
BLOCK_PARAMS = _block_rng.uniform(0.0, 1.0, 8).astype(np.float32)
BLOCK_UPDATES = _block_rng.normal(0.0, 1.5, (BLOCK_STEPS, 8)).astype(np.float32)

BOOL_MASK = {"a": True, "b": False, "c": True}
BOOL_MASK_FLAT = np.array([True] * 3 + [False] * 4 + [True])
ARRAY_MASK_FLAT = np.array([True, False, True, False, True, True, False, False])


def array_mask():
    """A mask whose leaves are boolean arrays (elementwise), built on demand."""
    m = ARRAY_MASK_FLAT
    return {"a": jnp.asarray(m[:3]), "b": jnp.asarray(m[3:7].reshape(2, 2)), "c": jnp.asarray(m[7])}


@dataclasses.dataclass(frozen=True)
class BlockCase:
    """``make()`` builds the block; ``reference(updates (T, n), params (n,)) -> (T, n)``."""

    name: str
    make: Callable[[], gl.GradientTransformation]
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray]
    rtol: float = 1e-5
    atol: float = 1e-6

    def __repr__(self) -> str:
        return self.name


def _each(fn):
    """A per-update reference applied to every step of a sequence."""
    return lambda us, p: np.stack([fn(u, p) for u in us])


def _schedule_ref(values):
    return lambda us, p: us * np.asarray(values, np.float64)[: len(us), None]


_K = np.arange(BLOCK_STEPS, dtype=np.float64)

BLOCK_CASES = [
    BlockCase("identity", gl.identity, lambda us, p: us),
    BlockCase("scale", lambda: gl.scale(-2.5), lambda us, p: -2.5 * us),
    BlockCase("scale_array", lambda: gl.scale(jnp.asarray(0.3)), lambda us, p: 0.3 * us),
    BlockCase(
        "scale_by_learning_rate", lambda: gl.scale_by_learning_rate(0.1), lambda us, p: -0.1 * us
    ),
    BlockCase(
        "scale_by_learning_rate_array",
        lambda: gl.scale_by_learning_rate(jnp.asarray(0.1)),
        lambda us, p: -0.1 * us,
    ),
    BlockCase(
        "scale_by_learning_rate_schedule",
        lambda: gl.scale_by_learning_rate(lambda k: 0.1 / (1.0 + jnp.asarray(k, float))),
        _schedule_ref(-0.1 / (1.0 + _K)),
    ),
    BlockCase(
        "scale_by_learning_rate_no_flip",
        lambda: gl.scale_by_learning_rate(0.1, flip_sign=False),
        lambda us, p: 0.1 * us,
    ),
    BlockCase(
        "scale_by_schedule",
        lambda: gl.scale_by_schedule(lambda k: 2.0 * 0.5 ** jnp.asarray(k, float)),
        _schedule_ref(2.0 * 0.5**_K),
    ),
    BlockCase(
        "scale_by_schedule_constant", lambda: gl.scale_by_schedule(3.0), lambda us, p: 3 * us
    ),
    BlockCase("trace", lambda: gl.trace(0.9), lambda us, p: ref.trace(us, 0.9)),
    BlockCase(
        "trace_nesterov",
        lambda: gl.trace(0.7, nesterov=True),
        lambda us, p: ref.trace(us, 0.7, nesterov=True),
    ),
    BlockCase("trace_decay_1", lambda: gl.trace(1.0), lambda us, p: ref.trace(us, 1.0)),
    BlockCase("ema_debiased", lambda: gl.ema(0.8), lambda us, p: ref.ema(us, 0.8)),
    BlockCase(
        "ema_not_debiased",
        lambda: gl.ema(0.8, debias=False),
        lambda us, p: ref.ema(us, 0.8, debias=False),
    ),
    BlockCase(
        "scale_by_adam",
        lambda: gl.scale_by_adam(0.9, 0.999, 1e-8),
        lambda us, p: ref.scale_by_adam(us, 0.9, 0.999, 1e-8),
    ),
    BlockCase(
        "scale_by_adam_eps_root",
        lambda: gl.scale_by_adam(0.5, 0.9, 1e-3, eps_root=1e-2),
        lambda us, p: ref.scale_by_adam(us, 0.5, 0.9, 1e-3, eps_root=1e-2),
    ),
    BlockCase(
        "scale_by_rms",
        lambda: gl.scale_by_rms(0.9, 1e-8),
        lambda us, p: ref.scale_by_rms(us, 0.9, 1e-8),
    ),
    BlockCase(
        "scale_by_rms_centered",
        lambda: gl.scale_by_rms(0.8, 1e-6, centered=True),
        lambda us, p: ref.scale_by_rms(us, 0.8, 1e-6, centered=True),
    ),
    BlockCase(
        "scale_by_rms_eps_in_sqrt",
        lambda: gl.scale_by_rms(0.8, 1e-2, eps_in_sqrt=True),
        lambda us, p: ref.scale_by_rms(us, 0.8, 1e-2, eps_in_sqrt=True),
    ),
    BlockCase(
        "scale_by_rms_initial_scale",
        lambda: gl.scale_by_rms(0.9, 1e-3, initial_scale=2.0),
        lambda us, p: ref.scale_by_rms(us, 0.9, 1e-3, initial_scale=2.0),
    ),
    BlockCase(
        "scale_by_rss",
        lambda: gl.scale_by_rss(0.1, 1e-7),
        lambda us, p: ref.scale_by_rss(us, 0.1, 1e-7),
    ),
    BlockCase(
        "scale_by_rss_zero_start",
        lambda: gl.scale_by_rss(0.0, 1e-3),
        lambda us, p: ref.scale_by_rss(us, 0.0, 1e-3),
    ),
    BlockCase(
        "add_decayed_weights",
        lambda: gl.add_decayed_weights(0.3),
        _each(lambda u, p: ref.add_decayed_weights(u, p, 0.3)),
    ),
    BlockCase(
        "add_decayed_weights_bool_mask",
        lambda: gl.add_decayed_weights(0.3, BOOL_MASK),
        _each(lambda u, p: ref.add_decayed_weights(u, p, 0.3, BOOL_MASK_FLAT)),
    ),
    BlockCase(
        "add_decayed_weights_array_mask",
        lambda: gl.add_decayed_weights(0.3, array_mask()),
        _each(lambda u, p: ref.add_decayed_weights(u, p, 0.3, ARRAY_MASK_FLAT)),
    ),
    BlockCase(
        "add_decayed_weights_callable_mask",
        lambda: gl.add_decayed_weights(0.3, lambda params: {k: k != "b" for k in params}),
        _each(lambda u, p: ref.add_decayed_weights(u, p, 0.3, BOOL_MASK_FLAT)),
    ),
    BlockCase("clip", lambda: gl.clip(1.0), _each(lambda u, p: ref.clip(u, 1.0))),
    BlockCase("clip_zero", lambda: gl.clip(0.0), _each(lambda u, p: ref.clip(u, 0.0))),
    BlockCase(
        "clip_by_global_norm_above",
        lambda: gl.clip_by_global_norm(1.0),
        _each(lambda u, p: ref.clip_by_global_norm([u], 1.0)[0]),
    ),
    BlockCase(
        "clip_by_global_norm_below",
        lambda: gl.clip_by_global_norm(100.0),
        lambda us, p: us,
    ),
    BlockCase("zero_nans", gl.zero_nans, _each(lambda u, p: ref.zero_nans(u))),
    BlockCase(
        "keep_params_nonnegative",
        gl.keep_params_nonnegative,
        _each(lambda u, p: ref.keep_params_nonnegative(u, p)),
    ),
]
