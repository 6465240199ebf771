"""Specification of ``gradlab.losses``.

Every loss is checked against things gradlab did not compute: the seed
lecture's worked examples, NumPy references written below from each formula,
Optax where it has the same loss (convention differences noted inline), and
finite differences. Most tests are driven by the ``CASES`` table.
"""

from __future__ import annotations

import doctest
import importlib
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
from jax.test_util import check_grads

import gradlab.losses as L

F64 = np.float64
DTYPES = [jnp.float32, jnp.bfloat16, jnp.float64]
# (rtol, atol) against a float64 NumPy reference evaluated on the same
# (dtype-rounded) inputs.
TOL = {jnp.float32: (2e-5, 2e-6), jnp.bfloat16: (4e-2, 4e-2), jnp.float64: (1e-12, 1e-13)}


def _dtype_id(dtype) -> str:
    return jnp.dtype(dtype).name


@pytest.fixture
def maybe_x64(request, dtype):
    """Float64 tests run with x64 enabled (conftest's ``x64``), others as they are."""
    if dtype == jnp.float64:
        request.getfixturevalue("x64")


# --------------------------------------------------------------------------
# NumPy references, written from the formulas (float64 throughout).
# --------------------------------------------------------------------------


def np_sigmoid(x):
    return scipy.special.expit(x)


def np_log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_huber(r, delta):
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def np_bce(p, y):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def np_focal(x, y, alpha, gamma):
    p = np_sigmoid(x)
    p_t = y * p + (1 - y) * (1 - p)
    loss = np_bce(p, y) * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss


def np_contrastive(d, y, margin):
    return (1 - y) * d**2 / 2 + y * np.maximum(0.0, margin - d) ** 2 / 2


def np_dist(a, b):
    return np.sqrt(((a - b) ** 2).sum(axis=-1))


def np_triplet(a, p, n, margin):
    return np.maximum(np_dist(a, p) - np_dist(a, n) + margin, 0.0)


def np_tree_sum(fn, tree):
    return sum(fn(np.asarray(leaf, F64)).sum() for leaf in jax.tree.leaves(tree))


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def _rng():
    return np.random.default_rng(0)


def _labels01(shape):
    # Mixed hard and soft labels: 0, 1 and values in between.
    return _rng().choice([0.0, 1.0, 0.3, 0.8], size=shape)


def _pm1(shape):
    return _rng().choice([-1, 1], size=shape).astype(np.int32)


def _soft_onehot(n, c):
    return _rng().dirichlet(np.ones(c), size=n)


def _away_from(x, kink, gap=0.05):
    """Push values at least ``gap`` away from a kink, for finite differences."""
    return np.where(np.abs(x - kink) < gap, kink + gap * np.sign(x - kink + 1e-12), x)


def _scores(shape, labels):
    s = _rng().normal(size=shape) * 2
    return _away_from(s * labels, 1.0) * labels  # 1 - y*s stays away from 0


def _residual_args(kinks):
    """(pred, target) whose residuals stay away from the loss's kinks."""
    target = _rng().normal(size=(4, 3)) * 3
    r = target[::-1] - target
    for k in kinks:
        r = _away_from(r, k)
    return target + r, target


def _tree():
    r = _rng()
    return {"w": r.normal(size=(3, 2)), "b": r.normal(size=(2,)), "s": np.array(0.7)}


def _triplet_args():
    r = _rng()
    return r.normal(size=(4, 3)), r.normal(size=(4, 3)), r.normal(size=(4, 3))


class Case(NamedTuple):
    name: str
    fn: Callable[..., Any]  # the gradlab loss, hyperparameters bound
    args: Callable[[], tuple]  # NumPy inputs at an ordinary (kink-free) point
    n_float: int  # leading args that are float inputs (cast to the test dtype)
    ref: Callable[..., Any]  # NumPy reference from the formula
    optax_ref: Callable[..., Any] | None = None
    extremes: tuple[tuple, ...] = ()  # NumPy inputs where values/grads must stay finite
    bad_shapes: tuple | None = None  # args whose shapes mismatch; both shapes in the message


X43 = _rng().normal(size=(4, 3)) * 3
LOGITS_EXT = np.array([1e4, -1e4, 1e4, -1e4, 0.0])
LABELS_EXT = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
PROBS_EXT = np.array([0.0, 1.0, 0.0, 1.0, 0.5])

