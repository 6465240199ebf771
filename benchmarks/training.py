"""A full training step of two small real models, with each optimizer: the
optimizer's share of a step users actually run.

* ``digits-mlp``: scikit-learn's digits (1797 8x8 images, bundled with the
  package), an MLP 64 -> 256 -> 256 -> 10, mini-batches of 256, softmax
  cross-entropy. 8 leaves, ~85k params.
* ``tiny-transformer``: a 4-layer pre-LN transformer (d_model 64, 4 heads,
  d_ff 256, vocabulary 256, sequences of 64, batches of 16) on next-token
  prediction of random tokens. 45 leaves, ~0.25M params.

Optimizers: ``adam``, ``chain`` (clip -> adamw(warmup-cosine)) and
``guarded`` (``apply_if_finite(adamw)``). Each is timed three ways, per
implementation (gradlab, gradlab+packed, Optax): the **dispatched** step (one
jitted call per step: forward, backward, optimizer update; not donated: each
call reads the same inputs), the **in-loop** step (``lax.scan`` over 20
batches, per step), and **grad only** (forward + backward, no optimizer), so
``optimizer share = (in-loop step - grad only) / in-loop step``. The
implementations are timed in rounds of one call each, each round starting with
the next one (load drift favours none).
Run through ``benchmarks/run.py`` (its last table) or alone:
``python benchmarks/training.py [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradlab as gl

LOOP = 20


# ------------------------------------------------------------------ the models


def digits_problem(batch: int = 256):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(x), (LOOP, batch))
    batches = (jnp.asarray(x[idx]), jnp.asarray(y[idx]))
    keys = jax.random.split(jax.random.key(0), 3)
    sizes = [64, 256, 256, 10]
    params = [
        {"w": jax.random.normal(k, (m, n)) * (1 / np.sqrt(m)), "b": jnp.zeros(n)}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]

    def loss(params, batch):
        x, y = batch
        for layer in params[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        logits = x @ params[-1]["w"] + params[-1]["b"]
        return jnp.mean(gl.losses.softmax_cross_entropy_with_integer_labels(logits, y))

    return params, loss, batches


def transformer_problem(layers=4, d=64, heads=4, d_ff=256, vocab=256, seq=64, batch=16):
    keys = iter(jax.random.split(jax.random.key(1), 4 + 6 * layers))

    def dense(m, n):
        return jax.random.normal(next(keys), (m, n)) * (1 / np.sqrt(m))

    def ln():
        return {"scale": jnp.ones(d), "bias": jnp.zeros(d)}

    params = {
        "embed": jax.random.normal(next(keys), (vocab, d)) * 0.02,
        "pos": jax.random.normal(next(keys), (seq, d)) * 0.02,
        "layers": [
            {
                "ln1": ln(),
                "qkv": dense(d, 3 * d),
                "out": dense(d, d),
                "ln2": ln(),
                "w_in": dense(d, d_ff),
                "b_in": jnp.zeros(d_ff),
                "w_out": dense(d_ff, d),
                "b_out": jnp.zeros(d),
            }
            for _ in range(layers)
        ],
        "ln_f": ln(),
    }
    tokens = jax.random.randint(next(keys), (LOOP, batch, seq + 1), 0, vocab)

    def norm(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) * jax.lax.rsqrt(var + 1e-5) * p["scale"] + p["bias"]

    def loss(params, token_batch):
        x_tok, y_tok = token_batch[:, :-1], token_batch[:, 1:]
        x = params["embed"][x_tok] + params["pos"]
        mask = jnp.tril(jnp.ones((seq, seq), bool))
        for layer in params["layers"]:
            h = norm(x, layer["ln1"]) @ layer["qkv"]
            q, k, v = jnp.split(h.reshape(batch, seq, 3 * heads, d // heads), 3, axis=2)
            att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d // heads)
            att = jax.nn.softmax(jnp.where(mask, att, -jnp.inf), axis=-1)
            x = x + jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(batch, seq, d) @ layer["out"]
            h = jax.nn.gelu(norm(x, layer["ln2"]) @ layer["w_in"] + layer["b_in"])
            x = x + h @ layer["w_out"] + layer["b_out"]
        logits = norm(x, params["ln_f"]) @ params["embed"].T
        return jnp.mean(gl.losses.softmax_cross_entropy_with_integer_labels(logits, y_tok))

    return params, loss, tokens


PROBLEMS = {"digits-mlp": digits_problem, "tiny-transformer": transformer_problem}


# --------------------------------------------------------------- the optimizers


def optimizers() -> dict[str, tuple[Callable, Callable]]:
    sched = gl.schedules.warmup_cosine_decay(0.0, 1e-3, 100, 1000)
    osched = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1000)
    return {
        "adam": (lambda: gl.adam(1e-3), lambda: optax.adam(1e-3)),
        "chain": (
            lambda: gl.chain(gl.clip_by_global_norm(1.0), gl.adamw(sched, weight_decay=1e-4)),
            lambda: optax.chain(
                optax.clip_by_global_norm(1.0), optax.adamw(osched, weight_decay=1e-4)
            ),
        ),
        # In a real step the gradient is a temporary of the step itself, so the
        # update leaving apply_if_finite's conditional need not be a new buffer.
        "guarded": (
            lambda: gl.apply_if_finite(gl.adamw(1e-3, weight_decay=1e-4), 5),
            lambda: optax.apply_if_finite(optax.adamw(1e-3, weight_decay=1e-4), 5),
        ),
    }


def implementations(make_gl, make_optax):
    return {
        "gradlab": (make_gl(), gl.apply_updates),
        "gradlab+packed": (gl.packed(make_gl()), gl.apply_updates),
        "optax": (make_optax(), optax.apply_updates),
    }


# ------------------------------------------------------------------------ timing


def _median_ms(fn, args, calls: int, per: int = 1) -> float:
    return _interleaved_median_ms({None: (fn, args, per)}, calls)[None]


def _interleaved_median_ms(jobs: dict, calls: int) -> dict:
    """``{key: median ms per step}`` of ``jobs`` (``{key: (fn, args, steps per call)}``),
    timed in ``calls`` rounds of one call each, every round starting one job later
    (as ``run.py``'s rounds), so that load drift does not favour the job timed first
    or last. Each call waits for its outputs; a warm-up call each first."""
    for fn, args, _ in jobs.values():
        jax.block_until_ready(fn(*args))
    keys = list(jobs)
    times: dict = {k: [] for k in keys}
    for r in range(calls):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            fn, args, _ = jobs[k]
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(times[k]) / jobs[k][2] for k in keys}


def time_problem(
    name: str, calls: int, opts: tuple[str, ...] = ("adam", "chain", "guarded")
) -> list[dict]:
    params, loss, batches = PROBLEMS[name]()
    first = jax.tree.map(lambda b: b[0], batches)
    grad_fn = jax.jit(jax.grad(loss))
    grad_ms = _median_ms(grad_fn, (params, first), calls)

    def grad_loop(params, batches):
        def body(acc, batch):
            g = jax.grad(loss)(params, batch)
            return jax.tree.map(jnp.add, acc, g), None

        return jax.lax.scan(body, jax.tree.map(jnp.zeros_like, params), batches)[0]

    grad_loop_ms = _median_ms(jax.jit(grad_loop), (params, batches), calls, LOOP)
    rows = []
    for opt_name, (make_gl, make_optax) in optimizers().items():
        if opt_name not in opts:
            continue
        step_jobs, loop_jobs = {}, {}
        for impl, (tx, apply) in implementations(make_gl, make_optax).items():

            def step(params, state, batch, tx=tx, apply=apply):
                value, grads = jax.value_and_grad(loss)(params, batch)
                updates, state = tx.update(grads, state, params, value=value)
                return apply(params, updates), state

            def loop(params, state, batches, step=step):
                return jax.lax.scan(lambda c, b: (step(*c, b), None), (params, state), batches)[0]

            state = tx.init(params)
            step_jobs[impl] = (jax.jit(step), (params, state, first), 1)
            loop_jobs[impl] = (jax.jit(loop), (params, state, batches), LOOP)
        step_times = _interleaved_median_ms(step_jobs, calls)
        loop_times = _interleaved_median_ms(loop_jobs, calls)
        for impl in step_jobs:
            step_ms, loop_ms = step_times[impl], loop_times[impl]
            rows.append(
                {
                    "model": name,
                    "opt": opt_name,
                    "impl": impl,
                    "step_ms": step_ms,
                    "loop_ms": loop_ms,
                    "grad_ms": grad_ms,
                    "grad_loop_ms": grad_loop_ms,
                    "opt_share": max(0.0, (loop_ms - grad_loop_ms) / loop_ms),
                }
            )
    base = {(r["model"], r["opt"]): r for r in rows if r["impl"] == "optax"}
    for r in rows:
        b = base[(r["model"], r["opt"])]
        r["step_ratio"], r["loop_ratio"] = r["step_ms"] / b["step_ms"], r["loop_ms"] / b["loop_ms"]
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [
        f"{'model':<17} {'opt':<6} {'impl':<15} {'step ms':>8} {'x optax':>7} "
        f"{'loop ms':>8} {'x optax':>7} {'grad-only ms':>12} {'opt share':>9}"
    ]
    for r in rows:
        lines.append(
            f"{r['model']:<17} {r['opt']:<6} {r['impl']:<15} {r['step_ms']:8.3f} "
            f"{r['step_ratio']:7.2f} {r['loop_ms']:8.3f} {r['loop_ratio']:7.2f} "
            f"{r['grad_loop_ms']:12.3f} {100 * r['opt_share']:8.0f}%"
        )
    return "\n".join(lines)


def run(quick: bool = False) -> list[dict]:
    calls = 5 if quick else 21
    rows = []
    for name in PROBLEMS:
        rows += time_problem(name, calls)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 timed calls per figure")
    args = parser.parse_args()
    with jax.numpy_dtype_promotion("standard"):  # Optax is not strict-promotion clean
        print(format_rows(run(args.quick)))
