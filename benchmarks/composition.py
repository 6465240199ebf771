"""What wrapping an optimizer costs: inject_hyperparams, apply_if_finite, MultiSteps.

    python benchmarks/composition.py            # flat 16M and the 48-layer transformer
    python benchmarks/composition.py --quick    # flat 4M and a 12-layer transformer

Step time of ``inject_hyperparams(adamw)`` and ``apply_if_finite(adamw)``
against bare ``adamw`` (and the same three in Optax, for context), measured
two ways on the same params in one process, interleaved:

* dispatched: one jitted, donating step per call (a Python training loop);
* in-loop: per-step time inside one jitted ``lax.scan`` of ``--loop`` steps
  (``gl.sweep``, ``lr_finder`` and scanned training loops), the gradient
  changing every step as in training.

Then ``MultiSteps(adamw, 4)``'s memory next to Optax's: the state's bytes and
the compiled step's temporary buffers (XLA's memory analysis), for float32
and bfloat16 params. Target (issue 20): wrappers within 5% of bare adamw.
The helpers (cases, timing) are those of ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    PARAM_SCALE,
    Runner,
    _flat,
    _transformer,
    interleaved,
    machine_info,
    make_step,
    materialize,
    timed_compile,
    tree_bytes,
)

import gradlab as gl
from gradlab._tree import all_finite

LR, WD = 1e-3, 1e-4


def variants() -> dict[str, tuple]:
    """name -> (transformation, apply_updates)."""
    return {
        "gl adamw": (gl.adamw(LR, weight_decay=WD), gl.apply_updates),
        "gl inject_hyperparams(adamw)": (
            gl.inject_hyperparams(gl.adamw)(learning_rate=LR, weight_decay=WD),
            gl.apply_updates,
        ),
        "gl apply_if_finite(adamw)": (
            gl.apply_if_finite(gl.adamw(LR, weight_decay=WD), 5),
            gl.apply_updates,
        ),
        # Not a guard (the state is not protected): what any guard must pay at
        # least, one more read of the gradient to decide, before anything is
        # written, whether the step is applied.
        "gl adamw + finiteness check only (apply_if_finite floor)": (
            _check_only(gl.adamw(LR, weight_decay=WD)),
            gl.apply_updates,
        ),
        "optax adamw": (optax.adamw(LR, weight_decay=WD), optax.apply_updates),
        "optax inject_hyperparams(adamw)": (
            optax.inject_hyperparams(optax.adamw)(learning_rate=LR, weight_decay=WD),
            optax.apply_updates,
        ),
        "optax apply_if_finite(adamw)": (
            optax.apply_if_finite(optax.adamw(LR, weight_decay=WD), 5),
            optax.apply_updates,
        ),
    }


def _check_only(inner):
    """``inner`` with the one fused finiteness check of ``apply_if_finite`` deciding
    whether its updates are zeroed: the check's cost and nothing else."""

    def update(updates, state, params=None):
        finite = all_finite(updates)
        out, state = inner.update(updates, state, params)
        return jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), out), state

    return gl.GradientTransformation(inner.init, update)


def loop_step(tx, apply, n: int):
    """``n`` steps in one lax.scan, the gradient scaled by ``1 + 1e-4 k`` at step ``k``
    (as ``run.py``'s ``make_loop``): with the same gradient every step XLA
    hoists anything derived from it alone (the finiteness check) out of the
    loop, and a guard's check would look free."""

    def run(params, state, grads):
        def body(carry, k):
            p, s = carry
            g = jax.tree.map(lambda x: x * (1.0 + 1e-4 * k).astype(x.dtype), grads)
            u, s = tx.update(g, s, p)
            return (apply(p, u), s), None

        return jax.lax.scan(body, (params, state), jnp.arange(n, dtype=jnp.float32))[0]

    return run


