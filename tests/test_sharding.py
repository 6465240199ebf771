"""Sharded params stay sharded: optimizer state follows each param's sharding.

Runs in a subprocess with two host devices (the device count is fixed when JAX
starts, so it cannot be changed inside this test process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import gradlab as gl

    assert jax.device_count() == 2, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("x",))
    row = NamedSharding(mesh, P("x", None))
    params = {
        "w": jax.device_put(jnp.arange(24.0).reshape(8, 3) / 10, row),
        "b": jax.device_put(jnp.ones((8,)), NamedSharding(mesh, P("x"))),
        "s": jnp.ones(()),
    }
    grads = jax.tree.map(lambda p: 0.1 * p + 0.01, params)
    for name, tx in {
        "adam": gl.adam(0.1),
        "packed adamw": gl.packed(gl.adamw(0.1, weight_decay=0.1)),
        "clip+rmsprop": gl.chain(gl.clip_by_global_norm(1.0), gl.rmsprop(0.1, momentum=0.9)),
        "sgd momentum": gl.sgd(0.1, momentum=0.9),
    }.items():
        state = tx.init(params)
        # every state leaf shaped like a param lives with that param's sharding
        for leaf in jax.tree.leaves(state):
            for key, p in params.items():
                if leaf.shape == p.shape and leaf.ndim > 0:
                    assert leaf.sharding.is_equivalent_to(p.sharding, leaf.ndim), (name, key)

        @jax.jit
        def step(p, s, g):
            u, s = tx.update(g, s, p)
            return gl.apply_updates(p, u), s

        new_params, new_state = step(params, state, grads)
        for key in ("w", "b"):  # the sharded ones ("s" lives on one device)
            p = params[key]
            assert new_params[key].sharding.is_equivalent_to(p.sharding, p.ndim), (name, key)
        for leaf in jax.tree.leaves(new_state):
            if leaf.ndim > 0:
                assert len(leaf.sharding.device_set) == 2 or leaf.shape == (), (name, leaf.shape)
        # same numbers as the unsharded computation
        plain = jax.tree.map(np.asarray, params)
        ref_params, _ = jax.jit(lambda p, s, g: step(p, s, g))(plain, tx.init(plain), grads)
        for key in params:
            np.testing.assert_allclose(new_params[key], ref_params[key], rtol=1e-6, atol=1e-7)
    print("OK")
    """
)


def test_state_follows_param_sharding_on_two_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-3000:]
