"""Time to solution: ``gl.minimize(fun, x0, gl.lbfgs())`` vs ``scipy.optimize.minimize(method="L-BFGS-B")``.

    python benchmarks/lbfgs.py            # ~1 minute on a 2-core CPU
    python benchmarks/lbfgs.py --rounds 3 --batch 64

Four problems (float64, the same as tests/test_lbfgs.py): Rosenbrock 2-D and
10-D, a random quadratic with condition number 1e4 (n = 20), and L2-regularised
logistic regression on scikit-learn's breast-cancer data (569 x 30,
standardised; its loss ``log(1 + e^z)`` is written ``max(z, 0) +
log1p(e^-|z|)`` on both sides, a fast stable form for each: see
``logistic``). Both solvers stop at a gradient tolerance of 1e-6 (scipy: the
largest component, ``gtol``, with ``ftol=0``; gradlab: the 2-norm, a stricter
test). scipy gets a NumPy objective returning ``(value, gradient)`` (its
fastest form); gradlab gets the jnp objective.

Per problem:

* single solve: scipy's median wall time over ``--rounds`` calls; gradlab's
  first call of ``jax.jit(solve)`` (trace + compile + run: "incl. compile") and
  its median over ``--rounds`` later calls ("after compile");
* ``--batch`` starting points (x0 + N(0, 0.1^2) noise): one vmapped, jitted
  ``minimize`` against that many scipy calls in a loop, each side the median
  of ``--rounds`` runs made back to back; throughput ratio = scipy's time /
  gradlab's (after compile; and including compile).

Iterations and function evaluations are reported for both (gradlab's
evaluations counted by a host callback in the objective, in a separate,
untimed run). The CPU is shared: times are noisy, ratios more stable.
"""

from __future__ import annotations

import os

# scipy's L-BFGS-B calls BLAS on vectors of 2..31 numbers: with a multi-threaded
# OpenBLAS on a shared CPU each call can wait milliseconds for its threads
# (Rosenbrock 10-D took 560 ms instead of ~3). One thread is scipy's best case.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402

import gradlab as gl  # noqa: E402

TOL = 1e-6
MAX_STEPS = 5000


# --------------------------------------------------------------------------- problems