CASES = [
    Case(
        "squared_error",
        L.squared_error,
        lambda: (X43, X43[::-1]),
        2,
        lambda p, t: (p - t) ** 2,
        optax_ref=optax.losses.squared_error,  # same convention (l2_loss is half)
        extremes=((np.zeros(3), np.zeros(3)), (np.full(2, 1e4), np.zeros(2))),
        bad_shapes=(np.zeros((4, 3)), np.zeros((4, 1))),
    ),
    Case(
        "absolute_error",
        L.absolute_error,
        lambda: _residual_args(kinks=(0.0,)),
        2,
        lambda p, t: np.abs(p - t),
        extremes=((np.zeros(3), np.zeros(3)),),
        bad_shapes=(np.zeros((4,)), np.zeros((4, 1))),
    ),
    Case(
        "huber",
        lambda p, t: L.huber(p, t, delta=1.5),
        lambda: _residual_args(kinks=(1.5, -1.5)),
        2,
        lambda p, t: np_huber(p - t, 1.5),
        # Optax uses the same 0.5*r^2 / delta*(|r| - delta/2) form.
        optax_ref=lambda p, t: optax.losses.huber_loss(p, t, delta=1.5),
        extremes=((np.zeros(3), np.zeros(3)), (np.full(2, 1e4), np.zeros(2))),
        bad_shapes=(np.zeros((4, 3)), np.zeros((3, 4))),
    ),
    Case(
        "binary_cross_entropy",
        L.binary_cross_entropy,
        lambda: (_rng().uniform(0.05, 0.95, size=(4, 3)), _labels01((4, 3))),
        1,
        np_bce,
        # Optax has only the logit form: feed it logit(p).
        optax_ref=lambda p, y: optax.losses.sigmoid_binary_cross_entropy(
            jnp.log(p) - jnp.log1p(-p), y
        ),
        extremes=((PROBS_EXT, LABELS_EXT), (PROBS_EXT, 1.0 - LABELS_EXT)),
        bad_shapes=(np.full((4,), 0.5), np.zeros((5,))),
    ),
    Case(
        "sigmoid_binary_cross_entropy",
        L.sigmoid_binary_cross_entropy,
        lambda: (X43, _labels01((4, 3))),
        1,
        lambda x, y: np_bce(np_sigmoid(x), y),
        optax_ref=optax.losses.sigmoid_binary_cross_entropy,  # same
        extremes=((LOGITS_EXT, LABELS_EXT), (LOGITS_EXT, np.array([0, 0, 1, 1, 0]))),
        bad_shapes=(np.zeros((4, 3)), np.zeros((4, 2))),
    ),
    Case(
        "categorical_cross_entropy",
        L.categorical_cross_entropy,
        lambda: (_rng().dirichlet(np.ones(5), size=4) * 0.9 + 0.02, _soft_onehot(4, 5)),
        1,
        lambda p, y: -(y * np.log(p)).sum(-1),
        # Optax has no probability form; see test_categorical_cross_entropy_matches_optax_...
        extremes=(
            (np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), np.array([[1, 0, 0], [0, 0, 1]])),
            (np.array([[0.0, 1.0, 0.0]]), np.array([[0, 1, 0]])),
        ),
        bad_shapes=(np.full((4, 3), 1 / 3), np.zeros((4, 2))),
    ),
    Case(
        "softmax_cross_entropy",
        L.softmax_cross_entropy,
        lambda: (_rng().normal(size=(4, 5)) * 3, _soft_onehot(4, 5)),
        1,
        lambda x, y: -(y * np_log_softmax(x)).sum(-1),
        optax_ref=optax.losses.softmax_cross_entropy,  # same (soft labels too)
        extremes=(
            (np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4]]), np.array([[0, 1, 0], [1, 0, 0]])),
            (np.array([[1e4, -1e4, 0.0]]), np.array([[1, 0, 0]])),
        ),
        bad_shapes=(np.zeros((4, 3)), np.zeros((4, 2))),
    ),
    Case(
        "softmax_cross_entropy_with_integer_labels",
        L.softmax_cross_entropy_with_integer_labels,
        lambda: (_rng().normal(size=(4, 5)) * 3, np.array([0, 4, 2, 2], np.int32)),
        1,
        lambda x, y: -np.take_along_axis(np_log_softmax(x), y[:, None], -1)[:, 0],
        optax_ref=optax.losses.softmax_cross_entropy_with_integer_labels,  # same
        extremes=((np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4]]), np.array([1, 0])),),
        bad_shapes=(np.zeros((4, 3)), np.zeros((4, 3), np.int32)),
    ),
    Case(
        "hinge",
        L.hinge,
        lambda: (_scores((4, 3), _pm1((4, 3))), _pm1((4, 3))),
        1,
        lambda s, y: np.maximum(0.0, 1 - y * s),
        optax_ref=optax.losses.hinge_loss,  # same, labels in {-1, +1}
        extremes=((LOGITS_EXT, 2 * LABELS_EXT - 1), (np.ones(2), np.ones(2))),
        bad_shapes=(np.zeros((4, 3)), np.ones((4,))),
    ),
    Case(
        "squared_hinge",
        L.squared_hinge,
        lambda: (_scores((4, 3), _pm1((4, 3))), _pm1((4, 3))),
        1,
        lambda s, y: np.maximum(0.0, 1 - y * s) ** 2,
        optax_ref=lambda s, y: optax.losses.hinge_loss(s, y) ** 2,  # Optax has no squared form
        extremes=((LOGITS_EXT, 2 * LABELS_EXT - 1),),
        bad_shapes=(np.zeros((2, 3)), np.ones((3, 2))),
    ),
    Case(
        "sigmoid_focal",
        lambda x, y: L.sigmoid_focal(x, y, alpha=0.25, gamma=2.0),
        lambda: (X43, _labels01((4, 3))),
        1,
        lambda x, y: np_focal(x, y, 0.25, 2.0),
        optax_ref=lambda x, y: optax.losses.sigmoid_focal_loss(x, y, alpha=0.25, gamma=2.0),
        extremes=((LOGITS_EXT, LABELS_EXT), (LOGITS_EXT, np.array([0, 0, 1, 1, 0]))),
        bad_shapes=(np.zeros((4, 3)), np.zeros((4, 2))),
    ),
    Case(
        "sigmoid_focal_gamma_half_no_alpha",
        # gamma < 1: (1 - p_t)**gamma has an infinite slope at p_t = 1.
        lambda x, y: L.sigmoid_focal(x, y, gamma=0.5),
        lambda: (X43, _labels01((4, 3))),
        1,
        lambda x, y: np_focal(x, y, None, 0.5),
        optax_ref=lambda x, y: optax.losses.sigmoid_focal_loss(x, y, gamma=0.5),
        extremes=((LOGITS_EXT, LABELS_EXT), (LOGITS_EXT, np.array([0, 0, 1, 1, 0]))),
    ),
    Case(
        "contrastive",
        lambda d, y: L.contrastive(d, y, margin=1.5),
        lambda: (
            _away_from(_rng().uniform(0.1, 3.0, size=(6,)), 1.5),
            np.array([0, 1, 1, 0, 1, 0]),
        ),
        1,
        lambda d, y: np_contrastive(d, y, 1.5),
        extremes=((np.zeros(2), np.array([0, 1])), (np.full(2, 1.5), np.array([0, 1]))),
        bad_shapes=(np.zeros((6,)), np.zeros((6, 1))),
    ),
    Case(
        "euclidean_distance",
        L.euclidean_distance,
        lambda: _triplet_args()[:2],
        2,
        np_dist,
        extremes=((np.ones((2, 3)), np.ones((2, 3))), (np.zeros(3), np.zeros(3))),
        bad_shapes=(np.zeros((4, 3)), np.zeros((4, 2))),
    ),
    Case(
        "triplet_margin",
        lambda a, p, n: L.triplet_margin(a, p, n, margin=0.5),
        _triplet_args,
        3,
        lambda a, p, n: np_triplet(a, p, n, 0.5),
        # Optax adds eps=1e-6 inside the sqrt; with eps=0 it is the same formula.
        optax_ref=lambda a, p, n: optax.losses.triplet_margin_loss(a, p, n, margin=0.5, eps=0.0),
        extremes=((np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3))),),
        bad_shapes=(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((4, 2))),
    ),
    Case(
        "l1_penalty",
        L.l1_penalty,
        lambda: (_tree(),),
        1,
        lambda t: np_tree_sum(np.abs, t),
        extremes=(({"a": np.zeros(3), "b": np.zeros(())},),),
    ),
    Case(
        "l2_penalty",
        L.l2_penalty,
        lambda: (_tree(),),
        1,
        lambda t: 0.5 * np_tree_sum(np.square, t),
        # Same 0.5 * w^2 convention as optax.l2_loss.
        optax_ref=lambda t: sum(optax.l2_loss(x).sum() for x in jax.tree.leaves(t)),
        extremes=(({"a": np.zeros(3)},),),
    ),
    Case(
        "elastic_net_penalty",
        lambda t: L.elastic_net_penalty(t, l1=0.3, l2=2.0),
        lambda: (_tree(),),
        1,
        lambda t: 0.3 * np_tree_sum(np.abs, t) + 2.0 * 0.5 * np_tree_sum(np.square, t),
        extremes=(({"a": np.zeros(3)},),),
    ),
]
CASE_IDS = [c.name for c in CASES]
PER_EXAMPLE = [c for c in CASES if not c.name.endswith("_penalty")]


def _cast(case: Case, args: tuple, dtype) -> tuple:
    """Float inputs to ``dtype``; labels left as they are (int or NumPy float)."""

    def to(x):
        return jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype), x)

    return tuple(to(a) if i < case.n_float else a for i, a in enumerate(args))


def _as_f64(args: tuple) -> tuple:
    """Float inputs as float64 NumPy (after any rounding to the test dtype)."""

    def f64(x):
        x = np.asarray(x)
        return x.astype(F64) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return tuple(jax.tree.map(f64, a) for a in args)


def _value_and_grad_first(fn: Callable, args: tuple):
    """The loss and the gradient of its sum w.r.t. the first argument, jitted."""

    def total(x, *rest):
        out = fn(x, *rest)
        return jnp.sum(out).astype(jnp.float32), out

    (_, value), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(*args)
    return value, grad


# --------------------------------------------------------------------------
# The seed lecture's worked examples
# --------------------------------------------------------------------------

ACTUAL = np.array([100.0, 150.0, 200.0, 180.0, 120.0], np.float32)
PREDICTED = np.array([98.0, 153.0, 199.0, 182.0, 140.0], np.float32)


