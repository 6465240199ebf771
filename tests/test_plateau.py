"""reduce_on_plateau against torch.optim.lr_scheduler.ReduceLROnPlateau.

The scale after each ``update(..., value=v)`` must equal torch's learning rate
(base 1.0) after ``scheduler.step(v)``, on scripted loss sequences.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from combinator_helpers import OPTAX_PROMOTION

import gradlab as gl

PARAMS = {"w": jnp.zeros(2)}
GRADS = {"w": jnp.ones(2)}


def _loss_curve(seed, n=40):
    """A noisy decreasing loss with two plateaus, as float32 values."""
    rng = np.random.default_rng(seed)
    trend = np.concatenate(
        [
            np.linspace(2.0, 1.0, n // 3),
            np.full(n // 3, 1.0),
            np.linspace(1.0, 0.5, n - 2 * (n // 3)),
        ]
    )
    return (trend + rng.normal(0, 0.02, n)).astype(np.float32)


# (mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, accumulation_size)
SETTINGS = [
    ("min", 0.5, 2, 1e-4, "rel", 0, 0.0, 1),
    ("min", 0.3, 1, 0.05, "rel", 2, 0.05, 1),
    ("min", 0.5, 0, 0.02, "abs", 1, 0.0, 1),
    ("min", 0.1, 3, 0.0, "rel", 0, 0.0, 1),
    ("max", 0.5, 2, 0.01, "rel", 0, 0.0, 1),
    ("max", 0.7, 1, 0.03, "abs", 3, 0.2, 1),
    ("min", 0.5, 1, 1e-3, "rel", 1, 0.0, 3),
]


def torch_lrs(values, mode, factor, patience, threshold, threshold_mode, cooldown, min_lr):
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=mode, factor=factor, patience=patience, threshold=threshold,
        threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr,
    )  # fmt: skip
    lrs = []
    for v in values:
        sched.step(float(v))
        lrs.append(opt.param_groups[0]["lr"])
    return np.asarray(lrs)


@functools.cache
def _scan_scales(mode):
    """``(hyperparameters, values) -> scales``: one compiled lax.scan per mode,
    the numeric hyperparameters traced (no recompilation between settings)."""

    @jax.jit
    def scales(factor, patience, rtol, atol, cooldown, min_scale, accumulation_size, values):
        tx = gl.reduce_on_plateau(
            factor, patience, rtol, atol, cooldown, min_scale, accumulation_size, mode
        )

        def body(state, v):
            _, state = tx.update(GRADS, state, PARAMS, value=v)
            return state, state.scale

        return jax.lax.scan(body, tx.init(PARAMS), values)[1]

    return scales


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(map(str, s)))
def test_scale_follows_torch_reduce_lr_on_plateau(setting):
    mode = setting[0]
    values = _loss_curve(seed=len(str(setting)))
    if mode == "max":
        values = 3.0 - values
    expected = _expected_and_check(setting, values)
    assert expected[-1] < 1.0  # the sequence does reduce


@pytest.mark.parametrize(
    ("setting", "where_inf"),
    [
        (("min", 0.5, 1, 1e-4, "rel", 0, 2.0, 1), None),  # min_lr above lr: never raised
        (("max", 0.5, 0, 1e-4, "rel", 0, 0.0, 2), 6),  # a window [inf, v]: its mean is inf
        (("min", 0.5, 0, 1e-4, "rel", 0, 0.0, 2), 7),  # [v, inf] in min mode: no improvement
    ],
    ids=["min_scale-above-1", "inf-in-window-max", "inf-in-window-min"],
)
def test_scale_follows_torch_at_the_edges(setting, where_inf):
    values = _loss_curve(seed=3)
    if setting[0] == "max":
        values = 3.0 - values
    if where_inf is not None:
        values[where_inf] = np.inf
    _expected_and_check(setting, values)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_rtol_one_and_negative_values_follow_torch(mode):
    """rtol = 1: torch's first comparison is with inf * 0 = NaN in min mode
    (nothing ever improves) and with -inf * 2 in max mode; gradlab decides
    the same without forming the inf product (see the debug_infs test)."""
    values = _loss_curve(seed=5) - 1.5  # crosses zero: the margins change sign
    if mode == "max":
        values = -values
    _expected_and_check((mode, 0.5, 1, 1.0, "rel", 0, 0.0, 1), values, eager=True)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_no_false_alarm_under_debug_infs_on_finite_values(mode):
    """The first best is +-inf; the threshold best * (1 -+ rtol) made an inf no
    input holds, and jax.debug_infs stopped every first step (Optax's
    reduce_on_plateau has no alarm there)."""
    tx = gl.reduce_on_plateau(patience=0, mode=mode)
    state = tx.init(PARAMS)  # (init itself makes the inf best, as Optax's does)
    with jax.debug_infs(True):
        for v in [1.5, 1.4, 1.6]:
            _, state = tx.update(GRADS, state, PARAMS, value=jnp.float32(v))
    assert state.best_value == np.float32(1.4 if mode == "min" else 1.6)


def test_a_window_of_equal_values_averages_to_that_value():
    # windows [u, u, u], then one ulp lower: each an improvement with rtol = 0
    u = np.float32(0.96975267)
    values = np.repeat([u - k * np.spacing(u) for k in range(14)], 3)[:40].astype(np.float32)
    _expected_and_check(("min", 0.5, 0, 0.0, "rel", 0, 0.0, 3), values, eager=True)


def test_a_window_of_finite_values_whose_difference_overflows_averages_to_its_mean():
    values = _loss_curve(seed=4) - 2.0  # from 0 down to -1.5: each window improves on 0
    values[0:2] = [2e38, -2e38]  # v - avg overflows: the weighted mean is 0, not -inf
    _expected_and_check(("min", 0.5, 0, 1e-4, "rel", 0, 0.0, 2), values, eager=True)


def _expected_and_check(setting, values, eager=False):
    mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, acc = setting
    rtol, atol = (threshold, 0.0) if threshold_mode == "rel" else (0.0, threshold)
    ours = _scan_scales(mode)(factor, patience, rtol, atol, cooldown, min_lr, acc, values)
    # torch sees the mean of each group of `acc` values (reduce_on_plateau's accumulation)
    n = len(values) // acc * acc
    means = values[:n].reshape(-1, acc).mean(axis=1, dtype=np.float64)
    lrs = torch_lrs(means, mode, factor, patience, threshold, threshold_mode, cooldown, min_lr)
    decisions = (np.arange(len(values)) + 1) // acc  # made so far, after each value
    expected = np.concatenate([[1.0], lrs])[decisions]
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    if eager:  # eagerly too: XLA fuses the jitted running mean differently
        tx = gl.reduce_on_plateau(factor, patience, rtol, atol, cooldown, min_lr, acc, mode)
        state, scales = tx.init(PARAMS), []
        for v in values:
            _, state = tx.update(GRADS, state, PARAMS, value=v)
            scales.append(float(state.scale))
        np.testing.assert_allclose(scales, expected, rtol=1e-6)
    return expected


def _f32_reference(values, rtol, atol, patience, factor):
    """torch's algorithm in float32 (each operation rounded), mode "min", no cooldown,
    the improvement tested as ``v + atol < best * (1 - rtol)``."""
    best, bad, scale, out = np.float32(np.inf), 0, np.float32(1), []
    for v in values:
        threshold = np.float32(
            np.float32(best * np.float32(1 - np.float32(rtol))) - np.float32(atol)
        )
        if v < threshold:
            best, bad = v, 0
        else:
            bad += 1
        if bad > patience:
            scale, bad = np.float32(scale * np.float32(factor)), 0
        out.append(scale)
    return np.asarray(out)


def test_decisions_are_the_same_eager_jitted_and_scanned_at_the_threshold():
    """Values on, just below and just above each float32 threshold."""
    rtol, atol, patience, factor = 3e-3, 1e-3, 1, 0.5
    rng = np.random.default_rng(0)
    values, best = [np.float32(1.0)], np.float32(1.0)
    down, up = np.float32(-np.inf), np.float32(np.inf)
    for _ in range(40):
        # Near three boundaries: ours (v + atol < m), v < fl(m - atol) (torch's
        # form, two roundings) and v < best * (1 - rtol) - atol rounded once (an FMA).
        m = np.float32(best * np.float32(1 - np.float32(rtol)))
        ours = np.float32(m - np.float32(atol))
        while np.float32(ours + np.float32(atol)) >= m:
            ours = np.nextafter(ours, down)
        fma = np.float32(
            np.float64(best) * np.float64(np.float32(1 - np.float32(rtol)))
            - np.float64(np.float32(atol))
        )
        v = [ours, np.float32(m - np.float32(atol)), fma][rng.integers(3)]
        v = [np.nextafter(v, down), v, np.nextafter(v, up)][rng.integers(3)]
        if np.float32(v + np.float32(atol)) < m:
            best = v
        values.append(v)
    values = np.asarray(values, np.float32)
    expected = _f32_reference(values, rtol, atol, patience, factor)
    tx = gl.reduce_on_plateau(factor, patience, rtol, atol)
    for name, update in (("eager", tx.update), ("jit", jax.jit(tx.update))):
        state, scales = tx.init(PARAMS), []
        for v in values:
            _, state = update(GRADS, state, PARAMS, value=v)
            scales.append(state.scale)
        np.testing.assert_array_equal(np.asarray(scales), expected, err_msg=name)
    scanned = _scan_scales("min")(factor, patience, rtol, atol, 0, 0.0, 1, values)
    np.testing.assert_array_equal(scanned, expected)
    assert 0 < np.sum(np.diff(expected) < 0) < len(values) - 1  # both decisions occur


def test_composes_with_a_warmup_schedule():
    """lr = warm-up(k) * scale(k): torch's SequentialLR cannot chain the two."""
    tx = gl.chain(
        gl.sgd(gl.schedules.linear(0.0, 1.0, 4)),
        gl.reduce_on_plateau(factor=0.5, patience=0, rtol=0.0),
    )
    state, updates = tx.init(PARAMS), []
    step = jax.jit(tx.update)
    for v in [3.0, 2.0, 2.0, 2.0, 1.0, 1.0]:
        u, state = step(GRADS, state, PARAMS, value=v)
        updates.append(float(u["w"][0]))
    warmup = np.minimum(np.arange(6) / 4, 1.0)
    scale = np.asarray([1, 1, 0.5, 0.25, 0.25, 0.125])
    np.testing.assert_allclose(updates, -warmup * scale, rtol=1e-6)


