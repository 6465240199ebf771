"""gradlab vs Optax, side by side in one process: step time, bandwidth, compile time.

    python benchmarks/run.py                  # full run (~20 min on a 2-core CPU)
    python benchmarks/run.py --quick          # under 3 minutes
    python benchmarks/run.py --cases transformer --opts adam,chain --json out.json

For every case (a parameter tree) and optimizer, each implementation
(gradlab, gradlab+packed when ``gl.packed`` exists, gradlab+flat -- the
flat-params pattern, the gradient tree raveled inside the step -- and Optax)
gets a fresh ``jax.jit(step, donate_argnums=(0, 1))`` of

    updates, state = opt.update(grads, state, params)
    params = apply_updates(params, updates)

whose lower+compile is timed, then the jitted function is called directly
(C++ dispatch) in interleaved rounds; the per-step median is reported with the
effective bandwidth (minimal bytes per step / time) against a measured
ceiling, a hand-fused Adam on flat float32 arrays. Before timing, the params
of all implementations are compared after a few steps. See
benchmarks/README.md for the methodology.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import gradlab as gl

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/training.py

LR = 1e-3
PARAM_SCALE = 0.02  # params ~ N(0, 0.02^2): bfloat16 can still resolve a 1e-3 step
SCHEDULE_ARGS = (0.0, 1e-3, 100, 1000)  # init, peak, warmup_steps, decay_steps
IMPLS = ("gradlab", "gradlab+packed", "gradlab+flat", "optax")
CEILING_BYTES_PER_PARAM = 28  # fused Adam: read p, m, v, g; write p, m, v (float32)


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """A parameter tree to benchmark: ``spec`` is a pytree of ShapeDtypeStructs."""

    name: str
    kind: str
    dtype: Any
    spec: Any
    description: str

    @property
    def n_params(self) -> int:
        return sum(math.prod(s.shape) for s in jax.tree.leaves(self.spec))

    @property
    def n_leaves(self) -> int:
        return len(jax.tree.leaves(self.spec))

    @property
    def dtype_name(self) -> str:
        return jnp.dtype(self.dtype).name


def _flat(n: int, dtype) -> dict:
    return {"w": jax.ShapeDtypeStruct((n,), dtype)}


def _transformer(dtype, layers=48, d=128, d_ff=480, vocab=2048, max_len=512) -> dict:
    """Pre-LN blocks of 8 leaves (4 small vectors, 4 matrices) plus embeddings and a
    final norm: 8 * layers + 4 leaves (388 and ~9.4M params for 48 layers)."""

    def s(*shape):
        return jax.ShapeDtypeStruct(shape, dtype)

    def block():
        return {
            "ln1": {"scale": s(d), "bias": s(d)},
            "attn": {"qkv": s(d, 3 * d), "out": s(d, d)},
            "ln2": {"scale": s(d), "bias": s(d)},
            "mlp": {"w_in": s(d, d_ff), "w_out": s(d_ff, d)},
        }

    return {
        "embed": {"tokens": s(vocab, d), "positions": s(max_len, d)},
        "layers": [block() for _ in range(layers)],
        "ln_f": {"scale": s(d), "bias": s(d)},
    }


def _many_small(dtype, n=1000, size=100) -> dict:
    return {f"p{i:04d}": jax.ShapeDtypeStruct((size,), dtype) for i in range(n)}


def _millions(n: int) -> str:
    return f"{n / 1e6:g}m"


@dataclass(frozen=True)
class Sizes:
    big_flat: int
    layers: int
    small_leaves: int


FULL_SIZES = Sizes(big_flat=16_000_000, layers=48, small_leaves=1000)
QUICK_SIZES = Sizes(big_flat=4_000_000, layers=12, small_leaves=250)


def all_cases(sizes: Sizes) -> list[Case]:
    """Every tree kind in float32 and bfloat16; ``name`` states the actual size."""
    layers, leaves = sizes.layers, sizes.small_leaves
    kinds = [
        ("flat1m", "flat1m", lambda dt: _flat(1_000_000, dt), "one flat vector of 1,000,000"),
        (
            "flatbig",
            f"flat{_millions(sizes.big_flat)}",
            lambda dt: _flat(sizes.big_flat, dt),
            f"one flat vector of {sizes.big_flat:,}",
        ),
        (
            "transformer",
            "transformer" if layers == 48 else f"transformer{layers}L",
            lambda dt: _transformer(dt, layers=layers),
            f"{layers} layers x (ln1 scale/bias, attn qkv/out, ln2 scale/bias, mlp in/out), "
            "token+position embeddings, final ln; d_model 128, d_ff 480",
        ),
        ("small", f"small{leaves}", lambda dt: _many_small(dt, n=leaves), f"{leaves} leaves x 100"),
    ]
    return [
        Case(f"{label}-{suffix}", kind, dtype, build(dtype), description)
        for dtype, suffix in ((jnp.float32, "f32"), (jnp.bfloat16, "bf16"))
        for kind, label, build, description in kinds
    ]


def materialize(spec, seed: int, scale: float = 1.0):
    """Random normal leaves (drawn in float32, then cast) shaped like ``spec``."""
    leaves, treedef = jax.tree.flatten(spec)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    arrays = [
        (scale * jax.random.normal(k, s.shape, jnp.float32)).astype(s.dtype)
        for k, s in zip(keys, leaves, strict=True)
    ]
    return treedef.unflatten(arrays)


def tree_bytes(tree) -> int:
    return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


# ---------------------------------------------------------------------- optimizers


def _warmup_cosine_fallback(init_value, peak_value, warmup_steps, decay_steps, end_value=0.0):
    """Linear warm-up then cosine decay (Optax's convention), for when gradlab lacks it."""

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        warm = init_value + (peak_value - init_value) * t / warmup_steps
        frac = jnp.clip((t - warmup_steps) / (decay_steps - warmup_steps), 0.0, 1.0)
        cos = end_value + (peak_value - end_value) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        return jnp.where(t < warmup_steps, warm, cos)

    return schedule


def gradlab_schedule() -> tuple[Callable, str]:
    """gradlab's warmup_cosine_decay, or the jnp fallback when it does not exist (yet)."""
    try:
        make, name = gl.schedules.warmup_cosine_decay, "gl.schedules.warmup_cosine_decay"
    except (ImportError, AttributeError):
        make = _warmup_cosine_fallback
        name = "FALLBACK jnp lambda (gl.schedules.warmup_cosine_decay missing)"
    return make(*SCHEDULE_ARGS), name


@dataclass(frozen=True)
class Opt:
    name: str
    gradlab: Callable[[], Any]
    optax: Callable[[], Any]
    grad_reads: int = 1  # reads of g per step in the minimal-traffic accounting


def all_opts(schedule: Callable) -> list[Opt]:
    def gl_chain():
        return gl.chain(gl.clip_by_global_norm(1.0), gl.adamw(schedule, weight_decay=1e-4))

    def ox_chain():
        sched = optax.warmup_cosine_decay_schedule(*SCHEDULE_ARGS)
        return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=1e-4))

    return [
        Opt("sgd", lambda: gl.sgd(LR), lambda: optax.sgd(LR)),
        Opt("momentum", lambda: gl.sgd(LR, momentum=0.9), lambda: optax.sgd(LR, momentum=0.9)),
        Opt("adam", lambda: gl.adam(LR), lambda: optax.adam(LR)),
        Opt(
            "adamw",
            lambda: gl.adamw(LR, weight_decay=1e-4),
            lambda: optax.adamw(LR, weight_decay=1e-4),
        ),
        Opt("chain", gl_chain, ox_chain, grad_reads=2),  # the global norm reads g once more
    ]