@pytest.mark.parametrize(
    "loss, expected",
    [
        (L.squared_error, 83.6),
        (L.absolute_error, 5.6),
        (lambda p, t: L.huber(p, t, delta=5.0), 19.3),
    ],
    ids=["mse", "mae", "huber_delta5"],
)
def test_regression_worked_example(loss, expected):
    # The outlier (140 vs 120) dominates MSE (400 of 418), but costs Huber only
    # 5 * (20 - 2.5) = 87.5 and MAE 20.
    assert float(loss(PREDICTED, ACTUAL).mean()) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize(
    "label, prob, expected",
    [(1, 0.95, 0.051), (1, 0.70, 0.357), (0, 0.10, 0.105), (1, 0.50, 0.693), (1, 0.20, 1.609)],
)
def test_binary_cross_entropy_worked_example(label, prob, expected):
    p = jnp.array([prob], jnp.float32)
    y = jnp.array([label])
    assert float(L.binary_cross_entropy(p, y)[0]) == pytest.approx(expected, abs=5e-4)
    # The logit form agrees on logit(p).
    logit = jnp.log(p) - jnp.log1p(-p)
    assert float(L.sigmoid_binary_cross_entropy(logit, y)[0]) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize(
    "one_hot, probs, expected",
    [
        ([0, 1, 0], [0.1, 0.8, 0.1], 0.223),
        ([1, 0, 0], [0.7, 0.2, 0.1], 0.357),
        ([0, 0, 1], [0.2, 0.2, 0.6], 0.511),
        ([0, 1, 0], [0.4, 0.4, 0.2], 0.916),
        ([1, 0, 0], [0.2, 0.5, 0.3], 1.609),
    ],
)
def test_categorical_cross_entropy_worked_example(one_hot, probs, expected):
    p = jnp.array([probs], jnp.float32)
    y = jnp.array([one_hot])
    assert float(L.categorical_cross_entropy(p, y)[0]) == pytest.approx(expected, abs=5e-4)
    # Same through logits (log p are valid logits since p sums to 1) and indices.
    logits = jnp.log(p)
    assert float(L.softmax_cross_entropy(logits, y)[0]) == pytest.approx(expected, abs=5e-4)
    idx = jnp.argmax(y, axis=-1)
    value = L.softmax_cross_entropy_with_integer_labels(logits, idx)[0]
    assert float(value) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize(
    "p_true, label, weight", [(0.9, 1, 0.01), (0.2, 1, 0.64), (0.9, 0, 0.01), (0.5, 1, 0.25)]
)
def test_focal_weight_is_one_minus_pt_squared(p_true, label, weight):
    # p_true is the probability given to the true label; build the logit from it.
    p_pos = p_true if label == 1 else 1 - p_true
    x = jnp.array([np.log(p_pos / (1 - p_pos))], jnp.float32)
    y = jnp.array([label])
    ratio = L.sigmoid_focal(x, y, gamma=2.0) / L.sigmoid_binary_cross_entropy(x, y)
    assert float(ratio[0]) == pytest.approx(weight, rel=1e-4)


# --------------------------------------------------------------------------
# Table-driven: reference, Optax, gradients, extremes, transforms, shapes
# --------------------------------------------------------------------------


# Eager and jitted in float32; the other dtypes jitted only (dtype handling is
# decided at trace time, and eager op-by-op dispatch is what makes tests slow).
MODES_AND_DTYPES = [
    ("eager", jnp.float32),
    ("jit", jnp.float32),
    ("jit", jnp.bfloat16),
    ("jit", jnp.float64),
]


@pytest.mark.parametrize(
    "mode, dtype", MODES_AND_DTYPES, ids=[f"{m}-{_dtype_id(d)}" for m, d in MODES_AND_DTYPES]
)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_numpy_reference_and_keeps_dtype(case, mode, dtype, maybe_x64):
    args = _cast(case, case.args(), dtype)
    out = (jax.jit(case.fn) if mode == "jit" else case.fn)(*args)
    assert out.dtype == dtype
    expected = case.ref(*_as_f64(args))
    assert out.shape == np.shape(expected)
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(out, F64), expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("case", [c for c in CASES if c.optax_ref], ids=lambda c: c.name)
def test_matches_optax(case):
    args = _cast(case, case.args(), jnp.float32)
    with jax.numpy_dtype_promotion("standard"):  # Optax is not written for strict mode
        labels = tuple(jnp.asarray(a, jnp.float32) for a in args[case.n_float :])
        if case.name == "softmax_cross_entropy_with_integer_labels":
            labels = (jnp.asarray(args[1]),)
        expected = case.optax_ref(*args[: case.n_float], *labels)
    np.testing.assert_allclose(case.fn(*args), expected, rtol=2e-5, atol=2e-6)


def test_categorical_cross_entropy_matches_optax_on_log_probs():
    # For normalised p, log p are logits whose softmax is p.
    p = jnp.asarray(_rng().dirichlet(np.ones(5), size=4), jnp.float32)
    y = jnp.asarray(_soft_onehot(4, 5), jnp.float32)
    expected = optax.losses.softmax_cross_entropy(jnp.log(p), y)
    np.testing.assert_allclose(L.categorical_cross_entropy(p, y), expected, rtol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradient_matches_finite_differences(case, x64):
    args = _cast(case, case.args(), jnp.float64)
    # Differentiate every float input (embeddings, both sides of a regression).
    # The values match the NumPy reference (above), so gradients that match
    # finite differences of the values are the reference formula's gradients.
    diff, rest = args[: case.n_float], args[case.n_float :]
    fn = jax.jit(lambda *d: case.fn(*d, *rest))
    check_grads(fn, diff, order=1, modes=("rev",), eps=1e-6)


# float64 is left out: its range holds every float32 extreme with room to spare.
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=_dtype_id)
@pytest.mark.parametrize("case", [c for c in CASES if c.extremes], ids=lambda c: c.name)
def test_values_and_gradients_finite_at_extremes(case, dtype):
    def value_and_grad(x, *rest):
        return jax.value_and_grad(lambda x: jnp.sum(case.fn(x, *rest)).astype(jnp.float32))(x)

    # All extreme points of a case in one compiled function.
    @jax.jit
    def all_points(points):
        return [value_and_grad(*p) for p in points]

    points = [_cast(case, raw, dtype) for raw in case.extremes]
    for raw, (value, grad) in zip(case.extremes, all_points(points), strict=True):
        assert np.isfinite(float(value)), (raw, value)
        for g in jax.tree.leaves(grad):
            assert np.all(np.isfinite(np.asarray(g, F64))), (raw, grad)


