"""Each building block against its NumPy reference (API.md §3)."""

from __future__ import annotations

import re

import cases
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import references as ref
from cases import BLOCK_CASES, BLOCK_SHAPES
from hypothesis import given
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

import gradlab as gl


def unflatten(flat, dtype=jnp.float32):
    """A flat vector as the blocks' params tree {"a": (3,), "b": (2, 2), "c": ()}."""
    out, i = {}, 0
    for k in sorted(BLOCK_SHAPES):
        n = int(np.prod(BLOCK_SHAPES[k]))
        out[k] = jnp.asarray(flat[i : i + n], dtype).reshape(BLOCK_SHAPES[k])
        i += n
    return out


def run_block(tx, updates_seq, params_flat, run_mode):
    """Feed the rows of ``updates_seq`` through ``tx`` (fixed params); outputs flattened."""

    def run(updates_seq, params_flat):
        params = unflatten(params_flat)
        state, outs = tx.init(params), []
        for u in updates_seq:
            out, state = tx.update(unflatten(u), state, params)
            outs.append(ravel_pytree(out)[0])
        return jnp.stack(outs), state

    return run_mode(run)(jnp.asarray(updates_seq), jnp.asarray(params_flat))


@pytest.mark.parametrize("case", BLOCK_CASES, ids=repr)
def test_block_matches_reference(case, run_mode):
    updates = cases.BLOCK_UPDATES
    out, _ = run_block(case.make(), updates, cases.BLOCK_PARAMS, run_mode)
    want = case.reference(updates.astype(np.float64), cases.BLOCK_PARAMS.astype(np.float64))
    np.testing.assert_allclose(np.asarray(out, np.float64), want, rtol=case.rtol, atol=case.atol)


def test_clip_by_global_norm_rescales_to_exactly_max_norm():
    tx = gl.clip_by_global_norm(2.0)
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array(12.0)}  # norm 13
    out, _ = tx.update(grads, tx.init(grads))
    np.testing.assert_allclose(out["a"], [6 / 13, 8 / 13], rtol=1e-6)
    np.testing.assert_allclose(out["b"], 24 / 13, rtol=1e-6)


def test_clip_by_global_norm_below_threshold_is_exactly_unchanged():
    tx = gl.clip_by_global_norm(13.0 + 1e-3)
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array(12.0)}
    out, _ = jax.jit(tx.update)(grads, tx.init(grads))
    np.testing.assert_array_equal(out["a"], grads["a"])
    np.testing.assert_array_equal(out["b"], grads["b"])


def test_clip_by_global_norm_of_zero_gradients_gives_zeros_not_nan(run_mode):
    tx = gl.clip_by_global_norm(1.0)
    zeros = {"a": jnp.zeros(3), "b": jnp.zeros(())}
    out, _ = run_mode(tx.update)(zeros, tx.init(zeros))
    for x in jax.tree.leaves(out):
        np.testing.assert_array_equal(x, np.zeros_like(x))


def test_clip_by_global_norm_is_differentiable_at_zero_gradients():
    # API §1: update works under jax.grad. Below the threshold the block is the
    # identity, so d(sum(out))/dg is 1 everywhere, including at g = 0.
    tx = gl.clip_by_global_norm(1.0)
    g = jax.grad(lambda z: jnp.sum(tx.update({"a": z}, tx.init({"a": z}))[0]["a"]))(jnp.zeros(3))
    np.testing.assert_array_equal(g, np.ones(3))


def test_clip_by_global_norm_on_bfloat16_keeps_dtype():
    tx = gl.clip_by_global_norm(1.0)
    grads = {"a": jnp.array([3.0, 4.0], jnp.bfloat16)}
    out, _ = tx.update(grads, tx.init(grads))
    assert out["a"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out["a"], np.float64), [0.6, 0.8], rtol=1e-2)


def test_zero_nans_replaces_nans_and_records_where_it_found_them(run_mode):
    tx = gl.zero_nans()
    grads = {"a": jnp.array([1.0, jnp.nan, -2.0]), "b": jnp.array([[0.5, 1.0]]), "c": jnp.nan}
    out, state = run_mode(tx.update)(grads, tx.init(grads))
    np.testing.assert_array_equal(out["a"], [1.0, 0.0, -2.0])
    np.testing.assert_array_equal(out["b"], [[0.5, 1.0]])
    np.testing.assert_array_equal(out["c"], 0.0)
    assert state.found_nan == {"a": True, "b": False, "c": True}
    # The flags describe the latest update only.
    _, state = tx.update(out, state)
    assert not any(jax.tree.leaves(state.found_nan))


