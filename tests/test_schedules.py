"""Specification tests for ``gradlab.schedules``.

Every schedule is checked against a NumPy reference written here from its
formula (for ``cyclic``/``one_cycle``/SGDR: from PyTorch's documented
algorithm, step by step), against Optax where Optax has the same schedule, and
for the contract of API.md §5: arrays of steps, ``jit``/``vmap``, any parameter
traced, float dtype whatever the step dtype, no overflow at ``2**31 - 1``, and
``ValueError`` naming the argument for bad concrete arguments.
"""

from __future__ import annotations

import fractions
import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradlab import schedules as S

# ============================================================================ references
# Scalar functions of one integer step t, float64, written from the formulas.
# None of them shares code or structure with gradlab.


def ref_constant(t, value):
    return value


def ref_step_decay(t, init_value, step_size, gamma=0.1):
    return init_value * gamma ** (t // step_size)


def ref_multistep_decay(t, init_value, milestones, gamma=0.1):
    # torch MultiStepLR: lr = base * gamma ** bisect_right(milestones, epoch)
    passed = sum(1 for m in sorted(np.asarray(milestones).tolist()) if m <= t)
    return init_value * gamma**passed


def ref_piecewise_constant(t, init_value, boundaries_and_scales):
    if isinstance(boundaries_and_scales, dict):
        pairs = boundaries_and_scales.items()
    else:
        pairs = zip(*(np.asarray(x).tolist() for x in boundaries_and_scales), strict=True)
    value = init_value
    for boundary, scale in pairs:
        if t >= boundary:
            value *= scale
    return value


def ref_exponential_decay(
    t, init_value, decay_rate, transition_steps=1, transition_begin=0, staircase=False,
    end_value=None,
):  # fmt: skip
    p = max(t - transition_begin, 0) / transition_steps
    with np.errstate(over="ignore"):  # growth far past the end: inf, then capped
        value = init_value * float(np.power(decay_rate, math.floor(p) if staircase else p))
    if end_value is not None:  # Optax clips at every step, step 0 included
        value = max(value, end_value) if decay_rate < 1 else min(value, end_value)
    return value


def ref_inverse_time_decay(t, init_value, decay_rate, decay_steps=1, staircase=False):
    p = t / decay_steps
    return init_value / (1 + decay_rate * (math.floor(p) if staircase else p))


def ref_polynomial_decay(t, init_value, end_value, decay_steps, power=1.0, transition_begin=0):
    if t <= transition_begin:
        return init_value
    if t >= transition_begin + decay_steps:
        return end_value
    remaining = 1 - (t - transition_begin) / decay_steps
    return (init_value - end_value) * remaining**power + end_value


def ref_linear(t, init_value, end_value, transition_steps, transition_begin=0):
    s = min(max(t - transition_begin, 0), transition_steps)
    return init_value + (end_value - init_value) * s / transition_steps


def ref_cosine_decay(t, init_value, decay_steps, end_value=0.0, exponent=1.0):
    # CosineAnnealingLR: eta_min + (eta_max - eta_min)(1 + cos(pi t / T)) / 2
    t = min(t, decay_steps)
    return (
        end_value
        + (init_value - end_value) * ((1 + math.cos(math.pi * t / decay_steps)) / 2) ** exponent
    )


def ref_cosine_warm_restarts(
    t, init_value, first_period, period_mult=1, end_value=0.0, decay_factor=1.0
):
    # torch CosineAnnealingWarmRestarts.step(): T_cur += 1; if T_cur >= T_i: restart.
    t_cur, t_i, cycle = 0, first_period, 0
    for _ in range(t):
        t_cur += 1
        if t_cur >= t_i:
            t_cur -= t_i
            t_i *= period_mult
            cycle += 1
    peak = init_value * decay_factor**cycle
    return end_value + (peak - end_value) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def ref_warmup_cosine_decay(
    t, init_value, peak_value, warmup_steps, decay_steps, end_value=0.0, exponent=1.0
):
    if t < warmup_steps:
        return init_value + (peak_value - init_value) * t / warmup_steps
    if t >= decay_steps:
        return end_value
    frac = (t - warmup_steps) / (decay_steps - warmup_steps)
    return end_value + (peak_value - end_value) * ((1 + math.cos(math.pi * frac)) / 2) ** exponent


def ref_warmup_linear_decay(t, init_value, peak_value, warmup_steps, decay_steps, end_value=0.0):
    if t < warmup_steps:
        return init_value + (peak_value - init_value) * t / warmup_steps
    if t >= decay_steps:
        return end_value
    return peak_value + (end_value - peak_value) * (t - warmup_steps) / (decay_steps - warmup_steps)


def ref_warmup_stable_decay(
    t, peak_value, warmup_steps, stable_steps, decay_steps, init_value=0.0, end_value=0.0,
    decay="linear",
):  # fmt: skip
    if t < warmup_steps:
        return init_value + (peak_value - init_value) * t / warmup_steps
    decay_start = warmup_steps + stable_steps  # the decay ends at decay_steps (from the start)
    if t <= decay_start:
        return peak_value
    frac = min((t - decay_start) / (decay_steps - decay_start), 1.0)
    shape = {
        "linear": 1 - frac,
        "cosine": (1 + math.cos(math.pi * frac)) / 2,
        "sqrt": 1 - math.sqrt(frac),
    }[decay]
    return end_value + (peak_value - end_value) * shape


def ref_cyclic(t, base_value, max_value, step_size_up, step_size_down=None, mode="triangular",
               gamma=1.0):  # fmt: skip
    # torch CyclicLR.get_lr, with last_epoch = t
    down = step_size_up if step_size_down is None else step_size_down
    total = step_size_up + down
    ratio = step_size_up / total
    cycle = math.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    height = (max_value - base_value) * scale
    if mode == "triangular":
        return base_value + height
    if mode == "triangular2":
        return base_value + height / 2.0 ** (cycle - 1)
    return base_value + height * gamma**t


def _one_cycle_torch(t, total_steps, pct_start, anneal, three_phase, values):
    # torch OneCycleLR.get_lr: phases with *unrounded* end steps, each phase
    # starting where the previous ended; steps past the end hold the last value.
    t = min(t, total_steps - 1)
    if three_phase:
        ends = [pct_start * total_steps - 1, 2 * pct_start * total_steps - 2, total_steps - 1]
    else:
        ends = [pct_start * total_steps - 1, total_steps - 1]
    start = 0.0
    for i, end in enumerate(ends):
        if t <= end or i == len(ends) - 1:
            pct = (t - start) / (end - start)
            a, b = values[i]
            if anneal == "cos":
                return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
            return (b - a) * pct + a
        start = end
    raise AssertionError


def ref_one_cycle(t, total_steps, max_value, pct_start=0.3, anneal="cos", div_factor=25.0,
                  final_div_factor=1e4, three_phase=False):  # fmt: skip
    initial = max_value / div_factor
    low = initial / final_div_factor
    if three_phase:
        values = [(initial, max_value), (max_value, initial), (initial, low)]
    else:
        values = [(initial, max_value), (max_value, low)]
    return _one_cycle_torch(t, total_steps, pct_start, anneal, three_phase, values)


def ref_one_cycle_momentum(t, total_steps, pct_start=0.3, anneal="cos", base_momentum=0.85,
                           max_momentum=0.95, three_phase=False):  # fmt: skip
    lo, hi = base_momentum, max_momentum
    values = [(hi, lo), (lo, hi), (hi, hi)] if three_phase else [(hi, lo), (lo, hi)]
    return _one_cycle_torch(t, total_steps, pct_start, anneal, three_phase, values)


# A join of fixed parts, vmapped over its boundaries.
JOIN_PARTS = (
    (lambda: S.linear(0.0, 1.0, 20), lambda t: ref_linear(t, 0.0, 1.0, 20)),
    (lambda: S.constant(1.0), lambda t: 1.0),
    (lambda: S.cosine_decay(1.0, 50, 0.1), lambda t: ref_cosine_decay(t, 1.0, 50, 0.1)),
)


def make_join(boundaries):
    return S.join([make() for make, _ in JOIN_PARTS], boundaries)


def ref_join(t, boundaries):
    # Optax join_schedules: after boundary b_i, schedule i+1 gets t - b_i.
    i = sum(1 for b in np.asarray(boundaries).tolist() if t >= b)
    offset = 0 if i == 0 else np.asarray(boundaries).tolist()[i - 1]
    return JOIN_PARTS[i][1](t - offset)


def reference(ref: Callable, steps: Any, **kwargs) -> np.ndarray:
    steps = np.asarray(steps)
    flat = [ref(int(t), **kwargs) for t in steps.ravel()]
    return np.asarray(flat, dtype=np.float64).reshape(steps.shape)


# ============================================================================ the case table


@dataclass
class Case:
    """One schedule configuration: ``make(**kw)`` in gradlab, ``ref(t, **kw)`` in NumPy."""

    id: str
    make: Callable
    ref: Callable
    kw: dict
    n_steps: int  # the test range 0..n_steps-1 crosses every phase boundary
    vary: dict = field(default_factory=dict)  # parameter -> values for the traced test
    periodic: bool = False


def case(id, make, ref, n_steps, vary=None, periodic=False, **kw):
    return pytest.param(Case(id, make, ref, kw, n_steps, vary or {}, periodic), id=id)


CASES = [
    case("constant", S.constant, ref_constant, 20, {"value": [0.1, 0.7]}, value=0.3),
    case("step_decay", S.step_decay, ref_step_decay, 100,
         {"init_value": [1.0, 0.2], "step_size": [7, 30], "gamma": [0.1, 0.5]},
         init_value=1.0, step_size=30, gamma=0.1),
    case("multistep_decay", S.multistep_decay, ref_multistep_decay, 100,
         {"init_value": [1.0, 0.3], "milestones": [np.array([10, 25, 60]), np.array([5, 5, 90])],
          "gamma": [0.5, 0.9]},
         init_value=1.0, milestones=[10, 25, 60], gamma=0.5),
    case("multistep_decay-repeated-milestone", S.multistep_decay, ref_multistep_decay, 40,
         init_value=2.0, milestones=(10, 20, 20), gamma=0.5),
    case("multistep_decay-array", S.multistep_decay, ref_multistep_decay, 40,
         init_value=2.0, milestones=np.array([3, 30]), gamma=0.1),
    case("piecewise_constant-dict", S.piecewise_constant, ref_piecewise_constant, 80,
         init_value=1.0, boundaries_and_scales={60: 0.5, 20: 0.1, 40: 2.0}),
    case("piecewise_constant-pair", S.piecewise_constant, ref_piecewise_constant, 80,
         {"init_value": [1.0, 0.5],
          "boundaries_and_scales": [([10, 50], [0.5, 0.1]), ([30, 30], [0.2, 3.0])]},
         init_value=1.0, boundaries_and_scales=([20, 40], [0.1, 0.5])),
    case("exponential_decay", S.exponential_decay, ref_exponential_decay, 100,
         {"init_value": [1.0, 0.5], "decay_rate": [0.9, 0.5], "transition_steps": [3, 10],
          "transition_begin": [0, 15]},
         init_value=1.0, decay_rate=0.95),
    case("exponential_decay-staircase-begin-end", S.exponential_decay, ref_exponential_decay,
         100, {"end_value": [0.3, 0.1], "transition_begin": [5, 12]},
         init_value=1.0, decay_rate=0.8, transition_steps=7, transition_begin=12,
         staircase=True, end_value=0.3),
    case("exponential_decay-growth-capped", S.exponential_decay, ref_exponential_decay, 60,
         {"decay_rate": [1.1, 0.9]}, init_value=0.1, decay_rate=1.1, end_value=0.5),
    case("inverse_time_decay", S.inverse_time_decay, ref_inverse_time_decay, 100,
         {"init_value": [1.0, 0.1], "decay_rate": [0.5, 2.0], "decay_steps": [1, 20]},
         init_value=1.0, decay_rate=0.5, decay_steps=10),
    case("inverse_time_decay-staircase", S.inverse_time_decay, ref_inverse_time_decay, 100,
         init_value=1.0, decay_rate=0.5, decay_steps=10, staircase=True),
    case("polynomial_decay", S.polynomial_decay, ref_polynomial_decay, 120,
         {"init_value": [1.0, 0.2], "end_value": [0.0, 0.5], "decay_steps": [30, 80],
          "power": [2.0, 0.5], "transition_begin": [0, 25]},
         init_value=1.0, end_value=0.1, decay_steps=80, power=2.0, transition_begin=10),
    case("polynomial_decay-torch", S.polynomial_decay, ref_polynomial_decay, 60,
         init_value=0.5, end_value=0.0, decay_steps=40, power=1.0),
    case("linear", S.linear, ref_linear, 60,
         {"init_value": [0.0, 1.0], "end_value": [1.0, 0.25], "transition_steps": [10, 30],
          "transition_begin": [0, 7]},
         init_value=0.1, end_value=1.0, transition_steps=30, transition_begin=5),
    case("cosine_decay", S.cosine_decay, ref_cosine_decay, 130,
         {"init_value": [1.0, 0.3], "decay_steps": [40, 100], "end_value": [0.0, 0.2],
          "exponent": [1.0, 2.0]},
         init_value=1.0, decay_steps=100, end_value=0.1),
    case("cosine_decay-exponent", S.cosine_decay, ref_cosine_decay, 60,
         init_value=1.0, decay_steps=50, exponent=3.0),
    case("cosine_warm_restarts", S.cosine_warm_restarts, ref_cosine_warm_restarts, 100,
         {"init_value": [1.0, 0.5], "first_period": [10, 7], "end_value": [0.0, 0.1],
          "decay_factor": [1.0, 0.5]},
         periodic=True, init_value=1.0, first_period=10, end_value=0.05),
    case("cosine_warm_restarts-mult2", S.cosine_warm_restarts, ref_cosine_warm_restarts, 300,
         {"period_mult": [1, 2, 3], "first_period": [5, 6]},
         periodic=True, init_value=1.0, first_period=5, period_mult=2),
    # float32 log(1 + t/T0 (m-1)) / log(m) lands just below the integer at t = 1, 8, 57, 400
    case("cosine_warm_restarts-log-rounding", S.cosine_warm_restarts, ref_cosine_warm_restarts,
         300, periodic=True, init_value=1.0, first_period=1, period_mult=7),
    case("cosine_warm_restarts-mult3-decay", S.cosine_warm_restarts, ref_cosine_warm_restarts,
         300, periodic=True, init_value=1.0, first_period=3, period_mult=3, end_value=0.1,
         decay_factor=0.7),
    case("warmup_cosine_decay", S.warmup_cosine_decay, ref_warmup_cosine_decay, 140,
         {"init_value": [0.0, 0.2], "peak_value": [1.0, 0.5], "warmup_steps": [0, 1, 20],
          "decay_steps": [60, 120], "end_value": [0.0, 0.1], "exponent": [1.0, 0.5]},
         init_value=0.1, peak_value=1.0, warmup_steps=20, decay_steps=120, end_value=0.05),
    case("warmup_cosine_decay-no-warmup", S.warmup_cosine_decay, ref_warmup_cosine_decay, 60,
         init_value=0.0, peak_value=1.0, warmup_steps=0, decay_steps=50),
    case("warmup_linear_decay", S.warmup_linear_decay, ref_warmup_linear_decay, 140,
         {"init_value": [0.0, 0.2], "peak_value": [1.0, 0.5], "warmup_steps": [0, 20],
          "decay_steps": [60, 120], "end_value": [0.0, 0.1]},
         init_value=0.0, peak_value=1.0, warmup_steps=20, decay_steps=120, end_value=0.1),
    case("warmup_stable_decay", S.warmup_stable_decay, ref_warmup_stable_decay, 140,
         {"peak_value": [1.0, 0.3], "warmup_steps": [0, 10], "stable_steps": [0, 40],
          "decay_steps": [70, 100], "init_value": [0.0, 0.1], "end_value": [0.0, 0.05]},
         peak_value=1.0, warmup_steps=10, stable_steps=40, decay_steps=100),
    case("warmup_stable_decay-cosine", S.warmup_stable_decay, ref_warmup_stable_decay, 100,
         peak_value=1.0, warmup_steps=10, stable_steps=30, decay_steps=80, init_value=0.1,
         end_value=0.01, decay="cosine"),
    case("warmup_stable_decay-sqrt", S.warmup_stable_decay, ref_warmup_stable_decay, 100,
         peak_value=1.0, warmup_steps=5, stable_steps=20, decay_steps=85, decay="sqrt"),
    case("cyclic-triangular", S.cyclic, ref_cyclic, 100,
         {"base_value": [0.1, 0.0], "max_value": [1.0, 2.0], "step_size_up": [7, 3],
          "step_size_down": [5, 11]},
         periodic=True, base_value=0.1, max_value=1.0, step_size_up=7, step_size_down=5),
    case("cyclic-triangular-symmetric", S.cyclic, ref_cyclic, 60, periodic=True,
         base_value=0.1, max_value=1.0, step_size_up=4),
    case("cyclic-triangular2", S.cyclic, ref_cyclic, 100, {"step_size_up": [2, 6]},
         periodic=True, base_value=0.1, max_value=1.0, step_size_up=6, step_size_down=4,
         mode="triangular2"),
    case("cyclic-exp_range", S.cyclic, ref_cyclic, 100, {"gamma": [0.99, 0.9, 1.0]},
         periodic=True, base_value=0.1, max_value=1.0, step_size_up=5, mode="exp_range",
         gamma=0.98),
    case("one_cycle", S.one_cycle, ref_one_cycle, 120,
         {"total_steps": [100, 37], "max_value": [1.0, 0.1], "pct_start": [0.3, 0.25],
          "div_factor": [25.0, 10.0], "final_div_factor": [1e4, 10.0]},
         total_steps=100, max_value=1.0),
    case("one_cycle-linear", S.one_cycle, ref_one_cycle, 60, total_steps=50,
         max_value=2.0, pct_start=0.4, anneal="linear", div_factor=10.0, final_div_factor=100.0),
    case("one_cycle-unrounded-phase-end", S.one_cycle, ref_one_cycle, 12, total_steps=10,
         max_value=1.0, pct_start=0.25),
    case("one_cycle-three-phase", S.one_cycle, ref_one_cycle, 120,
         {"pct_start": [0.3, 0.45], "total_steps": [100, 37]},
         total_steps=100, max_value=1.0, three_phase=True),
    case("one_cycle-three-phase-linear-odd", S.one_cycle, ref_one_cycle, 40, total_steps=37,
         max_value=1.0, pct_start=0.33, anneal="linear", three_phase=True),
    case("one_cycle_momentum", S.one_cycle_momentum, ref_one_cycle_momentum, 120,
         {"total_steps": [100, 37], "pct_start": [0.3, 0.25], "base_momentum": [0.85, 0.8],
          "max_momentum": [0.95, 0.99]},
         total_steps=100),
    case("one_cycle_momentum-three-phase-linear", S.one_cycle_momentum, ref_one_cycle_momentum,
         60, total_steps=50, pct_start=0.25, anneal="linear", three_phase=True),
    case("join", make_join, ref_join, 120,
         {"boundaries": [np.array([20, 40]), np.array([10, 70]), np.array([30, 30])]},
         boundaries=[20, 40]),
]  # fmt: skip

NON_PERIODIC = [c for c in CASES if not c.values[0].periodic]
# The first case of each schedule: enough for the call-contract tests.
ONE_PER_SCHEDULE = list({c.values[0].make: c for c in reversed(CASES)}.values())[::-1]
TRACED = [
    pytest.param(c.values[0], name, id=f"{c.id}-{name}") for c in CASES for name in c.values[0].vary
]


N_STEPS = 300  # one length for every case: eager op compilations are shared


def steps_of(c: Case) -> np.ndarray:
    assert c.n_steps <= N_STEPS
    return np.arange(N_STEPS)


def assert_close(got, want, rtol=2e-5, atol=2e-6):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


# ============================================================================ references


@pytest.mark.parametrize("c", CASES)
def test_matches_numpy_reference_at_every_step(c, run_mode):
    sched = c.make(**c.kw)
    steps = steps_of(c)
    assert_close(run_mode(sched)(steps), reference(c.ref, steps, **c.kw))


def test_step_decay_worked_example_0p1_every_30_epochs():
    # "Reduce by 0.1x every 30 epochs": epochs 0-29 lr0, 30-59 0.1 lr0, 60-89 0.01 lr0.
    lr0 = 0.05
    lr = np.asarray(S.step_decay(lr0, step_size=30, gamma=0.1)(np.arange(90)))
    want = np.repeat([lr0, 0.1 * lr0, 0.01 * lr0], 30)
    assert_close(lr, want, rtol=1e-6, atol=0)


def test_cosine_decay_is_the_cosine_annealing_formula():
    lo, hi, T = 0.01, 0.5, 64
    t = np.arange(T + 1)
    want = lo + (hi - lo) * (1 + np.cos(np.pi * t / T)) / 2
    assert_close(S.cosine_decay(hi, decay_steps=T, end_value=lo)(t), want)


def test_warmup_cosine_decay_hits_peak_at_warmup_and_end_at_decay_steps():
    s = S.warmup_cosine_decay(0.0, 3e-4, warmup_steps=100, decay_steps=1000, end_value=3e-5)
    assert_close(s(np.array([0, 100, 1000, 5000])), [0.0, 3e-4, 3e-5, 3e-5], rtol=1e-6)


def test_one_cycle_and_momentum_move_in_opposite_directions():
    lr = np.asarray(S.one_cycle(100, 1.0)(np.arange(100)))
    mom = np.asarray(S.one_cycle_momentum(100)(np.arange(100)))
    assert np.argmax(lr) == np.argmin(mom) == 29
    assert np.all(np.sign(np.diff(lr)) == -np.sign(np.diff(mom)))
    assert mom[0] == pytest.approx(0.95) and mom[-1] == pytest.approx(0.95)


# Same schedule, same arguments, in Optax.
OPTAX_CASES = [
    (lambda: S.constant(0.3), lambda: optax.constant_schedule(0.3), 10),
    (lambda: S.cosine_decay(1.0, 100, end_value=0.1),
     lambda: optax.cosine_decay_schedule(1.0, 100, alpha=0.1), 130),
    (lambda: S.cosine_decay(2.0, 50, end_value=0.0, exponent=2.0),
     lambda: optax.cosine_decay_schedule(2.0, 50, exponent=2.0), 60),
    (lambda: S.warmup_cosine_decay(0.1, 1.0, 20, 120, end_value=0.05),
     lambda: optax.warmup_cosine_decay_schedule(0.1, 1.0, 20, 120, end_value=0.05), 150),
    (lambda: S.exponential_decay(1.0, 0.9, 10, 5, staircase=True, end_value=0.3),
     lambda: optax.exponential_decay(1.0, 10, 0.9, 5, staircase=True, end_value=0.3), 150),
    (lambda: S.exponential_decay(1.0, 0.97, 3, 7),
     lambda: optax.exponential_decay(1.0, 3, 0.97, 7), 100),
    (lambda: S.polynomial_decay(1.0, 0.1, 50, power=2.0, transition_begin=10),
     lambda: optax.polynomial_schedule(1.0, 0.1, 2.0, 50, 10), 80),
    (lambda: S.linear(0.2, 1.0, 30, 5), lambda: optax.linear_schedule(0.2, 1.0, 30, 5), 50),
    (lambda: S.piecewise_constant(1.0, {30: 0.1, 60: 0.5}),
     lambda: optax.piecewise_constant_schedule(1.0, {30: 0.1, 60: 0.5}), 90),
    (lambda: S.join([S.linear(0.0, 1.0, 10), S.cosine_decay(1.0, 40)], [10]),
     lambda: optax.join_schedules(
         [optax.linear_schedule(0.0, 1.0, 10), optax.cosine_decay_schedule(1.0, 40)], [10]),
     70),
    (lambda: S.cosine_warm_restarts(1.0, 10, period_mult=2, end_value=0.1, decay_factor=0.5),
     lambda: optax.sgdr_schedule(
         [dict(init_value=p, peak_value=p, warmup_steps=0, decay_steps=d, end_value=0.1)
          for p, d in [(1.0, 10), (0.5, 20), (0.25, 40)]]),
     70),
]  # fmt: skip


@pytest.mark.parametrize("ours, theirs, n", OPTAX_CASES)
def test_matches_optax(ours, theirs, n):
    # Evaluate on one common shape (faster); compare the first n steps, where
    # the two are defined alike (Optax's sgdr stops restarting after its list).
    steps = np.arange(N_STEPS)
    with jax.numpy_dtype_promotion("standard"):  # Optax mixes dtypes
        want = jax.jit(theirs())(jnp.asarray(steps))
    want = np.broadcast_to(np.asarray(want, np.float64), steps.shape)  # constant: a float
    assert_close(np.asarray(ours()(steps))[:n], want[:n])


# ============================================================================ the call contract


@pytest.mark.parametrize("c", ONE_PER_SCHEDULE)
def test_array_of_steps_equals_elementwise_calls(c):
    sched = c.make(**c.kw)
    steps = steps_of(c)[:: max(1, c.n_steps // 6)][:6]
    whole = np.asarray(sched(steps))
    one_by_one = [np.asarray(sched(int(k))) for k in steps]  # Python ints
    zero_d = [np.asarray(sched(jnp.asarray(k))) for k in steps]  # 0-d arrays
    assert all(v.shape == () for v in one_by_one + zero_d)
    # scalar and vectorised XLA kernels may differ in the last bit
    assert_close(whole, np.array(one_by_one), rtol=1e-6, atol=1e-7)
    assert_close(whole, np.array(zero_d), rtol=1e-6, atol=1e-7)
    grid = np.asarray(sched(steps.reshape(1, -1, 1)))
    assert grid.shape == (1, len(steps), 1)
    assert_close(grid.ravel(), whole, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("c", ONE_PER_SCHEDULE)
def test_vmap_over_steps_matches_array_call(c):
    sched = c.make(**c.kw)
    steps = jnp.asarray(steps_of(c))
    assert_close(jax.vmap(sched)(steps), np.asarray(sched(steps)), rtol=1e-6, atol=0)


@pytest.mark.parametrize("c, name", TRACED)
def test_every_parameter_can_be_traced(c, name):
    """jit(vmap) over one parameter == the NumPy reference for each value separately."""
    values = c.vary[name]
    steps = steps_of(c)
    batched = jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)), *values)
    got = jax.jit(jax.vmap(lambda v: c.make(**{**c.kw, name: v})(steps)))(batched)
    want = np.stack([reference(c.ref, steps, **{**c.kw, name: v}) for v in values])
    assert_close(got, want)


STATIC_OPTIONS = {"staircase", "mode", "anneal", "three_phase", "decay", "schedules"}


@pytest.mark.parametrize("name", S.__all__)
def test_traced_table_covers_every_numeric_parameter(name):
    fn = getattr(S, name)
    makes = {fn, make_join} if fn is S.join else {fn}
    numeric = set(inspect.signature(fn).parameters) - STATIC_OPTIONS
    covered = {p for c in CASES if c.values[0].make in makes for p in c.values[0].vary}
    assert numeric <= covered, f"never traced: {sorted(numeric - covered)}"


def test_join_accepts_parts_returning_python_floats_and_narrow_steps():
    s = S.join([lambda step: 0.5, optax.constant_schedule(0.25)], [200])
    got = s(np.array([0, 199, 200, 255], np.uint8))
    assert got.shape == (4,) and got.dtype == jnp.float32
    np.testing.assert_array_equal(got, [0.5, 0.5, 0.25, 0.25])
    assert_close(S.join([S.constant(1.0), S.constant(0.5)], [300])(np.uint8(255)), 1.0)


def test_new_parameter_values_do_not_recompile():
    traces = []

    @jax.jit
    def lrs(peak, warmup):
        traces.append(1)
        return S.warmup_cosine_decay(0.0, peak, warmup, 100)(jnp.arange(100))

    a = lrs(jnp.float32(1.0), jnp.int32(10))
    b = lrs(jnp.float32(0.5), jnp.int32(30))
    assert len(traces) == 1
    assert_close(a, reference(ref_warmup_cosine_decay, np.arange(100), init_value=0.0,
                              peak_value=1.0, warmup_steps=10, decay_steps=100))  # fmt: skip
    assert_close(b, reference(ref_warmup_cosine_decay, np.arange(100), init_value=0.0,
                              peak_value=0.5, warmup_steps=30, decay_steps=100))  # fmt: skip


STEP_DTYPES = [np.int32, np.int64, np.uint32, np.uint8]


@pytest.mark.parametrize("c", ONE_PER_SCHEDULE)
def test_values_are_float32_for_any_integer_step_dtype(c):
    sched = c.make(**c.kw)
    assert sched(3).dtype == jnp.float32
    for dtype in STEP_DTYPES:
        got = sched(np.arange(4, dtype=dtype))
        assert got.dtype == jnp.float32, dtype
        assert_close(got, reference(c.ref, np.arange(4), **c.kw))


@pytest.mark.parametrize("c", ONE_PER_SCHEDULE)
def test_a_boolean_step_counts_as_0_or_1(c):
    """``join`` raised "sub does not accept dtype bool" (hunt46); the others took it."""
    sched = c.make(**c.kw)
    for flag in (False, True):
        assert_close(sched(flag), reference(c.ref, np.array([int(flag)]), **c.kw)[0])
        assert_close(sched(np.bool_(flag)), sched(int(flag)), rtol=0, atol=0)


@pytest.mark.parametrize("c", CASES[::4])
def test_values_are_float64_under_x64(c, x64):
    steps = steps_of(c)
    got = c.make(**c.kw)(np.asarray(steps, np.int64))
    assert got.dtype == jnp.float64
    assert_close(got, reference(c.ref, steps, **c.kw), rtol=1e-12, atol=1e-14)


BIG = np.int32(2**31 - 1)


@pytest.mark.parametrize("c", CASES)
def test_huge_steps_are_finite(c):
    sched = c.make(**c.kw)
    assert np.all(np.isfinite(jax.jit(sched)(np.array([0, BIG], np.int32))))
    assert np.all(np.isfinite(sched(np.array([BIG, 2**32 - 1], np.uint32))))


@pytest.mark.parametrize("c", NON_PERIODIC)
def test_step_2_31_minus_1_gives_the_final_value(c):
    sched = c.make(**c.kw)
    want = c.ref(int(BIG), **c.kw)
    assert_close(sched(BIG), want, rtol=1e-5, atol=1e-7)
    assert_close(jax.jit(sched)(BIG), want, rtol=1e-5, atol=1e-7)


# Step counts and boundaries are any non-negative integer a user can write:
# beyond int32 they used to raise OverflowError (jnp.asarray of a Python int).
# Each case: (gradlab schedule, its Optax twin or None, a closed form).
HUGE = 10**10
HUGE_STEP_CASES = [
    pytest.param(lambda: S.cosine_decay(1000.0, HUGE),
                 lambda: optax.cosine_decay_schedule(1000.0, HUGE),
                 lambda t: 500.0 * (1 + np.cos(np.pi * min(t, HUGE) / HUGE)), id="cosine_decay"),
    pytest.param(lambda: S.linear(1.0, 0.0, HUGE), None,  # Optax overflows here
                 lambda t: 1.0 - min(t, HUGE) / HUGE, id="linear"),
    pytest.param(lambda: S.step_decay(1.0, HUGE, 0.5), None,
                 lambda t: 0.5 ** (t // HUGE), id="step_decay"),
    pytest.param(lambda: S.multistep_decay(1.0, [HUGE, 3 * HUGE], 0.1), None,
                 lambda t: 0.1 ** ((t >= HUGE) + (t >= 3 * HUGE)), id="multistep_decay"),
    # (Optax's piecewise_constant_schedule overflows on this boundary itself.)
    pytest.param(lambda: S.piecewise_constant(1.0, {HUGE: 0.5}), None,
                 lambda t: 0.5 if t >= HUGE else 1.0, id="piecewise_constant"),
    pytest.param(lambda: S.warmup_cosine_decay(0.0, 1.0, HUGE, 4 * HUGE), None,
                 lambda t: t / HUGE if t < HUGE
                 else 0.5 * (1 + np.cos(np.pi * (min(t, 4 * HUGE) - HUGE) / (3 * HUGE))),
                 id="warmup_cosine_decay"),
    pytest.param(lambda: S.join([S.constant(1.0), S.constant(2.0)], [HUGE]), None,
                 lambda t: 2.0 if t >= HUGE else 1.0, id="join"),
]  # fmt: skip


@pytest.mark.parametrize("make, make_optax, closed_form", HUGE_STEP_CASES)
def test_step_counts_and_steps_beyond_int32_are_accepted(make, make_optax, closed_form):
    sched = make()
    # (float32 steps are exact to 2**24 only: HUGE - 1 would round to HUGE.)
    for t in (0, 10**9, HUGE, 2 * HUGE, 10**12):
        assert_close(sched(t), closed_form(t), rtol=1e-5, atol=1e-6)
    if make_optax is not None:  # Optax itself: cosine_decay(1000, 1e10)(1e9) = 975.53
        with jax.numpy_dtype_promotion("standard"):
            assert_close(sched(10**9), make_optax()(10**9), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "boundaries", [[2**31], [10**10], [10**12], [2**24 + 1, 2**31], [2**31 - 1]], ids=str
)
def test_join_switches_at_boundaries_beyond_int32_exactly(boundaries):
    """A boundary beyond int32 was wrapped by jnp.asarray (2**31 -> -2**31, x64
    off): every step took the last schedule. Integer steps are compared exactly,
    steps beyond int32 (Python ints) too, on the host."""
    values = [0.1**i for i in range(1, len(boundaries) + 2)]
    s = S.join([S.constant(v) for v in values], boundaries)
    steps = np.array([0, 2**24, 2**24 + 1, 1_500_000_000, 2**31 - 2, 2**31 - 1])
    want = np.asarray(values)[np.searchsorted(boundaries, steps, side="right")]
    for got in (s(steps.astype(np.int32)), jax.jit(s)(steps.astype(np.int32)),
                s(steps.astype(np.uint32))):  # fmt: skip
        assert_close(got, want, rtol=1e-6, atol=0)
    for step in (2**31, 3 * 10**12):
        want = values[np.searchsorted(boundaries, step, side="right")]
        assert_close(s(step), want, rtol=1e-6, atol=0)


def test_join_places_concrete_steps_beyond_int32_exactly():
    """hunt86: a Python int past int32 was compared with the boundary in float32 (a
    phase began up to 128 steps early, its count rounded), and an int64 step below
    -2**31 wrapped to a positive int32 (a later phase's value) or raised OverflowError.
    Reference: the closed form, in Python integers."""
    b = 2**31 + 100
    s = S.join([S.constant(1.0), S.linear(0.0, 1.0, 10)], [b])

    def want(t):
        return 1.0 if t < b else min(t - b, 10) / 10

    steps = [-(2**32) + 10, -1, 0, 2**31 + 1, b - 1, b, b + 1, b + 3, b + 20, 2**40]
    for t in steps:
        assert_close(s(t), want(t), rtol=1e-6, atol=0)
    assert_close(s(np.array(steps, np.int64)), [want(t) for t in steps], rtol=1e-6, atol=0)
    # a foreign part gets a count beyond int32 as a float, never a silently wrapped int
    with jax.numpy_dtype_promotion("standard"):
        late = S.join([optax.constant_schedule(1.0), optax.linear_schedule(1.0, 0.0, 10**9)], [5])
        assert_close(late(np.array([3, 2**32 + 5], np.int64)), [1.0, 0.0], rtol=1e-6, atol=0)


def test_negative_steps_count_as_step_zero():
    s = S.warmup_cosine_decay(0.1, 1.0, 10, 100)
    assert_close(s(np.array([-5, -1])), [0.1, 0.1], rtol=1e-7)


# ============================================================================ bad arguments


def bad(call, name, id):
    return pytest.param(call, name, id=id)


INVALID = [
    bad(lambda: S.constant(-0.1), "value", "constant-negative"),
    bad(lambda: S.constant(float("nan")), "value", "constant-nan"),
    bad(lambda: S.step_decay(-1.0, 30), "init_value", "step_decay-init"),
    bad(lambda: S.step_decay(1.0, 0), "step_size", "step_decay-size0"),
    bad(lambda: S.step_decay(1.0, -3), "step_size", "step_decay-size-neg"),
    bad(lambda: S.step_decay(1.0, 2.5), "step_size", "step_decay-size-frac"),
    bad(lambda: S.step_decay(1.0, 30, gamma=0.0), "gamma", "step_decay-gamma0"),
    bad(lambda: S.step_decay(1.0, 30, gamma=-0.1), "gamma", "step_decay-gamma-neg"),
    bad(lambda: S.multistep_decay(1.0, [10.5]), "milestones", "multistep-fractional"),
    bad(lambda: S.multistep_decay(1.0, [-1, 5]), "milestones", "multistep-negative"),
    bad(lambda: S.multistep_decay(1.0, [[1, 2]]), "milestones", "multistep-2d"),
    bad(lambda: S.multistep_decay(1.0, [10], gamma=0), "gamma", "multistep-gamma"),
    bad(lambda: S.piecewise_constant(1.0, {10: -0.1}), "boundaries_and_scales", "pw-scale"),
    bad(lambda: S.piecewise_constant(1.0, {-5: 0.1}), "boundaries_and_scales", "pw-negative"),
    bad(lambda: S.piecewise_constant(1.0, ([20, 10], [0.1, 0.2])), "boundaries_and_scales",
        "pw-unsorted"),
    bad(lambda: S.piecewise_constant(1.0, ([10, 20], [0.1])), "boundaries_and_scales",
        "pw-lengths"),
    bad(lambda: S.piecewise_constant(-1.0, {10: 0.1}), "init_value", "pw-init"),
    bad(lambda: S.exponential_decay(1.0, 0.0), "decay_rate", "exp-rate0"),
    bad(lambda: S.exponential_decay(1.0, 0.9, 0), "transition_steps", "exp-steps0"),
    bad(lambda: S.exponential_decay(1.0, 0.9, 1, -1), "transition_begin", "exp-begin"),
    bad(lambda: S.exponential_decay(1.0, 0.9, end_value=-1.0), "end_value", "exp-end"),
    bad(lambda: S.inverse_time_decay(1.0, -0.5), "decay_rate", "inv-rate"),
    bad(lambda: S.inverse_time_decay(1.0, 0.5, 0), "decay_steps", "inv-steps"),
    bad(lambda: S.polynomial_decay(1.0, 0.0, 0), "decay_steps", "poly-steps"),
    bad(lambda: S.polynomial_decay(1.0, 0.0, 10, power=0.0), "power", "poly-power0"),
    bad(lambda: S.polynomial_decay(1.0, 0.0, 10, power=-1.0), "power", "poly-power-neg"),
    bad(lambda: S.polynomial_decay(1.0, 0.0, 10, transition_begin=-2), "transition_begin",
        "poly-begin"),
    bad(lambda: S.polynomial_decay(1.0, -0.5, 10), "end_value", "poly-end"),
    bad(lambda: S.linear(0.0, 1.0, 0), "transition_steps", "linear-steps0"),
    bad(lambda: S.linear(0.0, 1.0, -5), "transition_steps", "linear-steps-neg"),
    bad(lambda: S.linear(0.0, 1.0, 5, -1), "transition_begin", "linear-begin"),
    bad(lambda: S.cosine_decay(1.0, 0), "decay_steps", "cos-steps"),
    bad(lambda: S.cosine_decay(1.0, 10, exponent=0.0), "exponent", "cos-exponent"),
    bad(lambda: S.cosine_decay(1.0, 10, end_value=-0.1), "end_value", "cos-end"),
    bad(lambda: S.cosine_warm_restarts(1.0, 0), "first_period", "sgdr-period"),
    bad(lambda: S.cosine_warm_restarts(1.0, 10, period_mult=0.5), "period_mult", "sgdr-mult"),
    bad(lambda: S.cosine_warm_restarts(1.0, 10, decay_factor=0.0), "decay_factor",
        "sgdr-decay"),
    bad(lambda: S.warmup_cosine_decay(0.0, 1.0, -1, 100), "warmup_steps", "wcd-warmup"),
    bad(lambda: S.warmup_cosine_decay(0.0, 1.0, 10, 0), "decay_steps", "wcd-decay0"),
    bad(lambda: S.warmup_cosine_decay(0.0, 1.0, 10, 10), "decay_steps", "wcd-decay-eq"),
    bad(lambda: S.warmup_cosine_decay(0.0, -1.0, 10, 100), "peak_value", "wcd-peak"),
    bad(lambda: S.warmup_cosine_decay(0.0, 1.0, 10, 100, exponent=-1.0), "exponent",
        "wcd-exponent"),
    bad(lambda: S.warmup_linear_decay(0.0, 1.0, 50, 20), "decay_steps", "wld-decay-lt"),
    bad(lambda: S.warmup_linear_decay(-0.1, 1.0, 5, 20), "init_value", "wld-init"),
    bad(lambda: S.warmup_stable_decay(1.0, -1, 10, 10), "warmup_steps", "wsd-warmup"),
    bad(lambda: S.warmup_stable_decay(1.0, 1, -10, 10), "stable_steps", "wsd-stable"),
    bad(lambda: S.warmup_stable_decay(1.0, 1, 10, 0), "decay_steps", "wsd-decay"),
    bad(lambda: S.warmup_stable_decay(1.0, 1, 10, 20, decay="exp"), "decay", "wsd-kind"),
    bad(lambda: S.warmup_stable_decay(1.0, 10, 30, 20), "decay_steps", "wsd-decay-from-start"),
    bad(lambda: S.cyclic(0.1, 1.0, 0), "step_size_up", "cyclic-up"),
    bad(lambda: S.cyclic(0.1, 1.0, 5, 0), "step_size_down", "cyclic-down"),
    bad(lambda: S.cyclic(0.1, 1.0, 5, mode="triangle"), "mode", "cyclic-mode"),
    bad(lambda: S.cyclic(0.1, 1.0, 5, gamma=0.0), "gamma", "cyclic-gamma0"),
    bad(lambda: S.cyclic(0.1, 1.0, 5, gamma=1.5), "gamma", "cyclic-gamma-big"),
    bad(lambda: S.cyclic(-0.1, 1.0, 5), "base_value", "cyclic-base"),
    bad(lambda: S.one_cycle(0, 1.0), "total_steps", "oc-total"),
    bad(lambda: S.one_cycle(100, 1.0, pct_start=0.0), "pct_start", "oc-pct0"),
    bad(lambda: S.one_cycle(100, 1.0, pct_start=1.0), "pct_start", "oc-pct1"),
    bad(lambda: S.one_cycle(100, 1.0, pct_start=-0.2), "pct_start", "oc-pct-neg"),
    bad(lambda: S.one_cycle(100, 1.0, anneal="cosine"), "anneal", "oc-anneal"),
    bad(lambda: S.one_cycle(100, 1.0, div_factor=0.0), "div_factor", "oc-div"),
    bad(lambda: S.one_cycle(100, 1.0, final_div_factor=-1.0), "final_div_factor", "oc-final"),
    bad(lambda: S.one_cycle(100, -1.0), "max_value", "oc-max"),
    bad(lambda: S.one_cycle_momentum(100, base_momentum=1.5), "base_momentum", "ocm-base"),
    bad(lambda: S.one_cycle_momentum(100, max_momentum=-0.1), "max_momentum", "ocm-max"),
    bad(lambda: S.one_cycle_momentum(100, pct_start=1.5), "pct_start", "ocm-pct"),
    bad(lambda: S.one_cycle_momentum(100, anneal="lin"), "anneal", "ocm-anneal"),
    bad(lambda: S.join([S.constant(1.0), S.constant(0.5)], []), "boundaries", "join-short"),
    bad(lambda: S.join([S.constant(1.0), S.constant(0.5)], [1, 2]), "boundaries", "join-long"),
    bad(lambda: S.join([S.constant(1.0)] * 3, [20, 10]), "boundaries", "join-unsorted"),
    bad(lambda: S.join([S.constant(1.0)] * 2, [-3]), "boundaries", "join-negative"),
    bad(lambda: S.join([], []), "schedules", "join-empty"),
    # gamma is unused in the default mode: a list there was silently ignored
    bad(lambda: S.cyclic(0.1, 1.0, 5, gamma=[0.1, 0.2]), "gamma", "cyclic-gamma-list-unused"),
]  # fmt: skip


@pytest.mark.parametrize("call, name", INVALID)
def test_invalid_argument_raises_value_error_naming_it(call, name):
    with pytest.raises(ValueError, match=re.escape(name)):
        call()


NOT_NUMBERS = [
    pytest.param(lambda: S.constant("0.1"), id="constant-str"),
    pytest.param(lambda: S.constant(None), id="constant-none"),
    pytest.param(lambda: S.step_decay(1.0, True), id="step_decay-bool"),
    pytest.param(lambda: S.exponential_decay("1", 0.9), id="exp-str"),
    pytest.param(lambda: S.multistep_decay(1.0, "30"), id="multistep-str"),
    pytest.param(lambda: S.piecewise_constant(1.0, 5), id="pw-number"),
    pytest.param(lambda: S.piecewise_constant(1.0, ([1, 2], [0.1, 0.2], [3])), id="pw-triple"),
    pytest.param(lambda: S.one_cycle(100, "1.0"), id="oc-str"),
    pytest.param(lambda: S.join([S.constant(1.0), 0.5], [10]), id="join-not-callable"),
]


@pytest.mark.parametrize("call", NOT_NUMBERS)
def test_non_numbers_raise_type_error(call):
    with pytest.raises(TypeError):
        call()


SEQUENCES = {"milestones", "boundaries_and_scales", "boundaries"}


@pytest.mark.parametrize("c, name", [p for p in TRACED if p.values[1] not in SEQUENCES])
def test_non_scalar_parameters_raise_value_error_naming_them(c, name):
    """A list or array where one number is expected was accepted and broke later
    (a broadcasting error deep in JAX on an array of steps); a sweep vmaps over
    the parameter instead (test_every_parameter_can_be_traced)."""
    v = c.vary[name][0]
    for value in ([v, v], np.full((2, 2), v), np.array([v])):
        shape = re.escape(str(np.shape(value)))
        with pytest.raises(ValueError, match=rf"^{name} must be a scalar.*shape {shape}"):
            c.make(**{**c.kw, name: value})


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: S.multistep_decay(0.1, [True]), "milestones"),
        (lambda: S.multistep_decay(0.1, (5, True)), "milestones"),
        (lambda: S.multistep_decay(0.1, np.array([False, True])), "milestones"),
        (lambda: S.piecewise_constant(0.1, {True: 0.5}), "boundaries_and_scales"),
        (lambda: S.join([S.constant(0.1), S.constant(0.01)], [True]), "boundaries"),
        (lambda: S.join([S.constant(0.1)] * 2, jnp.array([True])), "boundaries"),
        (lambda: jax.jit(lambda b: S.join([S.constant(0.1)] * 2, b)(0))(jnp.array([True])),
         "boundaries"),
    ],
    ids=["milestones", "milestones-mixed", "milestones-array", "piecewise-key", "join",
         "join-array", "join-traced"],
)  # fmt: skip
def test_boolean_boundaries_raise_type_error_naming_them(call, name):
    """``[True]`` was taken as step 1."""
    with pytest.raises(TypeError, match=rf"^{name}.*boolean"):
        call()