@pytest.mark.parametrize("case", PER_EXAMPLE, ids=lambda c: c.name)
def test_vmap_over_examples_matches_batched_call(case):
    args = _cast(case, case.args(), jnp.float32)
    args = tuple(jnp.asarray(a) for a in args)
    np.testing.assert_allclose(jax.vmap(case.fn)(*args), case.fn(*args), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", [c for c in CASES if c.bad_shapes], ids=lambda c: c.name)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_shape_mismatch_names_both_shapes(case, jit):
    args = case.bad_shapes
    shapes = {np.shape(a) for a in args}
    fn = jax.jit(case.fn) if jit else case.fn
    with pytest.raises(ValueError, match="shape") as info:
        fn(*args)
    for shape in shapes:
        assert str(shape) in str(info.value)


# --------------------------------------------------------------------------
# Hyperparameters: validation and tracing
# --------------------------------------------------------------------------

X = jnp.array([0.3, -1.2, 2.0])
Y01 = jnp.array([1, 0, 1])
E = jnp.ones((2, 3))

BAD_HYPERPARAMETERS = [
    (lambda: L.huber(X, X, delta=0.0), "delta", "0.0"),
    (lambda: L.huber(X, X, delta=-1.0), "delta", "-1.0"),
    (lambda: L.contrastive(jnp.abs(X), Y01, margin=-0.5), "margin", "-0.5"),
    (lambda: L.triplet_margin(E, E, E, margin=-1.0), "margin", "-1.0"),
    (lambda: L.sigmoid_focal(X, Y01, gamma=-1.0), "gamma", "-1.0"),
    (lambda: L.sigmoid_focal(X, Y01, alpha=1.5), "alpha", "1.5"),
    (lambda: L.sigmoid_focal(X, Y01, alpha=-0.1), "alpha", "-0.1"),
    (lambda: L.elastic_net_penalty({"w": X}, l1=-1.0, l2=0.1), "l1", "-1.0"),
    (lambda: L.elastic_net_penalty({"w": X}, l1=0.1, l2=-0.2), "l2", "-0.2"),
    (lambda: L.weighted_sum({"a": (float("nan"), 1.0)}), "weight of 'a'", "nan"),
    (lambda: L.huber(X, X, delta=jnp.array([1.0, -1.0, 1.0])), "delta", "-1.0"),
]


@pytest.mark.parametrize("call, name, value", BAD_HYPERPARAMETERS)
def test_bad_hyperparameter_raises_naming_it(call, name, value):
    with pytest.raises(ValueError) as info:
        call()
    assert name in str(info.value) and value in str(info.value)


BOOLEAN_HYPERPARAMETERS = [
    (lambda b: L.huber(X, -X, delta=b), "delta"),
    (lambda b: L.contrastive(jnp.abs(X), Y01, margin=b), "margin"),
    (lambda b: L.sigmoid_focal(X, Y01, gamma=b), "gamma"),
    (lambda b: L.sigmoid_focal(X, Y01, alpha=b), "alpha"),
    (lambda b: L.elastic_net_penalty({"w": X}, l1=b, l2=0.1), "l1"),
    (lambda b: L.weighted_sum({"a": (b, 1.0)}), "weight of 'a'"),
]
FLAGS = {
    "bool": True,
    "np": np.array(True),
    "jnp": jnp.array(True),
    "np3": np.array([1, 0, 1], bool),
}


@pytest.mark.parametrize(
    "call, name, flag",
    [
        pytest.param(call, name, flag, id=f"{name}-{kind}")
        for call, name in BOOLEAN_HYPERPARAMETERS
        for kind, flag in FLAGS.items()
        if not (name == "l1" and np.ndim(flag))  # l1 is a scalar: its shape is refused first
    ],
)
def test_boolean_hyperparameters_are_refused_as_arrays_too(call, name, flag):
    """delta=True was a TypeError, np.array(True) silently 1.0 (hunt80): a
    boolean is a flag, not a number, in a NumPy or JAX array as in Python."""
    with pytest.raises(TypeError, match=f"{name} must be a number, got (the|a) boolean"):
        call(flag)
    if isinstance(flag, jax.Array):  # traced, its dtype is still known (review21)
        with pytest.raises(TypeError, match=f"{name} must be a number, got a traced boolean"):
            jax.jit(call)(flag)


def test_boundary_hyperparameters_are_accepted():
    L.contrastive(jnp.abs(X), Y01, margin=0.0)
    L.triplet_margin(E, E, E, margin=0.0)
    L.sigmoid_focal(X, Y01, alpha=0.0, gamma=0.0)
    L.sigmoid_focal(X, Y01, alpha=1.0)
    L.elastic_net_penalty({"w": X}, l1=0.0, l2=0.0)
    L.weighted_sum({"entropy_bonus": (-0.01, 1.0)})


TRACED_HYPERPARAMETERS = [
    ("huber_delta", lambda h: L.huber(X, -X, delta=h), [0.5, 1.0, 3.0]),
    ("contrastive_margin", lambda h: L.contrastive(jnp.abs(X), Y01, margin=h), [0.0, 1.0, 2.5]),
    ("triplet_margin", lambda h: L.triplet_margin(E, 2 * E, -E, margin=h), [0.0, 1.0, 9.0]),
    ("focal_gamma", lambda h: L.sigmoid_focal(X, Y01, gamma=h), [0.0, 0.5, 2.0]),
    ("focal_alpha", lambda h: L.sigmoid_focal(X, Y01, alpha=h), [0.0, 0.25, 1.0]),
    ("elastic_l1", lambda h: L.elastic_net_penalty({"w": X}, l1=h, l2=0.5), [0.0, 1.0]),
    ("elastic_l2", lambda h: L.elastic_net_penalty({"w": X}, l1=0.5, l2=h), [0.0, 1.0]),
    ("weighted_sum", lambda h: L.weighted_sum({"a": (h, 2.0), "b": (1.0, 3.0)})[0], [0.5, 2.0]),
]


@pytest.mark.parametrize(
    "fn, values",
    [t[1:] for t in TRACED_HYPERPARAMETERS],
    ids=[t[0] for t in TRACED_HYPERPARAMETERS],
)
def test_traced_hyperparameter_vmaps_like_a_loop(fn, values):
    batched = jax.vmap(fn)(jnp.asarray(values, jnp.float32))
    looped = jnp.stack([fn(v) for v in values])
    np.testing.assert_allclose(batched, looped, rtol=1e-6)
    assert not np.allclose(looped[0], looped[-1])  # the hyperparameter matters


def test_hyperparameter_array_broadcasts_per_element():
    per_element = L.huber(X, -X, delta=jnp.array([0.5, 1.0, 3.0]))
    expected = np_huber(np.asarray(2 * X, F64), np.array([0.5, 1.0, 3.0]))
    np.testing.assert_allclose(per_element, expected, rtol=1e-6)


def test_float32_hyperparameter_keeps_bfloat16_output():
    x = X.astype(jnp.bfloat16)
    assert L.huber(x, -x, delta=jnp.float32(0.5)).dtype == jnp.bfloat16
    assert L.sigmoid_focal(x, Y01, alpha=jnp.float32(0.5)).dtype == jnp.bfloat16


# --------------------------------------------------------------------------
# Behaviour of individual losses
# --------------------------------------------------------------------------


def test_probability_forms_clip_to_dtype_epsilon():
    eps = float(jnp.finfo(jnp.float32).eps)
    p, y = jnp.array([0.0, 1.0], jnp.float32), jnp.array([1, 0])
    np.testing.assert_allclose(L.binary_cross_entropy(p, y), [-np.log(eps)] * 2, rtol=1e-6)
    onehot = jnp.array([[1, 0], [0, 1]])
    np.testing.assert_allclose(
        L.categorical_cross_entropy(jnp.array([[0.0, 1.0], [1.0, 0.0]]), onehot),
        [-np.log(eps)] * 2,
        rtol=1e-6,
    )


def test_sigmoid_cross_entropy_gradient_is_sigmoid_minus_label_at_extremes():
    x = jnp.asarray(LOGITS_EXT, jnp.float32)
    y = jnp.asarray(LABELS_EXT, jnp.float32)
    grad = jax.grad(lambda x: L.sigmoid_binary_cross_entropy(x, y).sum())(x)
    np.testing.assert_allclose(grad, np_sigmoid(np.asarray(x, F64)) - LABELS_EXT, atol=1e-6)
    # Confidently right costs nothing; confidently wrong costs |logit|, no overflow.
    np.testing.assert_allclose(
        L.sigmoid_binary_cross_entropy(x, y), [0, 1e4, 1e4, 0, np.log(2)], rtol=1e-6
    )


def test_softmax_cross_entropy_tolerates_masked_classes():
    logits = jnp.array([[0.0, -jnp.inf, 1.0]])
    y = jnp.array([[1.0, 0.0, 0.0]])
    value = L.softmax_cross_entropy(logits, y)
    grad = jax.grad(lambda x: L.softmax_cross_entropy(x, y).sum())(logits)
    np.testing.assert_allclose(value, [np.log(1 + np.e)], rtol=1e-6)
    assert np.all(np.isfinite(grad)) and grad[0, 1] == 0


def test_a_masked_labelled_class_gives_an_infinite_loss():
    """Only a -inf under a zero label counts as 0 * log 0 = 0: under a nonzero
    label, -y log 0 is +inf (hunt49: masking every -inf went unseen); torch and
    the formula -sum y log_softmax(x) say the same."""
    logits = jnp.array([[-jnp.inf, 0.0, 1.0], [-jnp.inf, 0.0, 1.0]])
    y = jnp.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    np.testing.assert_array_equal(L.softmax_cross_entropy(logits, y), [np.inf, np.inf])
    probs = jnp.array([[0.0, 0.5, 0.5]])
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(
        L.categorical_cross_entropy(probs, y[:1]), [-np.log(eps)], rtol=1e-6
    )  # clipped to eps: finite, as documented


def test_categorical_cross_entropy_clips_a_certain_probability_below_one():
    """p is clipped to [eps, 1 - eps] (the docstring, as Keras): a labelled
    class at p = 1 costs -log(1 - eps), not 0 (hunt49: the upper clip went
    unseen)."""
    for dtype in (jnp.float32, jnp.bfloat16):
        eps = float(jnp.finfo(dtype).eps)
        probs = jnp.array([[1.0, 0.0, 0.0]], dtype)
        value = L.categorical_cross_entropy(probs, jnp.array([[1, 0, 0]]))
        np.testing.assert_allclose(
            np.asarray(value, np.float64),
            [-np.log1p(-eps)],
            rtol=1e-2 if dtype == jnp.bfloat16 else 1e-5,
        )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=_dtype_id)