def test_keep_params_nonnegative_stops_exactly_at_zero():
    tx = gl.keep_params_nonnegative()
    params = {"p": jnp.array([1.0, 0.5, 0.0, 2.0])}
    updates = {"p": jnp.array([-2.0, -0.25, -1.0, 3.0])}
    out, _ = tx.update(updates, tx.init(params), params)
    np.testing.assert_array_equal(out["p"], [-1.0, -0.25, 0.0, 3.0])
    np.testing.assert_array_equal(gl.apply_updates(params, out)["p"], [0.0, 0.25, 0.0, 5.0])


@pytest.mark.parametrize(
    ("p_dtype", "u_dtype", "p", "u"),
    [
        (jnp.bfloat16, jnp.float32, 1.0, -1.0001),  # u rounded to bf16 first: -1.0, "no clip"
        (jnp.float16, jnp.float32, 1.0, -1.0001),
        (jnp.float32, jnp.float16, 0.1, -0.5),
        (jnp.float32, jnp.bfloat16, 0.1, -0.5),  # -p in bf16 is -0.10009765625: overshot
    ],
)
def test_keep_params_nonnegative_across_dtypes_never_goes_below_zero(p_dtype, u_dtype, p, u):
    """The block's contract, p + u >= 0 after apply_updates (which adds in the
    wider dtype), with an update of another float dtype (hunt83: -1e-4 came out).
    Reference: optax.keep_params_nonnegative + optax.apply_updates, 0 exactly; an
    update narrower than its param lands within one of its ulps above 0."""

    params, updates = jnp.full((1,), p, p_dtype), jnp.full((1,), u, u_dtype)
    tx = gl.keep_params_nonnegative()
    out, _ = jax.jit(tx.update)(updates, tx.init(params), params)
    assert out.dtype == u_dtype
    new = float(gl.apply_updates(params, out)[0])
    with jax.numpy_dtype_promotion("standard"):
        clipped, _ = optax.keep_params_nonnegative().update(updates, None, params)
        want = float(optax.apply_updates(params, clipped)[0])
    assert want == 0.0
    narrower = jnp.finfo(u_dtype).bits < jnp.finfo(p_dtype).bits
    assert 0.0 <= new <= (abs(p) * float(jnp.finfo(u_dtype).eps) if narrower else 0.0)

    def clipped_param(p, u):  # differentiable (meta-learning), as optax's: d/dp (p - p) = 0
        out, _ = tx.update(u, tx.init(p), p)
        return gl.apply_updates(p, out)[0].astype(jnp.float32)

    grads = jax.grad(clipped_param, argnums=(0, 1))(params, updates)
    assert [float(g[0]) for g in grads] == [0.0, 0.0]
    # a param beyond the update's range: -p is -inf there, and stays so (not NaN)
    if u_dtype == jnp.float16:
        big = jnp.full((1,), 1e5, jnp.float32)
        out, _ = tx.update(jnp.full((1,), -jnp.inf, u_dtype), tx.init(big), big)
        assert float(out[0]) == -np.inf


def test_blocks_that_read_params_require_them():
    grads = {"a": jnp.ones(2)}
    for tx in (gl.add_decayed_weights(0.1), gl.keep_params_nonnegative()):
        with pytest.raises(ValueError, match="params"):
            tx.update(grads, tx.init(grads))


def test_a_weight_decay_known_to_be_zero_runs_without_params():
    """adadelta's default weight_decay=0 needs no params, as sgd or adam do
    (torch's Adadelta); the decay's own value is used, not its default."""
    grads = {"a": jnp.array([1.0, -2.0])}
    tx = gl.adadelta()
    state = tx.init(grads)
    without, _ = tx.update(grads, state)
    with_params, _ = tx.update(grads, state, {"a": jnp.array([5.0, 7.0])})
    np.testing.assert_array_equal(without["a"], with_params["a"])
    # a traced weight decay may be nonzero: params are still required
    traced = jax.jit(lambda wd: gl.add_decayed_weights(wd).update(grads, None)[0])
    with pytest.raises(ValueError, match="add_decayed_weights uses the params"):
        traced(0.0)


