"""Reliability, item 1: bad input gets a clear error -- over the whole public API.

One table, :data:`BAD_INPUTS`: each row is ``(description, call, exception
type, words)``. ``call()`` must raise ``exception type`` (``ValueError`` or
``TypeError``; ``KeyError`` only where the API contract fixes it) whose
message contains every one of ``words`` -- the argument's name (or the leaf's
path) AND the offending value (or its shape/dtype/type, when the value is an
array or an object). The exception must be raised by gradlab's own code, not
deep inside JAX or NumPy, and never be an ``AssertionError``.

Rows cover every public constructor and function: optimizers, blocks,
combinators, schedules, losses, ``sweep``/``lr_finder``/``minimize``, plots,
``packed``, ``save_state``/``load_state``, gradients whose structure, shapes or
dtypes differ from the state's, and states from another optimizer. (The older
tables in ``tests/cases.py`` and ``tests/cases_modern.py`` keep their own
tests; this one is the reliability suite's count.)

The count is checked (``test_the_table_has_at_least_120_distinct_bad_inputs``)
and listed by section at the end of this file.
"""

from __future__ import annotations

import os
import pathlib
import re
import zipfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlab as gl

GRADLAB_DIR = pathlib.Path(gl.__file__).resolve().parent
NAN, INF = float("nan"), float("inf")

P = {"b": jnp.zeros(3), "w": jnp.ones((2, 3))}
G = {"b": jnp.full(3, 0.5), "w": jnp.full((2, 3), -0.5)}


def update(tx: Any, grads: Any = G, state: Any = None, params: Any = P, **extra: Any) -> Any:
    """One update of ``tx`` (state from its own init unless given)."""
    state = tx.init(params) if state is None else state
    return tx.update(grads, state, params, **extra)


def with_leaf(tree: dict, key: str, value: Any) -> dict:
    return {**tree, key: value}


def sched(value: Any) -> Callable[[Any], Any]:
    """A schedule that returns ``value`` whatever the step."""
    return lambda step: value


def loss_fn(p, batch):
    x, y = batch
    return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)


X = jnp.ones((4, 2))
Y = jnp.ones((4, 3))
SWEEP_P = {"b": jnp.zeros(3), "w": jnp.zeros((2, 3))}


def sweep(**overrides):
    kwargs = dict(
        make_optimizer=lambda learning_rate: gl.sgd(learning_rate),
        loss_fn=loss_fn,
        params=SWEEP_P,
        batches=lambda step: (X, Y),
        grid={"learning_rate": [0.1]},
        num_steps=2,
    )
    kwargs.update(overrides)
    return gl.sweep(**kwargs)


def lr_finder(**overrides):
    kwargs = dict(
        make_optimizer=gl.sgd, loss_fn=loss_fn, params=SWEEP_P, batches=lambda step: (X, Y)
    )
    kwargs.update(overrides)
    return gl.lr_finder(**kwargs)


def quadratic(x):
    return jnp.sum(x**2)


def saved(tmp: pathlib.Path, state: Any, name: str = "state.npz") -> str:
    path = str(tmp / name)
    gl.save_state(path, state)
    return path


_TMP_ROOT: list[pathlib.Path] = []


@pytest.fixture(autouse=True, scope="module")
def _checkpoint_root(tmp_path_factory):
    """The checkpoint rows write under pytest's own temporary base, which pytest prunes."""
    _TMP_ROOT.append(tmp_path_factory.mktemp("bad-inputs"))
    yield
    _TMP_ROOT.pop()


def _tmp() -> pathlib.Path:
    """A fresh directory for one checkpoint row (rows are calls, not fixtures)."""
    import tempfile

    return pathlib.Path(tempfile.mkdtemp(dir=_TMP_ROOT[-1]))