def test_probability_gradient_on_the_clip_bounds_is_the_unclipped_one(dtype):
    """At p = eps or 1 - eps exactly (float32 sigmoid(x) for every x in [15.5,
    16.6]; bfloat16 sigmoid(x) for x in [4.5, 5.5]) the loss is unclipped, so its
    gradient is the formula's -y/p + (1-y)/(1-p), as torch's BCELoss gives;
    jnp.clip's tie rule halved it (hunt80). Strictly outside, it is 0."""
    eps = float(jnp.finfo(dtype).eps)
    rtol = 1e-2 if dtype == jnp.bfloat16 else 1e-6
    p = np.array([1 - eps, 1 - eps, eps, eps, 1.0, 0.0])
    y = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    grad = jax.grad(lambda q: L.binary_cross_entropy(q, jnp.asarray(y, dtype)).sum())(
        jnp.asarray(p, dtype)
    )
    on_bounds = -y[:4] / p[:4] + (1 - y[:4]) / (1 - p[:4])
    expected = np.concatenate([on_bounds, [0.0, 0.0]])
    np.testing.assert_allclose(np.asarray(grad, F64), expected, rtol=rtol)
    torch = pytest.importorskip("torch")
    tp = torch.tensor(p[:4], dtype=torch.float64, requires_grad=True)
    torch.nn.functional.binary_cross_entropy(tp, torch.tensor(y[:4]), reduction="sum").backward()
    np.testing.assert_allclose(np.asarray(grad[:4], F64), tp.grad.numpy(), rtol=rtol)
    # categorical: d/dp_true of -log p_true at p_true = 1 - eps is -1/(1 - eps)
    g = jax.grad(lambda q: L.categorical_cross_entropy(q, jnp.array([0, 1])))(
        jnp.asarray([eps, 1 - eps], dtype)
    )
    np.testing.assert_allclose(np.asarray(g, F64), [0.0, -1 / (1 - eps)], rtol=rtol)
    # end to end: d/dx BCE(sigmoid(x), 1) = sigmoid(x) - 1, the logit form's gradient
    x = jnp.asarray(16.0 if dtype == jnp.float32 else 5.0, dtype)
    assert float(jax.nn.sigmoid(x)) == 1 - eps
    g = jax.grad(lambda z: L.binary_cross_entropy(jax.nn.sigmoid(z), jnp.asarray(1.0, dtype)))(x)
    np.testing.assert_allclose(float(g), -eps, rtol=rtol)


def test_integer_labels_equal_one_hot_labels():
    x = jnp.asarray(_rng().normal(size=(2, 3, 5)), jnp.float32)
    idx = jnp.array([[0, 4, 1], [3, 3, 2]])
    with_indices = jax.jit(L.softmax_cross_entropy_with_integer_labels)(x, idx)
    with_one_hot = jax.jit(L.softmax_cross_entropy)(x, jax.nn.one_hot(idx, 5))
    np.testing.assert_allclose(with_indices, with_one_hot, rtol=1e-6)


def test_integer_labels_out_of_range_raise_eagerly_and_give_nan_under_jit():
    x = jnp.zeros((3, 4))
    bad = jnp.array([0, 4, -1])
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 4\), got 4"):
        L.softmax_cross_entropy_with_integer_labels(x, bad)
    out = jax.jit(L.softmax_cross_entropy_with_integer_labels)(x, bad)
    np.testing.assert_allclose(out, [np.log(4), np.nan, np.nan])


def test_integer_label_loss_rejects_float_labels():
    with pytest.raises(TypeError, match="integer class indices"):
        L.softmax_cross_entropy_with_integer_labels(jnp.zeros((2, 3)), jnp.array([0.0, 1.0]))


def test_integer_label_shape_message_names_both_shapes():
    with pytest.raises(ValueError, match=r"labels shape \(4, 3\) must be .* \(4,\)"):
        L.softmax_cross_entropy_with_integer_labels(jnp.zeros((4, 3)), jnp.zeros((4, 3), int))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: L.hinge(X, jnp.array([1, 0, -1])), "labels_pm1 must be -1 or \\+1"),
        (lambda: L.squared_hinge(X, jnp.array([1, 0, -1])), "labels_pm1 must be -1 or \\+1"),
        (lambda: L.binary_cross_entropy(X, jnp.array([1, 2, 0])), "labels must be in \\[0, 1\\]"),
        (lambda: L.sigmoid_focal(X, jnp.array([1, -1, 0])), "labels must be in \\[0, 1\\]"),
        (lambda: L.contrastive(jnp.abs(X), jnp.array([1, 2, 0])), "is_dissimilar must be in"),
        (lambda: L.softmax_cross_entropy(jnp.zeros(()), jnp.zeros(())), "last axis"),
        (lambda: L.euclidean_distance(jnp.zeros(()), jnp.zeros(())), "last"),
    ],
)
def test_invalid_labels_raise_when_concrete(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "loss, x",
    [
        (L.softmax_cross_entropy, jnp.array([[0.2, -1.0, 0.4]])),
        (L.categorical_cross_entropy, jnp.array([[0.2, 0.3, 0.5]])),
    ],
    ids=["softmax", "categorical"],
)
def test_multiclass_labels_outside_the_unit_interval_raise_naming_one_hot(loss, x):
    """A teacher's logits given as soft labels (distillation without the softmax)
    gave a finite, even negative loss (hunt80): each binary loss refuses labels
    outside [0, 1], and so do these now, when concrete. Soft labels, label
    smoothing (Optax's smooth_labels) and traced labels are fine."""
    for bad, shown in (([[3.0, -2.0, 0.5]], "3.0"), ([[-1, 2, 0]], "-1")):
        with pytest.raises(ValueError, match=rf"one_hot must be in \[0, 1\].*softmax.*{shown}"):
            loss(x, jnp.array(bad))
    smoothed = optax.smooth_labels(jnp.array([[0.0, 1.0, 0.0]]), 0.1)
    soft = jnp.array([[0.25, 0.25, 0.5]])
    for y in (smoothed, soft):
        np.testing.assert_allclose(loss(x, y), jax.jit(loss)(x, y), rtol=1e-6)
    jax.jit(loss)(x, jnp.array([[3.0, -2.0, 0.5]]))  # traced: not inspected
    with pytest.raises(ValueError, match=r"one_hot shape \(1, 2\)"):
        loss(x, jnp.array([[0.0, 1.0]]))


def test_focal_reduces_to_cross_entropy_without_focusing():
    y = jnp.asarray(_labels01(X43.shape), jnp.float32)
    x = jnp.asarray(X43, jnp.float32)
    np.testing.assert_allclose(
        L.sigmoid_focal(x, y, gamma=0.0), L.sigmoid_binary_cross_entropy(x, y), rtol=1e-6
    )


def test_euclidean_distance_gradient_at_zero_is_zero_not_nan():
    a = jnp.array([1.0, 2.0])
    grad_a, grad_b = jax.grad(L.euclidean_distance, argnums=(0, 1))(a, a)
    np.testing.assert_array_equal(grad_a, [0.0, 0.0])
    np.testing.assert_array_equal(grad_b, [0.0, 0.0])
    # Away from 0 the gradient is the unit vector (a - b) / |a - b|.
    g = jax.grad(L.euclidean_distance)(jnp.array([3.0, 4.0]), jnp.zeros(2))
    np.testing.assert_allclose(g, [0.6, 0.8], rtol=1e-6)


def test_contrastive_pulls_similar_and_pushes_dissimilar_within_margin():
    d = jnp.array([0.5, 0.5, 2.0])
    y = jnp.array([0, 1, 1])
    grad = jax.grad(lambda d: L.contrastive(d, y, margin=1.0).sum())(d)
    # similar: dL/dD = D > 0 (shrinks D); dissimilar inside margin: -(m - D) < 0;
    # dissimilar beyond margin: 0.
    np.testing.assert_allclose(grad, [0.5, -0.5, 0.0])