def test_traced_arguments_are_not_validated():
    # Concrete, a negative decay_steps is refused; traced, its value is unknown
    # when the schedule is built, so it must not be inspected (nor raise), and
    # a valid traced value gives exactly the concrete schedule's numbers.
    with pytest.raises(ValueError, match="decay_steps"):
        S.cosine_decay(1.0, -4)
    traced = jax.jit(lambda n: S.cosine_decay(1.0, n)(3))
    assert np.isfinite(traced(jnp.int32(-4)))
    assert traced(jnp.int32(10)) == S.cosine_decay(1.0, 10)(3)


@pytest.mark.parametrize("boundary", [16_777_217, 30_000_001, 2_000_000_001, 10**10])
def test_a_boundary_past_2_24_steps_drops_exactly_at_its_step(boundary):
    """Integer steps and boundaries are compared as integers: as float32 the
    drop at 30,000,001 fired two steps early, at 2,000,000,001 65 (hunt40).
    The reference is NumPy's integer comparison (Optax's is exact too); a
    boundary beyond int32 is never reached by an int32 step, even saturated."""
    offsets = np.array([-70, -65, -3, -2, -1, 0, 1])
    int32_steps = np.clip(boundary + offsets, 0, 2**31 - 1).astype(np.int32)
    python_steps = [int(boundary + o) for o in offsets]  # may exceed int32
    schedules = {
        "piecewise dict": S.piecewise_constant(1.0, {boundary: 0.1}),
        "piecewise pair": S.piecewise_constant(1.0, ([boundary], [0.1])),
        "multistep": S.multistep_decay(1.0, [boundary], 0.1),
    }
    for name, s in schedules.items():
        want = np.where(int32_steps.astype(np.int64) >= boundary, 0.1, 1.0)
        np.testing.assert_allclose(
            jax.jit(s)(jnp.asarray(int32_steps)), want, rtol=1e-6, err_msg=name
        )
        eager = [float(s(jnp.int32(k))) for k in int32_steps]
        np.testing.assert_allclose(eager, want, rtol=1e-6, err_msg=name)
        exact = [float(s(k)) for k in python_steps]
        np.testing.assert_allclose(exact, [0.1 if k >= boundary else 1.0 for k in python_steps],
                                   rtol=1e-6, err_msg=name)  # fmt: skip
    if boundary < 2**31:  # traced integer boundaries (a sweep over where the drop is)
        at = jax.jit(lambda b, t: S.piecewise_constant(1.0, (b, jnp.array([0.1])))(t))
        got = [float(at(jnp.array([boundary], jnp.int32), jnp.int32(k))) for k in int32_steps]
        np.testing.assert_allclose(got, np.where(int32_steps >= boundary, 0.1, 1.0), rtol=1e-6)