def truncated_checkpoint() -> str:
    tmp = _tmp()
    path = saved(tmp, gl.adam(0.1).init(P))
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[: len(data) // 2])
    return path


def pickle_checkpoint() -> str:
    import pickle

    path = _tmp() / "evil.npz"

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path.write_bytes(pickle.dumps(Evil()))
    return str(path)


def object_array_checkpoint() -> str:
    """A well-formed gradlab archive whose one leaf is a pickled object array."""
    tmp = _tmp()
    good = saved(tmp, (jnp.zeros(2),), "good.npz")
    path = tmp / "objects.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            if name == "leaf_00000.npy":
                import io

                buf = io.BytesIO()
                np.save(buf, np.array([os.system, 1], dtype=object), allow_pickle=True)
                dst.writestr(name, buf.getvalue())
            else:
                dst.writestr(name, src.read(name))
    return str(path)


def header_less_checkpoint() -> str:
    path = _tmp() / "plain.npz"
    np.savez(path, a=np.zeros(3))
    return str(path)


ADAM_STATE = gl.adam(0.1).init(P)
# Twelve layers, one of which gains a leaf: the shortened structures in an error
# message look alike, so the message must name the leaf itself.
DEEP = {f"layer_{i:02d}": {"bias": jnp.zeros(2), "kernel": jnp.zeros((2, 2))} for i in range(12)}
DEEP_NEW = {**DEEP, "layer_06": {**DEEP["layer_06"], "scale": jnp.ones(2)}}
DEEP_SPLIT = {
    **DEEP,
    "layer_07": {"bias": jnp.zeros(2), "kernel": {"a": jnp.ones(2), "b": jnp.ones(2)}},
}

# --------------------------------------------------------------------------
# The table: (description, call, exception type, words the message contains)
# --------------------------------------------------------------------------

Row = tuple[str, Callable[[], Any], type, tuple[str, ...]]

# One row per line: the table reads as a table.
# fmt: off

LEARNING_RATES: list[Row] = [
    ("sgd: negative learning_rate", lambda: gl.sgd(-0.1), ValueError, ("learning_rate", "-0.1")),
    ("adam: NaN learning_rate", lambda: gl.adam(NAN), ValueError, ("learning_rate", "nan")),
    ("adamw: +inf learning_rate", lambda: gl.adamw(INF), ValueError, ("learning_rate", "inf")),
    ("adagrad: -inf learning_rate", lambda: gl.adagrad(-INF), ValueError, ("learning_rate", "-inf")),
    ("rmsprop: string learning_rate", lambda: gl.rmsprop("0.01"), TypeError, ("learning_rate", "'0.01'")),
    ("lion: None learning_rate", lambda: gl.lion(None), TypeError, ("learning_rate", "None")),
    ("nadam: boolean learning_rate", lambda: gl.nadam(True), TypeError, ("learning_rate", "True")),
    ("adam: boolean array learning_rate", lambda: gl.adam(np.array(True)), TypeError, ("learning_rate", "boolean")),
    ("radam: complex learning_rate", lambda: gl.radam(1j), TypeError, ("learning_rate", "1j")),
    ("amsgrad: list of learning rates", lambda: gl.amsgrad([0.1, 0.2]), ValueError, ("learning_rate", "(2,)")),
    ("adamax: NaN array learning_rate", lambda: gl.adamax(jnp.array(NAN)), ValueError, ("learning_rate", "nan")),
    ("yogi: negative NumPy scalar learning_rate", lambda: gl.yogi(np.float32(-1.0)), ValueError, ("learning_rate", "-1.0")),
    ("lamb: dict learning_rate", lambda: gl.lamb({"lr": 0.1}), TypeError, ("learning_rate", "{'lr': 0.1}")),
    ("adan: NaN learning_rate", lambda: gl.adan(NAN), ValueError, ("learning_rate", "nan")),
    ("novograd: negative learning_rate", lambda: gl.novograd(-1e-3), ValueError, ("learning_rate", "-0.001")),
    ("sign_sgd: string learning_rate", lambda: gl.sign_sgd("fast"), TypeError, ("learning_rate", "'fast'")),
    ("signum: negative learning_rate", lambda: gl.signum(-0.5), ValueError, ("learning_rate", "-0.5")),
    ("adafactor: inf learning_rate", lambda: gl.adafactor(INF), ValueError, ("learning_rate", "inf")),
    ("sm3: negative learning_rate", lambda: gl.sm3(-2.0), ValueError, ("learning_rate", "-2.0")),
    ("noisy_sgd: NaN learning_rate", lambda: gl.noisy_sgd(NAN), ValueError, ("learning_rate", "nan")),
    ("schedule_free_sgd: inf learning_rate", lambda: gl.schedule_free_sgd(INF), ValueError, ("learning_rate", "inf")),
    ("schedule_free_adamw: negative learning_rate", lambda: gl.schedule_free_adamw(-1e-3), ValueError, ("learning_rate", "-0.001")),
    ("muon: negative learning_rate", lambda: gl.muon(-0.02), ValueError, ("learning_rate", "-0.02")),
    ("muon: negative adam_learning_rate", lambda: gl.muon(0.02, adam_learning_rate=-1.0), ValueError, ("adam_learning_rate", "-1.0")),
    ("schedule_free_sgd: negative learning_rate with warmup_steps", lambda: gl.schedule_free_sgd(-1.0, warmup_steps=10), ValueError, ("learning_rate", "-1.0")),
    ("schedule_free_adamw: NaN learning_rate with warmup_steps", lambda: gl.schedule_free_adamw(NAN, warmup_steps=10), ValueError, ("learning_rate", "nan")),
    ("lbfgs: negative learning_rate", lambda: gl.lbfgs(-1.0), ValueError, ("learning_rate", "-1.0")),
    ("rprop: negative initial step", lambda: gl.rprop(-0.1), ValueError, ("learning_rate", "-0.1")),
    ("adadelta: NaN learning_rate", lambda: gl.adadelta(NAN), ValueError, ("learning_rate", "nan")),
    ("nadamw: learning_rate a (2, 2) array", lambda: gl.nadamw(jnp.ones((2, 2))), ValueError, ("learning_rate", "(2, 2)")),
]

SCHEDULE_OUTPUTS: list[Row] = [
    # A schedule returning the wrong thing: refused at construction (it is
    # evaluated abstractly at step 0), naming the argument and what came back.
    ("adam: schedule returning a vector", lambda: gl.adam(sched(jnp.ones(3))), ValueError, ("learning_rate", "(3,)")),
    ("sgd: schedule returning a string", lambda: gl.sgd(sched("0.1")), TypeError, ("learning_rate", "'0.1'")),
    ("adamw: schedule returning None", lambda: gl.adamw(sched(None)), TypeError, ("learning_rate", "None")),
    ("lion: schedule returning a complex", lambda: gl.lion(sched(jnp.ones((), jnp.complex64))), TypeError, ("learning_rate", "complex64")),
    ("adagrad: schedule returning a bool", lambda: gl.adagrad(lambda step: step < 10), TypeError, ("learning_rate", "bool")),
    ("sm3: schedule of two arguments", lambda: gl.sm3(lambda step, total: 0.1), TypeError, ("learning_rate", "2 required")),
    ("scale_by_schedule: schedule returning a matrix", lambda: gl.scale_by_schedule(sched(jnp.ones((2, 2)))), ValueError, ("schedule", "(2, 2)")),
    ("scale_by_learning_rate: schedule returning a string", lambda: gl.scale_by_learning_rate(sched("x")), TypeError, ("learning_rate", "'x'")),
    ("MultiSteps: every_k_schedule returning a vector", lambda: gl.MultiSteps(gl.sgd(0.1), sched(jnp.ones(2, jnp.int32))), ValueError, ("every_k_schedule", "(2,)")),
    ("schedule_free: learning_rate schedule returning a vector", lambda: gl.schedule_free(gl.sgd(0.1), sched(jnp.ones(2))), ValueError, ("learning_rate", "(2,)")),
    ("rmsprop: schedule returning a float64 NumPy vector", lambda: gl.rmsprop(sched(np.ones(4))), ValueError, ("learning_rate", "(4,)")),
    ("join: a member schedule returning a string", lambda: gl.schedules.join([sched("a"), gl.schedules.constant(2.0)], [5])(0), TypeError, ("schedules[0]", "'a'")),
    ("join: a member schedule returning a vector", lambda: gl.schedules.join([gl.schedules.constant(1.0), sched(jnp.ones(2))], [5])(0), ValueError, ("schedules[1]", "(2,)")),
]

BETAS_AND_EPS: list[Row] = [
    ("adam: b1 = 1", lambda: gl.adam(0.1, b1=1.0), ValueError, ("b1", "1.0")),
    ("adam: b2 negative", lambda: gl.adam(0.1, b2=-0.1), ValueError, ("b2", "-0.1")),
    ("adam: b2 below 1 but 1.0 in float32 (1 - b2 = 0: NaN steps)", lambda: gl.adam(0.1, b2=1 - 1e-9), ValueError, ("b2", "0.999999999", "float32")),
    ("lion: b1 below 1 but 1.0 in float32 (never moves)", lambda: gl.lion(0.1, b1=1 - 1e-9), ValueError, ("b1", "0.999999999", "float32")),
    ("rprop: eta_plus above 1 but 1.0 in float32", lambda: gl.rprop(0.1, eta_plus=1 + 1e-9), ValueError, ("eta_plus", "1.000000001", "float32")),
    ("adam: b1 NaN", lambda: gl.adam(0.1, b1=NAN), ValueError, ("b1", "nan")),
    ("adam: b2 string", lambda: gl.adam(0.1, b2="0.999"), TypeError, ("b2", "'0.999'")),
    ("nadam: b2 = 1", lambda: gl.nadam(0.1, b2=1.0), ValueError, ("b2", "1.0")),
    ("amsgrad: b1 above 1", lambda: gl.amsgrad(0.1, b1=1.5), ValueError, ("b1", "1.5")),
    ("adamax: b2 = 2", lambda: gl.adamax(0.1, b2=2.0), ValueError, ("b2", "2.0")),
    ("radam: b1 negative", lambda: gl.radam(0.1, b1=-1.0), ValueError, ("b1", "-1.0")),
    ("adabelief: b2 = 1", lambda: gl.adabelief(0.1, b2=1.0), ValueError, ("b2", "1.0")),
    ("yogi: b1 = 1", lambda: gl.yogi(0.1, b1=1.0), ValueError, ("b1", "1.0")),
    ("adan: b2 above 1", lambda: gl.adan(0.1, b2=1.2), ValueError, ("b2", "1.2")),
    ("novograd: b1 = 1", lambda: gl.novograd(0.1, b1=1.0), ValueError, ("b1", "1.0")),
    ("lamb: b2 = 1", lambda: gl.lamb(0.1, b2=1.0), ValueError, ("b2", "1.0")),
    ("lion: b2 above 1", lambda: gl.lion(0.1, b2=1.5), ValueError, ("b2", "1.5")),
    ("signum: beta negative", lambda: gl.signum(0.1, beta=-0.1), ValueError, ("beta", "-0.1")),
    ("sm3: momentum above 1", lambda: gl.sm3(0.1, momentum=1.1), ValueError, ("momentum", "1.1")),
    ("lars: momentum negative", lambda: gl.lars(0.1, momentum=-0.1), ValueError, ("momentum", "-0.1")),
    ("rmsprop: decay = 1", lambda: gl.rmsprop(0.1, decay=1.0), ValueError, ("decay", "1.0")),
    ("adadelta: rho negative", lambda: gl.adadelta(rho=-0.5), ValueError, ("rho", "-0.5")),
    ("scale_by_muon: beta = 1", lambda: gl.scale_by_muon(beta=1.0), ValueError, ("beta", "1.0")),
    ("schedule_free_sgd: b1 = 0", lambda: gl.schedule_free_sgd(b1=0.0), ValueError, ("b1", "0.0")),
    ("muon: adam_b1 negative", lambda: gl.muon(0.02, adam_b1=-0.1), ValueError, ("adam_b1", "-0.1")),
    ("muon: adam_b2 above 1", lambda: gl.muon(0.02, adam_b2=1.5), ValueError, ("adam_b2", "1.5")),
    ("muon: negative adam_eps_root", lambda: gl.muon(0.02, adam_eps_root=-1.0), ValueError, ("adam_eps_root", "-1.0")),
    ("schedule_free_adamw: b2 = 1", lambda: gl.schedule_free_adamw(b2=1.0), ValueError, ("b2", "1.0")),
    ("ema: decay = 1 with debias", lambda: gl.ema(1.0), ValueError, ("decay", "1.0")),
    ("trace: decay inf", lambda: gl.trace(INF), ValueError, ("decay", "inf")),
    ("scale_by_debiased_rms: decay = 1", lambda: gl.scale_by_debiased_rms(1.0), ValueError, ("decay", "1.0")),
    ("scale_by_factored_rms: decay_rate NaN", lambda: gl.scale_by_factored_rms(decay_rate=NAN), ValueError, ("decay_rate", "nan")),
    ("adam: negative eps", lambda: gl.adam(0.1, eps=-1e-8), ValueError, ("eps", "-1e-08")),
    ("rmsprop: negative eps", lambda: gl.rmsprop(0.1, eps=-1.0), ValueError, ("eps", "-1.0")),
    ("adagrad: NaN eps", lambda: gl.adagrad(0.1, eps=NAN), ValueError, ("eps", "nan")),
    ("adadelta: negative eps", lambda: gl.adadelta(eps=-1e-6), ValueError, ("eps", "-1e-06")),
    ("adabelief: negative eps_root", lambda: gl.adabelief(0.1, eps_root=-1e-16), ValueError, ("eps_root", "-1e-16")),
    ("lamb: negative eps", lambda: gl.lamb(0.1, eps=-1e-6), ValueError, ("eps", "-1e-06")),
    ("lars: negative eps", lambda: gl.lars(0.1, eps=-1.0), ValueError, ("eps", "-1.0")),
    ("novograd: negative eps", lambda: gl.novograd(0.1, eps=-1.0), ValueError, ("eps", "-1.0")),
    ("scale_by_factored_rms: negative epsilon", lambda: gl.scale_by_factored_rms(epsilon=-1e-30), ValueError, ("epsilon", "-1e-30")),
    ("sm3: negative eps", lambda: gl.sm3(0.1, eps=-1e-8), ValueError, ("eps", "-1e-08")),
    ("adan: negative eps_root", lambda: gl.adan(0.1, eps_root=-1.0), ValueError, ("eps_root", "-1.0")),
    ("normalize_by_update_norm: negative eps", lambda: gl.normalize_by_update_norm(eps=-1.0), ValueError, ("eps", "-1.0")),
    ("adaptive_grad_clip: negative eps", lambda: gl.adaptive_grad_clip(0.1, eps=-1e-3), ValueError, ("eps", "-0.001")),
    ("scale_by_lbfgs: negative eps", lambda: gl.scale_by_lbfgs(eps=-1e-10), ValueError, ("eps", "-1e-10")),
    ("muon: negative eps", lambda: gl.muon(0.02, eps=-1.0), ValueError, ("eps", "-1.0")),
    ("yogi: inf eps", lambda: gl.yogi(0.1, eps=INF), ValueError, ("eps", "inf")),
    ("adafactor: negative eps (its block calls it epsilon)", lambda: gl.adafactor(eps=-1.0), ValueError, ("eps", "-1.0")),
]

WEIGHT_DECAY_AND_FACTORS: list[Row] = [
    ("adamw: negative weight_decay", lambda: gl.adamw(0.1, weight_decay=-0.1), ValueError, ("weight_decay", "-0.1")),
    ("lion: NaN weight_decay", lambda: gl.lion(0.1, weight_decay=NAN), ValueError, ("weight_decay", "nan")),
    ("lamb: inf weight_decay", lambda: gl.lamb(0.1, weight_decay=INF), ValueError, ("weight_decay", "inf")),
    ("nadamw: string weight_decay", lambda: gl.nadamw(0.1, weight_decay="1e-4"), TypeError, ("weight_decay", "'1e-4'")),
    ("adamaxw: negative weight_decay", lambda: gl.adamaxw(0.1, weight_decay=-1.0), ValueError, ("weight_decay", "-1.0")),
    ("adadelta: negative weight_decay", lambda: gl.adadelta(weight_decay=-0.5), ValueError, ("weight_decay", "-0.5")),
    ("lars: negative weight_decay", lambda: gl.lars(0.1, weight_decay=-0.1), ValueError, ("weight_decay", "-0.1")),
    ("muon: negative adam_weight_decay", lambda: gl.muon(0.02, adam_weight_decay=-0.1), ValueError, ("adam_weight_decay", "-0.1")),
    ("schedule_free_sgd: negative weight_decay", lambda: gl.schedule_free_sgd(weight_decay=-0.1), ValueError, ("weight_decay", "-0.1")),
    ("adafactor: negative weight_decay_rate", lambda: gl.adafactor(weight_decay_rate=-0.1), ValueError, ("weight_decay_rate", "-0.1")),
    ("muon: ns_coeffs a number, not three", lambda: gl.muon(0.02, ns_coeffs=3.0), ValueError, ("ns_coeffs", "3.0")),
    ("lars: negative trust_coefficient", lambda: gl.lars(0.1, trust_coefficient=-0.001), ValueError, ("trust_coefficient", "-0.001")),
    ("scale_by_trust_ratio: NaN min_norm", lambda: gl.scale_by_trust_ratio(min_norm=NAN), ValueError, ("min_norm", "nan")),
    ("scale_by_param_block_rms: NaN min_scale", lambda: gl.scale_by_param_block_rms(NAN), ValueError, ("min_scale", "nan")),
    ("scale_by_rss: negative initial_accumulator_value", lambda: gl.scale_by_rss(-0.1), ValueError, ("initial_accumulator_value", "-0.1")),
    ("scale: inf factor", lambda: gl.scale(INF), ValueError, ("factor", "inf")),
    ("clip: negative max_delta", lambda: gl.clip(-1.0), ValueError, ("max_delta", "-1.0")),
    ("clip_by_global_norm: zero max_norm", lambda: gl.clip_by_global_norm(0.0), ValueError, ("max_norm", "0.0")),
    ("clip_by_block_rms: zero threshold", lambda: gl.clip_by_block_rms(0.0), ValueError, ("threshold", "0.0")),
    ("adaptive_grad_clip: negative clipping", lambda: gl.adaptive_grad_clip(-0.01), ValueError, ("clipping", "-0.01")),
    ("normalize_by_update_norm: NaN scale_factor", lambda: gl.normalize_by_update_norm(NAN), ValueError, ("scale_factor", "nan")),
    ("adafactor: negative clipping_threshold", lambda: gl.adafactor(clipping_threshold=-1.0), ValueError, ("clipping_threshold", "-1.0")),
    ("rprop: eta_plus below 1", lambda: gl.rprop(0.1, eta_plus=0.5), ValueError, ("eta_plus", "0.5")),
    ("rprop: negative min_step_size", lambda: gl.rprop(0.1, min_step_size=-1.0), ValueError, ("min_step_size", "-1.0")),
    ("add_noise: negative eta", lambda: gl.add_noise(-0.01, 0.55, 0), ValueError, ("eta", "-0.01")),
    ("noisy_sgd: negative gamma", lambda: gl.noisy_sgd(0.1, gamma=-0.5), ValueError, ("gamma", "-0.5")),
    ("noisy_sgd: string seed", lambda: gl.noisy_sgd(0.1, seed="a"), TypeError, ("seed", "'a'")),
    ("add_noise: fractional seed", lambda: gl.add_noise(0.1, 0.5, 1.5), ValueError, ("seed", "1.5")),
    ("schedule_free_adamw: negative weight_lr_power", lambda: gl.schedule_free_adamw(weight_lr_power=-2.0), ValueError, ("weight_lr_power", "-2.0")),
    ("radam: inf threshold", lambda: gl.radam(0.1, threshold=INF), ValueError, ("threshold", "inf")),
    ("radam: threshold at 4 (r_t not real)", lambda: gl.radam(0.1, threshold=4.0), ValueError, ("threshold", "(4,", "4.0")),
    ("yogi: negative initial_accumulator_value", lambda: gl.yogi(0.1, initial_accumulator_value=-1.0), ValueError, ("initial_accumulator_value", "-1.0")),
    ("adam: int8 mu_dtype", lambda: gl.adam(0.1, mu_dtype=jnp.int8), ValueError, ("mu_dtype", "int8")),
    ("schedule_free_sgd: bool state_dtype", lambda: gl.schedule_free_sgd(state_dtype=bool), ValueError, ("state_dtype", "bool")),
    ("MultiSteps: int32 accumulator_dtype", lambda: gl.MultiSteps(gl.sgd(0.1), 2, accumulator_dtype=jnp.int32), ValueError, ("accumulator_dtype", "int32")),
]

PERIODS_AND_COUNTS: list[Row] = [
    ("apply_if_finite: float32 2**31 - 1 (it is 2**31: wraps in int32)", lambda: gl.apply_if_finite(gl.sgd(0.1), np.float32(2**31 - 1)), ValueError, ("max_consecutive_errors", "2147483648.0")),
    ("schedule_free_sgd: warmup_steps an array", lambda: gl.schedule_free_sgd(0.1, warmup_steps=jnp.array([2])), ValueError, ("warmup_steps", "(1,)")),
    ("lookahead: sync_period 0", lambda: gl.lookahead(gl.sgd(0.1), 0, 0.5), ValueError, ("sync_period", "0")),
    ("lookahead: fractional sync_period", lambda: gl.lookahead(gl.sgd(0.1), 2.5, 0.5), ValueError, ("sync_period", "2.5")),
    ("lookahead: slow_step_size above 1", lambda: gl.lookahead(gl.sgd(0.1), 5, 1.5), ValueError, ("slow_step_size", "1.5")),
    ("MultiSteps: every_k_schedule 0", lambda: gl.MultiSteps(gl.sgd(0.1), 0), ValueError, ("every_k_schedule", "0")),
    ("MultiSteps: an optax.MultiSteps object", lambda: gl.MultiSteps(__import__("optax").MultiSteps(gl.sgd(0.1), 2), 2), TypeError, ("transform", "got MultiSteps", ".gradient_transformation()")),
    ("MultiSteps: negative every_k_schedule", lambda: gl.MultiSteps(gl.sgd(0.1), -2), ValueError, ("every_k_schedule", "-2")),
    ("MultiSteps: string every_k_schedule", lambda: gl.MultiSteps(gl.sgd(0.1), "4"), TypeError, ("every_k_schedule", "'4'")),
    ("apply_if_finite: negative max_consecutive_errors", lambda: gl.apply_if_finite(gl.sgd(0.1), -1), ValueError, ("max_consecutive_errors", "-1")),
    ("apply_if_finite: fractional max_consecutive_errors", lambda: gl.apply_if_finite(gl.sgd(0.1), 2.5), ValueError, ("max_consecutive_errors", "2.5")),
    ("reduce_on_plateau: negative patience", lambda: gl.reduce_on_plateau(patience=-1), ValueError, ("patience", "-1")),
    ("reduce_on_plateau: factor 0", lambda: gl.reduce_on_plateau(factor=0.0), ValueError, ("factor", "0.0")),
    ("reduce_on_plateau: factor above 1", lambda: gl.reduce_on_plateau(factor=1.5), ValueError, ("factor", "1.5")),
    ("reduce_on_plateau: negative cooldown", lambda: gl.reduce_on_plateau(cooldown=-2), ValueError, ("cooldown", "-2")),
    ("reduce_on_plateau: accumulation_size 0", lambda: gl.reduce_on_plateau(accumulation_size=0), ValueError, ("accumulation_size", "0")),
    ("reduce_on_plateau: unknown mode", lambda: gl.reduce_on_plateau(mode="maximum"), ValueError, ("mode", "'maximum'")),
    ("reduce_on_plateau: negative rtol", lambda: gl.reduce_on_plateau(rtol=-1e-4), ValueError, ("rtol", "-0.0001")),
    ("adafactor: negative decay_offset", lambda: gl.adafactor(decay_offset=-1), ValueError, ("decay_offset", "-1")),
    ("adafactor: fractional min_dim_size_to_factor", lambda: gl.adafactor(min_dim_size_to_factor=2.5), ValueError, ("min_dim_size_to_factor", "2.5")),
    ("scale_by_factored_rms: negative step_offset", lambda: gl.scale_by_factored_rms(step_offset=-3), ValueError, ("step_offset", "-3")),
    ("scale_by_muon: negative ns_steps", lambda: gl.scale_by_muon(ns_steps=-1), ValueError, ("ns_steps", "-1")),
    ("orthogonalize: a vector", lambda: gl.orthogonalize(jnp.ones(3)), ValueError, ("orthogonalize", "(3,)")),
    ("scale_by_lbfgs: memory_size 0", lambda: gl.scale_by_lbfgs(0), ValueError, ("memory_size", "0")),
    ("scale_by_lbfgs: fractional memory_size", lambda: gl.scale_by_lbfgs(2.5), ValueError, ("memory_size", "2.5")),
    ("scale_by_zoom_linesearch: max_linesearch_steps 0", lambda: gl.scale_by_zoom_linesearch(0), ValueError, ("max_linesearch_steps", "0")),
    ("scale_by_zoom_linesearch: c2 below c1", lambda: gl.scale_by_zoom_linesearch(c1=0.5, c2=0.1), ValueError, ("c2", "0.1")),
    ("scale_by_zoom_linesearch: unknown initial_guess", lambda: gl.scale_by_zoom_linesearch(initial_guess="two"), ValueError, ("initial_guess", "'two'")),
    ("scale_by_backtracking_linesearch: c1 = 1", lambda: gl.scale_by_backtracking_linesearch(c1=1.0), ValueError, ("c1", "1.0")),
    ("scale_by_backtracking_linesearch: decrease_factor 1.5", lambda: gl.scale_by_backtracking_linesearch(decrease_factor=1.5), ValueError, ("decrease_factor", "1.5")),
    ("packed: negative max_leaf_size", lambda: gl.packed(gl.adam(0.1), max_leaf_size=-1), ValueError, ("max_leaf_size", "-1")),
]

SCHEDULES: list[Row] = [
    ("constant: NaN value", lambda: gl.schedules.constant(NAN), ValueError, ("value", "nan")),
    ("cosine_decay: called with None as the step", lambda: gl.schedules.cosine_decay(0.1, 10)(None), TypeError, ("step", "None")),
    ("piecewise_constant: called with a string step", lambda: gl.schedules.piecewise_constant(0.1, {3: 0.5})("7"), TypeError, ("step", "'7'")),
    ("step_decay: step_size 0", lambda: gl.schedules.step_decay(0.1, 0), ValueError, ("step_size", "0")),
    ("step_decay: negative gamma", lambda: gl.schedules.step_decay(0.1, 10, gamma=-0.1), ValueError, ("gamma", "-0.1")),
    ("multistep_decay: fractional milestone", lambda: gl.schedules.multistep_decay(0.1, [10.5]), ValueError, ("milestones", "10.5")),
    ("multistep_decay: negative milestone", lambda: gl.schedules.multistep_decay(0.1, [-5, 10]), ValueError, ("milestones", "-5")),
    ("piecewise_constant: negative scale", lambda: gl.schedules.piecewise_constant(0.1, {10: -0.5}), ValueError, ("scales", "-0.5")),
    ("exponential_decay: decay_rate 0", lambda: gl.schedules.exponential_decay(0.1, 0.0), ValueError, ("decay_rate", "0.0")),
    ("exponential_decay: transition_steps 0", lambda: gl.schedules.exponential_decay(0.1, 0.9, transition_steps=0), ValueError, ("transition_steps", "0")),
    ("inverse_time_decay: negative decay_rate", lambda: gl.schedules.inverse_time_decay(0.1, -0.5), ValueError, ("decay_rate", "-0.5")),
    ("polynomial_decay: power 0", lambda: gl.schedules.polynomial_decay(0.1, 0.0, 100, power=0.0), ValueError, ("power", "0.0")),
    ("linear: negative transition_steps", lambda: gl.schedules.linear(0.0, 0.1, -10), ValueError, ("transition_steps", "-10")),
    ("cosine_decay: decay_steps 0", lambda: gl.schedules.cosine_decay(0.1, 0), ValueError, ("decay_steps", "0")),
    ("cosine_decay: fractional decay_steps", lambda: gl.schedules.cosine_decay(0.1, 10.5), ValueError, ("decay_steps", "10.5")),
    ("cosine_warm_restarts: first_period 0", lambda: gl.schedules.cosine_warm_restarts(0.1, 0), ValueError, ("first_period", "0")),
    ("cosine_warm_restarts: period_mult below 1", lambda: gl.schedules.cosine_warm_restarts(0.1, 10, period_mult=0.5), ValueError, ("period_mult", "0.5")),
    ("warmup_cosine_decay: negative warmup_steps", lambda: gl.schedules.warmup_cosine_decay(0.0, 0.1, -5, 100), ValueError, ("warmup_steps", "-5")),
    ("warmup_cosine_decay: decay_steps not after warmup_steps", lambda: gl.schedules.warmup_cosine_decay(0.0, 0.1, 100, 50), ValueError, ("decay_steps", "50")),
    ("warmup_linear_decay: NaN peak_value", lambda: gl.schedules.warmup_linear_decay(0.0, NAN, 10, 100), ValueError, ("peak_value", "nan")),
    ("warmup_stable_decay: negative stable_steps", lambda: gl.schedules.warmup_stable_decay(0.1, 10, -1, 10), ValueError, ("stable_steps", "-1")),
    ("warmup_stable_decay: unknown decay", lambda: gl.schedules.warmup_stable_decay(0.1, 10, 10, 30, decay="exp"), ValueError, ("decay", "'exp'")),
    ("cyclic: step_size_up 0", lambda: gl.schedules.cyclic(0.01, 0.1, 0), ValueError, ("step_size_up", "0")),
    ("cyclic: unknown mode", lambda: gl.schedules.cyclic(0.01, 0.1, 10, mode="sine"), ValueError, ("mode", "'sine'")),
    ("cyclic: gamma above 1", lambda: gl.schedules.cyclic(0.01, 0.1, 10, gamma=1.5), ValueError, ("gamma", "1.5")),
    ("one_cycle: total_steps 0", lambda: gl.schedules.one_cycle(0, 0.1), ValueError, ("total_steps", "0")),
    ("one_cycle: pct_start 1", lambda: gl.schedules.one_cycle(100, 0.1, pct_start=1.0), ValueError, ("pct_start", "1.0")),
    ("one_cycle: unknown anneal", lambda: gl.schedules.one_cycle(100, 0.1, anneal="quad"), ValueError, ("anneal", "'quad'")),
    ("one_cycle_momentum: base_momentum above 1", lambda: gl.schedules.one_cycle_momentum(100, base_momentum=1.5), ValueError, ("base_momentum", "1.5")),
    ("join: a non-callable schedule", lambda: gl.schedules.join([gl.schedules.constant(0.1), 0.5], [10]), TypeError, ("schedules", "0.5")),
    ("join: boundaries count mismatch", lambda: gl.schedules.join([gl.schedules.constant(0.1)] * 2, [10, 20]), ValueError, ("boundaries", "[10, 20]")),
]

COMBINATORS_AND_TYPES: list[Row] = [
    ("sgd: nesterov as a string (truthy: it would switch Nesterov on)", lambda: gl.sgd(0.1, 0.9, nesterov="no"), TypeError, ("nesterov", "'no'")),
    ("rmsprop: centered as a string", lambda: gl.rmsprop(0.1, centered="yes"), TypeError, ("centered", "'yes'")),
    ("rmsprop: eps_in_sqrt as an int", lambda: gl.rmsprop(0.1, eps_in_sqrt=1), TypeError, ("eps_in_sqrt", "1")),
    ("MultiSteps: should_skip_update_fn a bool", lambda: gl.MultiSteps(gl.sgd(0.1), 2, should_skip_update_fn=True), TypeError, ("should_skip_update_fn", "True")),
    ("exponential_decay: staircase as an int", lambda: gl.schedules.exponential_decay(0.1, 10, 0.5, staircase=1), TypeError, ("staircase", "1")),
    ("chain: an int member", lambda: gl.chain(gl.adam(0.1), 3), TypeError, ("chain argument 1", "int")),
    ("named_chain: a member that is not a pair", lambda: gl.named_chain(gl.adam(0.1)), TypeError, ("named_chain", "GradientTransformation")),
    ("named_chain: duplicate names", lambda: gl.named_chain(("a", gl.sgd(0.1)), ("a", gl.adam(0.1))), ValueError, ("names must be unique", "'a'")),
    ("partition: a list of transforms", lambda: gl.partition([gl.adam(0.1)], {"b": 0, "w": 0}), TypeError, ("transforms", "[GradientTransformation(")),
    ("partition: a label without transformation", lambda: gl.partition({"a": gl.adam(0.1)}, {"b": "a", "w": "z"}), ValueError, ("labels", "'z'")),
    ("partition: labels not shaped like the params", lambda: gl.partition({"a": gl.sgd(0.1)}, {"x": "a"}).init(P), ValueError, ("labels", "'x'")),
    ("partition: an array label", lambda: gl.partition({"a": gl.sgd(0.1)}, {"b": "a", "w": jnp.zeros(2)}).init(P), TypeError, ("labels leaf ['w']", "Array")),
    ("partition: a transformation that labels nothing", lambda: gl.partition({"a": gl.sgd(0.1), "b": gl.adam(0.1)}, lambda p: {"b": "a", "w": "a"}).init(P), ValueError, ("transforms", "'b'")),
    ("masked: transform is not a transformation", lambda: gl.masked("adam", {"b": True, "w": False}), TypeError, ("transform", "str")),
    ("masked: mask with an unknown key", lambda: gl.masked(gl.adam(0.1), {"b": True, "x": False}).init(P), ValueError, ("mask", "'x'")),
    ("masked: a mask missing one leaf deep in a large tree", lambda: gl.masked(gl.adam(0.1), jax.tree.map(lambda _: True, DEEP)).init(DEEP_NEW), ValueError, ("only in params", "['layer_06']['scale']")),
    ("masked: a list where a tree is expected", lambda: gl.masked(gl.adam(0.1), [True, False]).init(P), ValueError, ("mask", "[*, *]")),
    ("freeze: an array mask leaf", lambda: update(gl.freeze({"b": jnp.array([True, False, True]), "w": False})), TypeError, ("mask leaf ['b']", "Array")),
    ("adamw: mask of another structure", lambda: update(gl.adamw(0.1, mask={"b": True, "c": False})), ValueError, ("mask", "'c'")),
    ("add_decayed_weights: mask a list where a tree is expected", lambda: update(gl.add_decayed_weights(0.1, [True])), ValueError, ("mask", "[*]")),
    ("lamb: mask function returning another tree", lambda: update(gl.lamb(0.1, mask=lambda p: {"x": True})), ValueError, ("mask", "'x'")),
    ("reduce_on_plateau: a string value", lambda: update(gl.reduce_on_plateau(), value="0.3"), TypeError, ("value", "'0.3'")),
    ("lbfgs: value_fn returning a vector", lambda: update(gl.lbfgs(), value=jnp.float32(1.0), grad=G, value_fn=lambda q: q["w"] ** 2), ValueError, ("value_fn", "(2, 3)")),
    ("backtracking search: value_fn returning a string", lambda: update(gl.chain(gl.sgd(0.1), gl.scale_by_backtracking_linesearch()), value_fn=lambda q: "x"), TypeError, ("value_fn", "'x'")),
    ("adamw: a mask leaf that would broadcast over its param", lambda: update(gl.adamw(0.1, mask={"b": True, "w": jnp.array([True, False, True])})), ValueError, ("mask leaf ['w']", "(3,)", "(2, 3)")),
    ("packed adamw: a mask leaf of another shape than its param", lambda: update(gl.packed(gl.adamw(0.1, mask={"b": True, "w": jnp.ones(4, bool)}))), ValueError, ("mask leaf ['w']", "(4,)", "(2, 3)")),
    ("lars: an elementwise trust_ratio_mask leaf", lambda: update(gl.lars(0.1, trust_ratio_mask={"b": False, "w": jnp.ones((2, 3), bool)})), TypeError, ("mask leaf ['w']", "(2, 3)")),
    ("apply_if_finite: transform is a function", lambda: gl.apply_if_finite(gl.adam, 3), TypeError, ("transform", "function")),
    ("MultiSteps: transform is None", lambda: gl.MultiSteps(None, 2), TypeError, ("transform", "NoneType")),
    ("lookahead: fast is a dict", lambda: gl.lookahead({"init": 0}, 5, 0.5), TypeError, ("fast", "dict")),
    ("schedule_free: base_optimizer is a string", lambda: gl.schedule_free("sgd", 0.1), TypeError, ("base_optimizer", "str")),
    ("inject_hyperparams: unknown static_args", lambda: gl.inject_hyperparams(gl.adamw, static_args="masks"), ValueError, ("static_args", "masks")),
    ("inject_hyperparams: factory is not callable", lambda: gl.inject_hyperparams("adam"), TypeError, ("factory", "'adam'")),
    ("inject_hyperparams: negative learning rate", lambda: gl.inject_hyperparams(gl.adam)(learning_rate=-1.0), ValueError, ("learning_rate", "-1.0")),
    ("inject_hyperparams: unknown hyperparameter", lambda: gl.inject_hyperparams(gl.adam)(0.1, beta1=0.9), TypeError, ("adam", "beta1")),
    ("set_hyperparams: unknown name (KeyError, the API contract)", lambda: gl.set_hyperparams(gl.inject_hyperparams(gl.adam)(0.1).init(P), lr=0.1), KeyError, ("'lr'", "learning_rate")),
    ("set_hyperparams: float for an integer hyperparameter", lambda: gl.set_hyperparams(gl.inject_hyperparams(gl.apply_if_finite)(gl.sgd(0.1), 3).init(P), max_consecutive_errors=2.5), TypeError, ("max_consecutive_errors", "float")),
    ("set_hyperparams: value of another shape", lambda: gl.set_hyperparams(gl.inject_hyperparams(gl.adam)(0.1).init(P), learning_rate=jnp.ones(3)), ValueError, ("learning_rate", "(3,)")),
    ("lookahead_params: a state without lookahead", lambda: gl.lookahead_params(ADAM_STATE), ValueError, ("lookahead_params", "ScaleByAdamState")),
    ("MultiSteps.has_updated: a state without MultiSteps", lambda: gl.MultiSteps.has_updated(ADAM_STATE), ValueError, ("MultiSteps", "ScaleByAdamState")),
    ("schedule_free_eval_params: a state without schedule_free", lambda: gl.schedule_free_eval_params(ADAM_STATE, P), ValueError, ("schedule-free", "ScaleByAdamState")),
    ("elementwise: an int", lambda: gl.elementwise(3), TypeError, ("transform", "int")),
    ("per_leaf: a string", lambda: gl.per_leaf("adam"), TypeError, ("transform", "str")),
    ("packed: a function", lambda: gl.packed(gl.adam), TypeError, ("transform", "function")),
    ("packed: an undeclared (Optax) member", lambda: gl.packed(gl.chain(_optax_scale(), gl.sgd(0.1))).init(P), TypeError, ("chain member 0", "optax")),
    ("state_shardings: tx is a list", lambda: gl.state_shardings([gl.adam(0.1)], P), TypeError, ("tx", "list")),
    ("apply_updates: updates of another structure", lambda: gl.apply_updates(P, {"b": jnp.ones(3)}), ValueError, ("updates", "'w'")),
    ("apply_updates: float update on an int32 param", lambda: gl.apply_updates({"n": jnp.ones(2, jnp.int32)}, {"n": jnp.ones(2)}), TypeError, ("['n']", "int32")),
    ("apply_updates: update of another shape", lambda: gl.apply_updates(P, with_leaf(P, "w", jnp.ones(6))), ValueError, ("['w']", "(6,)")),
    ("init: an int32 param leaf", lambda: gl.adam(0.1).init({"n": jnp.ones(3, jnp.int32)}), TypeError, ("['n']", "int32")),
    ("init: a string param leaf", lambda: gl.adam(0.1).init({"name": "w", "w": jnp.ones(2)}), TypeError, ("['name']", "str")),
    ("init: a Python bool param leaf", lambda: gl.adam(0.1).init({"flag": True, "w": jnp.ones(2)}), TypeError, ("['flag']", "bool")),
    ("init: a bool param leaf", lambda: gl.sgd(0.1, momentum=0.9).init({"flag": jnp.array(True)}), TypeError, ("['flag']", "bool")),
    ("scale_by_muon: a vector param", lambda: gl.scale_by_muon().init({"v": jnp.ones(3)}), ValueError, ("['v']", "(3,)")),
    ("value_and_grad_from_state: not a function", lambda: gl.value_and_grad_from_state(3), TypeError, ("value_fn", "3")),
    ("centralize: a float unit_axis", lambda: gl.centralize(1.0), TypeError, ("unit_axis", "1.0")),
    ("centralize: a unit_axis out of range for a leaf", lambda: update(gl.centralize(unit_axis=2)), ValueError, ("unit_axis 2", "(2, 3)")),
]

GRADIENTS_AND_STATES: list[Row] = [
    ("adam: gradient with a missing key", lambda: update(gl.adam(0.1), {"w": G["w"]}), ValueError, ("gradient", "'b'")),
    ("adam: gradient with an extra key", lambda: update(gl.adam(0.1), {**G, "x": jnp.ones(2)}), ValueError, ("gradient", "'x'")),
    ("adam: gradient leaf of another shape", lambda: update(gl.adam(0.1), with_leaf(G, "w", jnp.ones((3, 2)))), ValueError, ("['w']", "(3, 2)")),
    ("adafactor: gradient leaf of another shape (factored state)", lambda: update(gl.adafactor(0.1, min_dim_size_to_factor=1, multiply_by_parameter_scale=False), with_leaf(G, "w", jnp.ones((2, 4)))), ValueError, ("['w']", "(2, 4)", "params")),
    ("adam: int32 gradient leaf", lambda: update(gl.adam(0.1), with_leaf(G, "b", jnp.ones(3, jnp.int32))), TypeError, ("['b']", "int32")),
    ("adam: complex gradient leaf", lambda: update(gl.adam(0.1), with_leaf(G, "b", jnp.ones(3, jnp.complex64))), TypeError, ("['b']", "complex64")),
    ("adam: a list gradient for dict params", lambda: update(gl.adam(0.1), [G["b"], G["w"]]), ValueError, ("gradient", "[*, *]")),
    ("adam: a string gradient leaf", lambda: update(gl.adam(0.1), with_leaf(G, "b", "0.5")), TypeError, ("['b']", "str")),
    ("adam: one leaf added deep in a large tree", lambda: update(gl.adam(0.1), DEEP_NEW, gl.adam(0.1).init(DEEP), DEEP_NEW), ValueError, ("only in", "gradient", "['layer_06']['scale']")),
    ("adam: one array where the state has a subtree (LoRA's {a, b})", lambda: update(gl.adam(0.1), DEEP, gl.adam(0.1).init(DEEP_SPLIT), DEEP), ValueError, ("only in", "['layer_07']['kernel']['a']")),
    ("sgd momentum: gradient with an extra key", lambda: update(gl.sgd(0.1, momentum=0.9), {**G, "x": jnp.ones(2)}), ValueError, ("gradient", "'x'")),
    # sgd keeps no per-leaf state: its update cannot tell, apply_updates does.
    ("sgd: gradient tree unlike the params, when applied", lambda: gl.apply_updates(P, update(gl.sgd(0.1), {"x": jnp.ones(2)})[0]), ValueError, ("updates", "'x'")),
    ("sgd: gradient leaf of another shape, when applied", lambda: gl.apply_updates(P, update(gl.sgd(0.1), with_leaf(G, "b", jnp.ones(4)))[0]), ValueError, ("['b']", "(4,)")),
    ("sm3: gradient leaf of another shape", lambda: update(gl.sm3(0.1), with_leaf(G, "w", jnp.ones((3, 2)))), ValueError, ("['w']", "(3, 2)")),
    ("adafactor: gradient leaf of another shape", lambda: update(gl.adafactor(min_dim_size_to_factor=2), with_leaf(G, "w", jnp.ones((3, 2)))), ValueError, ("['w']", "(3, 2)")),
    ("novograd: gradient with an extra key", lambda: update(gl.novograd(0.1), {**G, "x": jnp.ones(2)}), ValueError, ("gradient", "'x'")),
    ("lamb: params of another shape than the gradient", lambda: gl.lamb(0.1).update(G, gl.lamb(0.1).init(P), with_leaf(P, "b", jnp.ones(4))), ValueError, ("['b']", "(4,)")),
    ("packed adam: gradient in another dtype than the params", lambda: update(gl.packed(gl.adam(0.1)), jax.tree.map(lambda g: g.astype(jnp.bfloat16), G)), TypeError, ("['b']", "bfloat16")),
    ("adam: state of sgd with momentum", lambda: update(gl.adam(0.1), state=gl.sgd(0.1, momentum=0.9).init(P)), ValueError, ("TraceState", "ScaleByAdamState")),
    ("adam: state of lion", lambda: update(gl.adam(0.1), state=gl.lion(0.1).init(P)), ValueError, ("ScaleByLionState", "chain of 2")),
    ("lion: state of adam", lambda: update(gl.lion(0.1), state=ADAM_STATE), ValueError, ("ScaleByAdamState", "chain of 3")),
    ("adam: state of adamw (another chain length)", lambda: update(gl.adam(0.1), state=gl.adamw(0.1).init(P)), ValueError, ("chain of 2", "3")),
    ("adam: state restored as plain tuples", lambda: update(gl.adam(0.1), state=(tuple(ADAM_STATE[0]), tuple(ADAM_STATE[1]))), ValueError, ("tuple", "ScaleByAdamState")),
    ("adam: state of sgd without momentum", lambda: update(gl.adam(0.1), state=gl.sgd(0.1).init(P)), ValueError, ("EmptyState", "ScaleByAdamState")),
    ("rmsprop: state of adagrad", lambda: update(gl.rmsprop(0.1), state=gl.adagrad(0.1).init(P)), ValueError, ("ScaleByRssState", "chain of 3")),
    ("adafactor: state of adam", lambda: update(gl.adafactor(), state=ADAM_STATE), ValueError, ("ScaleByAdamState", "chain of 7")),
    ("MultiSteps: state of its inner optimizer", lambda: update(gl.MultiSteps(gl.adam(0.1), 2), state=ADAM_STATE), ValueError, ("tuple", "MultiStepsState")),
    ("apply_if_finite: state of its inner optimizer", lambda: update(gl.apply_if_finite(gl.adam(0.1), 2), state=ADAM_STATE), ValueError, ("tuple", "ApplyIfFiniteState")),
    ("lookahead: state of its fast optimizer", lambda: update(gl.lookahead(gl.adam(0.1), 2, 0.5), state=ADAM_STATE), ValueError, ("tuple", "LookaheadState")),
    ("inject_hyperparams: state of the plain optimizer", lambda: update(gl.inject_hyperparams(gl.adam)(0.1), state=ADAM_STATE), ValueError, ("tuple", "InjectHyperparamsState")),
    ("schedule_free_sgd: state of sgd", lambda: update(gl.schedule_free_sgd(0.1), state=gl.sgd(0.1).init(P)), ValueError, ("tuple", "ScheduleFreeState")),
    ("packed adam: state of the unpacked adam", lambda: update(gl.packed(gl.adam(0.1)), state=ADAM_STATE), ValueError, ("tuple", "PackedState")),
    ("partition: state of a chain", lambda: update(gl.partition({"a": gl.adam(0.1)}, {"b": "a", "w": "a"}), state=ADAM_STATE), ValueError, ("partition", "PartitionState")),
    ("adamw: update without params", lambda: gl.adamw(0.1).update(G, gl.adamw(0.1).init(P)), ValueError, ("add_decayed_weights", "params")),
    ("lbfgs: update without value_fn", lambda: update(gl.lbfgs()), ValueError, ("value_fn", "scale_by_zoom_linesearch")),
    # call-time mistakes (hunt46)
    ("adam: init on abstract params (ShapeDtypeStruct)", lambda: gl.adam(0.1).init(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), P)), TypeError, ("params", "jax.ShapeDtypeStruct", "jax.eval_shape(tx.init, params)")),
    ("adam: update with the abstract state eval_shape gives", lambda: update(gl.adam(0.1), state=jax.eval_shape(gl.adam(0.1).init, P)), TypeError, ("scale_by_adam", "jax.ShapeDtypeStruct", "tx.init(params)")),
    ("sgd momentum: update with an abstract state (no counter)", lambda: update(gl.sgd(0.1, momentum=0.9), state=jax.eval_shape(gl.sgd(0.1, momentum=0.9).init, P)), TypeError, ("trace", "jax.ShapeDtypeStruct")),
    ("rmsprop: update with an abstract state (no counter)", lambda: update(gl.rmsprop(0.1), state=jax.eval_shape(gl.rmsprop(0.1).init, P)), TypeError, ("scale_by_rms", "jax.ShapeDtypeStruct")),
    ("inject_hyperparams: a key set by hand that is not a hyperparameter", lambda: update(gl.inject_hyperparams(gl.sgd)(0.1), state=_hand_set(gl.inject_hyperparams(gl.sgd)(0.1), lr=0.5)), ValueError, ("state.hyperparams", "'lr'", "'learning_rate'")),
    ("inject_hyperparams: a hyperparameter deleted from the state", lambda: update(gl.inject_hyperparams(gl.adam)(0.1), state=_hand_set(gl.inject_hyperparams(gl.adam)(0.1), eps=None)), ValueError, ("lacks", "'eps'")),
    ("lbfgs: a value of shape (1,)", lambda: update(gl.lbfgs(), value=jnp.zeros(1), grad=G, value_fn=lambda p: jnp.sum(p["w"])), ValueError, ("value", "(1,)", "scale_by_zoom_linesearch")),
    ("backtracking linesearch: a value of shape (2,)", lambda: update(gl.scale_by_backtracking_linesearch(5), value=jnp.zeros(2), grad=G, value_fn=lambda p: jnp.sum(p["w"])), ValueError, ("value", "(2,)")),
    ("adam: Optax's adam state (a class of the same name)", lambda: update(gl.adam(0.1), state=_optax_adam_state()), ValueError, ("optax", "gradlab.blocks", "ScaleByAdamState")),
    ("apply_updates: a complex update on a real param", lambda: gl.apply_updates(P, with_leaf(G, "b", jnp.ones(3, jnp.complex64))), TypeError, ("['b']", "complex64", "float32")),
    ("reduce_on_plateau: the loss under a misspelled keyword", lambda: update(gl.reduce_on_plateau(), vaule=1.0), ValueError, ("value=loss", "'vaule'")),
]