def test_contrastive_refuses_concrete_negative_distances_but_passes_nan():
    """Cosine similarities given as distances gave a finite loss (hunt80); the
    formula's D is a distance, >= 0. NaN still reaches the loss, and a traced
    distance is not inspected."""
    y = jnp.array([1, 0])
    with pytest.raises(ValueError, match=r"distance must be non-negative.*-0\.8"):
        L.contrastive(jnp.array([-0.8, 0.9]), y)
    out = L.contrastive(jnp.array([jnp.nan, 0.0]), y)
    assert np.isnan(out[0]) and float(out[1]) == 0.0
    np.testing.assert_allclose(
        jax.jit(L.contrastive)(jnp.array([-0.8, 0.9]), y), [1.62, 0.405], rtol=1e-6
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_contrastive_takes_a_distance_rounded_just_below_zero(dtype):
    """``1 - cos`` of identical embeddings rounds to -1.2e-7 in float32 (about
    -4e-3 in bfloat16): a distance, not a similarity; taken as the jitted call
    takes it (review21). Beyond 4 eps it is refused."""
    rng = np.random.default_rng(0)
    e = jnp.asarray(rng.normal(size=(64, 8)), dtype)
    with jax.numpy_dtype_promotion("standard"):
        d = optax.losses.cosine_distance(e, e)
    assert float(jnp.min(d)) < 0  # the rounding this test is about
    y = jnp.zeros(64, jnp.int32)
    np.testing.assert_allclose(
        np.asarray(L.contrastive(d, y), np.float64), 0.5 * np.asarray(d, np.float64) ** 2
    )
    eps = float(jnp.finfo(dtype).eps)
    with pytest.raises(ValueError, match="distance must be non-negative"):
        L.contrastive(jnp.full(2, -5 * eps, dtype), jnp.zeros(2, jnp.int32))


def test_l2_penalty_convention_gradient_is_the_weights():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(3.0)}
    grad = jax.grad(L.l2_penalty)(params)
    jax.tree.map(np.testing.assert_allclose, grad, params)
    assert float(L.l2_penalty(params)) == pytest.approx(0.5 * (1 + 4 + 9))


def test_elastic_net_is_l1_times_l1_penalty_plus_l2_times_l2_penalty():
    params = _cast(CASES[-1], (_tree(),), jnp.float32)[0]
    expected = 0.3 * L.l1_penalty(params) + 2.0 * L.l2_penalty(params)
    np.testing.assert_allclose(L.elastic_net_penalty(params, 0.3, 2.0), expected, rtol=1e-6)


def test_penalties_over_mixed_dtype_tree_and_empty_tree():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.full(3, 2.0, jnp.float32)}
    out = L.l2_penalty(params)
    assert out.dtype == jnp.float32 and float(out) == pytest.approx(0.5 * (2 + 12))
    assert float(L.l1_penalty({})) == 0.0


# --------------------------------------------------------------------------
# weighted_sum
# --------------------------------------------------------------------------


def test_weighted_sum_reports_weighted_terms_that_add_up_to_the_total():
    total, parts = L.weighted_sum(
        {"cls": (1.0, jnp.float32(0.7)), "box": (5.0, jnp.float32(0.1)), "obj": (0.5, 2.0)}
    )
    assert list(parts) == ["cls", "box", "obj"]
    np.testing.assert_allclose([parts["cls"], parts["box"], parts["obj"]], [0.7, 0.5, 1.0])
    np.testing.assert_allclose(total, 2.2, rtol=1e-6)


def test_weighted_sum_detection_loss_trains_with_has_aux():
    # Classification + localisation + objectness, reported separately.
    rng = _rng()
    cls_labels = jnp.asarray(rng.integers(0, 3, size=8))
    box_true = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
    obj = jnp.asarray(rng.integers(0, 2, size=8))

    def loss_fn(w):
        cls_logits, box, obj_logit = w["cls"] * 1.0, w["box"] * 1.0, w["obj"] * 1.0
        return L.weighted_sum(
            {
                "cls": (
                    1.0,
                    L.softmax_cross_entropy_with_integer_labels(cls_logits, cls_labels).mean(),
                ),
                "box": (5.0, L.huber(box, box_true).mean()),
                "obj": (0.5, L.sigmoid_binary_cross_entropy(obj_logit, obj).mean()),
            }
        )

    w = {"cls": jnp.zeros((8, 3)), "box": jnp.zeros((8, 4)), "obj": jnp.zeros(8)}
    (total, parts), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(w)
    np.testing.assert_allclose(total, sum(parts.values()), rtol=1e-6)
    np.testing.assert_allclose(parts["cls"], np.log(3), rtol=1e-6)
    np.testing.assert_allclose(parts["obj"], 0.5 * np.log(2), rtol=1e-6)
    # The box gradient carries the weight 5: d/dbox of 5 * mean(huber).
    expected_box = 5 * np.clip(-np.asarray(box_true), -1, 1) / box_true.size
    np.testing.assert_allclose(grads["box"], expected_box, rtol=1e-5, atol=1e-7)


def test_weighted_sum_promotes_to_the_common_dtype():
    total, parts = L.weighted_sum(
        {"a": (1.0, jnp.bfloat16(1.0)), "b": (jnp.float32(2.0), jnp.float32(1.5))}
    )
    assert total.dtype == jnp.float32 and parts["a"].dtype == jnp.float32
    assert float(total) == 4.0


@pytest.mark.parametrize(
    "terms, error, match",
    [
        ({}, ValueError, "at least one"),
        ({"a": 1.0}, TypeError, "pair"),
        ({"a": (1.0, jnp.ones(3)), "b": (1.0, jnp.ones(2))}, ValueError, r"'a' \(3,\).*'b' \(2,\)"),
    ],
)
def test_weighted_sum_rejects_malformed_terms(terms, error, match):
    with pytest.raises(error, match=match):
        L.weighted_sum(terms)


@pytest.mark.parametrize(
    "terms, weight_shape",
    [
        # each weight broadcasts with its own value, not with the other term's
        ({"a": (jnp.ones(3), 1.0), "b": (1.0, jnp.ones(2))}, "(3,)"),
        # (3, 1) with (2,) broadcasts, to a (3, 2) total from (2,) values
        ({"a": (jnp.ones((3, 1)), jnp.ones(2)), "b": (1.0, jnp.ones(2))}, "(3, 1)"),
    ],
    ids=["no_broadcast", "enlarges"],
)
def test_weighted_sum_weight_must_fit_the_values_common_shape(terms, weight_shape):
    """(hunt80) The total of (2,) values is (2,), as sum(w * v) in NumPy over
    the values alone; a weight may not fail JAX's broadcast without naming its
    term, nor enlarge the total."""
    with pytest.raises(ValueError, match=rf"weight of 'a' has shape {re.escape(weight_shape)}"):
        L.weighted_sum(terms)
    total, _ = L.weighted_sum({"a": (jnp.array([2.0, 3.0]), 1.0), "b": (1.0, jnp.ones(2))})
    np.testing.assert_array_equal(total, [3.0, 4.0])  # a weight may broadcast a scalar value


# --------------------------------------------------------------------------
# Public surface and documentation
# --------------------------------------------------------------------------


def test_public_names_are_exported_and_documented():
    import gradlab as gl

    assert gl.losses is L
    assert set(L.__all__) == {c.name for c in CASES if "gamma_half" not in c.name} | {
        "weighted_sum"
    }
    for name in L.__all__:
        doc = getattr(L, name).__doc__
        assert doc and ">>>" in doc, f"{name} has no runnable example"


@pytest.mark.parametrize(
    "module", ["_regression", "_classification", "_metric", "_penalties", "_combine"]
)
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"gradlab.losses.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("label_dtype", [np.uint8, np.int16, np.int32, np.uint32])
def test_integer_labels_of_any_integer_dtype(label_dtype):
    # 255 is the largest uint8 label; 299 is the largest class index.
    logits = jnp.zeros((3, 300))
    labels = np.array([0, 255, 299 if label_dtype != np.uint8 else 1]).astype(label_dtype)
    out = L.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(out, [np.log(300)] * 3, rtol=1e-6)