def _scale_in(state):
    found = [
        x
        for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, gl.ReduceLROnPlateauState))
        if isinstance(x, gl.ReduceLROnPlateauState)
    ]
    (plateau,) = found
    return float(plateau.scale)


WRAPPERS = {
    "chain": lambda r: gl.chain(gl.sgd(1.0), r),
    "named_chain": lambda r: gl.named_chain(("sgd", gl.sgd(1.0)), ("plateau", r)),
    "partition": lambda r: gl.partition({"all": r}, "all"),
    "masked": lambda r: gl.masked(r, True),
    "apply_if_finite": lambda r: gl.apply_if_finite(r, 2),
    "MultiSteps": lambda r: gl.MultiSteps(r, 1),
    "inject_hyperparams": lambda r: gl.inject_hyperparams(gl.chain)(r),
    "packed": lambda r: gl.packed(gl.chain(gl.adam(0.1), r)),
    # Optax passes extras only to its own GradientTransformationExtraArgs: say so
    "optax.chain": lambda r: optax.chain(
        optax.scale(1.0), optax.GradientTransformationExtraArgs(*r)
    ),
    "optax members": lambda r: gl.chain(optax.scale(1.0), r),
}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_the_value_reaches_reduce_on_plateau_through_every_wrapper(name):
    tx = WRAPPERS[name](gl.reduce_on_plateau(factor=0.5, patience=0))
    state = tx.init(PARAMS)
    with OPTAX_PROMOTION:
        for _ in range(4):  # a flat loss: the 2nd, 3rd and 4th values do not improve
            _, state = tx.update(GRADS, state, PARAMS, value=jnp.float32(1.0))
    assert _scale_in(state) == 0.125