def _periodic_reference(name: str, t: int) -> float:
    """The docstring formulas in float64, on exact integer cycle positions."""
    period = 1_000_000
    c, p = divmod(t, period)
    if name == "step_decay":
        return 0.5**c
    if name == "exponential staircase":
        c = max(t - 10, 0) // period
        return 0.5**c
    if name == "inverse_time staircase":
        return 1.0 / (1.0 + c)
    if name == "warm restarts":
        return 0.5 + 0.5 * 0.5 * (1.0 + math.cos(math.pi * p / period))
    if name == "cyclic":
        c, p = divmod(t, 2 * period)  # up = down = period
        x = p / period if p <= period else (2 * period - p) / period
        return x
    raise KeyError(name)


def _tri(t: int, up: int) -> float:
    """The triangle of ``cyclic(0, 1, step_size_up=up)`` at step ``t``, in float32's
    step (``t`` rounded to float32 first: a float schedule beyond int32)."""
    t = float(np.float32(t))
    p = t - math.floor(t / (2 * up)) * 2 * up
    return p / up if p <= up else (2 * up - p) / up


def test_staircases_and_cycles_past_2_24_steps_turn_at_their_step():
    """A staircase step or a restart at step 20,000,000 (period 10**6) came one step
    early: in float32, 19,999,999 is 20,000,000 (hunt45). Integer steps and periods
    are divided as integers (a counter's int32, a Python int, traced or not)."""
    schedules = {
        "step_decay": S.step_decay(1.0, step_size=1_000_000, gamma=0.5),
        "exponential staircase": S.exponential_decay(
            1.0, 0.5, transition_steps=1_000_000, transition_begin=10, staircase=True
        ),
        "inverse_time staircase": S.inverse_time_decay(
            1.0, 1.0, decay_steps=1_000_000, staircase=True
        ),
        "warm restarts": S.cosine_warm_restarts(1.0, first_period=1_000_000, end_value=0.5),
        "cyclic": S.cyclic(0.0, 1.0, step_size_up=1_000_000),
    }
    steps = [19_999_999, 20_000_000, 20_000_009, 20_000_010, 20_000_011, 2**31 - 1]
    for name, s in schedules.items():
        want = [_periodic_reference(name, t) for t in steps]
        for how, got in (
            ("python int", [float(s(t)) for t in steps]),
            ("int32", [float(s(jnp.int32(t))) for t in steps]),
            ("jit, vector", np.asarray(jax.jit(s)(jnp.asarray(steps, jnp.int32)))),
        ):
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7, err_msg=f"{name}, {how}")
    # a period beyond int32 is never reached by an int32 step (a saturated counter
    # included); Python steps beyond int32 are divided in int64
    s = S.step_decay(1.0, step_size=10**10, gamma=0.5)
    assert float(jax.jit(s)(jnp.int32(2**31 - 1))) == 1.0
    assert float(s(3 * 10**10 + 5)) == 0.125
    # a Python step beyond int32 with an array period (a vmapped sweep over it) is
    # not saturated to int32 (review8): as floats, as before
    big = 3 * 10**9
    got = jax.vmap(lambda n: S.cyclic(0.0, 1.0, step_size_up=n)(big))(jnp.array([30, 1000]))
    np.testing.assert_allclose(got, [_tri(big, 30), _tri(big, 1000)], rtol=1e-4, atol=1e-6)
    # float steps and periods still work (as floats)
    assert float(S.step_decay(1.0, step_size=30.0, gamma=0.5)(jnp.float32(60.0))) == 0.25