# --------------------------------------------------------------------------
# State dtypes
# --------------------------------------------------------------------------


def test_adam_direction_reads_the_first_moment_as_stored_in_mu_dtype():
    # torch's Adam updates exp_avg in place in its own dtype and steps with it;
    # gradlab likewise reads m back as stored (bfloat16 here). One step, g = 1:
    # m = 0.1 is stored as bfloat16 0.10009765625, so the direction is
    # 1.0009765625 / (1 + eps), not 1 (0.1% apart; the params are float32).
    tx = gl.scale_by_adam(mu_dtype=jnp.bfloat16)
    out, state = tx.update(jnp.ones(3), tx.init(jnp.zeros(3)))
    m_stored = float(np.asarray(0.1, jnp.bfloat16))
    want = (m_stored / 0.1) / (np.sqrt(0.001 / 0.001) + 1e-8)
    np.testing.assert_allclose(out, np.full(3, want), rtol=1e-6)
    assert float(state.mu[0]) == m_stored


def test_adam_mu_dtype_bfloat16_stores_first_moment_in_bfloat16():
    params = unflatten(cases.BLOCK_PARAMS)
    updates = cases.BLOCK_UPDATES
    for tx in (gl.adam(0.1, mu_dtype=jnp.bfloat16), gl.scale_by_adam(mu_dtype=jnp.bfloat16)):
        state = tx.init(params)
        outs = []
        for u in updates:
            out, state = tx.update(unflatten(u), state, params)
            outs.append(np.asarray(ravel_pytree(out)[0], np.float64))
        adam_state = state if isinstance(state, gl.ScaleByAdamState) else state[0]
        assert all(m.dtype == jnp.bfloat16 for m in jax.tree.leaves(adam_state.mu))
        assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(adam_state.nu))
        assert all(o.dtype == jnp.float32 for o in jax.tree.leaves(out))
        scale = 1.0 if isinstance(state, gl.ScaleByAdamState) else -0.1
        want = scale * ref.scale_by_adam(updates.astype(np.float64), 0.9, 0.999, 1e-8)
        # m is rounded to bfloat16 (8 bits, 0.4%) each step; a few roundings.
        np.testing.assert_allclose(np.stack(outs), want, rtol=2e-2, atol=2e-2 * abs(scale))


def _bf16(x):
    """Round to bfloat16 and back: what a bfloat16 state leaf stores."""
    return np.asarray(np.asarray(x, np.float64).astype(jnp.bfloat16), np.float64)


def _stored_state_reference(name, gs, stored):
    """Outputs of ``name`` for gradients ``gs`` (float64), the state rounded by
    ``stored`` after each step (``_bf16``: as stored; identity: unrounded)."""
    outs = []
    v = m = np.zeros_like(gs[0])
    if name == "rss":
        v = stored(np.full_like(gs[0], 0.1))
    for t, g in enumerate(gs, start=1):
        if name == "trace":
            v = stored(0.9 * v + g)
            outs.append(v)
        elif name == "ema":
            v = stored(0.8 * v + 0.2 * g)
            outs.append(v / (1 - 0.8**t))
        elif name in ("adam", "adam_mu"):
            m = stored(0.9 * m + 0.1 * g)
            v = (stored if name == "adam" else (lambda x: x))(0.99 * v + 0.01 * g * g)
            outs.append((m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-8))
        elif name == "rms":
            v = stored(0.9 * v + 0.1 * g * g)
            outs.append(g / (np.sqrt(v) + 1e-8))
        elif name == "rms_centered":
            v, m = stored(0.9 * v + 0.1 * g * g), stored(0.9 * m + 0.1 * g)
            outs.append(g / (np.sqrt(np.maximum(v - m * m, 0)) + 1e-8))
        elif name == "rss":
            v = stored(v + g * g)
            outs.append(g / (np.sqrt(v) + 1e-7))
    return np.stack(outs)


