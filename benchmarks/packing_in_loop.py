"""Inside a loop, what passing a 1000-leaf tree through packed buffers costs.

A jitted ``lax.scan`` of 50 steps over 1000 leaves of 100 float32 (the gradient
changes every step, so nothing is hoisted out of the loop): a per-leaf update,
the same update with the gradient sent through one concatenated buffer, and with
the (loop-carried) params concatenated too, as a packed weight decay reads them.
benchmarks/README.md ("The in-loop target") quotes its figures.

    python benchmarks/packing_in_loop.py
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree

N, K, STEPS = 1000, 100, 50


def scanned(step):
    @jax.jit
    def run(p, g):
        def body(p, t):
            return step(p, jax.tree.map(lambda x: x * t, g)), None

        return jax.lax.scan(body, p, jnp.linspace(1.0, 2.0, STEPS))[0]

    return run


def direct(p, g):
    return jax.tree.map(lambda a, b: a - 0.1 * b, p, g)


def _cut(buf, treedef):
    return jax.tree.unflatten(treedef, [buf[i * K : (i + 1) * K] for i in range(N)])


def gradient_through_a_buffer(p, g):
    leaves, treedef = jax.tree.flatten(g)
    u = _cut(_tree.concatenate([x.ravel() for x in leaves]), treedef)
    return jax.tree.map(lambda a, b: a - 0.1 * b, p, u)


def gradient_and_params_through_buffers(p, g):
    leaves, treedef = jax.tree.flatten(g)
    gb = _tree.concatenate([x.ravel() for x in leaves])
    pb = _tree.concatenate([x.ravel() for x in jax.tree.leaves(p)])
    u = _cut(gb + 0.01 * pb, treedef)
    return jax.tree.map(lambda a, b: a - 0.1 * b, p, u)


def main():
    params = {f"b{i}": jnp.zeros(K) for i in range(N)}
    grads = jax.tree.map(lambda p: p + 0.01, params)
    for step in (direct, gradient_through_a_buffer, gradient_and_params_through_buffers):
        run = scanned(step)
        jax.block_until_ready(run(params, grads))
        times = []
        for _ in range(15):
            t = time.perf_counter()
            jax.block_until_ready(run(params, grads))
            times.append(time.perf_counter() - t)
        print(f"{step.__name__:40s} {1e3 * np.median(times) / STEPS:.3f} ms/step in a scan")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()  # --help
    main()