def test_unsigned_and_huge_steps_still_drop_where_they_should():
    """The integer comparison is for signed integers within int64 (review6):
    a uint32 step past 2**31 met traced int32 milestones as a negative int32
    (1.0 instead of 0.125), and a Python step of 2**63 overflowed int64."""
    s = S.multistep_decay(1.0, [5, 10, 20], 0.5)
    at = jax.jit(lambda m, t: S.multistep_decay(1.0, m, 0.5)(t))
    np.testing.assert_allclose(at(jnp.array([5, 10, 20], jnp.int32), jnp.uint32(3e9)), 0.125)
    np.testing.assert_allclose(at(jnp.array([3_000_000_000], jnp.uint32), jnp.int32(0)), 1.0)
    for huge in (2**63, 10**30, np.uint64(2**63 + 1)):
        np.testing.assert_allclose(s(huge), 0.125)
        np.testing.assert_allclose(S.piecewise_constant(1.0, {7: 0.5})(huge), 0.5)


def test_exp_range_stays_accurate_over_a_million_steps():
    """``gamma ** t`` with gamma rounded to float32 first was off by 1.3e-3
    relative at step 1.01e5 and 1.4e-2 at 10**6 (hunt40). Reference: torch
    CyclicLR's formula in float64 (``gamma ** t`` in Python floats)."""
    base, top, up, gamma = 1e-4, 1e-2, 2000, 0.99999
    s = S.cyclic(base, top, up, mode="exp_range", gamma=gamma)
    steps = np.array([101_000, 301_000, 1_001_000], np.int32)  # peaks of cycles

    def want(t):
        c = math.floor(t / (2 * up))
        p = t - 2 * up * c
        x = p / up if p <= up else (2 * up - p) / up
        return base + (top - base) * x * gamma**t

    expected = [want(int(t)) for t in steps]
    np.testing.assert_allclose(jax.jit(s)(jnp.asarray(steps)), expected, rtol=1e-5)
    np.testing.assert_allclose([float(s(int(t))) for t in steps], expected, rtol=1e-5)