def transformation(impl: str, opt: Opt):
    """``(tx, apply_updates)`` of one implementation."""
    if impl == "optax":
        return opt.optax(), optax.apply_updates
    tx = opt.gradlab()
    if impl == "gradlab+packed":
        tx = gl.packed(tx)
    return tx, gl.apply_updates


def as_impl_params(impl: str, params):
    """The params as ``impl`` holds them: one flat vector for the flat-params pattern."""
    return ravel_pytree(params)[0] if impl == "gradlab+flat" else params


def as_tree(impl: str, params, like):
    """Back to the tree of ``like`` (for the numerical check)."""
    return ravel_pytree(like)[1](params) if impl == "gradlab+flat" else params


def make_step(tx, apply_updates, flat: bool = False) -> Callable:
    """A new function object each call, so every ``jax.jit`` of it starts cold.

    ``flat``: the flat-params pattern (notebooks/03_fast_paths.ipynb). The
    params are one vector that the model unravels; differentiating through the
    unravel gathers the per-leaf gradients into one vector at the end of the
    backward pass. That gather is done here, inside the timed step, so the
    pattern is not credited with a free copy.
    """

    def step(params, state, grads):
        if flat:
            grads = ravel_pytree(grads)[0]
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), state

    return step


LOOP_STEPS = 50  # steps per scanned call for the in-loop figure