# name: (block, dtype of the params it is initialised with)
STORED_STATE_BLOCKS = {
    "trace": (lambda: gl.trace(0.9, accumulator_dtype=jnp.bfloat16), jnp.float32),
    "ema": (lambda: gl.ema(0.8, accumulator_dtype=jnp.bfloat16), jnp.float32),
    "adam": (lambda: gl.scale_by_adam(0.9, 0.99), jnp.bfloat16),  # m and v in bfloat16
    "adam_mu": (lambda: gl.scale_by_adam(0.9, 0.99, mu_dtype=jnp.bfloat16), jnp.float32),
    "rms": (lambda: gl.scale_by_rms(0.9), jnp.bfloat16),
    "rms_centered": (lambda: gl.scale_by_rms(0.9, centered=True), jnp.bfloat16),
    "rss": (lambda: gl.scale_by_rss(0.1), jnp.bfloat16),
}


@pytest.mark.parametrize("name", STORED_STATE_BLOCKS)
def test_every_stateful_block_reads_its_state_as_stored(name, run_mode):
    # torch updates low-precision state in place and steps with it; gradlab's
    # blocks compute their output from the state as stored (rounded), not from
    # the unrounded float32 value. float32 gradients, bfloat16 state.
    make, param_dtype = STORED_STATE_BLOCKS[name]
    gs = np.random.default_rng(5).normal(0, 1, (4, 6)).astype(np.float32)
    tx = make()

    def run(gs):
        state, outs = tx.init(jnp.zeros(6, param_dtype)), []
        for g in gs:
            out, state = tx.update(g, state)
            outs.append(out)
        return jnp.stack(outs)

    got = np.asarray(run_mode(run)(jnp.asarray(gs)), np.float64)
    as_stored = _stored_state_reference(name, gs.astype(np.float64), _bf16)
    unrounded = _stored_state_reference(name, gs.astype(np.float64), lambda x: x)
    np.testing.assert_allclose(got, as_stored, rtol=2e-6, atol=1e-6)
    # ... and the test can tell the two apart:
    assert not np.allclose(as_stored, unrounded, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("max_norm", [2.6, 3.0, 4.9])
def test_clip_by_global_norm_between_max_norm_and_twice_max_norm(max_norm, run_mode):
    # norm 5: every max_norm here lies in (norm/2, norm), where a factor of
    # max/(2 norm), or a clip only above 2*max_norm, would go unnoticed by the
    # cases far above or below the limit.
    updates = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[0.0, 4.0]])}
    tx = gl.clip_by_global_norm(max_norm)
    out, _ = run_mode(tx.update)(updates, tx.init(updates))
    want = ref.clip_by_global_norm([np.array([3.0, 0.0]), np.array([[0.0, 4.0]])], max_norm)
    np.testing.assert_allclose(out["a"], want[0], rtol=1e-6)
    np.testing.assert_allclose(out["b"], want[1], rtol=1e-6)
    norm = np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(out)))
    np.testing.assert_allclose(norm, max_norm, rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [lambda d: gl.trace(0.9, accumulator_dtype=d), lambda d: gl.ema(0.9, accumulator_dtype=d)],
)
def test_momentum_accumulator_dtype_sets_the_buffer_dtype(make):
    params = unflatten(cases.BLOCK_PARAMS)
    tx = make(jnp.bfloat16)
    state = tx.init(params)
    out, state = tx.update(unflatten(cases.BLOCK_UPDATES[0]), state, params)
    buffers = jax.tree.leaves(state[-1])
    assert buffers and all(b.dtype == jnp.bfloat16 for b in buffers)
    assert all(o.dtype == jnp.float32 for o in jax.tree.leaves(out))


# --------------------------------------------------------------------------
# add_noise: statistics, determinism
# --------------------------------------------------------------------------

NOISE_SAMPLES = 20_000


def _noise_run(seed, eta=0.5, gamma=0.55, steps=4):
    tx = gl.add_noise(eta, gamma, seed)
    base = {"x": jnp.full(NOISE_SAMPLES, 3.0), "y": jnp.full((100, 2), -1.0)}

    def body(state, _):
        out, state = tx.update(base, state)
        return state, (out["x"] - 3.0, out["y"] + 1.0)

    _, (x, y) = jax.lax.scan(body, tx.init(base), None, length=steps)
    return x, y


_noise_run_jitted = jax.jit(_noise_run, static_argnums=(1, 2, 3))