@pytest.mark.parametrize("decay", ["linear", "sqrt", "warmup_linear_decay"])
def test_linear_and_sqrt_decays_keep_their_relative_accuracy_to_the_last_step(decay):
    """``1 - pct`` near pct = 1 cancelled: over a 2e6-step run the last values
    (~k/n at k steps from the end) were 1.7e-2 .. 7e-2 off, relative (hunt40).
    Reference: the formulas in float64."""
    D, W, STABLE = 2_000_000, 1_000, 1_000_000
    steps = np.arange(D - 12, D + 1, dtype=np.int32)
    t = steps.astype(np.float64)
    if decay == "warmup_linear_decay":
        s, want = S.warmup_linear_decay(0.0, 1.0, W, D), (D - t) / (D - W)
    else:
        s = S.warmup_stable_decay(1.0, W, STABLE, D, decay=decay)
        pct = (t - W - STABLE) / (D - W - STABLE)
        want = 1 - pct if decay == "linear" else 1 - np.sqrt(pct)
    for got in (jax.jit(jax.vmap(s))(jnp.asarray(steps)), [s(int(k)) for k in steps[-3:]]):
        got = np.asarray(got, np.float64)
        np.testing.assert_allclose(got, want[-len(got) :], rtol=1e-6, atol=0)