def time_case(name: str, spec, rounds: int, loop: int, only: list[str] | None) -> list[dict]:
    params0 = materialize(spec, 0, PARAM_SCALE)
    grads = materialize(spec, 1, PARAM_SCALE)
    dispatched, in_loop = {}, {}
    with jax.numpy_dtype_promotion("standard"):
        for label, (tx, apply) in variants().items():
            if only and not any(word in label for word in only) and not label.endswith(" adamw"):
                continue
            for _, fn, store in (
                ("step", make_step(tx, apply), dispatched),
                ("loop", loop_step(tx, apply, loop), in_loop),
            ):
                params = jax.tree.map(jnp.copy, params0)
                state = tx.init(params)
                jitted, _, _ = timed_compile(fn, (0, 1), (params, state, grads))
                store[label] = Runner(jitted, (params, state), (grads,))
        t_step = interleaved(dispatched, rounds, dict.fromkeys(dispatched, 3))
        t_loop = interleaved(in_loop, rounds, dict.fromkeys(in_loop, 1))
    rows = []
    for label in dispatched:
        rows.append(
            {
                "case": name,
                "impl": label,
                "step_ms": 1e3 * statistics.median(t_step[label]),
                "loop_ms": 1e3 * statistics.median(t_loop[label]) / loop,
            }
        )
    for r in rows:
        base = next(x for x in rows if x["impl"] == r["impl"].split()[0] + " adamw")
        r["step_ratio"] = r["step_ms"] / base["step_ms"]
        r["loop_ratio"] = r["loop_ms"] / base["loop_ms"]
    return rows


def multisteps_memory(spec, k: int = 4) -> list[dict]:
    """State bytes and compiled-step temporaries of MultiSteps(adamw, k), gradlab and Optax."""
    params = materialize(spec, 0, PARAM_SCALE)
    grads = materialize(spec, 1, PARAM_SCALE)
    rows = []
    txs = {
        "gl MultiSteps(adamw)": (gl.MultiSteps(gl.adamw(LR, weight_decay=WD), k), gl.apply_updates),
        "optax MultiSteps(adamw)": (
            optax.MultiSteps(optax.adamw(LR, weight_decay=WD), k).gradient_transformation(),
            optax.apply_updates,
        ),
        "gl adamw (no accumulation)": (gl.adamw(LR, weight_decay=WD), gl.apply_updates),
    }
    with jax.numpy_dtype_promotion("standard"):
        for label, (tx, apply) in txs.items():
            state = jax.eval_shape(tx.init, params)
            compiled = (
                jax.jit(make_step(tx, apply), donate_argnums=(0, 1))
                .lower(params, state, grads)
                .compile()
            )
            analysis = compiled.memory_analysis()
            rows.append(
                {
                    "impl": label,
                    "params_mb": tree_bytes(params) / 2**20,
                    "state_mb": tree_bytes(state) / 2**20,
                    "temp_mb": getattr(analysis, "temp_size_in_bytes", float("nan")) / 2**20,
                }
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="flat 4M and a 12-layer transformer")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--loop", type=int, default=10, help="steps per lax.scan")
    parser.add_argument(
        "--cases", default="flat,transformer,memory", help="any of flat, transformer, memory"
    )
    parser.add_argument(
        "--impls", default=None, help="comma-separated words: time only the wrappers named so"
    )
    args = parser.parse_args(argv)
    n, layers = (4_000_000, 12) if args.quick else (16_000_000, 48)
    rounds = args.rounds or (5 if args.quick else 9)
    info = machine_info()
    print(f"# {info['cpu']}, {info['usable_cores']} cores, jax {info['jax']}, optax {info['optax']}, "
          f"commit {info['commit']}, load {info['loadavg_start']}")  # fmt: skip
    wanted = args.cases.split(",")
    only = args.impls.split(",") if args.impls else None
    cases = {
        f"flat{n // 1_000_000}M-f32": _flat(n, jnp.float32),
        f"transformer{layers}L-f32": _transformer(jnp.float32, layers=layers),
    }
    cases = {k: v for k, v in cases.items() if any(k.startswith(w) for w in wanted)}
    print(
        "\n| case | implementation | dispatched step (ms) | vs its adamw | in-loop step (ms) | vs its adamw |"
    )
    print("|---|---|---|---|---|---|")
    for name, spec in cases.items():
        for r in time_case(name, spec, rounds, args.loop, only):
            print(f"| {r['case']} | {r['impl']} | {r['step_ms']:.2f} | {r['step_ratio']:.3f} | "
                  f"{r['loop_ms']:.2f} | {r['loop_ratio']:.3f} |")  # fmt: skip
    if "memory" not in wanted:
        return 0
    print("\n| params | implementation | params (MiB) | state (MiB) | step temporaries (MiB) |")
    print("|---|---|---|---|---|")
    for dtype in (jnp.float32, jnp.bfloat16):
        name = f"flat{n // 1_000_000}M-{jnp.dtype(dtype).name}"
        for r in multisteps_memory(_flat(n, dtype)):
            print(f"| {name} | {r['impl']} | {r['params_mb']:.1f} | {r['state_mb']:.1f} | "
                  f"{r['temp_mb']:.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