def _noise_run_jit(seed, eta, gamma, steps):
    x, y = _noise_run_jitted(seed, eta, gamma, steps)
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def test_add_noise_has_zero_mean_and_annealed_variance():
    eta, gamma = 0.5, 0.55
    x, y = _noise_run_jit(0, eta, gamma, 4)
    for t in range(4):
        var = ref.add_noise_variance(eta, gamma, t)
        # Sample variance of n normals: relative std sqrt(2/n) = 1%; allow 5 sigma.
        np.testing.assert_allclose(np.var(x[t]), var, rtol=5 * np.sqrt(2 / NOISE_SAMPLES))
        assert abs(np.mean(x[t])) < 5 * np.sqrt(var / NOISE_SAMPLES)
    assert np.std(y) > 0  # every leaf gets noise


def test_add_noise_is_deterministic_for_a_seed_and_differs_across_seeds_and_leaves():
    x0, y0 = _noise_run_jit(0, 0.5, 0.55, 4)
    x0b, y0b = _noise_run_jit(0, 0.5, 0.55, 4)
    x1, _ = _noise_run_jit(1, 0.5, 0.55, 4)
    np.testing.assert_array_equal(x0, x0b)
    np.testing.assert_array_equal(y0, y0b)
    assert not np.allclose(x0, x1)
    # Steps draw fresh noise, and leaves do not share it.
    assert not np.allclose(x0[0], x0[1])
    assert not np.allclose(x0[0][:200], y0[0].ravel())


def test_add_noise_with_zero_eta_adds_nothing(run_mode):
    tx = gl.add_noise(0.0, 0.55, 3)
    u = {"x": jnp.arange(4.0)}
    out, _ = run_mode(tx.update)(u, tx.init(u))
    np.testing.assert_array_equal(out["x"], np.arange(4.0))


def test_add_noise_on_float64_leaves_scales_by_a_float64_std(x64):
    # The std was computed in float32: float64 noise was off by ~1e-8 relative,
    # and eager and jitted runs differed in the last float32 bits.
    eta, gamma = 0.0390625, 0.625
    tx = gl.add_noise(eta, gamma, seed=0)
    p = jnp.zeros(3, jnp.float64)
    state, step = tx.init(p), jax.jit(tx.update)
    for t in range(3):
        out, new_state = step(p, state)
        _, k = jax.random.split(jax.random.wrap_key_data(state.rng_key))
        z = np.asarray(jax.random.normal(k, (3,), jnp.float64))
        np.testing.assert_allclose(out, np.sqrt(eta / (1 + t) ** gamma) * z, rtol=1e-15)
        np.testing.assert_allclose(out, tx.update(p, state)[0], rtol=1e-15)  # eager = jit
        state = new_state


def test_add_noise_keeps_low_precision_dtype():
    tx = gl.add_noise(0.1, 0.55, 0)
    u = {"x": jnp.zeros(8, jnp.bfloat16)}
    out, state = tx.update(u, tx.init(u))
    assert out["x"].dtype == jnp.bfloat16 and np.any(np.asarray(out["x"], np.float32) != 0)
    assert state.count.dtype == jnp.int32 and int(state.count) == 1


# --------------------------------------------------------------------------
# Properties (hypothesis): one compiled function each, many inputs
# --------------------------------------------------------------------------


def _f32(x: float) -> float:
    """``x`` rounded to float32 (hypothesis wants bounds exactly representable)."""
    return float(np.float32(x))


_floats = st.floats(-1e3, 1e3, width=32, allow_subnormal=False)


@jax.jit
def _clip_global(u, v, max_norm):
    tx = gl.clip_by_global_norm(max_norm)  # traced max_norm: no recompilation
    out, _ = tx.update({"u": u, "v": v}, tx.init({"u": u, "v": v}))
    return out["u"], out["v"]


@given(
    u=hnp.arrays(np.float32, (5,), elements=_floats),
    v=hnp.arrays(np.float32, (2, 2), elements=_floats),
    max_norm=st.floats(_f32(1e-3), 1e3, width=32),
)
def test_clip_by_global_norm_output_norm_is_at_most_max_norm(u, v, max_norm):
    out_u, out_v = _clip_global(u, v, np.float32(max_norm))
    norm_in = np.sqrt(np.sum(u.astype(np.float64) ** 2) + np.sum(v.astype(np.float64) ** 2))
    norm_out = np.sqrt(
        np.sum(np.asarray(out_u, np.float64) ** 2) + np.sum(np.asarray(out_v, np.float64) ** 2)
    )
    assert norm_out <= max_norm * (1 + 1e-5)
    want = ref.clip_by_global_norm([u, v], float(np.float32(max_norm)))
    np.testing.assert_allclose(out_u, want[0], rtol=1e-5, atol=1e-6 * max(norm_in, 1))
    np.testing.assert_allclose(out_v, want[1], rtol=1e-5, atol=1e-6 * max(norm_in, 1))