def test_piecewise_constant_dict_form_is_sorted_by_boundary():
    a = S.piecewise_constant(1.0, {60: 0.5, 20: 0.1})(np.arange(80))
    b = S.piecewise_constant(1.0, ([20, 60], [0.1, 0.5]))(np.arange(80))
    np.testing.assert_array_equal(a, b)


# ============================================================================ properties

INTS = st.integers
FLOATS = st.floats


def values_in(v, lo, hi, tol=1e-6):
    v = np.asarray(v, np.float64)
    assert np.all(np.isfinite(v))
    assert np.all(v >= lo - tol * max(1.0, abs(lo))), (v.min(), lo)
    assert np.all(v <= hi + tol * max(1.0, abs(hi))), (v.max(), hi)


def non_increasing(v, tol=1e-6):
    d = np.diff(np.asarray(v, np.float64))
    assert np.all(d <= tol), d.max()


def non_decreasing(v, tol=1e-6):
    non_increasing(-np.asarray(v, np.float64), tol)


STEPS = np.arange(300)
lr = FLOATS(1e-4, 10.0)
frac = FLOATS(0.01, 0.99)


@given(
    init=lr,
    size=INTS(1, 50),
    gamma=FLOATS(0.01, 1.0),
    milestones=st.lists(INTS(0, 300), max_size=4),
)
def test_step_decays_are_non_increasing_and_bounded(init, size, gamma, milestones):
    for s in (
        S.step_decay(init, size, gamma),
        S.multistep_decay(init, sorted(milestones), gamma),
        S.piecewise_constant(init, {m: gamma for m in milestones}),
    ):
        v = s(STEPS)
        non_increasing(v)
        values_in(v, 0.0, init)


@given(init=lr, rate=FLOATS(0.5, 1.0), n=INTS(1, 100), begin=INTS(0, 100), stair=st.booleans())
def test_exponential_and_inverse_time_decays_are_non_increasing(init, rate, n, begin, stair):
    for s in (
        S.exponential_decay(init, rate, n, begin, stair),
        S.inverse_time_decay(init, 1 - rate, n, stair),
    ):
        v = s(STEPS)
        non_increasing(v)
        values_in(v, 0.0, init)


@given(a=lr, b=lr, n=INTS(1, 400), power=FLOATS(0.1, 5.0), begin=INTS(0, 100))
def test_polynomial_and_linear_are_monotone_between_their_ends(a, b, n, power, begin):
    for s in (S.polynomial_decay(a, b, n, power, begin), S.linear(a, b, n, begin)):
        v = s(STEPS)
        values_in(v, min(a, b), max(a, b))
        (non_increasing if a >= b else non_decreasing)(v, 1e-6 * max(a, b))


@given(init=lr, end_frac=FLOATS(0, 1), n=INTS(1, 400), exponent=FLOATS(0.2, 4.0))
def test_cosine_decay_is_non_increasing_from_init_to_end(init, end_frac, n, exponent):
    end = init * end_frac
    v = S.cosine_decay(init, n, end, exponent)(STEPS)
    values_in(v, end, init)
    non_increasing(v, 1e-6 * init)


@given(
    init=lr,
    peak=lr,
    end_frac=FLOATS(0, 1),
    warmup=INTS(0, 100),
    decay=INTS(1, 250),
    stable=INTS(0, 100),
    which=st.sampled_from(["cosine", "linear", "wsd-linear", "wsd-cosine", "wsd-sqrt"]),
)
def test_warmups_rise_to_the_peak_then_decay_to_the_end(
    init, peak, end_frac, warmup, decay, stable, which
):
    init, end = min(init, peak), peak * end_frac
    if which == "cosine":
        s, top = S.warmup_cosine_decay(init, peak, warmup, warmup + decay, end), warmup
    elif which == "linear":
        s, top = S.warmup_linear_decay(init, peak, warmup, warmup + decay, end), warmup
    else:
        kind = which.split("-")[1]
        s = S.warmup_stable_decay(peak, warmup, stable, warmup + stable + decay, init, end, kind)
        top = warmup + stable
    v = np.asarray(s(STEPS))
    values_in(v, min(init, end), peak)
    tol = 1e-6 * peak
    non_decreasing(v[: warmup + 1], tol)
    non_increasing(v[top:], tol)
    if warmup < len(v):
        assert v[warmup] == pytest.approx(peak, rel=1e-5)


@given(
    base=lr,
    height=FLOATS(0.0, 10.0),
    up=INTS(1, 40),
    down=INTS(1, 40),
    mode=st.sampled_from(["triangular", "triangular2", "exp_range"]),
    # float32 values: a gamma just below 1 that rounds to 1 is refused (hunt54 drew
    # 0.9999999850988388)
    gamma=FLOATS(0.9, 1.0).map(lambda g: float(np.float32(g))),
)
def test_cyclic_stays_between_base_and_max_and_triangular_is_periodic(
    base, height, up, down, mode, gamma
):
    top = base + height
    v = np.asarray(S.cyclic(base, top, up, down, mode, gamma)(STEPS))
    values_in(v, base, top)
    period = up + down
    if mode == "triangular":
        np.testing.assert_allclose(v[period:], v[:-period], rtol=1e-5, atol=1e-6 * top)
    else:  # the amplitude only shrinks
        peaks = v[up::period] - base
        non_increasing(peaks, 1e-5 * top)


@given(init=lr, end_frac=FLOATS(0, 1), period=INTS(1, 60), decay=FLOATS(0.1, 1.0))
def test_cosine_warm_restarts_is_periodic_with_unit_period_mult(init, end_frac, period, decay):
    end = init * end_frac
    v = np.asarray(S.cosine_warm_restarts(init, period, 1, end)(STEPS))
    values_in(v, end, init)
    np.testing.assert_allclose(v[period:], v[:-period], rtol=1e-5, atol=1e-6 * init)
    w = np.asarray(S.cosine_warm_restarts(init, period, 2, end, decay)(STEPS))
    values_in(w, min(end, init * decay**9), max(init, end))
    assert w[0] == pytest.approx(init, rel=1e-6)


@given(
    total=INTS(2, 300),
    peak=lr,
    pct=FLOATS(0.05, 0.95),
    anneal=st.sampled_from(["cos", "linear"]),
    three=st.booleans(),
    div=FLOATS(1.0, 100.0),
    final_div=FLOATS(1.0, 1e4),
)
def test_one_cycle_stays_below_max_and_momentum_in_its_band(
    total, peak, pct, anneal, three, div, final_div
):
    v = S.one_cycle(total, peak, pct, anneal, div, final_div, three)(STEPS)
    values_in(v, peak / div / final_div, peak)
    m = S.one_cycle_momentum(total, pct, anneal, 0.8, 0.9, three)(STEPS)
    values_in(m, 0.8, 0.9)
    if not three:  # up then down
        k = int(np.argmax(np.asarray(v)))
        non_decreasing(v[: k + 1], 1e-6 * peak)
        non_increasing(v[k:], 1e-6 * peak)


@given(
    a=lr, b=lr, c=lr, n1=INTS(1, 100), n2=INTS(1, 100), gap=INTS(0, 100),
)  # fmt: skip
def test_join_is_continuous_where_its_parts_meet(a, b, c, n1, n2, gap):
    # linear a->b over n1, then cosine b->c: parts meet at equal values (b).
    first, second = S.linear(a, b, n1), S.cosine_decay(b, n2, c)
    boundary = n1 + gap
    v = np.asarray(S.join([first, second], [boundary])(STEPS))
    # Continuous: the value at the boundary is the limit of the first part.
    # (Parts are evaluated on the full range, one shape for every example.)
    assert_close(v[: boundary + 1], np.asarray(first(STEPS))[: boundary + 1])
    assert_close(v[boundary:], np.asarray(second(STEPS))[: len(STEPS) - boundary])


# ============================================================================ optimizers


def _optimizers():
    import gradlab as gl

    names = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "nadam", "amsgrad", "adamax",
             "radam", "adadelta", "lamb", "lars", "lion"]  # fmt: skip
    return [(n, getattr(gl, n)) for n in names]  # (a missing one fails collection)


@pytest.mark.parametrize("name, make_opt", _optimizers())
def test_every_optimizer_accepts_every_schedule_as_learning_rate(name, make_opt):
    import gradlab as gl

    first_of_each = {c.values[0].make: c.values[0] for c in reversed(CASES)}
    built = list(first_of_each.values())
    params = {"w": jnp.array([1.0, -2.0])}

    @jax.jit
    def run_all():
        finals = []
        for c in built:
            opt = make_opt(c.make(**c.kw))
            state = opt.init(params)
            p = params
            for _ in range(3):
                updates, state = opt.update(jax.tree.map(lambda x: 2 * x, p), state, p)
                p = gl.apply_updates(p, updates)
            finals.append(p["w"])
        return jnp.stack(finals)

    finals = np.asarray(run_all())
    assert np.all(np.isfinite(finals))
    moved = np.any(finals != np.array([1.0, -2.0]), axis=1)
    assert moved.all(), [c.id for c, m in zip(built, moved, strict=True) if not m]


