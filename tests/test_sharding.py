"""Sharded params stay sharded: optimizer state follows each param's sharding.

Runs in a subprocess with 8 host devices (the device count is fixed when JAX
starts, so it cannot be changed inside this test process). On 1-D and 2-D
meshes, with fully sharded, partially sharded and replicated leaves, every
params-shaped state leaf must have its param's sharding -- after eager
``init``, after ``jax.jit(init)`` (Optax's jitted init puts every moment on
ONE device: the out-of-memory trap of large models, its issue #548), and
through ``gl.state_shardings`` + ``jax.jit(init, out_shardings=...)`` -- and
sharded training must give Optax's numbers on unsharded params.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import gradlab as gl

    assert jax.device_count() == 8, jax.devices()

    def not_bias(p):
        return {k: k != "b" for k in p}

    OPTIMIZERS = {  # name: (gradlab, optax twin)
        "sgd_momentum": (lambda: gl.sgd(0.1, momentum=0.9), lambda: optax.sgd(0.1, momentum=0.9)),
        "adam": (lambda: gl.adam(0.05), lambda: optax.adam(0.05)),
        "adamw": (lambda: gl.adamw(0.05, weight_decay=0.1, mask=not_bias),
                  lambda: optax.adamw(0.05, weight_decay=0.1, mask=not_bias)),
        "rmsprop": (lambda: gl.rmsprop(0.01, centered=True, momentum=0.9),
                    lambda: optax.rmsprop(0.01, centered=True, momentum=0.9, eps_in_sqrt=False)),
        "adagrad": (lambda: gl.adagrad(0.1, eps=1e-7), lambda: optax.adagrad(0.1, eps=1e-7)),
        "chain": (lambda: gl.chain(gl.clip_by_global_norm(1.0), gl.adamw(0.05)),
                  lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(0.05))),
        "packed_adamw": (lambda: gl.packed(gl.adamw(0.05, weight_decay=0.1, mask=not_bias)),
                         lambda: optax.adamw(0.05, weight_decay=0.1, mask=not_bias)),
    }

    def meshes():
        devs = np.array(jax.devices())
        one = Mesh(devs, ("x",))
        two = Mesh(devs.reshape(4, 2), ("x", "y"))
        yield "1-D", one, {"w": P("x", None), "e": P(None, "x"), "b": P(), "s": P()}
        yield "2-D", two, {"w": P("x", "y"), "e": P(None, "y"), "b": P(), "s": P()}

    def param_values():
        rng = np.random.default_rng(0)
        return {"w": rng.normal(size=(16, 8)).astype(np.float32),
                "e": rng.normal(size=(4, 8)).astype(np.float32),
                "b": rng.normal(size=(8,)).astype(np.float32),
                "s": np.float32(0.5)}

    def grads_at(p, k):
        return jax.tree.map(lambda x: jnp.sin(x * (k + 1.0)) + 0.1, p)

    def check_state(name, how, state, params):
        # A params-shaped state leaf is reached by a key path ending in a param
        # name; packed buffers and counters must be replicated.
        flat = jax.tree_util.tree_flatten_with_path(state)[0]
        seen = set()
        # packed: the i-th loose leaf of a Packed tree belongs to the i-th loose param
        loose = [k for k in sorted(params) if getattr(state, "offsets", {}).get(k, 0) is None]
        for path, leaf in flat:
            if getattr(path[0], "name", None) == "offsets":  # int32 scalars, data not state
                continue
            keys = [getattr(k, "key", None) for k in path]
            if any(getattr(k, "name", None) == "loose" for k in path):
                keys.append(loose[path[-1].idx])
            key = next((k for k in reversed(keys) if k in params), None)
            if key is not None and leaf.shape == params[key].shape:
                p = params[key]
                ok = leaf.sharding.is_equivalent_to(p.sharding, p.ndim)
                assert ok, (name, how, jax.tree_util.keystr(path), leaf.sharding, p.sharding)
                seen.add(key)
            else:  # counters, packed buffers, keys: replicated over the mesh
                assert leaf.sharding.is_fully_replicated, (name, how, path, leaf.sharding)
        return seen

    for mesh_name, mesh, specs in meshes():
        shardings = {k: NamedSharding(mesh, s) for k, s in specs.items()}
        params = {k: jax.device_put(v, shardings[k]) for k, v in param_values().items()}
        for name, (make, make_optax) in OPTIMIZERS.items():
            tx = make()
            from_shardings = jax.jit(tx.init, out_shardings=gl.state_shardings(tx, params))
            for how, state in [
                ("eager init", tx.init(params)),
                ("jit init", jax.jit(tx.init)(params)),
                ("state_shardings", from_shardings(params)),
            ]:
                seen = check_state(name, how, state, params)
                if name != "sgd_momentum" and not name.startswith("packed"):
                    assert {"w", "e", "b", "s"} <= seen, (name, how, seen)
            if name.startswith("packed"):
                # partitioned leaves stay loose, replicated small ones are packed
                offsets = tx.init(params).offsets
                assert offsets["w"] is None and offsets["e"] is None, offsets
                assert offsets["b"] is not None and offsets["s"] is not None, offsets
            # sharded training == Optax on unsharded params
            @jax.jit
            def train(p, s):
                for k in range(3):
                    u, s = tx.update(grads_at(p, k), s, p)
                    p = gl.apply_updates(p, u)
                return p, s

            new_params, new_state = train(params, tx.init(params))
            check_state(name, "after update", new_state, params)
            for k in ("w", "e"):
                assert new_params[k].sharding.is_equivalent_to(params[k].sharding, 2), (name, k)
            ref_tx = make_optax()
            with jax.numpy_dtype_promotion("standard"):
                p, s = param_values(), ref_tx.init(param_values())
                for k in range(3):
                    u, s = ref_tx.update(grads_at(p, k), s, p)
                    p = optax.apply_updates(p, u)
            for k in p:
                np.testing.assert_allclose(new_params[k], p[k], rtol=1e-5, atol=1e-6,
                                           err_msg=f"{mesh_name} {name} {k}")
    # For the record: Optax's jitted init gathers the moments on one device.
    optax_state = jax.jit(optax.adam(0.1).init)(params)
    print("optax jit(init) mu['w']:", optax_state[0].mu["w"].sharding)
    print("OK")
    """
)


def test_state_follows_param_sharding_on_eight_devices_eager_jitted_and_from_shardings():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), (
        out.stdout[-2000:] + out.stderr[-3000:]
    )