def make_loop(tx, apply_updates, flat: bool = False) -> Callable:
    """``LOOP_STEPS`` steps inside one ``lax.scan``: how ``gl.sweep``, ``minimize``,
    ``lr_finder`` and scanned training loops run the step. Inside a loop no
    buffer is passed in or out per step, so this is the step's own cost.

    The gradient changes every step (scaled by ``1 + 1e-4 k``), as in training,
    so nothing derived from it (a packed copy, a norm) can be hoisted out of
    the loop; every implementation pays the same one multiply per element.
    """

    def loop(params, state, grads):
        def body(carry, k):
            params, state = carry
            g = jax.tree.map(lambda x: x * (1.0 + 1e-4 * k).astype(x.dtype), grads)
            if flat:
                g = ravel_pytree(g)[0]
            updates, state = tx.update(g, state, params)
            return (apply_updates(params, updates), state), None

        steps = jnp.arange(LOOP_STEPS, dtype=jnp.float32)
        return jax.lax.scan(body, (params, state), steps)[0]

    return loop


def min_bytes(opt: Opt, params, state_struct) -> int:
    """Minimal traffic: read+write params and every state buffer, read grads."""
    p = tree_bytes(params)
    return 2 * p + opt.grad_reads * p + 2 * tree_bytes(state_struct)


# -------------------------------------------------------------------------- timing


def _block(out) -> None:
    # All outputs of one XLA execution become ready together; waiting on two
    # leaves avoids a Python loop over thousands of them.
    leaves = jax.tree.leaves(out)
    leaves[0].block_until_ready()
    leaves[-1].block_until_ready()


class Runner:
    """A jitted donating step and the carry it feeds back to itself."""

    def __init__(self, fn: Callable, carry: tuple, const: tuple):
        self.fn, self.carry, self.const = fn, carry, const

    def step(self) -> float:
        t0 = time.perf_counter()
        out = self.fn(*self.carry, *self.const)
        _block(out)
        dt = time.perf_counter() - t0
        self.carry = out
        return dt


class LoopRunner(Runner):
    """A jitted scanned loop of ``LOOP_STEPS`` steps; ``step()`` returns seconds per step."""

    def step(self) -> float:
        return super().step() / LOOP_STEPS


