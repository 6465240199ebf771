"""Reliability, item 4: determinism and properties.

Determinism (the runs of ``tests/resume_worker.py``, every public optimizer,
L-BFGS with its line search and a composed one):

* the same inputs give bit-identical params across runs -- in another process;
* ``jax.jit(step)`` and ``lax.scan`` over the same step are bit-identical;
* eager and jitted runs are NOT bit-identical in general, and this is XLA, not
  gradlab: inside a jitted kernel XLA:CPU contracts ``a * b + c`` into one fused
  multiply-add, rounded once (eagerly each op rounds: twice). Any step with a
  multiply-add -- a moment update, the model's own gradient ``c * p + noise`` --
  may differ in the last bit; measured here: at most ~2e-7 relative after two
  steps (L-BFGS, whose dot products amplify it: ~3e-6). The tests pin that
  bound and show the FMA itself.

Properties (hypothesis, random pytrees -- nested dicts, lists and tuples,
scalar and empty leaves, float32/bfloat16/float16 mixed -- and random valid
hyperparameters of 16 optimizers): updates are finite for finite inputs and come
in each param's dtype; the state's structure, shapes, dtypes and weak types do
not change from step to step; ``jax.eval_shape(tx.init, params)`` is the real
state's shape; ``gl.packed(tx)`` gives the numbers ``tx`` gives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_helpers import OPTIMIZERS, bits, resume_run, saved_leaves  # noqa: F401
from resume_worker import JIT_ROWS, NOT_EAGER
from test_packing import PUBLIC_TRANSFORMS

import gradlab as gl

ROWS = [*OPTIMIZERS, "lbfgs_zoom", "composed"]

# ------------------------------------------------------------------ determinism


@pytest.mark.parametrize("row", ROWS)
def test_the_same_run_in_another_process_is_bit_identical(row, resume_run):  # noqa: F811
    first = saved_leaves(resume_run, row, "final")
    again = saved_leaves(resume_run, row, "rerun")
    assert [bits(x) for x in again] == [bits(x) for x in first], row


@pytest.mark.parametrize("row", JIT_ROWS)
def test_jit_of_the_step_and_lax_scan_are_bit_identical(row, resume_run):  # noqa: F811
    jitted = saved_leaves(resume_run, row, "jit")
    scanned = saved_leaves(resume_run, row, "scan")
    assert [bits(x) for x in jitted] == [bits(x) for x in scanned], row


# each of these differed by an ulp with scan(unroll=2 or 3) before the change
UNROLL_CASES = ["adam", "adamw", "amsgrad", "lamb", "lion", "radam", "yogi"]


@pytest.mark.parametrize("name", UNROLL_CASES)
def test_an_unrolled_scan_gives_the_bits_of_the_jitted_step(name):
    """scan(unroll=2) lets XLA contract the loop body's multiply-adds anew: the
    moment updates use Optax's operand order (1-d) g^k + d m, which it contracts
    the same way as in jit(step); d m + (1-d) g^k changed by an ulp. (Not all
    optimizers: the README lists those that still can, as Optax's do.)"""
    tx = PUBLIC_TRANSFORMS[name]()
    x = jnp.linspace(-1.0, 1.0, 15, dtype=jnp.float32).reshape(5, 3)
    y = jnp.linspace(0.0, 1.0, 20, dtype=jnp.float32).reshape(5, 4)
    params = {"w": jnp.sin(jnp.arange(12.0)).reshape(3, 4), "b": jnp.linspace(-1.0, 1.0, 4)}

    def step(carry, _):
        p, s = carry
        v, g = jax.value_and_grad(lambda p: jnp.mean((x @ p["w"] + p["b"] - y) ** 2))(p)
        u, s = tx.update(g, s, p, value=v)
        return (gl.apply_updates(p, u), s), None

    jitted = jax.jit(lambda c: step(c, None)[0])
    looped = (params, tx.init(params))
    for _ in range(6):
        looped = jitted(looped)
    unrolled = jax.jit(lambda c: jax.lax.scan(step, c, None, length=6, unroll=2)[0])(
        (params, tx.init(params))
    )
    leaves = jax.tree.leaves
    assert [bits(v) for v in leaves(unrolled)] == [bits(v) for v in leaves(looped)]


@pytest.mark.parametrize("row", [r for r in ROWS if r not in NOT_EAGER])
def test_eager_and_jitted_runs_agree_to_the_last_bits(row, resume_run):  # noqa: F811
    eager = saved_leaves(resume_run, row, "eager")
    scanned = saved_leaves(resume_run, row, "scan")
    rtol = 1e-5 if row.startswith("lbfgs") else 1e-6
    for a, b in zip(eager, scanned, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-7, err_msg=row)


def test_sign_sgd_eager_and_jitted_are_bit_identical(resume_run):  # noqa: F811
    """No multiply-add in signSGD's arithmetic, and the gradient's rounding does
    not flip a sign here: the one optimizer bit-identical whatever XLA fuses."""
    eager = saved_leaves(resume_run, "sign_sgd", "eager")
    scanned = saved_leaves(resume_run, "sign_sgd", "scan")
    assert [bits(x) for x in eager] == [bits(x) for x in scanned]


def test_jit_rounds_a_multiply_add_once_where_eager_rounds_twice():
    """Why eager and jit differ: XLA:CPU fuses ``a*b + c`` into an FMA."""
    keys = jax.random.split(jax.random.key(0), 3)
    a, b, c = (jax.random.normal(k, (4096,)) for k in keys)
    eager = np.asarray(a * b + c)
    jitted = np.asarray(jax.jit(lambda a, b, c: a * b + c)(a, b, c))
    exact = (np.float64(a) * np.float64(b) + np.float64(c)).astype(np.float32)
    assert np.array_equal(jitted, exact)  # one rounding of the exact result: FMA
    assert not np.array_equal(eager, exact)  # two roundings
    np.testing.assert_allclose(eager, jitted, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ properties

SHAPES = [(), (0,), (1,), (3,), (2, 3), (2, 0), (4, 2)]
DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16]


def _trees():
    leaf = st.tuples(st.sampled_from(SHAPES), st.sampled_from(DTYPES))
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3),
            st.lists(children, min_size=1, max_size=3).map(tuple),
            st.dictionaries(st.sampled_from("abcdw"), children, min_size=1, max_size=3),
        ),
        max_leaves=6,
    )


