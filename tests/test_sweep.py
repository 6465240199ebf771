"""gl.sweep: every configuration trains exactly as a separate run of it would.

Two problems. A small MLP on the first 256 of scikit-learn's digits, whose
reference for each configuration is a separate run: a plain ``lax.scan``
training loop written here (one jit per optimizer kind with the
hyperparameters as arguments, called once per configuration), never
gl.sweep. And least squares on four features, whose reference is the plain
NumPy optimizers of tests/references.py on the closed-form gradient.

Every compiled program costs about a second on the 2-core CI machine, so the
tests share problems and references (XLA caches identical programs).
"""

from __future__ import annotations

import functools
import itertools
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import references as ref
from sweep_helpers import FakeCompiled

import gradlab as gl
from gradlab.run import _progress, _sweep

STEPS = 24
BATCH = 32

# ----------------------------------------------------------------------------- least squares

_rng = np.random.default_rng(0)
LSQ_X = _rng.normal(size=(3, 16, 4))  # three stacked batches, cycled as epochs
LSQ_Y = LSQ_X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 + 0.1 * _rng.normal(size=(3, 16))
LSQ_BATCHES = (jnp.asarray(LSQ_X, jnp.float32), jnp.asarray(LSQ_Y, jnp.float32))
LSQ_P0 = np.zeros(5)  # 4 weights and a bias, one vector


def lsq_loss(p, batch):
    x, y = batch
    return jnp.mean((x @ p[:4] + p[4] - y) ** 2)


def lsq_np_loss(p, k):
    x, y = LSQ_X[k % 3], LSQ_Y[k % 3]
    return float(np.mean((x @ p[:4] + p[4] - y) ** 2))


def lsq_np_grad(p, k):
    x, y = LSQ_X[k % 3], LSQ_Y[k % 3]
    r = x @ p[:4] + p[4] - y
    return np.concatenate([2 * x.T @ r / len(r), [2 * r.mean()]])


def lsq_sweep(make, grid, **kw):
    kw.setdefault("num_steps", STEPS)
    return gl.sweep(make, lsq_loss, jnp.zeros(5), LSQ_BATCHES, grid, **kw)


def np_losses(trajectory):
    return np.array([lsq_np_loss(p, k) for k, p in enumerate(trajectory[:-1])])


# ----------------------------------------------------------------------------- digits MLP


@pytest.fixture(scope="module")
def digits():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    x, y = sklearn_datasets.load_digits(return_X_y=True)
    return jnp.asarray(x[:256] / 16.0, jnp.float32), jnp.asarray(y[:256], jnp.int32)


def init_mlp(key, hidden=8):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (64, hidden)) * 0.2,
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k2, (hidden, 10)) * 0.2,
        "b2": jnp.zeros(10),
    }


def mlp_loss(p, batch):
    x, y = batch
    logits = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return jnp.mean(gl.losses.softmax_cross_entropy_with_integer_labels(logits, y))


def mlp_batches(digits):
    """``(step, key) -> batch``: random mini-batches, drawn with the data key."""
    x, y = digits

    def batches(step, key):
        idx = jax.random.randint(jax.random.fold_in(key, step), (BATCH,), 0, x.shape[0])
        return x[idx], y[idx]

    return batches


# Without seeds every configuration gets the data key of seed 0.
DATA_KEY = jax.random.split(jax.random.key(0))[1]
_DIGITS: dict[int, tuple] = {}


@functools.cache
def _separate_run(make, digits_id):
    batches = mlp_batches(_DIGITS[digits_id])

    @jax.jit
    def run(params, *hp):
        tx = make(*hp)

        def step(carry, t):
            p, s = carry
            loss, g = jax.value_and_grad(mlp_loss)(p, batches(t, DATA_KEY))
            u, s = tx.update(g, s, p, value=loss)
            return (gl.apply_updates(p, u), s), loss

        (p, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(STEPS))
        return losses, p

    return run


def separate_run(make, digits):
    """``run(params, *hyperparameters) -> (losses, final params)``: one
    configuration on its own (compiled once per ``make``)."""
    _DIGITS[id(digits)] = digits
    return _separate_run(make, id(digits))


def adam_warmup(learning_rate, warmup_steps):
    return gl.adam(gl.schedules.warmup_cosine_decay(0.0, learning_rate, warmup_steps, STEPS))


def momentum(learning_rate):
    return gl.sgd(learning_rate, momentum=0.9)