@pytest.mark.parametrize("momentum", [None, 0.9])
@pytest.mark.parametrize("c", [c for c in CASES if c.values[0].id in (
    "step_decay", "warmup_cosine_decay", "one_cycle", "cyclic-triangular2", "join")])  # fmt: skip
def test_sgd_with_a_schedule_matches_a_numpy_loop(c, momentum):
    import gradlab as gl

    n = 60
    lrs = reference(c.ref, np.arange(n), **c.kw) * 0.1
    target = np.array([3.0, -1.0])

    def grad(p):  # of 0.5 |p - target|^2
        return p - target

    p, v = np.zeros(2), np.zeros(2)
    for k in range(n):  # torch.optim.SGD with dampening 0
        g = grad(p)
        v = g if momentum is None else momentum * v + g
        p = p - lrs[k] * v

    sched = c.make(**c.kw)
    opt = gl.sgd(lambda step: 0.1 * sched(step), momentum=momentum)

    def body(carry, _):
        q, state = carry
        updates, state = opt.update(q - jnp.asarray(target, jnp.float32), state, q)
        return (gl.apply_updates(q, updates), state), None

    q0 = jnp.zeros(2)
    (q, _), _ = jax.jit(lambda q0: jax.lax.scan(body, (q0, opt.init(q0)), None, length=n))(q0)
    assert_close(q, p, rtol=1e-5, atol=1e-6)


# ============================================================================ hygiene


def test_public_names_are_exactly_the_contract():
    assert sorted(S.__all__) == sorted(
        ["constant", "step_decay", "multistep_decay", "piecewise_constant",
         "exponential_decay", "inverse_time_decay", "polynomial_decay", "linear",
         "cosine_decay", "cosine_warm_restarts", "warmup_cosine_decay", "warmup_linear_decay",
         "cyclic", "one_cycle", "one_cycle_momentum", "warmup_stable_decay", "join"]
    )  # fmt: skip
    for name in S.__all__:
        doc = getattr(S, name).__doc__
        assert doc and "Example" in doc and ">>>" in doc, name


def test_docstring_examples_run():
    import doctest

    import gradlab.schedules._cosine
    import gradlab.schedules._cyclic
    import gradlab.schedules._decay
    import gradlab.schedules._join
    import gradlab.schedules._warmup

    mods = [S, gradlab.schedules._decay, gradlab.schedules._cosine, gradlab.schedules._cyclic,
            gradlab.schedules._warmup, gradlab.schedules._join]  # fmt: skip
    for mod in mods:
        result = doctest.testmod(mod)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


# --------------------------------------------------------------------------
# Exact ends and stairs under jit (XLA divides by a constant n as x * (1/n):
# 41 / 41 = 0.99999994, and 1 - x * (1/n) is fused into an FMA below 0)
# --------------------------------------------------------------------------

AWKWARD_N = [10, 41, 47, 55, 1000]  # n where x * (1/n) misses n / n = 1 in float32

# (schedule of n, step where its final value starts, that final value)
ENDS = {
    "polynomial_sqrt": (lambda n: S.polynomial_decay(1.0, 0.0, n, power=0.5), lambda n: n, 0.0),
    "polynomial_1.5": (lambda n: S.polynomial_decay(1.0, 0.1, n, power=1.5), lambda n: n, 0.1),
    "linear": (lambda n: S.linear(1.0, 0.0, n), lambda n: n, 0.0),
    "cosine": (lambda n: S.cosine_decay(1.0, n, end_value=0.1), lambda n: n, 0.1),
    "warmup_linear": (lambda n: S.warmup_linear_decay(0.0, 1.0, 5, n + 5), lambda n: n + 5, 0.0),
    "warmup_cosine": (
        lambda n: S.warmup_cosine_decay(0.0, 1.0, 5, n + 5, end_value=0.0),
        lambda n: n + 5,
        0.0,
    ),
    "wsd_linear": (lambda n: S.warmup_stable_decay(1.0, 3, 4, n + 7), lambda n: n + 7, 0.0),
    "wsd_sqrt": (
        lambda n: S.warmup_stable_decay(1.0, 3, 4, n + 7, decay="sqrt"),
        lambda n: n + 7,
        0.0,
    ),
    # torch OneCycleLR ends at max / div_factor / final_div_factor, here 4e-11 (> 0)
    "one_cycle_linear": (
        lambda n: S.one_cycle(n, 1.0, anneal="linear", final_div_factor=1e9),
        lambda n: n - 1,
        np.float32(1.0) / np.float32(25.0) / np.float32(1e9),
    ),
}


@pytest.mark.parametrize("n", AWKWARD_N)
@pytest.mark.parametrize("name", list(ENDS))
def test_jitted_schedule_reaches_its_final_value_exactly_and_stays_there(name, n):
    make, end_step, final = ENDS[name]
    k = end_step(n)
    values = np.asarray(jax.jit(make(n))(jnp.asarray([k - 1, k, k + 1, k + 7, 10 * k])))
    assert np.all(np.isfinite(values)), values  # (1 - s/n) ** 0.5 was NaN past the end
    assert values[0] > final  # the step before is still decaying
    np.testing.assert_array_equal(values[1:], np.full(4, final, np.float32))


STAIRS = {
    # torch StepLR / Keras staircase: the value changes exactly at multiples of n
    "step_decay": (lambda n: S.step_decay(1.0, n, 0.5), lambda j: 0.5**j),
    "exponential_staircase": (
        lambda n: S.exponential_decay(1.0, 0.5, n, staircase=True),
        lambda j: 0.5**j,
    ),
    "inverse_time_staircase": (
        lambda n: S.inverse_time_decay(1.0, 1.0, n, staircase=True),
        lambda j: 1.0 / (1.0 + j),
    ),
}


