"""``python -m gradlab``: the showcase.

Trains a tiny MLP on a built-in regression problem (y = sin(3x) + noise)
with each classic optimizer, every run one jitted ``lax.scan``, and prints a
table of final losses and steps per second. Then the same model is trained
for four learning rates at once with ``jax.vmap`` — one compiled computation.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import gradlab as gl


def make_problem(key: jax.Array, n: int = 256):
    """Inputs in [-1, 1], targets sin(3x) + 0.05 noise."""
    kx, kn = jax.random.split(key)
    x = jax.random.uniform(kx, (n, 1), minval=-1.0, maxval=1.0)
    y = jnp.sin(3.0 * x) + 0.05 * jax.random.normal(kn, (n, 1))
    return x, y


def init_mlp(key: jax.Array, sizes=(1, 32, 32, 1)):
    """A list of {"w", "b"} layers with LeCun-normal weights."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n)) / jnp.sqrt(m), "b": jnp.zeros((n,))}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, x, y):
    return jnp.mean(gl.losses.squared_error(mlp(params, x), y))


def train(optimizer: gl.GradientTransformation, params, x, y, num_steps: int):
    """Run ``num_steps`` full-batch steps in one ``lax.scan``; return (params, losses)."""

    def step(carry, _):
        p, s = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, s = optimizer.update(grads, s, p, value=loss)
        return (gl.apply_updates(p, updates), s), loss

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), length=num_steps)
    return params, losses


OPTIMIZERS = {
    "sgd": lambda: gl.sgd(0.1),
    "sgd + momentum": lambda: gl.sgd(0.05, momentum=0.9),
    "sgd + nesterov": lambda: gl.sgd(0.05, momentum=0.9, nesterov=True),
    "adagrad": lambda: gl.adagrad(0.1),
    "rmsprop": lambda: gl.rmsprop(3e-3),
    "rmsprop centered+mom": lambda: gl.rmsprop(1e-3, centered=True, momentum=0.9),
    "adam": lambda: gl.adam(1e-2),
    "adamw": lambda: gl.adamw(1e-2, weight_decay=1e-3),
    "adam + warmup-cosine": lambda: gl.adam(
        gl.schedules.warmup_cosine_decay(0.0, 2e-2, warmup_steps=50, decay_steps=500)
    ),
    "clip -> adamw": lambda: gl.chain(gl.clip_by_global_norm(1.0), gl.adamw(1e-2)),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gradlab", description=__doc__)
    parser.add_argument("--steps", type=int, default=500, help="training steps per optimizer")
    args = parser.parse_args(argv)

    key = jax.random.key(0)
    x, y = make_problem(key)
    params0 = init_mlp(jax.random.key(1))
    initial = float(loss_fn(params0, x, y))
    print(
        f"gradlab {gl.__version__} on {jax.devices()[0].platform.upper()} — "
        f"MLP 1-32-32-1 on y = sin(3x) + noise, {args.steps} full-batch steps"
    )
    print(f"initial loss {initial:.4f}\n")
    print(f"{'optimizer':<24}{'final loss':>12}{'best loss':>12}{'steps/s':>12}")
    print("-" * 60)
    for name, make in OPTIMIZERS.items():
        run = jax.jit(lambda p, make=make: train(make(), p, x, y, args.steps))
        jax.block_until_ready(run(params0))  # compile once, outside the timing
        t0 = time.perf_counter()
        _, losses = jax.block_until_ready(run(params0))
        rate = args.steps / (time.perf_counter() - t0)
        print(f"{name:<24}{float(losses[-1]):>12.5f}{float(losses.min()):>12.5f}{rate:>12,.0f}")

    # A sweep is one computation: vmap the whole training run over learning rates.
    lrs = jnp.array([1e-3, 3e-3, 1e-2, 3e-2])
    sweep = jax.jit(jax.vmap(lambda lr: train(gl.adam(lr), params0, x, y, args.steps)[1][-1]))
    finals = sweep(lrs)
    print("\nadam, 4 learning rates in one vmapped, compiled run:")
    for lr, loss in zip(lrs.tolist(), finals.tolist(), strict=True):
        print(f"  lr={lr:<8g} final loss {loss:.5f}")


if __name__ == "__main__":
    main()