def _is_spec(x):
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], type)


def _materialise(spec, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(rng.normal(size=s[0]), np.float32).astype(s[1]),
        spec,
        is_leaf=_is_spec,
    )


lr = st.floats(1e-4, 0.5)
beta = st.floats(0.0, 0.99)
eps = st.floats(1e-8, 1e-3)  # eps = 0 and a zero gradient is 0/0 (as in torch and Optax)
decay = st.floats(0.0, 1.0)
flag = st.booleans()


def _adamw(lr, b1, b2, e, wd):
    return gl.adamw(lr, b1, b2, e, weight_decay=wd)


def _lamb(lr, b1, b2, e, wd):
    return gl.lamb(lr, b1, b2, e, weight_decay=wd)


def _novograd(lr, b1, b2, wd):
    return gl.novograd(lr, b1, b2, weight_decay=wd)


def _schedule_free_adamw(lr, b1, wd):
    return gl.schedule_free_adamw(lr, b1=max(b1, 0.01), weight_decay=wd)


OPTIMIZER_STRATEGIES = {
    "sgd": st.builds(
        lambda lr, m, n: gl.sgd(lr, momentum=m, nesterov=n and m is not None and m > 0),
        lr, st.none() | st.floats(0.01, 0.99), st.booleans(),
    ),
    "adam": st.builds(lambda *a: gl.adam(*a[:4], nesterov=a[4]), lr, beta, beta, eps, flag),
    "adamw": st.builds(_adamw, lr, beta, beta, eps, decay),
    "rmsprop": st.builds(lambda lr, d, e, c: gl.rmsprop(lr, d, e, centered=c), lr, beta, eps, flag),
    "adagrad": st.builds(gl.adagrad, lr, st.floats(0.0, 1.0), eps),
    "lion": st.builds(gl.lion, lr, st.floats(0.0, 1.0), st.floats(0.0, 1.0), decay),
    "lamb": st.builds(_lamb, lr, beta, beta, eps, decay),
    "adafactor": st.builds(
        lambda lr, m, f: gl.adafactor(lr, min_dim_size_to_factor=f, momentum=m),
        lr, st.none() | beta, st.sampled_from([1, 2, 128]),
    ),
    "sm3": st.builds(gl.sm3, lr, beta, eps),
    "yogi": st.builds(gl.yogi, lr, beta, beta, eps),
    "novograd": st.builds(_novograd, lr, beta, beta, decay),
    "radam": st.builds(gl.radam, lr, beta, beta, eps),
    "adan": st.builds(gl.adan, lr, beta, beta, beta, eps),
    "rprop": st.builds(gl.rprop, lr),
    "signum": st.builds(gl.signum, lr, beta),
    "schedule_free_adamw": st.builds(_schedule_free_adamw, lr, beta, decay),
}  # fmt: skip