def _hand_set(tx: Any, **values: Any) -> Any:
    """``tx``'s state with ``state.hyperparams`` edited by hand (None: deleted)."""
    state = tx.init(P)
    hyper = dict(state.hyperparams)
    for k, v in values.items():
        hyper.pop(k) if v is None else hyper.__setitem__(k, v)
    return state._replace(hyperparams=hyper)


def _optax_adam_state() -> Any:
    import optax

    return optax.adam(0.1).init(P)

CHECKPOINTS: list[Row] = [
    ("load_state: checkpoint of another optimizer", lambda: gl.load_state(saved(_tmp(), ADAM_STATE), like=gl.sgd(0.1, momentum=0.9).init(P)), ValueError, ("ScaleByAdamState", "TraceState")),
    ("load_state: NamedTuple saved, plain tuple expected", lambda: gl.load_state(saved(_tmp(), ADAM_STATE), like=(tuple(ADAM_STATE[0]), tuple(ADAM_STATE[1]))), ValueError, ("ScaleByAdamState", "like")),
    ("load_state: other params (dict keys)", lambda: gl.load_state(saved(_tmp(), ADAM_STATE), like=gl.adam(0.1).init({"b": P["b"], "v": P["w"]})), ValueError, ("'w'", "'v'")),
    ("load_state: one leaf added deep in a large tree", lambda: gl.load_state(saved(_tmp(), gl.adam(0.1).init(DEEP)), like=gl.adam(0.1).init(DEEP_NEW)), ValueError, ("only in `like`", "[0].mu['layer_06']['scale']")),
    ("load_state: leaf of another dtype", lambda: gl.load_state(saved(_tmp(), ADAM_STATE), like=gl.adam(0.1, mu_dtype=jnp.bfloat16).init(P)), ValueError, ("[0].mu['b']", "bfloat16")),
    ("load_state: leaf of another shape", lambda: gl.load_state(saved(_tmp(), ADAM_STATE), like=gl.adam(0.1).init(with_leaf(P, "b", jnp.zeros(4)))), ValueError, ("[0].mu['b']", "[4]")),
    ("load_state: truncated file", lambda: gl.load_state(truncated_checkpoint(), like=ADAM_STATE), ValueError, ("state.npz", "truncated")),
    ("load_state: a pickle file", lambda: gl.load_state(pickle_checkpoint(), like=ADAM_STATE), ValueError, ("evil.npz", "not a readable gradlab checkpoint")),
    ("load_state: an object array inside", lambda: gl.load_state(object_array_checkpoint(), like=(jnp.zeros(2),)), ValueError, ("objects.npz", "object")),
    ("load_state: an .npz without gradlab header", lambda: gl.load_state(header_less_checkpoint(), like=ADAM_STATE), ValueError, ("plain.npz", "__gradlab_header__")),
    ("save_state: a string leaf", lambda: gl.save_state(str(_tmp() / "s.npz"), {"name": "adam"}), TypeError, ("['name']", "'adam'")),
    ("save_state: a function leaf", lambda: gl.save_state(str(_tmp() / "f.npz"), (gl.adam,)), TypeError, ("[0]", "function")),
]