@jax.jit
def _nonnegative(u, p):
    tx = gl.keep_params_nonnegative()
    out, _ = tx.update({"p": u}, tx.init({"p": p}), {"p": p})
    return out["p"], gl.apply_updates({"p": p}, out)["p"]


@given(
    u=hnp.arrays(np.float32, (6,), elements=_floats),
    p=hnp.arrays(np.float32, (6,), elements=st.floats(0, 1e3, width=32)),
)
def test_keep_params_nonnegative_keeps_params_nonnegative(u, p):
    out, new_p = _nonnegative(u, p)
    assert np.all(np.asarray(new_p) >= 0)
    np.testing.assert_array_equal(out, ref.keep_params_nonnegative(u, p).astype(np.float32))


@jax.jit
def _adam_first_step(g):
    tx = gl.scale_by_adam()
    out, _ = tx.update({"g": g}, tx.init({"g": g}))
    return out["g"]


@given(
    g=hnp.arrays(
        np.float32,
        (6,),
        elements=st.floats(_f32(-1e15), _f32(1e15), width=32, allow_subnormal=False),
    )
)
def test_adam_first_step_is_at_most_one_per_coordinate(g):
    # Step 1: m̂ = g, v̂ = g², so the direction is g/(|g| + eps), in [-1, 1].
    out = np.asarray(_adam_first_step(g), np.float64)
    assert np.all(np.abs(out) <= 1 + 1e-6)
    np.testing.assert_allclose(
        out,
        ref.scale_by_adam(g[None].astype(np.float64), 0.9, 0.999, 1e-8)[0],
        rtol=1e-5,
        atol=1e-6,
    )


def test_clip_by_global_norm_on_bfloat16_keeps_no_float32_copy_of_the_gradient():
    """Structure, not timing: the compiled clip -> adam step on bfloat16 params has
    no float32 buffer of the params' size. (XLA used to share the norm's and the
    clip's bf16 -> f32 convert and materialise it: 18 of 36 ms on 16M params.)"""
    p = jnp.ones((4096,), jnp.bfloat16)
    tx = gl.chain(gl.clip_by_global_norm(1.0), gl.adam(1e-3))

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return gl.apply_updates(p, u), s

    hlo = jax.jit(step).lower(p, tx.init(p), p).compile().as_text()
    entry = hlo[hlo.index("ENTRY") :]
    assert "f32[4096]" not in entry, [line for line in entry.splitlines() if "f32[4096]" in line]


def test_clip_by_global_norm_over_many_small_leaves_holds_no_second_copy_of_them():
    """A donated clip -> adam step on a tree of small leaves needs about Optax's
    temporaries (XLA's memory analysis): the small leaves are concatenated in
    chunks of 32, each reduced on its own. (The chunks concatenated again into
    one vector were a second copy: 3.0x the params against Optax's 2.0x.)"""

    params = {f"m{i:03d}": jax.ShapeDtypeStruct((32, 32), jnp.float32) for i in range(60)}
    params.update({f"b{i:03d}": jax.ShapeDtypeStruct((32,), jnp.float32) for i in range(60)})
    size = sum(4 * int(np.prod(x.shape)) for x in params.values())

    def temp(lib):
        tx = lib.chain(lib.clip_by_global_norm(1.0), lib.adam(1e-3))

        def step(p, s):
            g = jax.grad(lambda p: sum(jnp.sum(jnp.tanh(x)) for x in jax.tree.leaves(p)))(p)
            u, s = tx.update(g, s, p)
            return jax.tree.map(jnp.add, p, u), s

        state = jax.eval_shape(tx.init, params)
        lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, state)
        return lowered.compile().memory_analysis().temp_size_in_bytes

    ours = temp(gl)
    with jax.numpy_dtype_promotion("standard"):  # Optax mixes Python floats and int32
        theirs = temp(optax)
    assert ours <= theirs + 0.5 * size, (ours / size, theirs / size)