def test_absolute_error_and_l1_penalty_have_zero_gradient_at_zero():
    # torch.nn.L1Loss backward is sign(pred - target), 0 at a zero residual, and
    # the L1 penalty's subgradient sign(w) keeps a weight at 0 there. (jnp.abs
    # has gradient 1 at 0: an L1 penalty would push zero weights away again.)
    x = jnp.asarray([0.0, 2.0, -3.0])
    np.testing.assert_array_equal(jax.grad(lambda p: jnp.sum(L.absolute_error(p, x)))(x), 0.0)
    g = jax.grad(lambda p: jnp.sum(L.absolute_error(p, jnp.zeros(3))))(x)
    np.testing.assert_array_equal(g, np.sign(np.asarray(x)))
    g = jax.grad(L.l1_penalty)({"w": x, "b": jnp.zeros(())})
    np.testing.assert_array_equal(g["w"], [0.0, 1.0, -1.0])
    assert float(g["b"]) == 0.0
    # ... and the values are still |x|, in the input's dtype
    y = jnp.asarray([-0.5, 0.0, 1.5], jnp.bfloat16)
    assert L.absolute_error(y, jnp.zeros(3, jnp.bfloat16)).dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(L.absolute_error(y, jnp.zeros(3, jnp.bfloat16)), np.float32), [0.5, 0.0, 1.5]
    )


# ============================================================================ label gradients

# Soft labels, learned label smoothing and distillation differentiate the loss
# with respect to the labels: d/dy [-sum y log p] = -log p, zero labels
# included (a `where(y == 0, 0, ...)` used to give 0 there). References: the
# formula, Optax and torch.
_LOGITS = np.array([[1.0, -2.0, 0.5, 3.0], [0.2, 0.1, -0.3, 0.0]], np.float32)
_SOFT = np.array([[0.0, 0.2, 0.0, 0.8], [0.5, 0.0, 0.5, 0.0]], np.float32)


def test_softmax_cross_entropy_gradient_wrt_labels_is_minus_log_softmax():
    grad = jax.grad(lambda y: L.softmax_cross_entropy(_LOGITS, y).sum())(jnp.asarray(_SOFT))
    want = -scipy.special.log_softmax(_LOGITS.astype(np.float64), axis=-1)
    np.testing.assert_allclose(grad, want, rtol=1e-6)
    with jax.numpy_dtype_promotion("standard"):
        theirs = jax.grad(lambda y: optax.losses.softmax_cross_entropy(_LOGITS, y).sum())(_SOFT)
    np.testing.assert_allclose(grad, theirs, rtol=1e-6)
    torch = pytest.importorskip("torch")
    y = torch.tensor(_SOFT, requires_grad=True)
    torch.nn.functional.cross_entropy(torch.tensor(_LOGITS), y, reduction="sum").backward()
    np.testing.assert_allclose(grad, y.grad.numpy(), rtol=1e-6)


def test_categorical_cross_entropy_gradient_wrt_labels_is_minus_log_p():
    probs = scipy.special.softmax(_LOGITS.astype(np.float64), axis=-1).astype(np.float32)
    grad = jax.grad(lambda y: L.categorical_cross_entropy(probs, y).sum())(jnp.asarray(_SOFT))
    np.testing.assert_allclose(grad, -np.log(probs.astype(np.float64)), rtol=1e-6)


def test_masked_logits_keep_a_finite_loss_and_logit_gradient_with_zero_labels():
    logits = jnp.array([1.0, -jnp.inf, 3.0])
    labels = jnp.array([0.0, 0.0, 1.0])
    value, grad = jax.value_and_grad(L.softmax_cross_entropy)(logits, labels)
    np.testing.assert_allclose(value, np.log1p(np.exp(-2.0)), rtol=1e-6)
    assert np.all(np.isfinite(grad)) and grad[1] == 0
    label_grad = jax.grad(lambda y: L.softmax_cross_entropy(logits, y))(labels)
    lse = np.log1p(np.exp(-2.0))  # -log p of the two live classes: 2 + lse, lse
    np.testing.assert_allclose(np.asarray(label_grad)[[0, 2]], [2 + lse, lse], rtol=1e-6)


def test_16_bit_leaves_and_inputs_are_accumulated_in_float32():
    # Penalties: each leaf was summed in its own dtype, then cast.
    from gradlab import losses as L

    w = {"emb": jnp.array([300.0], jnp.float16), "head": jnp.zeros(1, jnp.float32)}
    assert float(L.l2_penalty(w)) == 45000.0  # 300**2 / 2 overflowed float16: inf
    w = {"emb": jnp.ones(1001, jnp.bfloat16), "head": jnp.zeros(1, jnp.float32)}
    assert float(L.l1_penalty(w)) == 1001.0  # a bfloat16 sum rounded to 1000
    assert L.l1_penalty(w).dtype == jnp.float32
    # Distances: a float16 distance of 300 squared to inf, one of 1e-4 to 0.
    a = jnp.zeros((1, 2), jnp.float16)
    far, near = jnp.array([[300.0, 0.0]], jnp.float16), jnp.array([[1e-4, 0.0]], jnp.float16)
    np.testing.assert_allclose(np.float32(L.euclidean_distance(a, far)[0]), 300.0)
    np.testing.assert_allclose(np.float32(L.euclidean_distance(a, near)[0]), 1e-4, rtol=1e-3)
    assert L.euclidean_distance(a, far).dtype == jnp.float16
    negative = jnp.array([[400.0, 0.0]], jnp.float16)
    assert float(L.triplet_margin(a, far, negative)[0]) == 0.0  # was NaN


def test_unsigned_labels_are_range_checked_before_any_cast(x64):
    # uint64 2**32 + 2 was cast to int32 first: class 2, no error, no NaN.
    from gradlab import losses as L

    logits = jnp.array([[0.0, 1.0, 2.0, 3.0]])
    big = np.array([2**32 + 2], np.uint64)
    with pytest.raises(ValueError, match="got 4294967298"):
        L.softmax_cross_entropy_with_integer_labels(logits, big)
    assert np.isnan(jax.jit(L.softmax_cross_entropy_with_integer_labels)(logits, big)[0])
    want = L.softmax_cross_entropy_with_integer_labels(logits, np.array([2]))
    got = L.softmax_cross_entropy_with_integer_labels(logits, np.array([2], np.uint8))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("dtype", "logits"),
    [(jnp.bfloat16, [100.0, 99.0]), (jnp.bfloat16, [1000.0, 1000.0]),
     (jnp.float16, [1000.0, 999.0]), (jnp.float32, [1e6, 1e6 - 1])],
)  # fmt: skip
def test_integer_label_cross_entropy_of_a_well_classified_example_in_low_precision(dtype, logits):
    """A small loss was logsumexp(x) - x[label] of two large numbers, rounded in
    the logits' dtype (bfloat16 [100, 99]: 0.5, exactly log(1 + e^-1) = 0.3133)."""
    x = jnp.asarray([logits], dtype)
    exact = float(np.logaddexp(0.0, np.float64(logits[1]) - np.float64(logits[0])))
    got = L.softmax_cross_entropy_with_integer_labels(x, jnp.asarray([0]))
    assert got.dtype == dtype
    np.testing.assert_allclose(float(got[0]), exact, rtol=float(jnp.finfo(dtype).eps) * 2)


def test_half_a_square_that_fits_float16_is_not_inf():
    """0.5 * r**2 = 45000 fits float16 (max 65504) although r**2 = 90000 does not."""
    r = jnp.asarray([300.0], jnp.float16)
    for value in (L.huber(r, jnp.zeros(1, jnp.float16), delta=1000.0),
                  L.contrastive(r, jnp.zeros(1))):  # fmt: skip
        assert value.dtype == jnp.float16 and float(value[0]) == float(np.float16(45000.0))
    grad = jax.grad(lambda p: L.huber(p, jnp.zeros(1, jnp.float16), 1000.0).sum())(r)
    assert float(grad[0]) == 300.0


def test_penalties_scale_before_rounding_to_float16():
    # 0.5 * 300**2 = 45000 fits float16 (max 65504); 300**2 does not
    w = {"w": jnp.asarray([300.0], jnp.float16)}
    assert float(L.l2_penalty(w)) == float(np.float16(45000.0))
    assert float(L.elastic_net_penalty(w, 0.0, 1.0)) == float(np.float16(45000.0))