LOSSES: list[Row] = [
    ("huber: a boolean array delta", lambda: gl.losses.huber(jnp.ones(2), jnp.zeros(2), delta=jnp.array(True)), TypeError, ("delta", "boolean")),
    ("huber: a (3, 1) delta on 3 residuals (a (3, 3) loss)", lambda: gl.losses.huber(jnp.ones(3), jnp.zeros(3), delta=jnp.ones((3, 1))), ValueError, ("delta", "(3, 1)", "(3,)")),
    ("triplet_margin: two margins for one triplet", lambda: gl.losses.triplet_margin(jnp.zeros((1, 2)), jnp.ones((1, 2)), jnp.ones((1, 2)), margin=jnp.ones(2)), ValueError, ("margin", "(2,)", "(1,)")),
    ("elastic_net_penalty: an l1 of shape (2,) (two penalties)", lambda: gl.losses.elastic_net_penalty({"w": jnp.ones(2)}, jnp.ones(2), 1.0), ValueError, ("l1", "(2,)")),
    ("weighted_sum: a weight that does not broadcast with its value", lambda: gl.losses.weighted_sum({"a": (jnp.ones(3), jnp.ones(2))}), ValueError, ("weight of 'a'", "(3,)", "(2,)")),
    ("squared_error: (n, 1) prediction against (n,) target", lambda: gl.losses.squared_error(jnp.ones((3, 1)), jnp.ones(3)), ValueError, ("pred shape (3, 1)", "target shape (3,)")),
    ("softmax_cross_entropy_with_integer_labels: label out of range", lambda: gl.losses.softmax_cross_entropy_with_integer_labels(jnp.ones((2, 3)), jnp.array([0, 3])), ValueError, ("labels", "3")),
    ("hinge: labels not +-1", lambda: gl.losses.hinge(jnp.ones(2), jnp.array([1.0, 0.0])), ValueError, ("labels", "0.0")),
    ("binary_cross_entropy: a label of 2", lambda: gl.losses.binary_cross_entropy(jnp.full(2, 0.5), jnp.array([1.0, 2.0])), ValueError, ("labels", "2.0")),
    ("binary_cross_entropy: a probability of 1.5", lambda: gl.losses.binary_cross_entropy(jnp.array([0.5, 1.5]), jnp.ones(2)), ValueError, ("probs", "1.5")),
    ("huber: negative delta", lambda: gl.losses.huber(jnp.ones(2), jnp.zeros(2), delta=-1.0), ValueError, ("delta", "-1.0")),
    ("contrastive: negative margin", lambda: gl.losses.contrastive(jnp.ones(2), jnp.zeros(2), margin=-1.0), ValueError, ("margin", "-1.0")),
    ("triplet_margin: shapes differ", lambda: gl.losses.triplet_margin(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones((2, 4))), ValueError, ("negative shape (2, 4)", "(2, 3)")),
    ("categorical_cross_entropy: a scalar (no class axis)", lambda: gl.losses.categorical_cross_entropy(jnp.ones(()), jnp.ones(())), ValueError, ("probs", "()")),
    ("categorical_cross_entropy: logits given as probabilities", lambda: gl.losses.categorical_cross_entropy(jnp.array([[2.0, -1.0]]), jnp.array([[1.0, 0.0]])), ValueError, ("probs", "2.0")),
    ("sigmoid_focal: negative gamma", lambda: gl.losses.sigmoid_focal(jnp.ones(2), jnp.ones(2), gamma=-1.0), ValueError, ("gamma", "-1.0")),
    ("sigmoid_focal: alpha above 1", lambda: gl.losses.sigmoid_focal(jnp.ones(2), jnp.ones(2), alpha=1.5), ValueError, ("alpha", "1.5")),
    ("elastic_net_penalty: negative l1", lambda: gl.losses.elastic_net_penalty(P, -0.1, 0.1), ValueError, ("l1", "-0.1")),
    ("weighted_sum: a list of terms", lambda: gl.losses.weighted_sum([(1.0, jnp.ones(()))]), TypeError, ("terms", "list")),
    ("weighted_sum: a NaN weight", lambda: gl.losses.weighted_sum({"a": (NAN, jnp.ones(()))}), ValueError, ("'a'", "nan")),
]

