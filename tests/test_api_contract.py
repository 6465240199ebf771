"""The public signatures the API contract fixes, transcribed from it.

Outside code calls these names positionally and by keyword exactly as the
contract writes them: each row is the contract's parameter list (name and
default, in order). A function may take more parameters only after them
(keyword-only or later positionals), so a positional call written against the
contract never lands on another argument.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlab as gl
from gradlab import losses, schedules

REQUIRED = inspect.Parameter.empty

# name -> (callable, [(parameter, default or REQUIRED), ...]) in the contract's order
CONTRACT = {
    # 2. Optimizers
    "sgd": (gl.sgd, [("learning_rate", REQUIRED), ("momentum", None), ("nesterov", False)]),
    "adagrad": (
        gl.adagrad,
        [("learning_rate", REQUIRED), ("initial_accumulator_value", 0.1), ("eps", 1e-7)],
    ),
    "rmsprop": (
        gl.rmsprop,
        [
            ("learning_rate", REQUIRED),
            ("decay", 0.9),
            ("eps", 1e-8),
            ("initial_scale", 0.0),
            ("centered", False),
            ("momentum", None),
            ("nesterov", False),
        ],
    ),
    "adam": (
        gl.adam,
        [
            ("learning_rate", REQUIRED),
            ("b1", 0.9),
            ("b2", 0.999),
            ("eps", 1e-8),
            ("eps_root", 0.0),
            ("nesterov", False),
        ],
    ),
    "adamw": (
        gl.adamw,
        [
            ("learning_rate", REQUIRED),
            ("b1", 0.9),
            ("b2", 0.999),
            ("eps", 1e-8),
            ("weight_decay", 1e-4),
            ("mask", None),
        ],
    ),
    "nadam": (gl.nadam, [("learning_rate", REQUIRED), ("b1", 0.9), ("b2", 0.999), ("eps", 1e-8)]),
    "amsgrad": (
        gl.amsgrad,
        [("learning_rate", REQUIRED), ("b1", 0.9), ("b2", 0.999), ("eps", 1e-8)],
    ),
    "adamax": (gl.adamax, [("learning_rate", REQUIRED), ("b1", 0.9), ("b2", 0.999), ("eps", 1e-8)]),
    "radam": (
        gl.radam,
        [
            ("learning_rate", REQUIRED),
            ("b1", 0.9),
            ("b2", 0.999),
            ("eps", 1e-8),
            ("threshold", 5.0),
        ],
    ),
    "adadelta": (gl.adadelta, [("learning_rate", 1.0), ("rho", 0.9), ("eps", 1e-6)]),
    "lamb": (
        gl.lamb,
        [
            ("learning_rate", REQUIRED),
            ("b1", 0.9),
            ("b2", 0.999),
            ("eps", 1e-6),
            ("weight_decay", 0.0),
            ("mask", None),
        ],
    ),
    "lars": (
        gl.lars,
        [
            ("learning_rate", REQUIRED),
            ("weight_decay", 0.0),
            ("trust_coefficient", 0.001),
            ("momentum", 0.9),
        ],
    ),
    "lion": (
        gl.lion,
        [
            ("learning_rate", REQUIRED),
            ("b1", 0.9),
            ("b2", 0.99),
            ("weight_decay", 1e-3),
            ("mask", None),
        ],
    ),
    "adafactor": (gl.adafactor, [("learning_rate", None)]),
    "lbfgs": (gl.lbfgs, [("learning_rate", None), ("memory_size", 10), ("linesearch", ...)]),
    # 3. Building blocks (scale_by_learning_rate's `lr` is checked by keyword below)
    "scale": (gl.scale, [("factor", REQUIRED)]),
    "scale_by_schedule": (gl.scale_by_schedule, [("schedule", REQUIRED)]),
    "trace": (gl.trace, [("decay", REQUIRED), ("nesterov", False)]),
    "ema": (gl.ema, [("decay", REQUIRED), ("debias", True)]),
    "scale_by_adam": (
        gl.scale_by_adam,
        [("b1", ...), ("b2", ...), ("eps", ...), ("eps_root", ...)],
    ),
    "scale_by_rms": (gl.scale_by_rms, [("decay", ...), ("eps", ...)]),
    "scale_by_rss": (gl.scale_by_rss, [("initial_accumulator_value", ...), ("eps", ...)]),
    "add_decayed_weights": (gl.add_decayed_weights, [("weight_decay", ...), ("mask", None)]),
    "clip": (gl.clip, [("max_delta", REQUIRED)]),
    "clip_by_global_norm": (gl.clip_by_global_norm, [("max_norm", REQUIRED)]),
    "add_noise": (gl.add_noise, [("eta", REQUIRED), ("gamma", REQUIRED), ("seed", REQUIRED)]),
    # 4. Combinators
    "partition": (gl.partition, [("transforms", REQUIRED), ("labels", REQUIRED)]),
    "masked": (gl.masked, [("transform", REQUIRED), ("mask", REQUIRED)]),
    "freeze": (gl.freeze, [("mask", REQUIRED)]),
    "apply_if_finite": (
        gl.apply_if_finite,
        [("transform", REQUIRED), ("max_consecutive_errors", REQUIRED)],
    ),
    "MultiSteps": (gl.MultiSteps, [("transform", REQUIRED), ("every_k_schedule", REQUIRED)]),
    "lookahead": (
        gl.lookahead,
        [("fast", REQUIRED), ("sync_period", ...), ("slow_step_size", ...)],
    ),
    "reduce_on_plateau": (
        gl.reduce_on_plateau,
        [
            ("factor", 0.1),
            ("patience", 10),
            ("rtol", 1e-4),
            ("atol", 0.0),
            ("cooldown", 0),
            ("min_scale", 0.0),
            ("accumulation_size", 1),
        ],
    ),
    # 5. Schedules
    "constant": (schedules.constant, [("value", REQUIRED)]),
    "step_decay": (
        schedules.step_decay,
        [("init_value", REQUIRED), ("step_size", REQUIRED), ("gamma", 0.1)],
    ),
    "multistep_decay": (
        schedules.multistep_decay,
        [("init_value", REQUIRED), ("milestones", REQUIRED), ("gamma", 0.1)],
    ),
    "piecewise_constant": (
        schedules.piecewise_constant,
        [("init_value", REQUIRED), ("boundaries_and_scales", ...)],
    ),
    "exponential_decay": (
        schedules.exponential_decay,
        [
            ("init_value", REQUIRED),
            ("decay_rate", REQUIRED),
            ("transition_steps", 1),
            ("transition_begin", 0),
            ("staircase", False),
            ("end_value", None),
        ],
    ),
    "inverse_time_decay": (
        schedules.inverse_time_decay,
        [
            ("init_value", REQUIRED),
            ("decay_rate", REQUIRED),
            ("decay_steps", 1),
            ("staircase", False),
        ],
    ),
    "polynomial_decay": (
        schedules.polynomial_decay,
        [
            ("init_value", REQUIRED),
            ("end_value", REQUIRED),
            ("decay_steps", REQUIRED),
            ("power", 1.0),
            ("transition_begin", 0),
        ],
    ),
    "linear": (
        schedules.linear,
        [
            ("init_value", REQUIRED),
            ("end_value", REQUIRED),
            ("transition_steps", REQUIRED),
            ("transition_begin", 0),
        ],
    ),
    "cosine_decay": (
        schedules.cosine_decay,
        [
            ("init_value", REQUIRED),
            ("decay_steps", REQUIRED),
            ("end_value", 0.0),
            ("exponent", 1.0),
        ],
    ),
    "cosine_warm_restarts": (
        schedules.cosine_warm_restarts,
        [
            ("init_value", REQUIRED),
            ("first_period", REQUIRED),
            ("period_mult", 1),
            ("end_value", 0.0),
        ],
    ),
    "warmup_cosine_decay": (
        schedules.warmup_cosine_decay,
        [
            ("init_value", REQUIRED),
            ("peak_value", REQUIRED),
            ("warmup_steps", REQUIRED),
            ("decay_steps", REQUIRED),
            ("end_value", 0.0),
        ],
    ),
    "warmup_linear_decay": (
        schedules.warmup_linear_decay,
        [
            ("init_value", REQUIRED),
            ("peak_value", REQUIRED),
            ("warmup_steps", REQUIRED),
            ("decay_steps", REQUIRED),
            ("end_value", 0.0),
        ],
    ),
    "cyclic": (
        schedules.cyclic,
        [
            ("base_value", REQUIRED),
            ("max_value", REQUIRED),
            ("step_size_up", REQUIRED),
            ("step_size_down", None),
            ("mode", "triangular"),
            ("gamma", 1.0),
        ],
    ),
    "one_cycle": (
        schedules.one_cycle,
        [
            ("total_steps", REQUIRED),
            ("max_value", REQUIRED),
            ("pct_start", 0.3),
            ("anneal", "cos"),
            ("div_factor", 25.0),
            ("final_div_factor", 1e4),
            ("three_phase", False),
        ],
    ),
    "warmup_stable_decay": (
        schedules.warmup_stable_decay,
        [
            ("peak_value", REQUIRED),
            ("warmup_steps", REQUIRED),
            ("stable_steps", REQUIRED),
            ("decay_steps", REQUIRED),
            ("init_value", 0.0),
            ("end_value", 0.0),
            ("decay", "linear"),
        ],
    ),
    "join": (schedules.join, [("schedules", REQUIRED), ("boundaries", REQUIRED)]),
    # 6. Losses
    "huber": (losses.huber, [("pred", REQUIRED), ("target", REQUIRED), ("delta", 1.0)]),
    "sigmoid_focal": (
        losses.sigmoid_focal,
        [("logits", REQUIRED), ("labels", REQUIRED), ("alpha", None), ("gamma", 2.0)],
    ),
    "contrastive": (
        losses.contrastive,
        [("distance", REQUIRED), ("is_dissimilar", REQUIRED), ("margin", 1.0)],
    ),
    "triplet_margin": (
        losses.triplet_margin,
        [("anchor", REQUIRED), ("positive", REQUIRED), ("negative", REQUIRED), ("margin", 1.0)],
    ),
    "elastic_net_penalty": (
        losses.elastic_net_penalty,
        [("params", REQUIRED), ("l1", ...), ("l2", ...)],
    ),
    # 7. Running things
    "minimize": (gl.minimize, [("fun", REQUIRED), ("x0", REQUIRED), ("optimizer", REQUIRED)]),
    "sweep": (
        gl.sweep,
        [
            ("make_optimizer", REQUIRED),
            ("loss_fn", REQUIRED),
            ("params", REQUIRED),
            ("batches", REQUIRED),
            ("grid", REQUIRED),
        ],
    ),
    "lr_finder": (
        gl.lr_finder,
        [
            ("make_optimizer", REQUIRED),
            ("loss_fn", REQUIRED),
            ("params", REQUIRED),
            ("batches", REQUIRED),
        ],
    ),
}

KEYWORD_ONLY = {  # name -> the contract's keyword-only parameters, with defaults
    "minimize": [("max_steps", ...), ("tol", ...)],
    "sweep": [("num_steps", ...)],
    "lr_finder": [("min_lr", 1e-7), ("max_lr", 10.0), ("num_steps", 100)],
}


def _positional(fn):
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = inspect.signature(fn).parameters.values()
    return [p for p in params if p.kind in kinds and p.name not in ("cls", "self")]


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_positional_parameters_are_the_contracts_in_order(name):
    fn, expected = CONTRACT[name]
    got = _positional(fn)[: len(expected)]
    assert [p.name for p in got] == [n for n, _ in expected], f"{name}{inspect.signature(fn)}"
    for p, (n, default) in zip(got, expected, strict=True):
        if default is not ...:  # `...`: the contract names it without fixing a default
            assert p.default == default or p.default is default, (n, p.default, default)


@pytest.mark.parametrize("name", sorted(KEYWORD_ONLY))
def test_keyword_only_parameters_of_the_runners(name):
    params = inspect.signature(CONTRACT[name][0]).parameters
    for n, default in KEYWORD_ONLY[name]:
        assert params[n].kind is inspect.Parameter.KEYWORD_ONLY, n
        if default is not ...:
            assert params[n].default == default, (n, params[n].default)


def test_contract_keywords_and_optax_keywords_both_call():
    """The contract's keyword names work, and so do Optax's for the same argument."""
    inner = gl.sgd(0.1)
    params = {"w": jnp.ones(2)}
    for tx in (
        gl.masked(transform=inner, mask=True),
        gl.masked(inner=inner, mask=True),
        gl.apply_if_finite(transform=inner, max_consecutive_errors=2),
        gl.apply_if_finite(inner=inner, max_consecutive_errors=2),
        gl.MultiSteps(transform=inner, every_k_schedule=2),
        gl.MultiSteps(opt=inner, every_k_schedule=2),
        gl.scale_by_learning_rate(lr=0.1),
        gl.scale_by_learning_rate(learning_rate=0.1),
    ):
        updates, _ = tx.update(params, tx.init(params), params)
        assert updates["w"].shape == (2,)
    with pytest.raises(TypeError, match="got both 'transform' and 'inner'"):
        gl.masked(transform=inner, inner=inner, mask=True)


def test_a_positional_call_written_against_the_contract_sets_what_it_names():
    """lamb's fifth positional is weight_decay and radam's is threshold (Optax's
    fifth, eps_root, is keyword-only here): checked on the values they refuse."""
    with pytest.raises(ValueError, match=r"weight_decay must be >= 0, got -0\.5"):
        gl.lamb(0.01, 0.9, 0.999, 1e-6, -0.5)
    with pytest.raises(ValueError, match="threshold"):
        gl.radam(0.01, 0.9, 0.999, 1e-8, 4.0)  # threshold <= 4: r_t is not real


def test_optax_keywords_of_partition_lookahead_adamw_and_sgd():
    """Optax code ported as is: partition(param_labels=), lookahead(fast_optimizer=),
    adamw's keyword-only eps_root/nesterov (same numbers as Optax), sgd's
    accumulator_dtype (the momentum is stored in it)."""
    optax = pytest.importorskip("optax")
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    state = gl.partition({"a": gl.sgd(0.1)}, param_labels="a").init(params)
    assert set(state.inner_states) == {"a"}
    tx = gl.lookahead(fast_optimizer=gl.sgd(0.1), sync_period=2, slow_step_size=0.5)
    assert tx.update(params, tx.init(params), params)[0]["w"].shape == (3,)
    ours = gl.adamw(0.1, weight_decay=0.1, eps_root=1e-3, nesterov=True)
    theirs = optax.adamw(0.1, weight_decay=0.1, eps_root=1e-3, nesterov=True)
    got = []
    for tx in (ours, theirs):
        x, s = params, tx.init(params)
        with jax.numpy_dtype_promotion("standard"):  # Optax's code is not strict-clean
            for k in range(4):
                u, s = tx.update({"w": jnp.sin((k + 1.0) * x["w"])}, s, x)
                x = optax.apply_updates(x, u)
        got.append(x["w"])
    np.testing.assert_allclose(got[0], got[1], rtol=1e-5)
    momentum = jax.tree.leaves(gl.sgd(0.1, 0.9, accumulator_dtype=jnp.bfloat16).init(params))
    assert jnp.bfloat16 in [leaf.dtype for leaf in momentum]


def test_multisteps_use_grad_mean_and_gradient_transformation_as_in_optax():
    """use_grad_mean=False steps on the sum of the k gradients (Optax's option);
    MultiSteps(...).gradient_transformation() is the transformation itself."""
    optax = pytest.importorskip("optax")
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    for use_mean in (True, False):
        got = []
        for tx in (
            gl.MultiSteps(gl.sgd(0.1), 3, use_grad_mean=use_mean),
            optax.MultiSteps(optax.sgd(0.1), 3, use_grad_mean=use_mean).gradient_transformation(),
        ):
            x, s = params, tx.init(params)
            with jax.numpy_dtype_promotion("standard"):  # Optax's code is not strict-clean
                for k in range(7):
                    u, s = tx.update({"w": (k + 1.0) * jnp.sin(x["w"])}, s, x)
                    x = optax.apply_updates(x, u)
            got.append((x["w"], s.acc_grads["w"]))  # the accumulator: the mean or the sum
        for a, b in zip(*got, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        # an inf gradient followed by finite ones: the sum stays inf (was inf - inf = NaN)
        outs = []
        for tx in (
            gl.MultiSteps(gl.sgd(0.1), 3, use_grad_mean=use_mean),
            optax.MultiSteps(optax.sgd(0.1), 3, use_grad_mean=use_mean).gradient_transformation(),
        ):
            s = tx.init(params)
            with jax.numpy_dtype_promotion("standard"):
                for g in ([jnp.inf, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]):
                    u, s = tx.update({"w": jnp.array(g)}, s, params)
            outs.append(u["w"])
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6)  # NaN where Optax has NaN
    tx = gl.MultiSteps(gl.sgd(0.1), 2)
    assert tx.gradient_transformation() is tx


def test_inject_hyperparams_accepts_the_keyword_aliases():
    """inject_hyperparams binds arguments against the factory's signature: the
    aliases (Optax's inner=/opt=/fast_optimizer=, the API's lr=) must reach it."""
    params = {"w": jnp.ones(2)}
    inner = gl.sgd(0.1)
    for tx in (
        gl.inject_hyperparams(gl.apply_if_finite)(inner=inner, max_consecutive_errors=2),
        gl.inject_hyperparams(gl.masked)(inner=inner, mask=True),
        gl.inject_hyperparams(gl.MultiSteps)(opt=inner, every_k_schedule=1),
        gl.inject_hyperparams(gl.lookahead)(
            fast_optimizer=inner, sync_period=2, slow_step_size=1.0
        ),
        gl.inject_hyperparams(gl.scale_by_learning_rate)(lr=0.1),
    ):
        updates, _ = tx.update(params, tx.init(params), params)
        assert updates["w"].shape == (2,)