def test_missing_or_non_scalar_value_and_bad_arguments_raise():
    tx = gl.reduce_on_plateau()
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match=r"needs the monitored loss: call update\(.*value=loss\)"):
        tx.update(GRADS, state, PARAMS)
    with pytest.raises(
        ValueError, match=r"value must be a scalar loss, got an array of shape \(2,\)"
    ):
        tx.update(GRADS, state, PARAMS, value=jnp.ones(2))
    for kwargs, words in [
        ({"factor": 1.0}, "factor must be in (0, 1), got 1.0"),
        ({"patience": -1}, "patience must be >= 0, got -1"),
        ({"rtol": -0.1}, "rtol must be in [0, 1], got -0.1"),
        ({"mode": "maximum"}, "mode must be one of 'min', 'max', got 'maximum'"),
        ({"accumulation_size": 0}, "accumulation_size must be >= 1, got 0"),
    ]:
        with pytest.raises(ValueError) as info:
            gl.reduce_on_plateau(**kwargs)
        assert words in str(info.value)


def test_under_x64_decisions_and_scale_are_torchs_float64(x64):
    """Under x64, losses that differ below float32's resolution are compared as
    torch compares Python floats, and the scale is torch's float64 lr."""
    params, grads = {"w": jnp.zeros(2, jnp.float64)}, {"w": jnp.ones(2, jnp.float64)}
    # improvements of 1e-9 (invisible in float32), then a flat stretch
    values = np.concatenate([1.0 - 1e-9 * np.arange(6), np.full(8, 1.0 - 5e-9)])
    setting = ("min", 0.1, 1, 0.0, "rel", 0, 0.0)
    expected = torch_lrs(values, *setting)
    tx = gl.reduce_on_plateau(factor=0.1, patience=1, rtol=0.0)
    state = tx.init(params)
    assert state.best_value.dtype == jnp.float64
    step = jax.jit(tx.update)
    scales = []
    for v in values:
        u, state = step(grads, state, params, value=jnp.float64(v))
        scales.append(float(state.scale))
        assert u["w"].dtype == jnp.float64
    np.testing.assert_allclose(scales, expected, rtol=1e-15)
    assert expected[5] == 1.0 and expected[-1] < 1e-3  # no reduction in the first six