TOOLS: list[Row] = [
    ("minimize: optimizer is a string", lambda: gl.minimize(quadratic, jnp.ones(2), "lbfgs", max_steps=5, tol=1e-3), TypeError, ("optimizer", "str")),
    ("minimize: max_steps 0", lambda: gl.minimize(quadratic, jnp.ones(2), gl.sgd(0.1), max_steps=0, tol=1e-3), ValueError, ("max_steps", "0")),
    ("minimize: negative tol", lambda: gl.minimize(quadratic, jnp.ones(2), gl.sgd(0.1), max_steps=5, tol=-1.0), ValueError, ("tol", "-1.0")),
    ("minimize: has_aux with a scalar fun", lambda: gl.minimize(quadratic, jnp.ones(2), gl.sgd(0.1), max_steps=5, tol=1e-3, has_aux=True), TypeError, ("has_aux", "(value, aux)")),
    ("minimize: integer x0", lambda: gl.minimize(quadratic, jnp.arange(2), gl.sgd(0.1), max_steps=5, tol=1e-3), TypeError, ("x0", "int32")),
    ("minimize: fun returns a vector", lambda: gl.minimize(lambda x: x**2, jnp.ones(2), gl.sgd(0.1), max_steps=5, tol=1e-3), ValueError, ("fun", "(2,)")),
    ("minimize: fun is not callable", lambda: gl.minimize(3.0, jnp.ones(2), gl.sgd(0.1), max_steps=5, tol=1e-3), TypeError, ("fun", "3.0")),
    ("sweep: num_steps 0", lambda: sweep(num_steps=0), ValueError, ("num_steps", "0")),
    ("sweep: empty grid", lambda: sweep(grid={}), ValueError, ("grid", "{}")),
    ("sweep: grid names an unknown argument", lambda: sweep(grid={"lr": [0.1]}), ValueError, ("make_optimizer", "'lr'")),
    ("sweep: a negative learning rate in the grid", lambda: sweep(grid={"learning_rate": [0.1, -0.1]}), ValueError, ("grid configuration 1", "-0.1")),
    ("sweep: batches of different lengths", lambda: sweep(batches=(jnp.ones((3, 4, 2)), jnp.ones((2, 4, 3)))), ValueError, ("batches", "[2, 3]")),
    ("sweep: loss_fn is not callable", lambda: sweep(loss_fn="mse"), TypeError, ("loss_fn", "'mse'")),
    ("sweep: string seeds", lambda: sweep(seeds="012"), TypeError, ("seeds", "'012'")),
    ("sweep: chunk_size 0", lambda: sweep(chunk_size=0), ValueError, ("chunk_size", "0")),
    ("sweep: int32 params", lambda: sweep(params={"b": jnp.zeros(3, jnp.int32), "w": SWEEP_P["w"]}), TypeError, ("['b']", "int32")),
    ("sweep: loss_fn returns a vector", lambda: sweep(loss_fn=lambda p, b: p["b"]), ValueError, ("loss_fn", "(3,)")),
    ("lr_finder: min_lr above max_lr", lambda: lr_finder(min_lr=1.0, max_lr=0.1), ValueError, ("min_lr", "1.0")),
    ("lr_finder: num_steps 1", lambda: lr_finder(num_steps=1), ValueError, ("num_steps", "1")),
    ("lr_finder: a range over float32's", lambda: lr_finder(min_lr=1e-20, max_lr=1e19), ValueError, ("max_lr / min_lr", "1e+19")),
    ("lr_finder: a subnormal min_lr", lambda: lr_finder(min_lr=1e-40, max_lr=1.0), ValueError, ("min_lr", "1e-40")),
    ("lr_finder: smoothing 1", lambda: lr_finder(smoothing=1.0), ValueError, ("smoothing", "1.0")),
    ("lr_finder: unknown rule", lambda: lr_finder(rule="fastest"), ValueError, ("rule", "'fastest'")),
    ("lr_finder: negative min_lr", lambda: lr_finder(min_lr=-1e-7), ValueError, ("min_lr", "-1e-07")),
    ("lr_finder: unknown mode", lambda: lr_finder(mode="cubic"), ValueError, ("mode", "'cubic'")),
    ("lr_finder: an optimizer that keeps the rate in its state", lambda: lr_finder(make_optimizer=lambda lr: gl.inject_hyperparams(gl.sgd)(learning_rate=lr)), ValueError, ("make_optimizer", "inject_hyperparams")),
]