def timed_compile(fn: Callable, donate: tuple[int, ...], args: tuple):
    """Fresh ``jax.jit``; returns it (its cache now holds the executable), seconds, warnings."""
    jitted = jax.jit(fn, donate_argnums=donate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        jitted.lower(*args).compile()
        seconds = time.perf_counter() - t0
    return jitted, seconds, sorted({str(w.message).split("\n")[0] for w in caught})


def interleaved(
    runners: dict[str, Runner], rounds: int, steps: dict[str, int]
) -> dict[str, list[float]]:
    """Per-step times; each round runs every runner once, starting from a different one."""
    names = list(runners)
    times = {name: [] for name in names}
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                times[name].extend(runners[name].step() for _ in range(steps[name]))
    finally:
        gc.enable()
    return times


def fused_adam(p, m, v, g):
    """The bandwidth ceiling: one fused elementwise Adam step on flat float32 arrays."""
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * (g * g)
    p = p - LR * (m * 10.0) / (jnp.sqrt(v * 1000.0) + 1e-8)
    return p, m, v


def ceiling_runner(n: int) -> Runner:
    p, g = (materialize(_flat(n, jnp.float32), seed, PARAM_SCALE)["w"] for seed in (2, 3))
    m, v = jnp.zeros(n, jnp.float32), jnp.zeros(n, jnp.float32)
    jitted = jax.jit(fused_adam, donate_argnums=(0, 1, 2))
    return Runner(jitted, (p, m, v), (g,))


# ------------------------------------------------------------------------- checks


def tolerance(dtype, steps: int) -> tuple[float, float]:
    """(rtol, atol) for params of ``dtype`` after ``steps`` steps of two implementations.

    Each step rounds every param to its dtype once, and where the two
    implementations round differently (gradlab computes 16-bit updates in
    float32 and rounds once; Optax computes them in the param dtype) they may
    part by one unit in the last place per step: ``steps * eps * |p|``, with
    ``|p|`` the largest magnitude on the way (start or end: grads are fixed,
    so each param moves monotonically). The absolute term covers round-off in
    the update itself (Adam's bias correction ``1 - b2**t`` carries ~1e-5
    relative error in float32). In float32 all of this is orders of magnitude
    below one step (~LR); in bfloat16 one ulp of a param is comparable to a
    step, so there the check only catches gross differences.
    """
    eps = float(jnp.finfo(dtype).eps)
    return steps * eps, steps * LR * max(eps, 1e-4)


def compare(a, b, start, dtype, steps: int) -> tuple[float, bool]:
    """Max abs difference between param trees ``a`` and ``b`` (both ``steps`` steps
    away from ``start``) and whether it is within :func:`tolerance`."""
    rtol, atol = tolerance(dtype, steps)
    worst, ok = 0.0, True
    for x, y, z in zip(*(jax.tree.leaves(t) for t in (a, b, start)), strict=True):
        x, y, z = (np.asarray(t).astype(np.float32) for t in (x, y, z))
        diff = np.abs(x - y)
        worst = max(worst, float(diff.max()))
        scale = np.maximum(np.maximum(np.abs(x), np.abs(y)), np.abs(z))
        ok = ok and bool(np.all(diff <= rtol * scale + atol))
    return worst, ok


def max_change(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x).astype(np.float32) - np.asarray(y).astype(np.float32))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


# ------------------------------------------------------------------------ running


@dataclass(frozen=True)
class Config:
    name: str
    sizes: Sizes
    opts: tuple[str, ...]  # default optimizers (--opts overrides)
    rounds: int  # interleaved rounds
    round_seconds: float  # target time per implementation per round
    min_steps: int  # steps per implementation per round, at least...
    max_steps: int  # ...and at most
    compile_reps: int  # cold compiles per implementation (best is reported)
    check_steps: int  # steps before comparing params (the first is the warm-up)


ALL_OPTS = ("sgd", "momentum", "adam", "adamw", "chain")
QUICK = Config("quick", QUICK_SIZES, ("sgd", "adam", "chain"), 5, 0.03, 2, 20, 1, 3)
FULL = Config("full", FULL_SIZES, ALL_OPTS, 7, 0.3, 5, 200, 3, 5)


def warm_up(opts: list[Opt], impls: list[str]) -> None:
    """Run every step once on a tiny tree, so JAX's one-time costs (first lowering
    of each primitive, ...) are not charged to whichever implementation compiles first."""
    for dtype in (jnp.float32, jnp.bfloat16):
        spec = {"a": jax.ShapeDtypeStruct((3,), dtype), "b": jax.ShapeDtypeStruct((2, 2), dtype)}
        params, grads = materialize(spec, 0), materialize(spec, 1)
        for opt in opts:
            for impl in impls:
                tx, apply = transformation(impl, opt)
                p = as_impl_params(impl, params)
                jax.jit(make_step(tx, apply, impl == "gradlab+flat"))(p, tx.init(p), grads)
    ceiling_runner(8).step()