def rosenbrock(n: int) -> tuple[Callable, Callable, np.ndarray]:
    def f(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def f_np(x):
        d = x[1:] - x[:-1] ** 2
        g = np.zeros_like(x)
        g[:-1] = -400.0 * x[:-1] * d - 2.0 * (1.0 - x[:-1])
        g[1:] += 200.0 * d
        return np.sum(100.0 * d**2 + (1.0 - x[:-1]) ** 2), g

    return f, f_np, np.tile([-1.2, 1.0], n // 2)


def quadratic() -> tuple[Callable, Callable, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 20
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = (q * np.logspace(0, 4, n)) @ q.T
    c = rng.normal(size=n)
    aj, cj = jnp.asarray(a), jnp.asarray(c)

    def f(x):
        r = x - cj
        return 0.5 * r @ (aj @ r)

    def f_np(x):
        r = x - c
        ar = a @ r
        return 0.5 * r @ ar, ar

    return f, f_np, np.zeros(n)


def logistic() -> tuple[Callable, Callable, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    lam = 1e-2
    xj, yj = jnp.asarray(x), jnp.asarray(y, jnp.float64)

    # log(1 + e^z) written as max(z, 0) + log1p(e^-|z|) on both sides: the same
    # stable function as logaddexp(0, z), and faster for each (NumPy's logaddexp
    # takes 8 µs on 569 numbers, this 4.5 µs; jnp.logaddexp's value and
    # gradient, under vmap on XLA:CPU, 1.5-2x this form's). log(1 + e^-|z|)
    # would evaluate 15% faster in JAX (benchmarks/README.md, fifth session);
    # log1p is kept so that the figures of every session compare.
    def f(v):
        z = xj @ v[:-1] + v[-1]
        loss = jnp.maximum(z, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(z))) - yj * z
        return jnp.mean(loss) + 0.5 * lam * v[:-1] @ v[:-1]

    def f_np(v):
        w, b = v[:-1], v[-1]
        z = x @ w + b
        p = 1 / (1 + np.exp(-z))
        value = np.mean(np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - y * z) + 0.5 * lam * w @ w
        return value, np.append(x.T @ (p - y) / len(y) + lam * w, np.mean(p - y))

    return f, f_np, np.zeros(31)


PROBLEMS = {
    "rosenbrock 2-D": lambda: rosenbrock(2),
    "rosenbrock 10-D": lambda: rosenbrock(10),
    "quadratic n=20, cond 1e4": quadratic,
    "logistic, breast cancer (31 params)": logistic,
}


# --------------------------------------------------------------------------- timing


def scipy_solve(f_np: Callable, x0: np.ndarray) -> Any:
    return scipy.optimize.minimize(
        f_np,
        x0,
        jac=True,
        method="L-BFGS-B",
        options={"gtol": TOL, "ftol": 0.0, "maxiter": MAX_STEPS, "maxcor": 10},
    )


def timed(fn: Callable, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - start, out


def count_evaluations(f: Callable, x0: np.ndarray) -> int:
    calls = []

    def counted(x):
        jax.debug.callback(lambda: calls.append(1))
        return f(x)

    jax.block_until_ready(
        jax.jit(lambda x: gl.minimize(counted, x, gl.lbfgs(), max_steps=MAX_STEPS, tol=TOL))(
            jnp.asarray(x0)
        )
    )
    jax.effects_barrier()
    return len(calls)


def bench(name: str, make: Callable, rounds: int, batch: int) -> dict[str, Any]:
    f, f_np, x0 = make()
    solve = jax.jit(lambda x: gl.minimize(f, x, gl.lbfgs(), max_steps=MAX_STEPS, tol=TOL))
    ref = scipy_solve(f_np, x0)
    scipy_times = [timed(scipy_solve, f_np, x0)[0] for _ in range(rounds)]
    first, res = timed(solve, jnp.asarray(x0))
    ours = [timed(solve, jnp.asarray(x0))[0] for _ in range(rounds)]
    assert bool(res.converged), name
    assert abs(float(res.value) - ref.fun) <= 1e-5 * abs(ref.fun) + 1e-10, (name, res.value)

    starts = x0 + 0.1 * np.random.default_rng(0).normal(size=(batch, x0.size))
    solve_batch = jax.jit(jax.vmap(solve))
    batch_first, batch_res = timed(solve_batch, jnp.asarray(starts))
    assert bool(jnp.all(batch_res.converged)), name

    def scipy_batch() -> float:
        start = time.perf_counter()
        for s in starts:
            scipy_solve(f_np, s)
        return time.perf_counter() - start

    # The median of --rounds runs of each side, each side's runs back to back
    # (a single loop of scipy calls, or the best of gradlab's runs, would
    # favour one side on a shared CPU; interleaving them would make each side
    # pay for the other's effect on caches and XLA's thread pool).
    batch_ours = [timed(solve_batch, jnp.asarray(starts))[0] for _ in range(rounds)]
    batch_scipy = [scipy_batch() for _ in range(rounds)]
    batch_ours, batch_scipy = statistics.median(batch_ours), statistics.median(batch_scipy)
    return {
        "name": name,
        "scipy_nit": ref.nit,
        "scipy_nfev": ref.nfev,
        "ours_nit": int(res.num_steps),
        "ours_nfev": count_evaluations(f, x0),
        "scipy_ms": 1e3 * statistics.median(scipy_times),
        "ours_ms": 1e3 * statistics.median(ours),
        "ours_first_ms": 1e3 * first,
        "batch_scipy_ms": 1e3 * batch_scipy,
        "batch_ours_ms": 1e3 * batch_ours,
        "batch_ours_first_ms": 1e3 * batch_first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(
        f"jax {jax.__version__}, scipy {scipy.__version__}, {platform.processor() or 'cpu'}, "
        f"{jax.devices()[0].platform}; tol {TOL}; float64; BLAS threads "
        f"{os.environ['OPENBLAS_NUM_THREADS']}; shared CPU: times are noisy"
    )
    rows = [bench(n, make, args.rounds, args.batch) for n, make in PROBLEMS.items()]
    print()
    print(
        "| problem | iterations gl / scipy | f+grad evals gl / scipy | scipy ms | "
        "gl ms after compile | gl ms incl. compile | single-solve speed-up |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['ours_nit']} / {r['scipy_nit']} | {r['ours_nfev']} / "
            f"{r['scipy_nfev']} | {r['scipy_ms']:.2f} | {r['ours_ms']:.2f} | "
            f"{r['ours_first_ms']:.0f} | {r['scipy_ms'] / r['ours_ms']:.1f}x |"
        )
    print()
    print(f"{args.batch} starting points: one vmapped minimize vs {args.batch} scipy calls")
    print()
    print(
        "| problem | scipy ms | gl ms after compile | gl ms incl. compile | "
        "throughput ratio after compile | incl. compile |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['batch_scipy_ms']:.0f} | {r['batch_ours_ms']:.1f} | "
            f"{r['batch_ours_first_ms']:.0f} | {r['batch_scipy_ms'] / r['batch_ours_ms']:.0f}x | "
            f"{r['batch_scipy_ms'] / r['batch_ours_first_ms']:.1f}x |"
        )


if __name__ == "__main__":
    main()