PLOTS: list[Row] = [
    ("plot.schedules: num_steps 0", lambda: gl.plot.schedules({"c": gl.schedules.constant(0.1)}, 0), ValueError, ("num_steps", "0")),
    ("plot.schedules: a schedule that is a number", lambda: gl.plot.schedules({"c": 0.1}, 10), TypeError, ("schedules['c']", "0.1")),
    ("plot.schedules: a list", lambda: gl.plot.schedules([gl.schedules.constant(0.1)], 10), TypeError, ("schedules", "[<function")),
    ("plot.trajectories: x0 in 3-D", lambda: gl.plot.trajectories(quadratic, {"sgd": gl.sgd(0.1)}, jnp.ones(3), 5), ValueError, ("x0", "(3,)")),
    ("plot.trajectories: resolution 1", lambda: gl.plot.trajectories(quadratic, {"sgd": gl.sgd(0.1)}, jnp.ones(2), 5, resolution=1), ValueError, ("resolution", "1")),
    ("plot.trajectories: optimizer is a string", lambda: gl.plot.trajectories(quadratic, {"sgd": "sgd"}, jnp.ones(2), 5), TypeError, ("optimizers['sgd']", "str")),
    ("plot.sweep: not a sweep result", lambda: gl.plot.sweep({"losses": [1.0]}), TypeError, ("result", "dict")),
    ("plot.lr_finder: not a finder result", lambda: gl.plot.lr_finder([1.0, 2.0]), TypeError, ("result", "list")),
]