def test_a_nan_embedding_gives_a_nan_distance_and_triplet_loss():
    # sq > 0 is False for NaN: the distance was 0 and triplet_margin the finite
    # margin, while the gradient was NaN (a diverged model looked healthy)
    a = jnp.array([[jnp.nan, 0.0], [3.0, 4.0]])
    d = L.euclidean_distance(a, jnp.zeros((2, 2)))
    assert np.isnan(d[0]) and float(d[1]) == 5.0
    assert np.isnan(L.euclidean_distance(jnp.array([jnp.inf]), jnp.array([jnp.inf])))
    loss = L.triplet_margin(a, jnp.zeros((2, 2)), jnp.ones((2, 2)))
    assert np.isnan(loss[0]) and np.isfinite(loss[1])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda z: L.l1_penalty({"w": z}), r"params leaf \['w'\]"),
        (lambda z: L.l2_penalty({"w": z}), r"params leaf \['w'\]"),
        (lambda z: L.elastic_net_penalty({"w": z}, 1.0, 1.0), r"params leaf \['w'\]"),
        (lambda z: L.squared_error(z, jnp.zeros(2)), "pred"),
        (lambda z: L.huber(jnp.zeros(2), z), "target"),
        (lambda z: L.euclidean_distance(jnp.zeros(2), z), "b"),
        (lambda z: L.sigmoid_binary_cross_entropy(z, jnp.ones(2)), "logits"),
        (lambda z: L.hinge(jnp.ones(2), z), "labels_pm1"),
        (lambda z: L.contrastive(jnp.ones(2), jnp.zeros(2), margin=z[0]), "margin"),
        (lambda z: L.weighted_sum({"a": (1.0, z)}), "the value of 'a'"),
    ],
)
def test_complex_inputs_raise_type_error_naming_them(call, name):
    # astype(float) kept the real part: l2_penalty([3+4j, 1j]) was 4.5, not a TypeError
    with pytest.raises(TypeError, match=f"{name} must be (a )?real"):
        call(jnp.array([3 + 4j, 1j]))


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((E, E, E.astype(jnp.complex64)), TypeError, "negative must be real"),
        ((E, E.astype(jnp.complex64), E), TypeError, "positive must be real"),
        ((E.astype(jnp.complex64), E, E), TypeError, "anchor must be real"),
        ((jnp.zeros(()),) * 3, ValueError, "anchor and positive must have a last"),
        ((E, E, jnp.ones((2, 4))), ValueError, r"anchor shape \(2, 3\) and negative shape"),
    ],
    ids=["complex_negative", "complex_positive", "complex_anchor", "0d", "shapes"],
)
def test_triplet_margin_errors_name_its_own_arguments(args, error, message):
    # they named euclidean_distance's a and b, for the positive and negative alike (hunt80)
    with pytest.raises(error, match=message):
        L.triplet_margin(*args)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: L.contrastive(jnp.ones(2), np.array(["0", "1"])), "is_dissimilar"),
        (lambda: L.sigmoid_binary_cross_entropy(jnp.ones(2), np.array(["1", "0"])), "labels"),
        (lambda: L.softmax_cross_entropy(jnp.ones((1, 2)), np.array([["1", "0"]])), "one_hot"),
        (lambda: L.softmax_cross_entropy_with_integer_labels(jnp.ones((1, 2)), ["1"]), "labels"),
        (lambda: L.squared_error(["1.5"], jnp.ones(1)), "pred"),
        (lambda: L.huber(jnp.ones(()), None), "target"),
        (lambda: L.huber(jnp.ones(2), [1.0, None]), "target"),  # was float64 NaN, JAX's error
        (lambda: L.absolute_error([2**70, None], jnp.ones(2)), "pred"),
        (lambda: L.weighted_sum({"a": (1.0, "0.5")}), "the value of 'a'"),
        (lambda: L.l2_penalty({"w": jnp.ones(2), "rng": jax.random.key(0)}), r"\['rng'\]"),
        (lambda: jax.jit(L.l1_penalty)({"rng": jax.random.key(0)}), r"\['rng'\]"),
    ],
    ids=[
        "str_dissimilar",
        "str_labels",
        "str_one_hot",
        "str_indices",
        "str_pred",
        "none_target",
        "none_in_a_list",
        "none_with_a_huge_int",
        "str_value",
        "key_leaf",
        "key_leaf_jit",
    ],
)
def test_non_numeric_inputs_raise_type_error_naming_them(call, name):
    # NumPy's ufunc error, JAX's "not a valid JAX array type" or "Cannot call
    # abstract method astype" named no argument (hunt80)
    with pytest.raises(TypeError, match=f"{name} must be"):
        call()


def test_numpy_int64_values_beyond_int32_do_not_wrap():
    # jnp.asarray wrapped NumPy int64 to int32 before the float cast (x64 off)
    logits = jnp.array([[0.0, 1.0, 5.0]])
    for label in (2**32 + 2, -(2**32) + 1):
        with pytest.raises(ValueError, match=str(label)):
            L.softmax_cross_entropy_with_integer_labels(logits, np.array([label], np.int64))
    big = np.array([3_000_000_000], np.int64)
    assert float(L.squared_error(jnp.array([3e9]), big)[0]) == 0.0
    assert float(L.huber(jnp.array([5.0]), jnp.array([0.0]), delta=np.int64(2**32 + 1))[0]) == 12.5
    total, _ = L.weighted_sum({"a": (np.int64(2**31), 1.0)})
    assert float(total) == 2.0**31


def test_python_ints_beyond_int32_are_taken_at_their_value():
    """As NumPy int64 values are (above): a Python int, or a list of them, went
    through JAX's int32 and raised its OverflowError (hunt80)."""
    big = 3_000_000_000  # exact in float32
    assert float(L.squared_error(big, jnp.array(3e9))) == 0.0
    assert float(L.squared_error(jnp.array([3e9]), [big])[0]) == 0.0
    assert float(L.huber(big, 0.0)) == pytest.approx(3e9 - 0.5)  # delta * (|r| - delta / 2)
    assert float(L.l1_penalty([big, -big])) == 6e9
    assert float(L.weighted_sum({"count": (0.5, big)})[0]) == 1.5e9
    assert float(L.elastic_net_penalty({"w": [1]}, l1=big, l2=0.0)) == 3e9
    assert float(L.squared_error([2**70], jnp.array([2.0**70]))[0]) == 0.0  # beyond int64
    # next to a JAX scalar, still a number (review22)
    got = L.squared_error([jnp.float32(1), 2**70], jnp.array([1.0, 2.0**70]))
    assert got.tolist() == [0.0, 0.0]


def test_numpy_bfloat16_inputs_keep_their_dtype():
    # The NumPy fast path (integers straight to float) took ml_dtypes' bfloat16,
    # whose kind is not "f", for an integer: the loss came back float32.
    x = np.asarray([1.5, -2.0], jnp.bfloat16)
    assert L.squared_error(x, np.zeros(2, jnp.bfloat16)).dtype == jnp.bfloat16
    assert L.l2_penalty({"w": x}).dtype == jnp.bfloat16


@pytest.mark.parametrize("labels", [[2**32 + 2], [2**31], 2**32 + 2])
def test_integer_labels_as_python_ints_beyond_int32_are_range_checked(labels):
    """A Python int label beyond int32 is checked at its value, as a NumPy int64
    one is: it raised JAX's OverflowError, naming nothing (review21)."""
    logits = jnp.zeros((1, 3)) if isinstance(labels, list) else jnp.zeros(3)
    value = 2**31 if labels == [2**31] else 2**32 + 2
    with pytest.raises(ValueError, match=rf"labels must be class indices in \[0, 3\), got {value}"):
        L.softmax_cross_entropy_with_integer_labels(logits, labels)
    ok = [2] if isinstance(labels, list) else 2  # small Python ints work as before
    np.testing.assert_allclose(
        L.softmax_cross_entropy_with_integer_labels(logits, ok),
        np.log(3.0) * np.ones(np.shape(ok)),
        rtol=1e-6,
    )