def by_name(optimizer, learning_rate):
    return momentum(learning_rate) if optimizer == "sgd" else adam_warmup(learning_rate, 5)


def test_each_configuration_equals_a_separate_run(digits):
    params = init_mlp(jax.random.key(0))
    grid = {"learning_rate": [1e-3, 1e-2, 5e-2], "warmup_steps": [0, 10]}
    result = gl.sweep(adam_warmup, mlp_loss, params, mlp_batches(digits), grid, num_steps=STEPS)
    assert result.configs == [
        {"learning_rate": lr, "warmup_steps": w} for lr, w in itertools.product(*grid.values())
    ]
    assert result.losses.shape == (6, STEPS) and result.num_groups == 1
    run = separate_run(adam_warmup, digits)
    for i, c in enumerate(result.configs):
        losses, final = run(params, c["learning_rate"], c["warmup_steps"])
        np.testing.assert_allclose(result.losses[i], losses, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(final), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)
    assert not result.diverged.any() and (result.diverged_at == -1).all()
    assert len({round(float(x), 6) for x in result.final_loss}) == 6  # they do differ


def test_structural_values_split_into_groups_reassembled_in_grid_order(digits):
    params = init_mlp(jax.random.key(1))
    # The optimizer name varies fastest, so each group's configurations are
    # interleaved in the grid and must be put back in place.
    grid = {"learning_rate": [0.3, 0.03], "optimizer": ["sgd", "adam"]}
    result = gl.sweep(by_name, mlp_loss, params, mlp_batches(digits), grid, num_steps=STEPS)
    assert [(c["learning_rate"], c["optimizer"]) for c in result.configs] == list(
        itertools.product(*grid.values())
    )
    assert result.num_groups == 2
    for i, c in enumerate(result.configs):
        if c["optimizer"] == "sgd":
            losses, _ = separate_run(momentum, digits)(params, c["learning_rate"])
        else:
            losses, _ = separate_run(adam_warmup, digits)(params, c["learning_rate"], 5)
        np.testing.assert_allclose(result.losses[i], losses, rtol=1e-5, err_msg=str(c))


# ----------------------------------------------------------------------------- least squares


def test_bools_are_structural_and_numbers_vmapped_against_numpy():
    grid = {"nesterov": [False, True], "momentum": [0.5, 0.9], "learning_rate": [0.02, 0.05]}
    result = lsq_sweep(
        lambda nesterov, momentum, learning_rate: gl.sgd(learning_rate, momentum, nesterov), grid
    )
    assert result.num_groups == 2
    for i, c in enumerate(result.configs):
        traj = ref.sgd(
            LSQ_P0, lsq_np_grad, [c["learning_rate"]] * STEPS, c["momentum"], c["nesterov"]
        )
        np.testing.assert_allclose(result.losses[i], np_losses(traj), rtol=2e-5, err_msg=str(c))
        np.testing.assert_allclose(result.params[i], traj[-1], rtol=2e-5, atol=1e-6)


def test_seed_ensemble_varies_init_and_data_order():
    x_all = LSQ_BATCHES[0].reshape(-1, 4)
    y_all = LSQ_BATCHES[1].reshape(-1)

    def init(key):
        return 0.1 * jax.random.normal(key, (5,))

    def draw(step, key):  # 8 random rows per step, drawn with the data key
        return jax.random.randint(jax.random.fold_in(key, step), (8,), 0, 48)

    result = gl.sweep(
        lambda learning_rate: gl.sgd(learning_rate), lsq_loss, init,
        lambda step, key: (x_all[draw(step, key)], y_all[draw(step, key)]),
        {"learning_rate": [0.01, 0.05]}, num_steps=STEPS, seeds=[0, 7, 11],
    )  # fmt: skip
    assert [(c["learning_rate"], c["seed"]) for c in result.configs] == list(
        itertools.product([0.01, 0.05], [0, 7, 11])
    )
    xs, ys = LSQ_X.reshape(-1, 4), LSQ_Y.reshape(-1)
    draws = jax.jit(jax.vmap(draw, (0, None)))
    for i, c in enumerate(result.configs):
        init_key, data_key = jax.random.split(jax.random.key(c["seed"]))
        rows = np.asarray(draws(jnp.arange(STEPS), data_key))

        def grad(p, k, rows=rows):
            r = xs[rows[k]] @ p[:4] + p[4] - ys[rows[k]]
            return np.concatenate([2 * xs[rows[k]].T @ r / len(r), [2 * r.mean()]])

        traj = ref.sgd(np.asarray(init(init_key), np.float64), grad, [c["learning_rate"]] * STEPS)
        want = [
            np.mean((xs[r] @ p[:4] + p[4] - ys[r]) ** 2)
            for r, p in zip(rows, traj[:-1], strict=True)
        ]
        np.testing.assert_allclose(result.losses[i], want, rtol=2e-5)
    assert len({float(v) for v in result.losses[:3, 0]}) == 3  # three different inits