def test_clip_by_global_norm_over_many_small_leaves_matches_numpy_in_a_few_reductions():
    """Numbers against float64 NumPy, structure (not timing) of the compiled update:
    the small leaves are reduced together, not one reduction each. (Per-leaf sums
    were fused by XLA into one kernel whose compile time grew superlinearly with
    the leaf count: 3.7 s for 1000 leaves of 100, 22 s for 2000.)"""
    rng = np.random.default_rng(0)
    grads = {
        "w": [jnp.asarray(rng.normal(size=(3, 5)), jnp.float32) for _ in range(150)],
        "h": [jnp.asarray(rng.normal(size=(7,)), jnp.bfloat16) for _ in range(50)],
        "big": jnp.asarray(rng.normal(size=(5000,)), jnp.float32),
    }
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(grads)]
    norm = np.sqrt(sum(np.sum(x * x) for x in leaves))
    tx = gl.clip_by_global_norm(1.0)
    update = jax.jit(tx.update)
    out, _ = update(grads, tx.init(grads))
    for o, g in zip(jax.tree.leaves(out), jax.tree.leaves(grads), strict=True):
        rtol = 1e-5 if g.dtype == jnp.float32 else 1e-2
        expected = np.asarray(g, np.float64) / norm
        np.testing.assert_allclose(np.asarray(o, np.float64), expected, rtol=rtol)
    hlo = update.lower(grads, tx.init(grads)).compile().as_text()
    n_reductions = len(re.findall(r" reduce(?:-window)?\(", hlo))
    # One part per chunk of 32 small leaves of a dtype (5 + 2) and per big leaf
    # (1); XLA splits a reduction in two, and the overflow rescue's branch
    # reduces the same parts, scaled: at most ~4 reductions per part, where
    # reducing leaf by leaf takes at least 2 per leaf (201 leaves).
    assert n_reductions <= 5 * (5 + 2 + 1), n_reductions


# --------------------------------------------------------------------------
# Storage dtypes wider than the gradient's (x64), masks, noise under packing
# --------------------------------------------------------------------------


def test_adam_with_float64_mu_dtype_on_float32_params_matches_reference(x64):
    # m in float64, v and g in float32: computed in float64, no promotion error
    # under strict promotion (it mixed float32 and float64 before).
    p0 = np.array([0.5, -1.0, 2.0], np.float32)
    tx = gl.adam(0.1, mu_dtype=jnp.float64)
    p = jnp.asarray(p0)
    state = tx.init(p)
    for _ in range(5):
        u, state = tx.update(jnp.sin(p) + 0.1, state, p)
        p = gl.apply_updates(p, u)
    assert p.dtype == jnp.float32 and state[0].mu.dtype == jnp.float64
    want = ref.adam(p0.astype(np.float64), lambda q, k: np.sin(q) + 0.1, [0.1] * 5)[-1]
    np.testing.assert_allclose(p, want, rtol=1e-6, atol=1e-7)


def test_trace_with_float64_accumulator_accumulates_in_float64(x64):
    g = jnp.asarray([3.3333333], jnp.float32)
    tx = gl.trace(0.9, accumulator_dtype=jnp.float64)
    state = tx.init(g)
    for _ in range(200):
        _, state = tx.update(g, state)
    exact = ref.trace(np.full((200, 1), float(g[0])), 0.9)[-1]
    # float32 arithmetic was ~1e-6 off (the accumulator's dtype was ignored)
    np.testing.assert_allclose(state.trace, exact, rtol=1e-13)


PREFIX_PARAMS = {
    "dense": {"w": jnp.full((2, 2), 2.0), "b": jnp.ones(2)},
    "ln": {"scale": jnp.ones(2)},
}


@pytest.mark.parametrize("wrap", [lambda t: t, gl.packed], ids=["plain", "packed"])
@pytest.mark.parametrize(
    "mask",
    [{"dense": True, "ln": False}, lambda p: {"dense": True, "ln": False}],
    ids=["tree", "callable"],
)
def test_add_decayed_weights_accepts_a_prefix_mask_like_optax(mask, wrap, run_mode):
    tx = wrap(gl.add_decayed_weights(0.5, mask=mask))
    zeros = jax.tree.map(jnp.zeros_like, PREFIX_PARAMS)
    out, _ = run_mode(tx.update)(zeros, tx.init(PREFIX_PARAMS), PREFIX_PARAMS)
    # u + 0.5 * p under "dense", u untouched under "ln" (optax.add_decayed_weights)
    np.testing.assert_array_equal(out["dense"]["w"], np.full((2, 2), 1.0))
    np.testing.assert_array_equal(out["dense"]["b"], np.full(2, 0.5))
    np.testing.assert_array_equal(out["ln"]["scale"], np.zeros(2))