@pytest.mark.parametrize("n", AWKWARD_N)
@pytest.mark.parametrize("name", list(STAIRS))
def test_jitted_staircase_steps_down_exactly_at_multiples(name, n):
    make, value = STAIRS[name]
    k = np.arange(0, 5 * n)
    got = np.asarray(jax.jit(make(n))(jnp.asarray(k)))
    np.testing.assert_allclose(got, value(k // n), rtol=1e-6)


def test_jitted_cyclic_peaks_exactly_at_max_and_never_above():
    for n in AWKWARD_N:
        values = np.asarray(jax.jit(S.cyclic(0.0, 1.0, n))(jnp.arange(0, 4 * n + 1)))
        assert values.max() == 1.0 and values[n] == 1.0 and values[3 * n] == 1.0
        assert values.min() == 0.0


@pytest.mark.parametrize(
    ("first", "mult"), [(7, 4), (10, 4), (50, 4), (50, 7), (3, 2), (100, 1.01), (1000, 1.01)]
)
def test_jitted_warm_restarts_restart_exactly_at_each_cycle_start(first, mult):
    # Cycle i starts at first * (mult**i - 1) / (mult - 1), an integer for an
    # integer mult (torch CosineAnnealingWarmRestarts); under jit that division
    # by a constant came out a hair above the integer and the restart a step late.
    # With mult = 1.01 (float32: a hair below) cycle 2 starts at 201 (resp. 2010):
    # mult**2 - 1 = 1.0201 - 1 in float32 cancelled, and it came a step late.
    starts, length = [fractions.Fraction(0)], fractions.Fraction(first)
    m = fractions.Fraction(float(np.float32(mult)))
    while starts[-1] + length < 20_000:
        starts.append(starts[-1] + length)
        length *= m
    first_steps = jnp.asarray([math.ceil(x) for x in starts[1:]])
    s = jax.jit(S.cosine_warm_restarts(1.0, first_period=first, period_mult=mult))
    at, before = np.asarray(s(first_steps)), np.asarray(s(first_steps - 1))
    if float(mult).is_integer():
        np.testing.assert_array_equal(at, 1.0)
        # far out too: m**i - 1 stays exact for an integer m (expm1 of i log m was
        # not: a step late at 1310710 for 10, 2), while first * mult**i is exact
        exact = [i for i in range(1, 40) if first * mult**i < 2**24]
        late = jnp.asarray([first * (mult**i - 1) // (mult - 1) for i in exact])
        np.testing.assert_array_equal(np.asarray(s(late)), 1.0)
        assert np.all(np.asarray(s(late - 1)) < 0.5)
    assert np.all(at > 0.999), at
    assert np.all(before < 0.5), before


@pytest.mark.parametrize(
    "milestones", [[20, 3, 10], (10, 3, 10, 20), {20, 3, 10}], ids=["unsorted", "repeat", "set"]
)
def test_multistep_decay_takes_milestones_in_any_order_as_torch_does(milestones):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.5)
    expected = []
    for _ in range(25):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    s = S.multistep_decay(1.0, milestones, gamma=0.5)
    np.testing.assert_allclose(np.asarray(s(np.arange(25))), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: S.polynomial_decay(1.0, 0.0, n, power=0.5),
        lambda n: S.cosine_decay(1.0, n, exponent=0.5),
        lambda n: S.warmup_cosine_decay(0.0, 1.0, 5.0, n, exponent=0.5),
    ],
    ids=["polynomial", "cosine", "warmup_cosine"],
)
def test_forward_mode_derivative_is_zero_once_the_decay_has_ended(make):
    """pow(0, p < 1) has an infinite base derivative: jax.jvp in decay_steps was
    NaN past the end (jax.grad and finite differences give 0)."""
    for step in (25.0, 40.0):
        _, tangent = jax.jvp(lambda n, s=step: make(n)(s), (20.0,), (1.0,))
        assert float(tangent) == 0.0
    _, tangent = jax.jvp(lambda n: make(n)(10.0), (20.0,), (1.0,))  # mid-decay: nonzero, finite
    assert np.isfinite(float(tangent)) and float(tangent) != 0.0


def test_warm_restarts_period_mult_hypergradient_at_one_and_real_period_mult_starts(x64):
    """d lr / d period_mult at period_mult = 1 equals the one-sided finite
    difference (the m = 1 branch gave 0); with a real period_mult the restart
    comes at the first step at or after T_0 (m^i - 1)/(m - 1) (a relative snap
    tolerance moved the start 74808.28 to step 74808)."""
    for step in (8, 10, 12):
        f = lambda m, k=step: S.cosine_warm_restarts(1.0, 7, m)(k)  # noqa: E731
        h = 1e-7
        fd = (float(f(1.0 + h)) - float(f(1.0))) / h
        np.testing.assert_allclose(float(jax.grad(f)(1.0)), fd, rtol=1e-4)
    # past restarts snapped to integer steps too (round's derivative is 0)
    for first, m, step in ((3, 2.0, 10), (3, 2.0, 50), (4, 1.5, 20)):
        f = lambda m, k=step, t0=first: S.cosine_warm_restarts(1.0, t0, m)(k)  # noqa: E731
        fd = (float(f(m + 1e-7)) - float(f(m - 1e-7))) / 2e-7
        np.testing.assert_allclose(float(jax.grad(f)(m)), fd, rtol=1e-5)
    starts = 5 * (1.5 ** np.arange(0, 40) - 1) / 0.5  # cycle i starts at starts[i]
    starts = starts[starts < 2**31]

    def reference(k):  # the closed form, in float64
        i = np.searchsorted(starts, k, side="right") - 1
        return (1 + np.cos(np.pi * (k - starts[i]) / (5 * 1.5**i))) / 2

    steps = np.concatenate([np.ceil(starts[1:]) - 1, np.ceil(starts[1:])]).astype(np.int64)
    got = np.asarray(S.cosine_warm_restarts(1.0, 5, 1.5)(jnp.asarray(steps)))
    np.testing.assert_allclose(got, [reference(k) for k in steps], atol=1e-9)


def test_join_with_boundaries_narrower_than_the_steps(x64):
    """int32 boundaries with int64 steps (x64), empty boundaries, uint32 steps:
    clipping the boundaries to the step dtype's range overflowed (NumPy 2)."""
    a, c = S.constant(1.0), S.constant(0.25)
    np.testing.assert_array_equal(S.join([a], [])(jnp.arange(3)), [1.0, 1.0, 1.0])
    got = S.join([a, c], np.array([2], np.int32))(jnp.arange(4))
    np.testing.assert_array_equal(got, [1.0, 1.0, 0.25, 0.25])
    got = S.join([a, c], np.array([2], np.int32))(jnp.arange(4, dtype=jnp.uint32))
    np.testing.assert_array_equal(got, [1.0, 1.0, 0.25, 0.25])


def test_warm_restarts_with_a_real_period_mult_restart_at_the_right_step():
    """Around each of the first six restarts, against the closed form computed
    exactly (Decimal): a start that is an integer in exact arithmetic restarts
    there (T_0 (m-1)/(m-1) rounded a hair above T_0 under jit: a step late),
    and a start just above an integer restarts a step later."""
    from decimal import Decimal

    for t0, m in [(10, 1.1), (10, 2.05), (100, 1.15), (100, 2.1), (100, 2.95), (3, 1.3)]:
        starts, a, length = [], Decimal(0), Decimal(t0)
        for _ in range(6):
            starts.append(a)
            a, length = a + length, length * Decimal(str(m))
        starts.append(a)

        def exact(k, starts=starts, t0=t0, m=m):
            i = max(j for j, s in enumerate(starts) if s <= k)
            frac = (Decimal(k) - starts[i]) / (Decimal(t0) * Decimal(str(m)) ** i)
            return 0.5 * (1 + math.cos(math.pi * float(frac)))

        steps = sorted({math.ceil(s) + d for s in starts[1:] for d in (-1, 0, 1)})
        s = S.cosine_warm_restarts(1.0, t0, period_mult=m)
        for got in (s(jnp.asarray(steps)), jax.jit(s)(jnp.asarray(steps))):
            np.testing.assert_allclose(got, [exact(k) for k in steps], atol=1e-3)


def test_step_arrays_need_no_implicit_rank_promotion_and_bfloat16_scales_are_numbers():
    # t[..., None] >= milestones compared an (n, 1) with a (k,): refused under
    # jax_numpy_rank_promotion="raise", which users set to catch broadcasting bugs
    steps = jnp.arange(6)
    with jax.numpy_rank_promotion("raise"):
        np.testing.assert_allclose(
            S.multistep_decay(0.1, [2, 4], 0.5)(steps), 0.1 * 0.5 ** np.array([0, 0, 1, 1, 2, 2])
        )
        np.testing.assert_allclose(
            S.piecewise_constant(0.1, {2: 0.5, 4: 0.5})(steps),
            0.1 * 0.5 ** np.array([0, 0, 1, 1, 2, 2]),
        )
    bf = lambda v: jnp.asarray(v, jnp.bfloat16)  # noqa: E731 - NumPy cannot stack these
    s = S.piecewise_constant(0.1, {1: bf(0.5), 3: bf(0.1)})
    np.testing.assert_allclose(s(4), 0.1 * float(bf(0.5)) * float(bf(0.1)), rtol=1e-6)


def test_long_schedules_keep_float32_precision_to_their_last_steps():
    # In float32, 1 - t/n and 1 + cos(pi t/n) cancel near the end of a long decay
    # (linear 4.6% off at the last of 2e6 steps, the cosine at end_value ~10
    # steps early), and a float32 decay rate 0.99999 made exponential_decay 1.35%
    # off at step 1e6: against float64 NumPy (torch's LinearLR, PolynomialLR,
    # CosineAnnealingLR, ExponentialLR).
    n = 2_000_000
    t = np.array([n - 10, n - 1])
    cases = [
        (S.linear(1.0, 0.0, n), t, 1 - t / n),
        (S.polynomial_decay(1.0, 0.0, n, power=2.0), t, (1 - t / n) ** 2),
        (S.cosine_decay(1.0, n), t, 0.5 * (1 + np.cos(np.pi * t / n))),
        (
            S.warmup_cosine_decay(0.0, 1.0, 10, n),
            t,
            0.5 * (1 + np.cos(np.pi * (t - 10) / (n - 10))),
        ),
        (S.exponential_decay(1.0, 0.99999), np.array([10**6, n]), 0.99999 ** np.array([10**6, n])),
    ]
    for sched, steps, want in cases:
        for how in (sched, jax.jit(sched)):
            np.testing.assert_allclose(how(jnp.asarray(steps)), want, rtol=1e-4)


def test_a_rate_that_float32_holds_decays_exactly_and_a_cosine_keeps_its_derivative():
    # The float64-log correction of exponential_decay is 0 for a rate float32
    # holds: 0.5 ** k stays exact (as torch's StepLR), per step and staircase.
    k = np.arange(0, 60)
    staircase = S.exponential_decay(1.0, 0.5, 10, staircase=True)
    for sched, want in ((S.exponential_decay(1.0, 0.5), 0.5**k), (staircase, 0.5 ** (k // 10))):
        for how in (sched, jax.jit(sched)):
            np.testing.assert_array_equal(how(jnp.asarray(k)), want.astype(np.float32))
    # Near the start the cosine is cos(pi t / 2n)**2 (its sine form's derivative
    # cancels there): d/dt against the closed form -pi/(2n) sin(pi t/n).
    n = 1000
    t = jnp.asarray([0.5, 5.0, 20.0, 500.0, 990.0])
    got = jax.vmap(jax.grad(S.cosine_decay(1.0, n)))(t)
    want = -np.pi / (2 * n) * np.sin(np.pi * np.asarray(t, np.float64) / n)
    np.testing.assert_allclose(got, want, rtol=2e-6)


def test_a_decay_past_float32s_range_has_zero_not_nan_derivatives():
    # r**t underflowed to 0 while the float64-log correction exp(t log(rate/r))
    # overflowed: a where on their product still differentiated 0 * inf (review16)
    for sched in (S.exponential_decay(1.0, 0.9), S.exponential_decay(1.0, 0.9, end_value=0.01)):
        assert float(jax.grad(sched)(1e10)) == 0.0
    grad = jax.grad(lambda n: S.exponential_decay(1.0, 0.9, transition_steps=n)(1e10))(1.0)
    assert float(grad) == 0.0


def test_huge_steps_stay_finite_in_warm_restarts_and_join():
    """hunt77: cosine_warm_restarts(period_mult=1) gave NaN at 1e20 (inf * 0 in the
    m = 1 branch); join raised OverflowError for a Python int of 2**64 or more."""
    restarts = S.cosine_warm_restarts(1.0, 7, period_mult=1, end_value=0.1)
    for step in (1e19, 1e20, 10**30):
        assert np.isfinite(float(restarts(step))), step
    joined = S.join([S.constant(1.0), S.constant(0.5)], boundaries=[10])
    assert float(joined(2**64)) == 0.5
    assert float(joined(10**30)) == 0.5


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_keeps_its_relative_precision_in_the_last_steps(anneal):
    """The last steps of a 2e6-step one-cycle, against torch's formula in float64,
    to float32 precision. ``1 - pct`` and ``1 + cos(pi pct)`` cancel there: the
    cosine sat on its floor for the last ~20 steps (5e-4 relative off before) and
    the linear one was 1e-3 off (hunt77)."""
    total, peak = 2_000_000, 1.0
    steps = np.arange(total - 40, total)
    lr = jax.jit(jax.vmap(S.one_cycle(total, peak, anneal=anneal)))(jnp.asarray(steps))
    floor = peak / 25 / 1e4
    pct = (steps - (0.3 * total - 1)) / (0.7 * total)  # torch: phase 2 from 0.3 T - 1 to T - 1
    shape = 0.5 * (1 + np.cos(np.pi * pct)) if anneal == "cos" else 1 - pct
    np.testing.assert_allclose(lr, floor + (peak - floor) * shape, rtol=1e-6)


@pytest.mark.parametrize(
    "total, pct, three_phase",
    [(10, 0.1, False), (20, 0.05, False), (2, 0.5, False), (4, 0.25, True)],
)
def test_one_cycle_with_a_first_phase_of_length_zero_starts_at_its_initial_value(
    total, pct, three_phase
):
    """``pct_start * total_steps == 1``: the first phase has length 0 (torch divides
    by zero). Step 0 is the initial value ``max / div_factor`` -- momentum's
    ``max_momentum`` -- for the linear anneal as for the cosine one; the linear one
    computed ``start * rest + end * pct`` with both 0 there and returned 0."""
    for anneal in ("linear", "cos"):
        lr = S.one_cycle(total, 1.0, pct_start=pct, anneal=anneal, three_phase=three_phase)
        assert float(lr(0)) == pytest.approx(1.0 / 25)
        m = S.one_cycle_momentum(total, pct_start=pct, anneal=anneal, three_phase=three_phase)
        assert float(m(0)) == pytest.approx(0.95)


def test_integer_step_counts_under_x64_and_strict_promotion(x64):
    """Under jax_enable_x64 a Python int period is int64 and meets an optimizer's
    int32 step counter; the suite's "strict" promotion raised TypePromotionError
    at construction (hunt81). Reference: the closed forms in plain Python."""
    import gradlab as gl

    cases = {
        "step_decay": (S.step_decay(0.1, 2), lambda k: 0.1 * 0.1 ** (k // 2)),
        "cyclic": (S.cyclic(0.0, 1.0, 2), lambda k: 1 - abs(k % 4 - 2) / 2),
        "cosine_warm_restarts": (
            S.cosine_warm_restarts(1.0, 2),
            lambda k: 0.5 * (1 + math.cos(math.pi * (k % 2) / 2)),
        ),
        "exponential_decay staircase": (
            S.exponential_decay(1.0, 0.5, 2, staircase=True),
            lambda k: 0.5 ** (k // 2),
        ),
        "inverse_time_decay staircase": (
            S.inverse_time_decay(1.0, 0.5, 2, staircase=True),
            lambda k: 1 / (1 + 0.5 * (k // 2)),
        ),
    }
    params = jnp.zeros((), jnp.float32)
    for name, (schedule, formula) in cases.items():
        tx = gl.sgd(schedule)  # constructing it evaluated the schedule at an int32 step
        state = tx.init(params)
        for k in range(5):
            u, state = tx.update(jnp.ones((), jnp.float32), state, params)
            np.testing.assert_allclose(-float(u), formula(k), rtol=1e-6, err_msg=f"{name}, {k}")