def test_seeds_that_key_nothing_warn_that_every_seed_runs_the_same_numbers():
    """Fixed params and stacked batches: the seeds reach neither, so the
    "ensemble" is copies of one run -- said, not silent (hunt38: the README
    promised a different data order)."""
    make = lambda learning_rate: gl.sgd(learning_rate)  # noqa: E731
    grid = {"learning_rate": [0.05]}
    with pytest.warns(UserWarning, match=r"seeds=\[0, 1\] key nothing"):
        result = gl.sweep(make, lsq_loss, LSQ_P0, LSQ_BATCHES, grid, num_steps=3, seeds=[0, 1])
    np.testing.assert_array_equal(result.losses[0], result.losses[1])
    # one seed, or a seed that keys the params or the data: no warning
    init = lambda key: LSQ_P0 + 0.1 * jax.random.normal(key, LSQ_P0.shape)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gl.sweep(make, lsq_loss, LSQ_P0, LSQ_BATCHES, grid, num_steps=3, seeds=[3])
        keyed = gl.sweep(make, lsq_loss, init, LSQ_BATCHES, grid, num_steps=3, seeds=[0, 1])
    assert keyed.losses[0, 0] != keyed.losses[1, 0]


def test_a_batch_function_whose_key_has_a_default_is_told_the_seeds_miss_it():
    """``batches(step, key=jax.random.key(0))`` is called with the step only, so
    a seed ensemble varied the init but not the data order (hunt73: notebook 05
    said both). Warned, naming the parameter; without the default each seed
    draws its own batches."""
    make = lambda learning_rate: gl.sgd(learning_rate)  # noqa: E731
    grid = {"learning_rate": [0.05]}
    x, y = LSQ_BATCHES

    def draw(step, key):
        idx = jax.random.randint(jax.random.fold_in(key, step), (8,), 0, x.shape[1])
        return x[0, idx], y[0, idx]

    def defaulted(step, key=jax.random.key(0)):
        return draw(step, key)

    init = lambda key: jnp.asarray(LSQ_P0, jnp.float32)  # noqa: E731  (the seed keys nothing here)
    with pytest.warns(UserWarning, match=r"batches' 'key' has a default.*def batches\(step, key\)"):
        same = gl.sweep(make, lsq_loss, init, defaulted, grid, num_steps=3, seeds=[0, 1])
    np.testing.assert_array_equal(same.losses[0], same.losses[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keyed = gl.sweep(make, lsq_loss, init, draw, grid, num_steps=3, seeds=[0, 1])
    assert keyed.losses[0, 0] != keyed.losses[1, 0]

    def bound(step, data=(x[0], y[0])):  # data bound through a default: not a key
        return data

    noisy = lambda key: jnp.asarray(LSQ_P0, jnp.float32) + jax.random.normal(key, (5,))  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the seeds key the params: nothing to say
        gl.sweep(make, lsq_loss, noisy, bound, grid, num_steps=3, seeds=[0, 1])


def test_chunks_equal_one_run_and_reuse_one_compiled_program():
    traces = []

    def counted():  # a fresh loss function per sweep, counting its traces
        def loss(p, b):
            traces.append(1)
            return lsq_loss(p, b)

        return loss

    make = lambda learning_rate: gl.sgd(learning_rate, momentum=0.5)  # noqa: E731
    grid = {"learning_rate": [0.01, 0.02, 0.05, 0.1, 0.2]}
    whole = gl.sweep(make, counted(), jnp.zeros(5), LSQ_BATCHES, grid, num_steps=STEPS)
    traced_whole = len(traces)
    traces.clear()
    chunked = gl.sweep(make, counted(), jnp.zeros(5), LSQ_BATCHES, grid, num_steps=STEPS,
                       chunk_size=2)  # fmt: skip
    np.testing.assert_allclose(chunked.losses, whole.losses, rtol=1e-6)
    np.testing.assert_allclose(chunked.params, whole.params, rtol=1e-5, atol=1e-7)
    # Three chunks (2 + 2 + 1 padded), traced as often as one chunk: one program.
    assert len(traces) == traced_whole


def test_chunk_size_from_the_programs_measured_memory():
    # Memory is measured on compiled programs (one for all n, one for a single
    # configuration) and taken as linear in the chunk size: fixed + per * size.
    compiled = {}

    def compile_for(size):
        compiled[size] = FakeCompiled(size)
        return compiled[size]

    # Room for 5 of 10: two chunks of 5.
    assert _sweep._fit_memory(compile_for, compile_for(10), 10, 1500)[0] == 5
    # Room for 6 of 10 still needs two chunks; balanced, they hold 5 each (no padding).
    assert _sweep._fit_memory(compile_for, compile_for(10), 10, 1600)[0] == 5
    assert _sweep._fit_memory(compile_for, compile_for(10), 10, 2000)[0] == 10  # fits
    assert _sweep._fit_memory(compile_for, compile_for(10), 10, 10)[0] == 1  # never below 1


def test_a_memory_limit_splits_the_sweep_into_chunks(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "_tqdm", lambda: None)  # the plain one-line-per-chunk report
    make = lambda learning_rate: gl.adam(learning_rate)  # noqa: E731
    grid = {"learning_rate": [0.01, 0.02, 0.05, 0.1]}
    whole = lsq_sweep(make, grid, progress=True)
    assert capsys.readouterr().err.count(" done: ") == 1
    small = lsq_sweep(make, grid, progress=True, memory_limit=1)
    assert capsys.readouterr().err.count(" done: ") == 4  # one configuration per chunk
    # A batch of 1 and a batch of 4 are two programs: XLA vectorises and
    # contracts them differently, a few ulps per step over 24 adam steps
    # (6.5e-7 before the moment update took Optax's operand order, 1.3e-6 after).
    np.testing.assert_allclose(small.losses, whole.losses, rtol=1e-5)


def test_a_diverging_configuration_is_marked_and_leaves_the_others_bit_identical():
    make = lambda learning_rate: gl.sgd(learning_rate)  # noqa: E731
    result = lsq_sweep(make, {"learning_rate": [0.01, 0.05, 100.0, 0.1]}, chunk_size=4)
    assert result.diverged.tolist() == [False, False, True, False]
    k = int(result.diverged_at[2])
    assert 0 < k < STEPS
    assert np.all(np.isfinite(result.losses[2, :k])) and np.all(np.isnan(result.losses[2, k:]))
    traj = ref.sgd(LSQ_P0, lsq_np_grad, [100.0] * STEPS)
    with np.errstate(over="ignore", invalid="ignore"):
        want = np_losses(traj)
    # NumPy (float64) agrees: the loss at k is beyond float32's range (~3e38 once squared).
    assert not np.isfinite(want[k]) or want[k] > 1e30
    np.testing.assert_allclose(result.losses[2, : k - 2], want[: k - 2], rtol=1e-4)
    # Frozen at step k: no update was applied after the loss turned non-finite.
    np.testing.assert_array_equal(np.isfinite(result.params[2]), np.isfinite(traj[k]))
    # The others are exactly what a sweep without the diverging one computes.
    without = lsq_sweep(make, {"learning_rate": [0.01, 0.05, 0.1]}, chunk_size=4)
    np.testing.assert_array_equal(result.losses[[0, 1, 3]], without.losses)
    np.testing.assert_array_equal(result.params[[0, 1, 3]], without.params)
    assert "diverged at step" in str(result)
    assert result.best().config["learning_rate"] != 100.0


def test_a_loss_non_finite_from_the_first_step_is_a_divergence_at_step_0():
    """diverged_at == 0 counts as diverged (hunt49: ``> 0`` went unseen)."""
    result = gl.sweep(lambda learning_rate: gl.sgd(learning_rate), lsq_loss,
                      jnp.full(5, jnp.nan), LSQ_BATCHES, {"learning_rate": [0.01, 0.1]},
                      num_steps=4)  # fmt: skip
    assert result.diverged_at.tolist() == [0, 0]
    assert result.diverged.tolist() == [True, True]
    with pytest.raises(ValueError, match="every configuration diverged"):
        result.best()


def test_eval_history_against_numpy_and_stacked_batches_cycled():
    x_all = LSQ_BATCHES[0].reshape(-1, 4)
    y_all = LSQ_BATCHES[1].reshape(-1)

    def evaluate(p):
        return {"mse": lsq_loss(p, (x_all, y_all)), "bias": p[4]}

    lrs = [0.01, 0.1]
    result = lsq_sweep(lambda learning_rate: gl.adam(learning_rate), {"learning_rate": lrs},
                       eval_fn=evaluate, eval_every=10)  # fmt: skip
    assert result.eval_steps.tolist() == [10, 20, STEPS]
    assert set(result.evals) == {"mse", "bias"} and result.evals["mse"].shape == (2, 3)
    xs, ys = LSQ_X.reshape(-1, 4), LSQ_Y.reshape(-1)
    for i, lr in enumerate(lrs):
        traj = ref.adam(LSQ_P0, lsq_np_grad, [lr] * STEPS)
        np.testing.assert_allclose(result.losses[i], np_losses(traj), rtol=2e-5)
        for j, k in enumerate(result.eval_steps):
            p = traj[k]
            np.testing.assert_allclose(result.evals["bias"][i, j], p[4], rtol=1e-4)
            mse = np.mean((xs @ p[:4] + p[4] - ys) ** 2)
            np.testing.assert_allclose(result.evals["mse"][i, j], mse, rtol=1e-4)
    best = result.best("mse")
    assert best.value == result.evals["mse"][:, -1].min()
    # mode="max": the largest last value first (hunt49: "max" ranked as "min" went unseen)
    bias = result.evals["bias"][:, -1]
    assert result.ranking("bias", mode="max").tolist() == np.argsort(-bias).tolist()
    assert result.best("bias", mode="max").value == bias.max() != bias.min()


def test_a_number_the_optimizer_branches_on_is_grouped_with_a_warning():
    def make(learning_rate, momentum):
        return gl.sgd(learning_rate, momentum=momentum or None)  # needs momentum's value

    with pytest.warns(UserWarning, match=r"concrete values of \['momentum'\]"):
        result = lsq_sweep(make, {"momentum": [0.0, 0.9], "learning_rate": [0.02, 0.05]})
    assert result.num_groups == 2
    for i, c in enumerate(result.configs):
        traj = ref.sgd(LSQ_P0, lsq_np_grad, [c["learning_rate"]] * STEPS, c["momentum"])
        np.testing.assert_allclose(result.losses[i], np_losses(traj), rtol=2e-5)


def test_a_number_that_sets_shapes_is_grouped_with_a_warning():
    """lbfgs' memory_size sets the state's shape: traced, its check raised a plain
    TypeError that stopped the sweep instead of splitting it (hunt81). Reference:
    L-BFGS with a fixed step in NumPy (Nocedal & Wright's two-loop recursion,
    gamma = s'y / y'y, a pair kept only if s'y > 1e-10 |s||y|, g / |g| while the
    memory is empty, as scipy's), per configuration."""

    def make(learning_rate, memory_size):
        return gl.lbfgs(learning_rate, memory_size=memory_size, linesearch=None)

    def np_lbfgs(lr, m, steps=8):
        p, pairs, traj, g_old = LSQ_P0.copy(), [], [LSQ_P0.copy()], None
        for k in range(steps):
            g = lsq_np_grad(p, k)
            s, y = (traj[-1] - traj[-2], g - g_old) if g_old is not None else (0, 0)
            if g_old is not None and s @ y > 1e-10 * np.linalg.norm(s) * np.linalg.norm(y):
                pairs = [*pairs, (s, y)][-m:]  # (the curvature condition: the batches differ)
            q, alphas = g.copy(), []
            for s, y in reversed(pairs):
                alphas.append(s @ q / (s @ y))
                q -= alphas[-1] * y
            s, y = pairs[-1] if pairs else (None, None)
            r = q * (s @ y / (y @ y)) if pairs else q / np.linalg.norm(q)
            for (s, y), a in zip(pairs, reversed(alphas), strict=True):
                r += s * (a - y @ r / (s @ y))
            p, g_old = p - lr * r, g
            traj.append(p)
        return traj

    grid = {"memory_size": [1, 3], "learning_rate": [0.05, 0.1]}
    with pytest.warns(UserWarning, match=r"concrete values of \['memory_size'\].*set shapes"):
        result = lsq_sweep(make, grid, num_steps=8)
    assert result.num_groups == 2
    for i, c in enumerate(result.configs):
        traj = np_lbfgs(c["learning_rate"], c["memory_size"])
        np.testing.assert_allclose(result.losses[i], np_losses(traj), rtol=1e-4)


def test_list_of_configurations_is_the_zipped_form_and_numbers_never_warn():
    configs = [{"learning_rate": 0.01, "b1": 0.5}, {"learning_rate": 0.05, "b1": 0.9}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = lsq_sweep(lambda learning_rate, b1: gl.adam(learning_rate, b1=b1), configs)
    assert result.configs == configs and result.num_groups == 1
    for i, c in enumerate(configs):
        traj = ref.adam(LSQ_P0, lsq_np_grad, [c["learning_rate"]] * STEPS, b1=c["b1"])
        np.testing.assert_allclose(result.losses[i], np_losses(traj), rtol=2e-5)


@pytest.fixture(scope="module")
def mixed():
    """sgd and adam over four learning rates, one of which diverges for sgd."""
    return lsq_sweep(
        by_name, {"optimizer": ["sgd", "adam"], "learning_rate": [1e-3, 0.01, 0.05, 50.0]}
    )


def test_table_best_subset_and_pandas(mixed):
    pd = pytest.importorskip("pandas")
    result = mixed
    final = result.losses[:, -1]
    best = result.best()
    assert best.index == int(np.nanargmin(final)) and best.value == np.nanmin(final)
    assert best.config == result.configs[best.index]
    np.testing.assert_array_equal(best.params, result.params[best.index])
    lines = str(result).splitlines()
    assert "8 configurations" in lines[0] and "1 diverged" in lines[0]
    ranked = [float(line.split()[3]) for line in lines[2:] if "diverged" not in line]
    assert ranked == sorted(ranked) and len(ranked) == 7
    assert "diverged at step" in lines[-1]  # diverged ones last
    adam = result.where(optimizer="adam")
    assert [c["learning_rate"] for c in adam.configs] == [1e-3, 0.01, 0.05, 50.0]
    np.testing.assert_array_equal(adam.losses, result.losses[4:])
    frame = result.to_pandas()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 8
    assert {"optimizer", "learning_rate", "final_loss", "min_loss", "diverged_at"} <= set(frame)
    np.testing.assert_array_equal(frame["final_loss"], final)
    assert frame["diverged_at"].tolist() == result.diverged_at.tolist()
    # a boolean mask picks by position, so it must cover every configuration
    np.testing.assert_array_equal(result.subset(np.arange(8) >= 6).losses, result.losses[6:])
    with pytest.raises(ValueError, match="needs 8 entries"):
        result.subset([True, False, True])


def test_sweep_plot_draws_each_configuration(mixed):
    pytest.importorskip("matplotlib")
    fig = gl.plot.sweep(mixed)
    curves, by_optimizer, by_lr = fig.axes[:3]
    assert len(curves.lines) == 8
    np.testing.assert_allclose(curves.lines[5].get_ydata(), mixed.losses[5], rtol=1e-6)
    assert by_lr.get_xscale() == "log" and by_optimizer.get_xscale() == "linear"
    assert [t.get_text() for t in by_optimizer.get_xticklabels()] == ["sgd", "adam"]
    assert any(c.get_label() == "diverged" for c in by_lr.collections)
    only_lr = gl.plot.sweep(mixed, by=["learning_rate"])
    assert [ax.get_xlabel() for ax in only_lr.axes if ax.get_visible()] == ["step", "learning_rate"]
    with pytest.raises(ValueError, match="not swept names"):
        gl.plot.sweep(mixed, by=["momentum"])
    # the diverged marker sits at the worst final value drawn: the largest loss,
    # or the smallest with mode="max" (an accuracy: the top would read as best)
    finals = mixed.final_loss[~mixed.diverged]
    for mode, worst in (("min", finals.max()), ("max", finals.min())):
        panel = gl.plot.sweep(mixed, by=["learning_rate"], mode=mode).axes[1]
        (marks,) = [c for c in panel.collections if c.get_label() == "diverged"]
        np.testing.assert_allclose(marks.get_offsets()[:, 1], worst, rtol=1e-6)
    with pytest.raises(ValueError, match="mode must be one of"):
        gl.plot.sweep(mixed, mode="best")
    smoothed = gl.plot.sweep(mixed.where(optimizer="adam"), smoothing=0.5).axes[0].lines[0]
    raw = mixed.losses[4]
    ema = [0.5 * raw[0] / 0.5, (0.25 * raw[0] + 0.5 * raw[1]) / 0.75]  # bias-corrected EMA
    np.testing.assert_allclose(smoothed.get_ydata()[:2], ema, rtol=1e-6)


def test_progress_bar_advances_per_chunk_and_per_block_of_steps(capsys, monkeypatch):
    pytest.importorskip("tqdm")
    seen = []
    original = _progress.Progress.steps_done

    def record(self, steps):
        seen.append(int(steps))
        original(self, steps)

    monkeypatch.setattr(_progress.Progress, "steps_done", record)
    lsq_sweep(lambda learning_rate: gl.sgd(learning_rate), {"learning_rate": [0.01, 0.02, 0.03]},
              num_steps=60, chunk_size=2, progress=True)  # fmt: skip
    assert "120/120" in capsys.readouterr().err  # 2 chunks x 60 steps
    # In-program callbacks every 3 steps (60 / 20 blocks; unordered: the bar only
    # moves forward), then each chunk's end.
    assert sorted(seen[:20]) == list(range(3, 61, 3)) and seen.count(60) >= 4


def test_progress_is_off_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    lsq_sweep(lambda learning_rate: gl.sgd(learning_rate), {"learning_rate": [0.1]}, num_steps=4)
    assert capsys.readouterr().err == ""


BAD = [
    ({"grid": {}}, ValueError, "grid"),
    ({"grid": []}, ValueError, "grid"),
    ({"grid": {"learning_rate": 0.1}}, TypeError, r"grid\['learning_rate'\] must be a list"),
    ({"grid": {"learning_rate": "0.1"}}, TypeError, r"grid\['learning_rate'\]"),
    ({"grid": {"learning_rate": []}}, ValueError, r"grid\['learning_rate'\] is empty"),
    ({"grid": {"lr": [0.1]}}, ValueError, r"grid names \['lr'\] do not fit make_optimizer"),
    ({"grid": {("learning_rate", "x"): [0.1]}}, ValueError, "zips 2 names"),
    ({"grid": [{"learning_rate": 0.1}, {"lr": 0.2}]}, ValueError, "same hyperparameters"),
    ({"grid": {("learning_rate",): [(0.1,)], "learning_rate": [0.2]}}, ValueError, "twice"),
    ({"grid": {"learning_rate": [-0.1]}}, ValueError, "grid configuration 0.*learning_rate"),
    ({"grid": 0.1}, TypeError, "grid must be a dict"),
    ({"num_steps": 0}, ValueError, "num_steps must be >= 1"),
    ({"num_steps": 2.5}, ValueError, "num_steps must be an integer"),
    ({"chunk_size": 0}, ValueError, "chunk_size must be >= 1"),
    ({"chunk_size": True}, TypeError, "chunk_size"),
    ({"memory_limit": -1}, ValueError, "memory_limit"),
    ({"eval_every": 5}, ValueError, "eval_every needs an eval_fn"),
    ({"eval_fn": lambda p: p, "eval_every": 1}, ValueError, "eval_fn must return a scalar"),
    ({"eval_fn": len, "eval_every": 0}, ValueError, "eval_every must be >= 1"),
    # a metric named like the training loss, a swept name or a result column would
    # be hidden from best()/ranking() or overwrite to_pandas()'s column (hunt73)
    ({"eval_fn": lambda p: {"loss": p.sum()}}, ValueError, r"metric names \['loss'\] are taken"),
    ({"eval_fn": lambda p: {"learning_rate": p.sum()}}, ValueError, r"\['learning_rate'\] are"),
    ({"eval_fn": lambda p: {"acc": p.sum(), "seconds": p.sum()}}, ValueError, r"\['seconds'\]"),
    ({"seeds": []}, TypeError, "seeds"),
    ({"seeds": [0.5]}, TypeError, "seeds must be integers"),
    ({"seeds": [0], "grid": {"learning_rate": [0.1], "seed": [1]}}, ValueError, "'seed'"),
    ({"batches": jnp.ones(())}, TypeError, "batches"),
    ({"batches": (jnp.ones((4, 3)), jnp.ones((5, 3)))}, ValueError, "leading"),
    ({"batches": lambda a, b, c: a}, TypeError, "batches must be a function"),
    ({"params": jnp.ones(3, jnp.int32)}, TypeError, "params leaf"),
    ({"loss_fn": lambda p, b: (p - b) ** 2}, ValueError, "loss_fn must return a scalar"),
    ({"loss_fn": "mse"}, TypeError, "loss_fn"),
    ({"make_optimizer": lambda learning_rate: None}, TypeError, "make_optimizer"),
    ({"make_optimizer": "sgd"}, TypeError, "make_optimizer must be a callable"),
]


@pytest.mark.parametrize(
    ("change", "error", "match"), BAD, ids=[f"{i}-{b[2][:40]}" for i, b in enumerate(BAD)]
)
def test_bad_arguments_raise_naming_the_argument(change, error, match):
    args = {
        "make_optimizer": lambda learning_rate: gl.sgd(learning_rate),
        "loss_fn": lambda p, b: jnp.sum((p - b) ** 2),
        "params": jnp.zeros(3),
        "batches": jnp.ones((4, 3)),
        "grid": {"learning_rate": [0.1]},
        "num_steps": 3,
    }
    args.update(change)
    positional = [args.pop(k) for k in ("make_optimizer", "loss_fn", "params", "batches", "grid")]
    with pytest.raises(error, match=match):
        gl.sweep(*positional, **args)


def test_under_disable_jit_a_sweep_refuses_naming_the_way_out():
    # JAX's own error ("Disable jit is not supported in the AOT path") names no way out
    with jax.disable_jit(), pytest.raises(RuntimeError, match="one configuration"):
        lsq_sweep(lambda learning_rate: gl.sgd(learning_rate), {"learning_rate": [0.1]})


def test_a_missing_required_name_is_reported():
    with pytest.raises(ValueError, match="do not fit make_optimizer"):
        lsq_sweep(lambda learning_rate, b1: gl.adam(learning_rate, b1), {"learning_rate": [0.1]})


def test_sweep_benchmark_runs_and_every_method_agrees(tmp_path, capsys):
    # benchmarks/sweep.py on a tiny grid: it keeps running, and its check that
    # gl.sweep, the hand-written vmap and the best loop compute the same losses
    # passes. No timing is asserted.
    import importlib.util
    import json
    import pathlib

    pytest.importorskip("sklearn")
    path = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "sweep.py"
    spec = importlib.util.spec_from_file_location("benchmark_sweep", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "sweep.json"
    args = ["--configs", "4", "--steps", "20", "--hidden", "8", "--repeats", "1"]
    args += ["--methods", "sweep,hand_vmap,best_loop", "--json", str(out)]
    assert bench.main(args) == 0, capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == ["sweep", "hand_vmap", "best_loop"]
    assert all(r["check_ok"] and r["max_rel_diff_vs_c"] < 1e-4 for r in rows)


def test_a_grid_seed_is_the_optimizers_and_whole_numbers_must_fit_int32():
    # Without seeds=, a grid named "seed" was dropped from make_optimizer's
    # arguments (a bare TypeError) or silently became the data seed.
    loss = lambda p, b: jnp.sum(p**2)  # noqa: E731
    r = gl.sweep(lambda lr, seed: gl.noisy_sgd(lr, seed=seed), loss, jnp.ones(3), lambda s: 0.0,
                 {"lr": [0.1], "seed": [0, 1]}, num_steps=3)  # fmt: skip
    for row, seed in enumerate((0, 1)):
        tx, p, losses = gl.noisy_sgd(0.1, seed=seed), jnp.ones(3), []
        state = tx.init(p)
        for _ in range(3):
            value, g = jax.value_and_grad(loss)(p, 0.0)
            losses.append(float(value))
            u, state = tx.update(g, state, p)
            p = p + u
        np.testing.assert_allclose(np.asarray(r.losses[row]), losses, rtol=1e-6)
    # 2**33 was cast to int32 (0) and swept silently.
    with pytest.raises(ValueError, match=r"grid 'n': 8589934592 does not fit in int32"):
        gl.sweep(lambda n: gl.sgd(n * 1e-11), loss, jnp.ones(3), lambda s: 0.0,
                 {"n": [2**33, 2**31 + 5]}, num_steps=2)  # fmt: skip


def test_sweep_under_x64_in_float64_against_numpy(x64):
    # The scan over steps carried an int32 "diverged at" step next to int64
    # steps from jnp.arange under x64: every x64 sweep failed to trace.
    x, y = jnp.asarray(LSQ_X), jnp.asarray(LSQ_Y)  # float64
    for batches in ((x, y), lambda step: (x[step % 3], y[step % 3])):
        result = gl.sweep(
            lambda learning_rate: gl.sgd(learning_rate, 0.9),
            lsq_loss,
            jnp.zeros(5),
            batches,
            {"learning_rate": [0.01, 0.03]},
            num_steps=6,
            progress=False,
        )
        assert result.params.dtype == jnp.float64
        for i, c in enumerate(result.configs):
            traj = ref.sgd(LSQ_P0, lsq_np_grad, [c["learning_rate"]] * 6, 0.9, False)
            np.testing.assert_allclose(result.params[i], traj[-1], rtol=1e-12, atol=1e-14)