def compile_all(opt: Opt, impls: list[str], params0, grads, cfg: Config, start: int = 0):
    """A runner per implementation (fresh params and state), with its cold compile times.

    Each implementation is compiled ``cfg.compile_reps`` times with a fresh
    ``jax.jit``, interleaved, each repetition starting from a different one
    (``start`` rotates the first); the first jit, whose cache holds the
    executable, is the one the runner calls.
    """
    runners, compiles, notes = {}, {impl: [] for impl in impls}, {}
    k = start % len(impls)
    for impl in impls[k:] + impls[:k]:
        tx, apply = transformation(impl, opt)
        params = as_impl_params(impl, jax.tree.map(jnp.copy, params0))
        state = tx.init(params)
        jitted, seconds, caught = timed_compile(
            make_step(tx, apply, impl == "gradlab+flat"), (0, 1), (params, state, grads)
        )
        compiles[impl].append(seconds)
        notes[impl] = caught
        runners[impl] = Runner(jitted, (params, state), (grads,))
    for impl in impls[k:] + impls[:k]:
        tx, apply = transformation(impl, opt)
        params = as_impl_params(impl, jax.tree.map(jnp.copy, params0))
        state = tx.init(params)
        loop = make_loop(tx, apply, impl == "gradlab+flat")
        jitted, seconds, caught = timed_compile(loop, (0, 1), (params, state, grads))
        compiles[f"{impl} loop"] = [seconds]
        runners[f"{impl} loop"] = LoopRunner(jitted, (params, state), (grads,))
    for rep in range(1, cfg.compile_reps):
        k = (start + rep) % len(impls)
        for impl in impls[k:] + impls[:k]:
            tx, apply = transformation(impl, opt)
            args = (*runners[impl].carry, grads)
            step = make_step(tx, apply, impl == "gradlab+flat")
            compiles[impl].append(timed_compile(step, (0, 1), args)[1])
    return runners, compiles, notes


def run_opt(
    case: Case, opt: Opt, impls: list[str], params0, grads, ceiling: Runner, cfg: Config, start: int
):
    """Compile, check and time one optimizer on one case; returns rows and ceiling samples."""
    runners, compiles, notes = compile_all(opt, impls, params0, grads, cfg, start)
    # The first call (warm-up) is step 1 of the numerical check.
    estimate = {name: [r.step() for _ in range(cfg.check_steps)][-1] for name, r in runners.items()}
    for name in runners:  # a scanned call is LOOP_STEPS steps: fewer calls per round
        if name.endswith(" loop"):
            estimate[name] *= LOOP_STEPS
    reference = "optax" if "optax" in runners else impls[0]
    ref_params = as_tree(reference, runners[reference].carry[0], params0)
    checks = {
        impl: compare(
            as_tree(impl, runners[impl].carry[0], params0),
            ref_params,
            params0,
            case.dtype,
            cfg.check_steps,
        )
        for impl in impls
    }
    moved = max_change(ref_params, params0)

    runners["ceiling"] = ceiling
    estimate["ceiling"] = ceiling.step()
    steps = {
        name: min(cfg.max_steps, max(cfg.min_steps, round(cfg.round_seconds / max(t, 1e-6))))
        for name, t in estimate.items()
    }
    times = interleaved(runners, cfg.rounds, steps)

    rows = []
    for impl in impls:
        state_struct = jax.eval_shape(
            transformation(impl if impl == "optax" else "gradlab", opt)[0].init, params0
        )
        t = times[impl]
        loop_t = times[f"{impl} loop"]
        q1, _, q3 = statistics.quantiles(t, n=4) if len(t) > 1 else (t[0], t[0], t[0])
        rows.append(
            {
                "case": case.name,
                "opt": opt.name,
                "impl": impl,
                "n_params": case.n_params,
                "n_leaves": case.n_leaves,
                "dtype": case.dtype_name,
                "step_ms": 1e3 * statistics.median(t),
                "loop_ms": 1e3 * statistics.median(loop_t),
                "loop_min_ms": 1e3 * min(loop_t),
                "loop_compile_s": compiles[f"{impl} loop"][0],
                "iqr_pct": 100 * (q3 - q1) / statistics.median(t),
                "min_ms": 1e3 * min(t),
                "n_samples": len(t),
                "bytes_per_step": min_bytes(opt, params0, state_struct),
                "compile_s": min(compiles[impl]),
                "compile_samples_s": compiles[impl],
                "reference": reference,
                "max_abs_diff": checks[impl][0],
                "check_ok": checks[impl][1],
                "max_param_change": moved,
                "compile_warnings": notes[impl],
            }
        )
    for r in list(runners.values()):
        if r is not ceiling:
            r.carry = None
    return rows, times["ceiling"]


