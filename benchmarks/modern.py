"""The modern optimizers vs Optax, side by side in one process: step and compile time.

    python benchmarks/modern.py            # transformer tree, 48 layers (~9.4M params)
    python benchmarks/modern.py --quick    # 12 layers, fewer rounds (~2 min)
    python benchmarks/modern.py --opts lion,muon --json out.json

Adafactor, Lion, LAMB and Muon on the transformer-shaped tree of
``benchmarks/run.py`` (its tree builder, timing loop and numerical check are
reused: a fresh ``jax.jit(step, donate_argnums=(0, 1))`` per implementation,
interleaved rounds, per-step medians, params compared with Optax's after a few
steps), gradlab plain and ``gl.packed`` against Optax given the same
hyperparameters. Ratios are gradlab / Optax: < 1 is faster. See
benchmarks/README.md, "The modern optimizers".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import optax
import optax.contrib

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run

import gradlab as gl

IMPLS = ("gradlab", "gradlab+packed", "optax")

# run.tolerance() allows round-off on steps of run.LR = 1e-3. Muon's steps are
# 0.02 * an orthogonal matrix, and five Newton-Schulz iterations (coefficients
# 3.4, -4.8, 2.0) amplify float32 round-off to ~1e-4 of the step; the two
# implementations order their matmuls differently (Optax's go through a vmap).
MUON_LR, MUON_RTOL = 0.02, 1e-4


def modern_opts() -> list[run.Opt]:
    """Each optimizer with the same hyperparameters on both sides."""
    return [
        # Explicit learning rate: with None, gradlab uses the paper's relative step
        # and Optax none at all. Default min_dim_size_to_factor=128 on both sides:
        # the 128-wide matrices are factored, the vectors keep a full moment.
        run.Opt("adafactor", lambda: gl.adafactor(1e-2), lambda: optax.adafactor(1e-2)),
        run.Opt("lion", lambda: gl.lion(1e-4), lambda: optax.lion(1e-4)),
        run.Opt(
            "lamb",
            lambda: gl.lamb(1e-3, weight_decay=1e-2),
            lambda: optax.lamb(1e-3, weight_decay=1e-2),
        ),
        # Every rank-2 leaf (embeddings included) orthogonalised, the rest NAdamW.
        run.Opt("muon", lambda: gl.muon(MUON_LR), lambda: optax.contrib.muon(MUON_LR)),
    ]


QUICK = dataclasses.replace(
    run.QUICK, name="quick", opts=("adafactor", "lion", "lamb", "muon"), rounds=5
)
FULL = dataclasses.replace(
    run.FULL, name="full", opts=("adafactor", "lion", "lamb", "muon"), compile_reps=2
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12-layer tree, 5 rounds")
    parser.add_argument("--opts", help="comma-separated subset of adafactor, lion, lamb, muon")
    parser.add_argument("--dtypes", default="f32", help="comma-separated: f32, bf16 (default f32)")
    parser.add_argument("--rounds", type=int, help="override the number of interleaved rounds")
    parser.add_argument("--json", metavar="PATH", help="write machine info and all rows to PATH")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.rounds:
        cfg = dataclasses.replace(cfg, rounds=args.rounds)
    opts = run._select(modern_opts(), args.opts, lambda o: (o.name,), "opts")
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    cases = [c for c in run.all_cases(cfg.sizes) if c.kind == "transformer"]
    cases = [c for c in cases if c.name.rsplit("-", 1)[1] in dtypes]

    machine = run.machine_info()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['memory_gib']} GiB; backend {machine['backend']}; "
        f"load average {machine['loadavg_start']}"
    )
    print(
        f"versions: jax {machine['jax']}, optax {machine['optax']}, "
        f"gradlab {machine['gradlab']} ({machine['commit']})"
    )
    print(
        f"mode: {cfg.name}: {cfg.rounds} interleaved rounds, best of {cfg.compile_reps} cold "
        f"compile(s), params compared with Optax's after {cfg.check_steps} steps"
    )
    print()
    print(run.header())
    all_rows, infos, started = [], [], time.perf_counter()
    run.warm_up(opts, list(IMPLS))
    for case in cases:
        rows, info = run.run_case(case, opts, list(IMPLS), cfg)
        for r in rows:
            if r["opt"] == "muon":
                r["check_ok"] = r["max_abs_diff"] <= cfg.check_steps * MUON_LR * MUON_RTOL
        all_rows += rows
        infos.append(info)
        print(run.format_case(info, rows), flush=True)
    print()
    print("step time ratio gradlab / Optax (< 1 is faster), compile time ratio in brackets:")
    for r in all_rows:
        if "step_ratio" in r:
            print(
                f"  {r['case']:<22} {r['opt']:<10} {r['impl']:<15} "
                f"{r['step_ratio']:5.2f}  ({r['compile_ratio']:.2f})"
            )
    failed = [r for r in all_rows if not r["check_ok"]]
    for r in failed:
        print(
            f"NUMERICAL MISMATCH: {r['case']} {r['opt']} {r['impl']} vs {r['reference']}: "
            f"max|diff| {r['max_abs_diff']:.3e}"
        )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine, "cases": infos, "rows": all_rows}, indent=1)
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