@pytest.mark.parametrize("mode", ["min", "max"])
def test_decisions_at_an_infinite_best_are_ieees_for_any_run_time_rtol(mode):
    """At best = +-inf the comparison is made without the inf product: for
    every rtol (set at run time, unchecked there, past 1 too) and sign of
    best it must decide as NumPy's ``v + atol < best * (1 - rtol)`` does."""
    tx = gl.inject_hyperparams(gl.reduce_on_plateau)(patience=5, mode=mode)
    step = jax.jit(lambda s, v: tx.update(GRADS, s, PARAMS, value=v)[1])
    sign = 1.0 if mode == "min" else -1.0
    for first in [np.inf, -np.inf]:  # the initial best, or one reached
        for rtol in [0.0, 0.5, 1.0, 2.0]:
            state = tx.init(PARAMS)
            if first != sign * np.inf:  # the best becomes -inf (min) / +inf (max)
                state = step(state, jnp.float32(first))
            state = gl.set_hyperparams(state, rtol=rtol)
            best = np.float32(state.inner_state.best_value)
            v = np.float32(0.5)
            new = step(state, jnp.asarray(v))
            with np.errstate(invalid="ignore"):
                c = np.float32(1 - sign * rtol)
                want = (v < best * c) if mode == "min" else (v > best * c)
            assert (new.inner_state.best_value == v) == want, (first, rtol)