def finish_rows(rows: list[dict], ceiling_s: float, n: int) -> None:
    """Add bandwidth, % of the ceiling and gradlab/Optax ratios to the rows of one case."""
    ceiling_gbps = CEILING_BYTES_PER_PARAM * n / ceiling_s / 1e9
    by_key = {(r["opt"], r["impl"]): r for r in rows}
    for r in rows:
        r["gbps"] = r["bytes_per_step"] / (r["step_ms"] * 1e-3) / 1e9
        r["pct_ceiling"] = 100 * r["gbps"] / ceiling_gbps
        r["ceiling_gbps"] = ceiling_gbps
        base = by_key.get((r["opt"], "optax"))
        if base is not None and r["impl"] != "optax":
            r["step_ratio"] = r["step_ms"] / base["step_ms"]
            r["loop_ratio"] = r["loop_ms"] / base["loop_ms"]
            r["compile_ratio"] = r["compile_s"] / base["compile_s"]


def run_case(case: Case, opts: list[Opt], impls: list[str], cfg: Config) -> tuple[list[dict], dict]:
    params0 = materialize(case.spec, 0, PARAM_SCALE)
    grads = materialize(case.spec, 1)
    ceiling = ceiling_runner(case.n_params)
    ceiling.step()  # compile + warm-up
    rows, ceiling_times = [], []
    for i, opt in enumerate(opts):
        new_rows, ct = run_opt(case, opt, impls, params0, grads, ceiling, cfg, start=i)
        rows += new_rows
        ceiling_times += ct
        gc.collect()
    ceiling_s = statistics.median(ceiling_times)
    finish_rows(rows, ceiling_s, case.n_params)
    info = {
        "case": case.name,
        "n_params": case.n_params,
        "n_leaves": case.n_leaves,
        "dtype": case.dtype_name,
        "description": case.description,
        "ceiling_ms": 1e3 * ceiling_s,
        "ceiling_gbps": CEILING_BYTES_PER_PARAM * case.n_params / ceiling_s / 1e9,
    }
    del params0, grads, ceiling
    gc.collect()
    return rows, info


# ------------------------------------------------------------------------ report


