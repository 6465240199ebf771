"""Compile time on many-leaf trees, gradlab vs Optax, side by side in one process.

    python benchmarks/compile.py            # 204 leaves; L-BFGS at 25, 50, 100 leaves
    python benchmarks/compile.py --quick    # 52 leaves; L-BFGS at 10, 20 (~1 min)

Two places where gradlab's compiled programs grew faster with the leaf count
than Optax's (benchmarks/README.md, "Compile time on many leaves"):

* per-leaf norms (``lamb``, ``lars``, ``adafactor``, ``adaptive_grad_clip``)
  on 200 vectors of 64 plus 4 matrices of 64 x 64: the compile of a 20-step
  ``lax.scan`` of updates, and one run of it;
* one jitted L-BFGS step (``value_and_grad_from_state``, the zoom line search
  with ``value_fn``, ``apply_updates``) on N leaves of 64: compile only.

Each implementation compiles a fresh ``jax.jit`` (``lower(...).compile()``,
best of ``--reps``), in rounds that alternate which of gradlab and Optax
compiles first. Ratios are gradlab / Optax: < 1 is faster. Compile times move with the machine's load: read the ratios of
one run, not absolute seconds across runs.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import gradlab as gl

PER_LEAF_NORMS = {
    "lamb": (lambda: gl.lamb(1e-3), lambda: optax.lamb(1e-3)),
    "lars": (lambda: gl.lars(1e-3), lambda: optax.lars(1e-3)),
    "adafactor": (lambda: gl.adafactor(1e-3), lambda: optax.adafactor(1e-3)),
    "agc+sgd": (
        lambda: gl.chain(gl.adaptive_grad_clip(0.01), gl.sgd(1e-3)),
        lambda: optax.chain(optax.adaptive_grad_clip(0.01), optax.sgd(1e-3)),
    ),
}


def many_leaves(vectors: int, matrices: int) -> dict:
    key = jax.random.key(0)
    tree = {f"v{i}": jax.random.normal(jax.random.fold_in(key, i), (64,)) for i in range(vectors)}
    for i in range(matrices):
        tree[f"m{i}"] = jax.random.normal(jax.random.fold_in(key, 10_000 + i), (64, 64))
    return tree


def scanned(tx, steps: int = 20):
    def run(params, state):
        def body(carry, _):
            p, s = carry
            g = jax.tree.map(lambda x: jnp.sin(x) + 0.1 * x, p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(body, (params, state), None, length=steps)[0]

    return run


def best_compiles(jobs: dict, reps: int) -> dict:
    """``{lib: (best compile seconds, compiled)}`` of ``jobs`` (``{lib: (fn, args)}``),
    compiled in rounds whose order alternates (gradlab first, then Optax first, ...),
    so that neither always compiles first or right after the other."""
    times: dict = {lib: [] for lib in jobs}
    compiled: dict = {}
    libs = list(jobs)
    for r in range(reps):
        for lib in libs if r % 2 == 0 else libs[::-1]:
            fn, args = jobs[lib]
            jax.clear_caches()  # a cold compile each time (JAX keeps compiled programs)
            t = time.perf_counter()
            compiled[lib] = jax.jit(fn).lower(*args).compile()
            times[lib].append(time.perf_counter() - t)
    return {lib: (min(times[lib]), compiled[lib]) for lib in libs}


def best_run(compiled, *args, reps: int = 5) -> float:
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    return min(times)


def per_leaf_norms(params: dict, reps: int) -> None:
    n = len(params)
    print(f"per-leaf norms, {n} leaves, a 20-step lax.scan of updates")
    print(f"{'opt':10s} {'gl compile s':>12s} {'optax':>8s} {'ratio':>6s}   "
          f"{'gl run ms':>9s} {'optax':>8s} {'ratio':>6s}")  # fmt: skip
    for name, (make_gl, make_ox) in PER_LEAF_NORMS.items():
        jobs = {}
        for lib, make in (("gl", make_gl), ("ox", make_ox)):
            tx = make()
            jobs[lib] = (scanned(tx), (params, tx.init(params)))
        best = best_compiles(jobs, reps)
        rows = {lib: (best[lib][0], best_run(best[lib][1], *jobs[lib][1])) for lib in ("gl", "ox")}
        (gc, gr), (oc, orr) = rows["gl"], rows["ox"]
        print(f"{name:10s} {gc:12.2f} {oc:8.2f} {gc / oc:6.2f}   "
              f"{gr * 1e3:9.2f} {orr * 1e3:8.2f} {gr / orr:6.2f}", flush=True)  # fmt: skip


def lbfgs_step(lib: str, leaves: int):
    params = {f"x{i}": jnp.full((64,), 0.01 * i) for i in range(leaves)}

    def fun(p):
        terms = [
            0.5 * jnp.sum((1 + 0.01 * i) * x * x) + jax.nn.logsumexp(x)
            for i, x in enumerate(jax.tree.leaves(p))
        ]
        return sum(terms)

    m = gl if lib == "gl" else optax
    opt = m.lbfgs()
    value_and_grad = m.value_and_grad_from_state(fun)

    def step(p, s):
        value, grad = value_and_grad(p, state=s)
        u, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=fun)
        return m.apply_updates(p, u), s

    return step, params, opt.init(params)


def lbfgs(sizes: list[int], reps: int) -> None:
    print("\none jitted L-BFGS step (zoom line search), leaves of 64: compile s")
    print(f"{'leaves':>6s} {'gradlab':>8s} {'optax':>8s} {'ratio':>6s}")
    for n in sizes:
        jobs = {}
        for lib in ("gl", "ox"):
            step, params, state = lbfgs_step(lib, n)
            jobs[lib] = (step, (params, state))
        got = {lib: best for lib, (best, _) in best_compiles(jobs, reps).items()}
        print(f"{n:6d} {got['gl']:8.2f} {got['ox']:8.2f} {got['gl'] / got['ox']:6.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller trees, one compile each")
    parser.add_argument("--reps", type=int, default=None, help="compiles per implementation")
    parser.add_argument("--skip-lbfgs", action="store_true")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 2)
    vectors, matrices = (50, 2) if args.quick else (200, 4)
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}")
    with jax.numpy_dtype_promotion("standard"):  # Optax is not strict-promotion clean
        per_leaf_norms(many_leaves(vectors, matrices), reps)
        if not args.skip_lbfgs:
            lbfgs([10, 20] if args.quick else [25, 50, 100], reps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