def _signature(tree):
    return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x), jax.typeof(x).weak_type), tree)


def _run(tx, params, grads):
    state = tx.init(params)
    signature = _signature(state)
    abstract = jax.eval_shape(tx.init, params)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), abstract) == jax.tree.map(
        lambda x: (x.shape, x.dtype), state
    ), "eval_shape(tx.init) differs from the state"
    for g in grads:
        updates, state = tx.update(g, state, params)
        assert _signature(state) == signature, "the state's shapes or dtypes changed"
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
            assert u.dtype == p.dtype and u.shape == p.shape
            assert np.all(np.isfinite(np.asarray(u, np.float32)))
        params = gl.apply_updates(params, updates)
    return params


@settings(max_examples=12)
@given(
    spec=_trees(),
    choice=st.sampled_from(sorted(OPTIMIZER_STRATEGIES)).flatmap(
        lambda name: st.tuples(st.just(name), OPTIMIZER_STRATEGIES[name])
    ),
    seed=st.integers(0, 2**16),
)
def test_random_trees_and_hyperparameters_keep_the_contract_and_pack_to_the_same_numbers(
    spec, choice, seed
):
    name, tx = choice
    params = _materialise(spec, seed)
    grads = [_materialise(spec, seed + k + 1) for k in range(2)]
    plain = _run(tx, params, grads)
    packed = _run(gl.packed(tx, max_leaf_size=6), params, grads)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(packed), strict=True):
        # bfloat16/float16 params: the same float32 arithmetic, rounded once (a
        # global norm summed in another order may round a last bit differently)
        tol = 1e-5 if a.dtype == jnp.float32 else 1e-2
        np.testing.assert_allclose(
            np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=tol, atol=tol, err_msg=name
        )


FIXED = {"w": jnp.asarray([[0.5, -1.0], [2.0, 0.1]]), "b": jnp.asarray([0.3, -0.2])}


@settings(max_examples=25)
@given(
    choice=st.sampled_from(sorted(OPTIMIZER_STRATEGIES)).flatmap(
        lambda name: st.tuples(st.just(name), OPTIMIZER_STRATEGIES[name])
    ),
    scale=st.sampled_from([0.0, 1e-3, 1.0, 1e3]),
)
def test_random_hyperparameters_give_finite_updates_for_any_gradient_size(choice, scale):
    """One tree (kernels shared), many hyperparameters: zero, small and large
    gradients keep every update finite."""
    _, tx = choice
    grads = [jax.tree.map(lambda p, k=k: scale * jnp.cos(p * (k + 1.0)), FIXED) for k in range(2)]
    _run(tx, FIXED, grads)