def machine_info() -> dict:
    cpu, mem = "unknown", None
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    try:
        kib = next(
            line
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        mem = round(int(kib.split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": mem,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "gradlab": gl.__version__,
        "commit": commit,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


COLUMNS = (
    ("opt", "<9", lambda r: r["opt"]),
    ("impl", "<15", lambda r: r["impl"]),
    ("step ms", ">9", lambda r: f"{r['step_ms']:.3f}"),
    ("iqr%", ">5", lambda r: f"{r['iqr_pct']:.0f}"),
    ("GB/s", ">6", lambda r: f"{r['gbps']:.1f}"),
    ("%ceil", ">6", lambda r: f"{r['pct_ceiling']:.0f}%"),
    ("compile s", ">9", lambda r: f"{r['compile_s']:.2f}"),
    ("step x", ">6", lambda r: f"{r['step_ratio']:.2f}" if "step_ratio" in r else ""),
    ("loop ms", ">8", lambda r: f"{r['loop_ms']:.3f}"),
    ("loop x", ">6", lambda r: f"{r['loop_ratio']:.2f}" if "loop_ratio" in r else ""),
    ("compile x", ">9", lambda r: f"{r['compile_ratio']:.2f}" if "compile_ratio" in r else ""),
    ("max|diff|", ">10", lambda r: "" if r["impl"] == r["reference"] else _diff(r)),
)


def _diff(r: dict) -> str:
    return f"{r['max_abs_diff']:.1e}" + ("" if r["check_ok"] else " FAIL")


def header() -> str:
    return "  ".join(f"{name:{fmt}}" for name, fmt, _ in COLUMNS)


def format_case(info: dict, rows: list[dict]) -> str:
    title = (
        f"{info['case']}: {info['n_params']:,} params in {info['n_leaves']} {'leaf' if info['n_leaves'] == 1 else 'leaves'}; "
        f"ceiling (fused f32 Adam, {info['n_params']:,}) {info['ceiling_ms']:.3f} ms = {info['ceiling_gbps']:.1f} GB/s"
    )
    lines = [title]
    previous = None
    for r in rows:
        cells = [f"{get(r):{fmt}}" for _, fmt, get in COLUMNS]
        if r["opt"] == previous:
            cells[0] = " " * len(cells[0])
        previous = r["opt"]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def summary(rows: list[dict]) -> list[str]:
    lines = []
    for impl in IMPLS[:-1]:
        mine = [r for r in rows if r["impl"] == impl and "step_ratio" in r]
        if not mine:
            continue
        step = math.exp(statistics.fmean(math.log(r["step_ratio"]) for r in mine))
        loop = math.exp(statistics.fmean(math.log(r["loop_ratio"]) for r in mine))
        comp = math.exp(statistics.fmean(math.log(r["compile_ratio"]) for r in mine))
        slow = max(mine, key=lambda r: r["step_ratio"])
        slow_loop = max(mine, key=lambda r: r["loop_ratio"])
        lines.append(
            f"{impl}/optax geometric mean over {len(mine)} rows: step {step:.2f}, in-loop {loop:.2f}, "
            f"compile {comp:.2f}; worst step ratio {slow['step_ratio']:.2f} ({slow['case']} "
            f"{slow['opt']}), worst in-loop ratio {slow_loop['loop_ratio']:.2f} "
            f"({slow_loop['case']} {slow_loop['opt']})"
        )
    return lines


# --------------------------------------------------------------------------- main


def _select(items, names: str | None, keys: Callable[[Any], tuple[str, ...]], what: str):
    if not names:
        return items
    patterns = [p.strip() for p in names.split(",") if p.strip()]
    chosen = [x for x in items if any(fnmatch.fnmatchcase(k, p) for p in patterns for k in keys(x))]
    if not chosen:
        raise SystemExit(f"--{what} {names!r} matches nothing")
    return chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="< 3 min: fewer repetitions, one cold compile, sgd/adam/chain, every tree kind at 1/4 size (1M flat kept)",
    )
    parser.add_argument(
        "--cases",
        help="comma-separated case names, kinds or dtypes (globs allowed): e.g. flat1m-f32, transformer, bf16, 'flat*'",
    )
    parser.add_argument(
        "--opts",
        help="comma-separated: sgd, momentum, adam, adamw, chain, or all (default: all; --quick: sgd,adam,chain)",
    )
    parser.add_argument(
        "--impls",
        help="comma-separated subset of gradlab, gradlab+packed, optax (default: all available)",
    )
    parser.add_argument("--rounds", type=int, help="override the number of interleaved rounds")
    parser.add_argument(
        "--small-leaves",
        type=int,
        help="override the leaf count of the 'small' tree (the suite's smoke run)",
    )
    parser.add_argument(
        "--compile-reps", type=int, help="override the number of cold compiles per implementation"
    )
    parser.add_argument(
        "--no-training",
        action="store_true",
        help="skip the last table: a full training step of two small models (benchmarks/training.py)",
    )
    parser.add_argument("--json", metavar="PATH", help="write machine info and all rows to PATH")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.rounds:
        cfg = dataclasses.replace(cfg, rounds=args.rounds)
    if args.compile_reps:
        cfg = dataclasses.replace(cfg, compile_reps=args.compile_reps)
    if args.small_leaves is not None:
        if args.small_leaves < 1:
            raise SystemExit(f"--small-leaves must be at least 1, got {args.small_leaves}")
        cfg = dataclasses.replace(
            cfg, sizes=dataclasses.replace(cfg.sizes, small_leaves=args.small_leaves)
        )
    schedule, schedule_name = gradlab_schedule()
    available = [i for i in IMPLS if i != "gradlab+packed" or hasattr(gl, "packed")]
    impls = _select(available, args.impls, lambda i: (i,), "impls")
    cases = _select(
        all_cases(cfg.sizes),
        args.cases,
        lambda c: (c.name, c.kind, f"{c.kind}-{c.name.split('-')[1]}", *c.name.split("-")),
        "cases",
    )
    wanted = args.opts or ",".join(cfg.opts)
    wanted = ",".join(ALL_OPTS) if wanted == "all" else wanted
    opts = _select(all_opts(schedule), wanted, lambda o: (o.name,), "opts")

    machine = machine_info()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['memory_gib']} GiB; backend {machine['backend']} ({machine['device']}); "
        f"load average {machine['loadavg_start']}"
    )
    print(
        f"versions: python {machine['python']}, jax {machine['jax']}, jaxlib {machine['jaxlib']}, "
        f"optax {machine['optax']}, gradlab {machine['gradlab']} ({machine['commit']})"
    )
    print(
        f"mode: {cfg.name}: {cfg.rounds} interleaved rounds of ~{1e3 * cfg.round_seconds:.0f} ms "
        f"({cfg.min_steps}-{cfg.max_steps} steps) per implementation, best of {cfg.compile_reps} "
        f"cold compile(s), params compared after {cfg.check_steps} steps"
    )
    print(f"gradlab schedule for 'chain': {schedule_name}")
    if "gradlab+packed" not in available:
        print("gl.packed not available: no gradlab+packed rows")
    if args.quick:
        print(
            "quick: flat16m -> flat4m, transformer 48 -> 12 layers, "
            f"small1000 -> small{cfg.sizes.small_leaves}; "
            "default opts sgd, adam, chain (--opts all for every one)"
        )
    print()
    print(header())

    all_rows, infos, started = [], [], time.perf_counter()
    warm_up(opts, impls)
    for case in cases:
        rows, info = run_case(case, opts, impls, cfg)
        all_rows += rows
        infos.append(info)
        print(format_case(info, rows), flush=True)

    training_rows = []
    if not args.no_training:
        import training  # benchmarks/training.py, next to this file

        print()
        print(
            f"full training step (dispatched; in-loop = lax.scan over {training.LOOP} batches, "
            "per step; grad-only = forward+backward without the optimizer, in-loop):"
        )
        training_rows = training.run(quick=args.quick)
        print(training.format_rows(training_rows), flush=True)

    elapsed = time.perf_counter() - started
    print()
    for line in summary(all_rows):
        print(line)
    failed = [r for r in all_rows if not r["check_ok"]]
    for r in failed:
        print(
            f"NUMERICAL MISMATCH: {r['case']} {r['opt']} {r['impl']} vs {r['reference']}: max|diff| {r['max_abs_diff']:.3e}"
        )
    warned = {w for r in all_rows for w in r["compile_warnings"]}
    for w in sorted(warned):
        print(f"compile warning: {w}")
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"done in {elapsed:.0f} s; load average at end {machine['loadavg_end']}")

    if args.json:
        payload = {
            "machine": machine,
            "mode": cfg.name,
            "config": dataclasses.asdict(cfg),
            "schedule": schedule_name,
            "impls": impls,
            "cases": infos,
            "rows": all_rows,
            "training_rows": training_rows,
            "elapsed_s": elapsed,
        }
        Path(args.json).write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
