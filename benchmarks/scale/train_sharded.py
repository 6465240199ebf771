"""Data-parallel and fully-sharded training of a small MLP, end to end, on 8 devices.

    python benchmarks/scale/train_sharded.py            # 8 simulated CPU devices
    python benchmarks/scale/train_sharded.py --steps 200

The same model, data and optimizer (global-norm clipping + AdamW) trained
three ways, every step one jitted function:

1. on one device (the reference);
2. data-parallel: params and optimizer state replicated on every device, each
   device computing the gradient of its eighth of the batch; XLA inserts the
   all-reduce of the gradients;
3. fully sharded (ZeRO-3 / FSDP style): every param whose first axis divides
   by the device count is split along it, and its optimizer state with it --
   created directly sharded from ``gl.state_shardings`` (never materialised
   on one device); XLA gathers each weight for the forward pass and reduces
   the gradients.

It prints, for each: the final loss, the largest difference of the params
from the one-device run, the optimizer state held by one device, and the
cross-device collectives in the compiled step. On CPU the 8 devices are
simulated on the host's cores: the point is the layout, not speed.
"""

from __future__ import annotations

import os

# Before JAX starts: 8 host devices (on a GPU/TPU host the flag only affects the CPU platform).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import argparse
import itertools
import re
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import gradlab as gl

SIZES = (32, 256, 256, 10)
BATCH = 128
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")


def data(steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` batches of a synthetic 10-class problem (labels from a random teacher)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(steps, BATCH, SIZES[0])).astype(np.float32)
    teacher = rng.normal(size=(SIZES[0], SIZES[-1]))
    return x, np.argmax(np.tanh(x @ teacher), axis=-1).astype(np.int32)


def init_params(seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    layers = []
    for m, n in itertools.pairwise(SIZES):
        w = (rng.normal(size=(m, n)) * np.sqrt(2 / m)).astype(np.float32)
        layers.append({"w": w, "b": np.zeros(n, np.float32)})
    return layers


def loss_fn(params, x, y):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    logits = x @ params[-1]["w"] + params[-1]["b"]
    return jnp.mean(gl.losses.softmax_cross_entropy_with_integer_labels(logits, y))


def make_optimizer() -> gl.GradientTransformation:
    return gl.chain(gl.clip_by_global_norm(1.0), gl.adamw(3e-3, weight_decay=1e-4))


def collectives(compiled) -> dict[str, int]:
    """How many cross-device collectives of each kind a compiled program runs."""
    text = compiled.as_text()
    counts = {op: len(re.findall(rf"= .+? {op}(?:-start)?\(", text)) for op in COLLECTIVES}
    return {op: n for op, n in counts.items() if n}


def per_device_bytes(tree) -> int:
    """Bytes of ``tree`` held by the first device."""
    device = jax.devices()[0]
    return sum(
        shard.data.nbytes
        for leaf in jax.tree.leaves(tree)
        for shard in leaf.addressable_shards
        if shard.device == device
    )


def train(mode: str, steps: int, mesh: Mesh | None):
    """Train in ``mode`` ("one device", "data-parallel", "fully sharded")."""
    tx = make_optimizer()
    xs, ys = data(steps)
    params = init_params()
    if mode == "one device":
        param_sh = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]),
                                params)  # fmt: skip
        batch_sh = replicated = param_sh[0]["b"]
    else:
        batch_sh = NamedSharding(mesh, P("data"))  # the batch is always split
        replicated = NamedSharding(mesh, P())

        def spec(a):  # fully sharded: split the first axis where it divides
            if mode == "fully sharded" and a.shape[0] % mesh.size == 0:
                return NamedSharding(mesh, P("data"))
            return replicated

        param_sh = jax.tree.map(spec, params)
    params = jax.device_put(params, param_sh)
    # The state's shardings, read from the compiled init (nothing computed),
    # then the state created directly in place.
    state_sh = gl.state_shardings(tx, params)
    state = jax.jit(tx.init, out_shardings=state_sh)(params)

    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return gl.apply_updates(params, updates), state, loss

    step = jax.jit(
        step,
        in_shardings=(param_sh, state_sh, batch_sh, batch_sh),
        out_shardings=(param_sh, state_sh, replicated),
        donate_argnums=(0, 1),
    )
    compiled = step.lower(params, state, xs[0], ys[0]).compile()
    t0 = time.perf_counter()
    for k in range(steps):
        x, y = jax.device_put(xs[k], batch_sh), jax.device_put(ys[k], batch_sh)
        params, state, loss = compiled(params, state, x, y)
        # Wait for each step: XLA's CPU collectives need all 8 simulated
        # devices' threads to meet, and with many steps in flight on a
        # 2-core host they can starve each other (a GPU has no such limit).
        loss.block_until_ready()
    loss = float(loss)
    seconds = (time.perf_counter() - t0) / steps
    return dict(params=params, state=state, loss=loss, step_ms=1e3 * seconds,
                collectives=collectives(compiled), state_bytes=per_device_bytes(state))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    n = jax.device_count()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    print(f"{n} {jax.devices()[0].platform} devices; MLP {SIZES}, batch {BATCH}, "
          f"{args.steps} steps of clip + AdamW")  # fmt: skip
    runs = {mode: train(mode, args.steps, mesh) for mode in
            ("one device", "data-parallel", "fully sharded")}  # fmt: skip
    reference = jax.tree.leaves(runs["one device"]["params"])
    print(f"\n{'':14} {'final loss':>10} {'max |dp|':>9} {'state/device':>12} {'ms/step':>8}"
          "  collectives in the step")  # fmt: skip
    for mode, r in runs.items():
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(jax.tree.leaves(r["params"]), reference, strict=True))  # fmt: skip
        print(f"{mode:14} {r['loss']:10.4f} {diff:9.2e} {r['state_bytes'] / 1024:9.1f} KiB "
              f"{r['step_ms']:8.2f}  {r['collectives'] or 'none'}")  # fmt: skip
    print("\nfully sharded optimizer state (AdamW's moments follow their params):")
    adam_state = runs["fully sharded"]["state"][1][0]
    for path, leaf in jax.tree_util.tree_flatten_with_path(adam_state)[0]:
        print(f"  {jax.tree_util.keystr(path):16} {leaf.shape!s:12} {leaf.sharding.spec}")
    print("(timings are noisy: on CPU the simulated devices share the host's cores)")


if __name__ == "__main__":
    main()