def test_add_decayed_weights_rejects_a_mask_that_is_not_a_prefix_naming_both_trees():
    tx = gl.add_decayed_weights(0.5, mask={"dense": True, "other": False})
    with pytest.raises(ValueError, match=r"(?s)mask.*prefix.*'ln'.*'other'"):
        tx.update(PREFIX_PARAMS, tx.init(PREFIX_PARAMS), PREFIX_PARAMS)


def test_add_noise_under_packed_draws_each_leaf_the_noise_it_draws_unpacked():
    # `packed` promises the unpacked numbers; the noise is drawn per param leaf
    # (one key each), not per packed buffer.
    params = {"a": jnp.zeros(3), "b": jnp.zeros(4), "c": jnp.zeros(2, jnp.bfloat16)}
    grads = jax.tree.map(jnp.ones_like, params)
    outs = []
    for wrap in (lambda t: t, gl.packed):
        tx = wrap(gl.chain(gl.add_noise(1.0, 0.0, 0), gl.trace(0.9)))
        state = tx.init(params)
        for _ in range(2):
            u, state = tx.update(grads, state, params)
        outs.append(u)
    jax.tree.map(np.testing.assert_array_equal, outs[0], outs[1])


def test_adam_second_moment_of_float64_params_stays_float64_with_float32_grads(x64):
    # nu is stored like the params (float64), mu in float32 (mu_dtype), the
    # gradient float32: nu must still be accumulated in float64.
    g = np.array([3.3333333, -0.7], np.float32)
    tx = gl.scale_by_adam(b2=0.999, mu_dtype=jnp.float32)
    state = tx.init(jnp.zeros(2, jnp.float64))
    for _ in range(50):
        _, state = tx.update(jnp.asarray(g), state)
    nu = np.zeros(2)
    for _ in range(50):
        nu = 0.999 * nu + 0.001 * g.astype(np.float64) ** 2
    assert state.nu.dtype == jnp.float64
    np.testing.assert_allclose(state.nu, nu, rtol=1e-13)


def _with_decay(module, name, keyword):
    if name == "add_decayed_weights":
        return module.add_decayed_weights
    return lambda wd: getattr(module, name)(0.1, **{keyword: wd})


@pytest.mark.parametrize(
    ("name", "ours", "theirs"),
    [
        ("masked", lambda wd: gl.add_decayed_weights(wd, {"w": True, "b": False}), None),
        *(
            (name, _with_decay(gl, name, keyword), _with_decay(optax, name, keyword))
            for name, keyword in [
                ("add_decayed_weights", None),
                ("adamw", "weight_decay"),
                ("lion", "weight_decay"),
                ("lamb", "weight_decay"),
                ("adafactor", "weight_decay_rate"),
            ]
        ),
    ],
)
def test_a_weight_decay_schedule_matches_optax(name, ours, theirs, run_mode):
    """Optax takes a schedule for weight_decay (ScalarOrSchedule); gradlab refused
    it (hunt82). Step k uses weight_decay(k). Reference: Optax with the same
    schedule; for the masked block, the unmasked one on "w" and the gradient on "b"."""
    schedule = optax.linear_schedule(0.5, 0.0, 4)
    params = {"w": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.asarray([0.25, 3.0])}

    def run(tx, steps=5):
        p, state = params, tx.init(params)
        for k in range(steps):
            g = jax.tree.map(lambda x, k=k: jnp.cos(x + k), p)
            u, state = run_mode(tx.update)(g, state, p)
            p = optax.apply_updates(p, u)
        return p

    got = run(ours(schedule))
    assert isinstance(ours(schedule).init(params), tuple)
    with jax.numpy_dtype_promotion("standard"):
        if theirs is None:  # masked: "b" only gets its gradient added
            want = run(optax.masked(optax.add_decayed_weights(schedule), {"w": True, "b": False}))
        else:
            want = run(theirs(schedule))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    # and a constant schedule is the constant
    fixed = run(ours(lambda step: 0.3))
    for a, b in zip(jax.tree.leaves(fixed), jax.tree.leaves(run(ours(0.3))), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(TypeError, match="weight_decay"):
        ours(lambda a, b: 0.1)
