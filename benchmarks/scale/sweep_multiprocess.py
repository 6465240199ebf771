"""One sharded sweep run by two processes (``jax.distributed``), checked against one process.

    python benchmarks/scale/sweep_multiprocess.py            # launch 2 processes, compare

Multi-host JAX on one machine: two Python processes, each with 4 simulated
CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``), join
through ``jax.distributed.initialize`` (the coordinator listens on
127.0.0.1 only) and see 8 global devices. Cross-process collectives on CPU go
through gloo (``jax_cpu_collectives_implementation="gloo"``; it reaches its
peers at this host's name, which resolves to the loopback address here). Each
process calls ``gl.sweep(..., mesh=mesh)`` with the same arguments, over a
mesh of all 8 devices: 12 configurations are padded to 16, each device trains
2 of them, and every process gets the whole result.

The launcher then checks that both processes got the same result, bit for
bit, and that it equals the same sweep run in this one process without a mesh
-- as one program, and as programs of two configurations (each device's
share) -- to 1e-6 of each array's scale: the per-device program XLA compiles
from the sharded one may fuse differently, and float32 rounding differs by an
ulp here and there (two chunkings of the unsharded sweep differ as much). It
stops by itself: each worker gives up after ``--timeout`` seconds
(``jax.distributed``'s own timeouts), and the launcher kills both when that
time has passed.

The same code runs on real hosts: start one process per host with the
coordinator's address, ``num_processes`` and its ``process_id``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 4
CONFIGS_PER_DEVICE = 2  # 12 configurations padded to 16 over 8 devices


def problem() -> dict:
    """The sweep's arguments: a 8-16-3 MLP classifying a synthetic dataset,
    AdamW over 4 learning rates x 3 first-moment decays (12 configurations)."""
    import jax
    import jax.numpy as jnp

    import gradlab as gl

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 32, 8)).astype(np.float32)  # 4 mini-batches of 32, cycled
    y = np.argmax(x @ rng.normal(size=(8, 3)), axis=-1).astype(np.int32)

    def init(key):
        k1, k2 = jax.random.split(key)
        return {
            "w1": jax.random.normal(k1, (8, 16)) * 0.5,
            "b1": jnp.zeros(16),
            "w2": jax.random.normal(k2, (16, 3)) * 0.25,
            "b2": jnp.zeros(3),
        }

    def loss_fn(p, batch):
        xb, yb = batch
        logits = jax.nn.relu(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        return jnp.mean(gl.losses.softmax_cross_entropy_with_integer_labels(logits, yb))

    return dict(
        make_optimizer=lambda learning_rate, b1: gl.adamw(learning_rate, b1=b1),
        loss_fn=loss_fn,
        params=init,
        batches=(x, y),
        grid={"learning_rate": [0.003, 0.01, 0.03, 0.1], "b1": [0.8, 0.9, 0.95]},
        num_steps=30,
        eval_fn=lambda p: {"w_norm": jnp.sqrt(jnp.sum(p["w1"] ** 2))},
        eval_every=10,
    )


def arrays(result) -> dict[str, np.ndarray]:
    """What is compared: the loss history, the final params, the evaluations."""
    import jax

    out = {"losses": result.losses, "diverged_at": result.diverged_at}
    for path, leaf in jax.tree_util.tree_flatten_with_path(result.params)[0]:
        out["params" + jax.tree_util.keystr(path)] = np.asarray(leaf)
    out.update({f"evals[{k}]": v for k, v in result.evals.items()})
    return out


# ----------------------------------------------------------------------------- a worker


def worker(process_id: int, port: int, out_dir: Path, timeout: int) -> None:
    """One of the processes: join, run the sharded sweep, save what it got."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=NUM_PROCESSES,
        process_id=process_id,
        initialization_timeout=timeout,
        heartbeat_timeout_seconds=timeout,
        shutdown_timeout_seconds=timeout,
    )
    import gradlab as gl

    assert jax.process_count() == NUM_PROCESSES, jax.process_count()
    assert jax.device_count() == NUM_PROCESSES * DEVICES_PER_PROCESS, jax.devices()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("configs",))
    result = gl.sweep(**problem(), mesh=mesh)
    np.savez(out_dir / f"process{process_id}.npz", **arrays(result))
    print(
        f"process {process_id}: {jax.local_device_count()} of {jax.device_count()} devices, "
        f"{len(result.configs)} configurations, wall {result.wall_time:.2f} s",
        flush=True,
    )
    jax.distributed.shutdown()