# Found by fuzzing every constructor (eighth session): each was accepted, or
# failed later inside JAX, or named another argument.
FUZZED: list[Row] = [
    ("signum: integer mu_dtype (named as its block's accumulator_dtype)", lambda: gl.signum(0.01, mu_dtype=jnp.int32), ValueError, ("mu_dtype", "int32")),
    ("lbfgs: a number as linesearch", lambda: gl.lbfgs(linesearch=1.0), TypeError, ("linesearch", "float")),
    ("lbfgs: the line-search factory, not called", lambda: gl.lbfgs(linesearch=gl.scale_by_zoom_linesearch), TypeError, ("linesearch", "call it")),
    ("reduce_on_plateau: patience beyond int32", lambda: gl.reduce_on_plateau(patience=10**10), ValueError, ("patience", "10000000000")),
    ("lookahead: sync_period beyond int32", lambda: gl.lookahead(gl.sgd(0.1), 2**31, 0.5), ValueError, ("sync_period", "2147483648")),
    ("minimize: max_steps beyond int32", lambda: gl.minimize(quadratic, jnp.ones(2), gl.sgd(0.1), max_steps=2**40, tol=1e-3), ValueError, ("max_steps", "1099511627776")),
    ("noisy_sgd: seed beyond 32 bits", lambda: gl.noisy_sgd(0.1, seed=2**40), ValueError, ("seed", "1099511627776")),
    ("muon: NaN in ns_coeffs", lambda: gl.muon(0.02, ns_coeffs=(NAN, 1.0, 1.0)), ValueError, ("ns_coeffs[0]", "nan")),
    ("muon: a string of three letters as ns_coeffs", lambda: gl.muon(0.02, ns_coeffs="abc"), ValueError, ("ns_coeffs", "'abc'")),
    ("orthogonalize: NaN eps", lambda: gl.orthogonalize(jnp.ones((2, 2)), eps=NAN), ValueError, ("eps", "nan")),
    ("adamw: a string as mask", lambda: gl.adamw(0.1, mask="w"), TypeError, ("mask", "'w'")),
    ("add_decayed_weights: a float as mask", lambda: gl.add_decayed_weights(0.1, mask=1.5), TypeError, ("mask", "1.5")),
    ("add_decayed_weights: a callable mask returning floats", lambda: update(gl.add_decayed_weights(0.1, mask=lambda p: {"b": 0.0, "w": 1.0})), TypeError, ("mask", "['b']", "0.0")),
    ("inject_hyperparams: an integer hyperparam_dtype", lambda: gl.inject_hyperparams(gl.adam, hyperparam_dtype=jnp.int32), ValueError, ("hyperparam_dtype", "int32")),
    ("inject_hyperparams: static_args an int", lambda: gl.inject_hyperparams(gl.adam, static_args=1), TypeError, ("static_args", "1")),
    ("set_hyperparams: a string value", lambda: gl.set_hyperparams(gl.inject_hyperparams(gl.adam)(0.1).init(P), learning_rate="x"), TypeError, ("learning_rate", "'x'")),
    ("lr_finder: a fractional seed", lambda: lr_finder(seed=0.5), TypeError, ("seed", "0.5")),
    ("lr_finder: a list as min_lr", lambda: lr_finder(min_lr=[1e-5, 1e-4]), ValueError, ("min_lr", "(2,)")),
    ("sweep: progress 'no'", lambda: sweep(progress="no"), TypeError, ("progress", "'no'")),
    ("adaptive_grad_clip: a string axis", lambda: gl.adaptive_grad_clip(0.1, axis="0"), TypeError, ("axis", "'0'")),
    ("adaptive_grad_clip: an axis out of range for a leaf", lambda: update(gl.adaptive_grad_clip(0.1, axis=1)), ValueError, ("axis 1", "(3,)")),
    ("adam: a learning rate beyond float32", lambda: gl.adam(1e39), ValueError, ("learning_rate", "1e+39")),
    ("memory_size: traced", lambda: jax.jit(lambda m: gl.scale_by_lbfgs(m).init(P))(3), TypeError, ("memory_size", "known when tracing")),
    ("packed: a traced max_leaf_size", lambda: jax.jit(lambda m: gl.packed(gl.adam(0.1), m).init(P))(3), TypeError, ("max_leaf_size", "known when tracing")),
    ("set_hyperparams: a boolean array", lambda: gl.set_hyperparams(gl.inject_hyperparams(gl.adam)(0.1).init(P), learning_rate=np.array(True)), TypeError, ("learning_rate", "array(True)")),
    ("set_hyperparams: a PRNG key", lambda: gl.set_hyperparams(gl.inject_hyperparams(gl.adam)(0.1).init(P), learning_rate=jax.random.key(0)), TypeError, ("learning_rate", "PRNG key array of shape ()")),
    ("sgd: a PRNG key as learning rate", lambda: gl.sgd(jax.random.key(0)), TypeError, ("learning_rate", "PRNG key array of shape ()")),
    ("huber: None inside a list target", lambda: gl.losses.huber(jnp.ones(2), [1.0, None]), TypeError, ("target", "[1.0, None]")),
]