# ----------------------------------------------------------------------------- the launcher


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out_dir: Path, timeout: int = 120) -> list[dict[str, np.ndarray]]:
    """Start the processes, wait for both (at most ``timeout`` s, then kill
    them), and return what each one saved."""
    out_dir = Path(out_dir)
    port = free_port()
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    with contextlib.ExitStack() as stack:
        # Logs in files, not pipes: an unread pipe fills up and blocks its writer.
        logs = [
            stack.enter_context(open(out_dir / f"process{i}.log", "w+"))
            for i in range(NUM_PROCESSES)
        ]
        procs = []
        for i, log in enumerate(logs):
            cmd = [sys.executable, __file__, "--worker", str(i), "--port", str(port)]
            cmd += ["--out", str(out_dir), "--timeout", str(timeout)]
            # A session of its own: on timeout its whole process group is killed.
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))  # fmt: skip
        deadline = time.monotonic() + timeout
        try:
            for p in procs:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"no result after {timeout} s:\n{_tails(logs)}") from None
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        failed = [i for i, p in enumerate(procs) if p.returncode != 0]
        if failed:
            raise RuntimeError(f"process(es) {failed} failed:\n{_tails(logs)}")
    return [dict(np.load(out_dir / f"process{i}.npz")) for i in range(NUM_PROCESSES)]


def _tails(logs) -> str:
    parts = []
    for i, log in enumerate(logs):
        log.seek(0)
        parts.append(f"--- process {i}\n" + log.read()[-3000:])
    return "\n".join(parts)


def single_process(chunk_size: int | None) -> dict[str, np.ndarray]:
    """The same sweep in this process, on its devices, without a mesh."""
    import gradlab as gl

    return arrays(gl.sweep(**problem(), chunk_size=chunk_size))


def compare(got: dict, want: dict, rtol: float = 1e-6) -> list[str]:
    """The names whose arrays differ by more than ``rtol`` of the array's
    largest magnitude (0: bit for bit; NaN where NaN)."""
    bad = []
    for k, w in want.items():
        g = got.get(k)
        if g is None or g.shape != w.shape or not np.array_equal(np.isnan(g), np.isnan(w)):
            bad.append(k)
            continue
        finite = ~np.isnan(w)
        scale = np.max(np.abs(w[finite]), initial=0.0)
        if np.max(np.abs(g[finite] - w[finite]), initial=0.0) > rtol * scale:
            bad.append(k)
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=int, default=120, help="seconds before giving up")
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.port, args.out, args.timeout)
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        results = launch(Path(tmp), args.timeout)
        print(f"2 processes x {DEVICES_PER_PROCESS} devices: {time.perf_counter() - t0:.1f} s")
        for i in range(NUM_PROCESSES):
            print((Path(tmp) / f"process{i}.log").read_text().strip())
    failed = compare(results[1], results[0], rtol=0.0)
    print("process 1 vs process 0: " + ("identical" if not failed else f"DIFFERENT: {failed}"))
    for chunk, what in [(None, "one program"), (CONFIGS_PER_DEVICE, "2 configs per program")]:
        bad = compare(results[0], single_process(chunk_size=chunk))
        print(f"2 processes vs 1 process ({what}): "
              + ("equal to 1e-6" if not bad else f"DIFFERENT: {bad}"))  # fmt: skip
        failed += bad
    if failed:
        sys.exit(1)
    best = int(np.nanargmin(results[0]["losses"][:, -1]))
    print(f"best configuration: #{best}, final loss {results[0]['losses'][best, -1]:.4f}")


if __name__ == "__main__":
    main()