# fmt: on


def _optax_scale():
    import optax

    return optax.scale(0.5)


SECTIONS: dict[str, list[Row]] = {
    "learning rates": LEARNING_RATES,
    "schedules returning the wrong thing": SCHEDULE_OUTPUTS,
    "betas and eps": BETAS_AND_EPS,
    "weight decay, factors, dtypes": WEIGHT_DECAY_AND_FACTORS,
    "periods and step counts": PERIODS_AND_COUNTS,
    "schedules": SCHEDULES,
    "combinators, masks, labels, wrong types": COMBINATORS_AND_TYPES,
    "gradients and states unlike the state": GRADIENTS_AND_STATES,
    "checkpoints": CHECKPOINTS,
    "losses": LOSSES,
    "sweep, lr_finder, minimize": TOOLS,
    "plots": PLOTS,
    "found by fuzzing": FUZZED,
}
BAD_INPUTS: list[Row] = [row for rows in SECTIONS.values() for row in rows]


def test_the_table_has_at_least_120_distinct_bad_inputs():
    descriptions = [row[0] for row in BAD_INPUTS]
    assert len(set(descriptions)) == len(descriptions), "descriptions must be distinct"
    assert len(BAD_INPUTS) >= 120, len(BAD_INPUTS)
    # every row names something and says what it got
    assert all(len(row[3]) >= 2 for row in BAD_INPUTS)


def _raised_in_gradlab(info: pytest.ExceptionInfo) -> bool:
    """Whether the innermost frame that raised is gradlab's own code."""
    frame = info.traceback[-1]
    return GRADLAB_DIR in pathlib.Path(str(frame.path)).resolve().parents


@pytest.mark.parametrize(
    ("description", "call", "expected", "words"), BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS]
)
def test_bad_input_raises_a_clear_error(description, call, expected, words):
    with pytest.raises(Exception) as info:  # the type is checked below, with the message
        call()
    error = info.value
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    assert isinstance(error, expected) and not isinstance(error, AssertionError), (
        f"{description}: raised {type(error).__name__}: {message}"
    )
    # an argument's name must appear as a word: "eps" is not found in "epsilon"
    missing = [
        w
        for w in words
        if not (re.search(rf"(?<![\w.]){w}(?!\w)", message) if w.isidentifier() else w in message)
    ]
    assert not missing, f"{description}: message lacks {missing}:\n{message}"
    assert _raised_in_gradlab(info), (
        f"{description}: raised from {info.traceback[-1].path}, not gradlab:\n{message}"
    )


def test_a_schedule_with_python_control_flow_is_checked_when_it_runs():
    """Such a schedule cannot be traced at construction (it needs the step's
    value): it still works eagerly, and a wrong return value is still caught,
    when ``update`` runs."""

    def warmup(step):
        return 0.01 if step < 2 else 0.1  # Python `if` on the step: eager only

    params = {"w": jnp.ones(2)}
    tx = gl.sgd(warmup)
    state = tx.init(params)
    for lr in (0.01, 0.01, 0.1):
        updates, state = tx.update({"w": jnp.ones(2)}, state, params)
        np.testing.assert_allclose(updates["w"], -lr)

    def vector_later(step):
        return 0.1 if step < 1 else jnp.full(2, 0.1)

    tx = gl.sgd(vector_later)
    state = tx.init(params)
    _, state = tx.update({"w": jnp.ones(2)}, state, params)
    with pytest.raises(ValueError, match=r"learning_rate schedule must return a scalar.*\(2,\)"):
        tx.update({"w": jnp.ones(2)}, state, params)


# --------------------------------------------------------------------------
# The count, by section (kept in step with the table by the test below):
# 382 distinct bad inputs -- 289 raise ValueError, 92 TypeError, 1 KeyError
# (set_hyperparams' unknown name: KeyError is its documented contract).
# --------------------------------------------------------------------------

LISTED_COUNTS = {
    "learning rates": 30,
    "schedules returning the wrong thing": 13,
    "betas and eps": 49,
    "weight decay, factors, dtypes": 35,
    "periods and step counts": 31,
    "schedules": 31,
    "combinators, masks, labels, wrong types": 57,
    "gradients and states unlike the state": 46,
    "checkpoints": 12,
    "losses": 20,
    "sweep, lr_finder, minimize": 26,
    "plots": 8,
    "found by fuzzing": 28,
}


def test_the_listed_counts_are_the_tables():
    assert {name: len(rows) for name, rows in SECTIONS.items()} == LISTED_COUNTS
    assert sum(LISTED_COUNTS.values()) == len(BAD_INPUTS) == 386


def test_valid_values_that_used_to_fail_inside_jax_now_work():
    """Python ints beyond int32 as real-valued settings (eps=2**31 overflowed
    converting to int32), adafactor's decay_offset (NaN params before the
    offset), a concrete 0-d array as min_dim_size_to_factor."""
    for tx in (
        gl.adam(0.01, eps=2**31),
        gl.scale(2**31),
        gl.chain(gl.sgd(1.0), gl.scale_by_zoom_linesearch(max_stepsize=2**31)),
        gl.adafactor(decay_offset=3),
        gl.adafactor(min_dim_size_to_factor=jnp.asarray(2)),
    ):
        state = tx.init(P)
        for _ in range(2):
            u, state = tx.update(G, state, P, value=jnp.sum(P["w"]), grad=G, value_fn=lambda p: 0.0)
            assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))


def test_16_bit_values_and_huge_steps_pass_the_type_checks():
    """The checks that refuse a string or None as a loss, an objective's output
    or a step (``check_real``) took bfloat16 (NumPy kind 'V') for a non-number at
    first (review19): a bfloat16 model's loss was refused by reduce_on_plateau
    and the line searches. Lists of Python ints beyond int64 are steps too."""
    p = {"w": jnp.array([1.0, -2.0], jnp.bfloat16)}
    f = lambda q: jnp.sum(q["w"] ** 2)  # noqa: E731  (a bfloat16 loss)
    g = jax.grad(f)(p)
    plateau = gl.reduce_on_plateau()
    plateau.update(g, plateau.init(p), p, value=f(p))
    for tx in (gl.lbfgs(), gl.chain(gl.sgd(0.1), gl.scale_by_backtracking_linesearch())):
        tx.update(g, tx.init(p), p, value=f(p), grad=g, value_fn=f)
        u, _ = tx.update(g, tx.init(p), p, value_fn=f)  # the search evaluates f itself
        assert u["w"].dtype == jnp.bfloat16
    assert float(gl.schedules.constant(0.5)(jnp.bfloat16(3))) == 0.5
    np.testing.assert_allclose(gl.schedules.cosine_decay(0.1, 10)([2**70]), [0.0])


def test_an_integral_float_seed_of_any_float_dtype_is_the_integer_seed():
    # a bfloat16 0-d seed passed the check and failed inside jax.random.key
    seeds = (3.0, np.float32(3), np.float16(3), jnp.asarray(3.0), jnp.asarray(3, jnp.bfloat16))
    keys = [update(gl.add_noise(0.1, 0.5, s))[1].rng_key for s in seeds]
    expected = update(gl.add_noise(0.1, 0.5, 3))[1].rng_key
    for k in keys:
        np.testing.assert_array_equal(k, expected)


def test_seeds_a_key_keeps_whole_are_accepted(x64):
    """Under x64 jax.random.key keeps 64 bits: a seed of 2**40 is a distinct key
    (refused only where it would lose bits); lr_finder takes a 0-d integer array
    and runs under x64 with strict dtype promotion (int32 and int64 step indices
    were mixed in its suggestions)."""
    keys = [update(gl.add_noise(0.1, 0.5, s))[1].rng_key for s in (2**40, 2**40 + 1)]
    assert not bool(jnp.all(keys[0] == keys[1]))
    assert lr_finder(seed=jnp.asarray(3), num_steps=3).learning_rates.shape == (3,)
