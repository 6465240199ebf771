"""Sharding checks on 8 simulated CPU devices; run by tests/test_sharding.py.

The device count is fixed when JAX starts, so these checks run in a
subprocess started with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
(``python tests/scale_checks.py``). Each section collects its failures instead
of stopping at the first; the last line printed is one JSON object
``{section: [failure, ...], "record": {...}}`` that the tests read.

To stay fast, every transformation of a table runs inside ONE bundle (a
transformation whose state is the dict of all their states): one compiled
``init`` and one compiled step per mesh, not one per transformation.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks", "scale"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import gradlab as gl  # noqa: E402
from gradlab import _tree  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")  # as tests/conftest.py

import cases  # noqa: E402
import cases_modern  # noqa: E402
from test_packing import PUBLIC_TRANSFORMS  # noqa: E402

FAILURES: dict[str, list[str]] = {}
RECORD: dict[str, object] = {}


def fail(section: str, message: str) -> None:
    FAILURES.setdefault(section, []).append(message)


def section(name: str) -> None:
    FAILURES.setdefault(name, [])


# ----------------------------------------------------------------------------- the params

SHAPES = {"b": (8,), "k": (2, 4, 8), "s": (), "w": (16, 8)}  # distinct sizes within a leaf
CLASSIC_KEYS = ("b", "s", "w")  # tests/cases.py's masks name these three
ALL_KEYS = tuple(sorted(SHAPES))


def meshes():
    """(name, mesh, specs): fully sharded (w), sharded along one axis of the
    leaf (k: the whole mesh on 1-D, one mesh axis on 2-D = partially sharded),
    and replicated leaves (b on 1-D, s). The 1-D mesh has an explicit axis
    (``jax.make_mesh``'s default: the sharding is part of each array's type,
    and JAX refuses what the auto mode leaves to XLA, e.g. ``x[0]`` along a
    split axis); the 2-D mesh is in JAX's auto mode."""
    devices = np.array(jax.devices())
    yield (
        "1-D",
        Mesh(devices, ("x",), axis_types=(AxisType.Explicit,)),
        {"b": P(), "k": P(None, None, "x"), "s": P(), "w": P("x")},  # short: gradlab pads them
    )
    yield (
        "2-D",
        Mesh(devices.reshape(4, 2), ("x", "y")),
        {"b": P("x"), "k": P(None, None, "y"), "s": P(), "w": P("x", "y")},
    )


def param_values() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    # >= 0: keep_params_nonnegative is in the table (as in tests/test_packing.py)
    return {k: np.abs(rng.normal(size=s)).astype(np.float32) + 0.1 for k, s in SHAPES.items()}


def grads_at(params, step):
    """sin(p (k+1) + 0.3): at step 0 the gradient of the line searches' objective
    in tests/test_packing.py, so their directions descend."""
    return jax.tree.map(lambda p: jnp.sin(p * (step + 1.0) + 0.3).astype(p.dtype), params)


# ----------------------------------------------------------------------------- the table


def transformations() -> dict[str, tuple]:
    """name -> (make, param keys): every public transformation (test_packing's
    table, combinators included), every optimizer configuration of the two
    optimizer tables, and a few wrappers around optimizers with odd state."""
    table = {name: (make, ALL_KEYS) for name, make in PUBLIC_TRANSFORMS.items()}
    for case in cases.OPTIMIZER_CASES:
        table[f"cases/{case.name}"] = (lambda c=case: c.make(c.lr), CLASSIC_KEYS)
    for case in cases_modern.CASES:
        table[f"modern/{case.name}"] = (lambda c=case: c.make(c.lr), ALL_KEYS)
    table["MultiSteps"] = (lambda: gl.MultiSteps(gl.adam(0.01), 2), ALL_KEYS)
    table["packed(adafactor)"] = (
        lambda: gl.packed(gl.adafactor(0.01, min_dim_size_to_factor=2, momentum=0.9)),
        ALL_KEYS,
    )
    table["packed(sm3)"] = (lambda: gl.packed(gl.sm3(0.05)), ALL_KEYS)
    table["inject(adafactor)"] = (
        lambda: gl.inject_hyperparams(gl.adafactor, static_args="min_dim_size_to_factor")(
            0.01, min_dim_size_to_factor=2
        ),
        ALL_KEYS,
    )
    return table


def pick(tree, keys):
    return {k: tree[k] for k in keys}


def bundle(table):
    """One transformation running every member on its own params: its params,
    gradients and updates are ``{name: member's tree}``, its state
    ``{name: member's state}``."""
    members = {name: (make(), keys) for name, (make, keys) in table.items()}

    def init(params):
        return {name: tx.init(params[name]) for name, (tx, _) in members.items()}

    def update(grads, states, params):
        out = {
            name: tx.update(grads[name], states[name], params[name])
            for name, (tx, _) in members.items()
        }
        return {n: u for n, (u, _) in out.items()}, {n: s for n, (_, s) in out.items()}

    return gl.GradientTransformation(init, update), members


def per_member(params, members):
    return {name: pick(params, keys) for name, (_, keys) in members.items()}


# ----------------------------------------------------------------------------- expected shardings


def derived_spec(leaf_shape, param_shape, spec):
    """The spec a state leaf derived from a param should have, or None if the
    leaf is not derived from it (then it must be replicated):

    * the param's shape, maybe after leading axes (L-BFGS's memory): the
      param's spec, the leading axes replicated;
    * the param's shape with some axes dropped (Adafactor's row/column
      statistics, SM3's accumulators, per-leaf scalars): the param's spec
      along the kept axes (sizes are distinct within a test leaf, so the kept
      axes are found from the sizes).
    """
    spec = tuple(spec) + (None,) * (len(param_shape) - len(spec))
    n, m = len(leaf_shape), len(param_shape)
    if n >= m and tuple(leaf_shape[n - m :]) == tuple(param_shape):
        return (None,) * (n - m) + spec
    axes = []
    for size in leaf_shape:
        found = [i for i, s in enumerate(param_shape) if s == size and i not in axes]
        if len(found) != 1:
            return None
        axes.append(found[0])
    if axes != sorted(axes):
        return None
    return tuple(spec[i] for i in axes)


def owner(name, path, states, keys):
    """The param key a state leaf at ``path`` (inside ``states[name]``) belongs to."""
    names = [getattr(k, "name", None) for k in path]
    if "loose" in names:  # packed: the i-th loose leaf is the i-th unpacked param
        offsets = states[name].offsets
        loose = [k for k in sorted(keys) if offsets[k] is None]
        return loose[path[names.index("loose") + 1].idx]
    dict_keys = [getattr(k, "key", None) for k in path]
    return next((k for k in reversed(dict_keys) if k in keys), None)


def check_state(where, states, members, params, shardings, mesh, *, jitted):
    n_devices = mesh.devices.size
    for name, (_, keys) in members.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(states[name])[0]:
            label = f"{where}: {name}{jax.tree_util.keystr(path)} {leaf.shape}"
            # Nothing on one device, eagerly too: a scalar left uncommitted on
            # device 0 is committed there by a checkpoint restore
            # (load_state(like=tx.init(params))), and the jitted step then
            # refuses it ("incompatible devices").
            if len(leaf.sharding.device_set) != n_devices:
                fail("state", f"{label}: on {len(leaf.sharding.device_set)} device(s)")
            if getattr(path[0], "name", None) == "offsets":
                continue  # packed offsets: int32 scalars, the layout, not optimizer state
            key = owner(name, path, states, keys)
            spec = None
            if key is not None:
                spec = derived_spec(leaf.shape, params[key].shape, shardings[key].spec)
            if spec is not None:
                want = NamedSharding(mesh, P(*spec))
                if not leaf.sharding.is_equivalent_to(want, leaf.ndim):
                    fail("state", f"{label}: {leaf.sharding} but its param {key} is {want.spec}")
            elif not leaf.sharding.is_fully_replicated:
                fail("state", f"{label}: {leaf.sharding}, expected replicated")


def check_updates(where, updates, members, params):
    for name, (_, keys) in members.items():
        for key in keys:
            u, p = updates[name][key], params[key]
            if not u.sharding.is_equivalent_to(p.sharding, p.ndim):
                fail("updates", f"{where}: {name} update[{key}] {u.sharding} vs param {p.sharding}")


# ----------------------------------------------------------------------------- sections


def used_inputs(closed) -> list[bool]:
    """Which inputs of a jaxpr its outputs depend on (what ``jax.jit`` keeps)."""
    from jax.extend.core import Literal

    jaxpr = closed.jaxpr
    needed = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
    for eqn in reversed(jaxpr.eqns):
        if any(o in needed for o in eqn.outvars):
            needed |= {v for v in eqn.invars if not isinstance(v, Literal)}
    return [v in needed for v in jaxpr.invars]


def check_jit_init_keeps_the_params(table, params):
    """Each transformation's ``init`` reads its params (cheap: a trace each).

    The bundle hides this: when NO state leaf depends on the params (sgd's
    counter alone), ``jax.jit(init)`` drops them and compiles for one device,
    and the committed counter then clashes with sharded params in the step.
    """
    for name, (make, keys) in table.items():
        tx, mine = make(), pick(params, keys)
        closed = jax.make_jaxpr(tx.init)(mine)
        if jax.tree.leaves(closed.out_avals) and not any(used_inputs(closed)):
            fail("state", f"{name}: init ignores the params, so jax.jit(init) runs on one device")
    for name, tx in [("sgd", gl.sgd(0.1)), ("zero_nans", gl.zero_nans())]:  # the direct way
        for path, leaf in jax.tree_util.tree_flatten_with_path(jax.jit(tx.init)(params))[0]:
            if len(leaf.sharding.device_set) != jax.device_count():
                fail("state", f"jit({name}.init){jax.tree_util.keystr(path)}: {leaf.sharding}")


def check_every_transformation():
    """State and updates follow the params' shardings; sharded == unsharded training.

    State after ``init`` (eager, jitted, from ``gl.state_shardings``) is checked
    for every entry of the three tables; the jitted training steps (updates,
    state after them, the numbers) for every public transformation and the
    wrappers -- the optimizer tables' configurations add numbers, not code
    paths, and compiling their steps on two meshes would double the run time.
    """
    for name in ("state", "updates", "training", "packed"):
        section(name)
    table = transformations()
    trained = {n: v for n, v in table.items() if not n.startswith(("cases/", "modern/"))}
    RECORD["transformations"] = len(table)
    RECORD["trained"] = len(trained)
    values = param_values()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. deprecation notes of a case
        tx, members = bundle(table)
        train_tx, train_members = bundle(trained)
        t0 = time.perf_counter()
        unsharded = per_member({k: jnp.asarray(v) for k, v in values.items()}, train_members)
        reference, _, _ = train(train_tx, unsharded, jax.jit(train_tx.init)(unsharded))
        RECORD["unsharded_seconds"] = round(time.perf_counter() - t0, 1)
        for mesh_name, mesh, specs in meshes():
            t0 = time.perf_counter()
            shardings = {k: NamedSharding(mesh, s) for k, s in specs.items()}
            params = {k: jax.device_put(v, shardings[k]) for k, v in values.items()}
            mine = per_member(params, members)
            from_shardings = jax.jit(tx.init, out_shardings=gl.state_shardings(tx, mine))
            if mesh_name == "2-D":  # a trace per transformation: once is enough
                check_jit_init_keeps_the_params(table, params)
            eager, jitted = tx.init(mine), jax.jit(tx.init)(mine)
            for how, state, under_jit in [
                ("eager init", eager, False),
                ("jit init", jitted, True),
                ("state_shardings", from_shardings(mine), True),
            ]:
                check_state(
                    f"{mesh_name} {how}", state, members, params, shardings, mesh, jitted=under_jit
                )
            # The step's params with their specs written to each leaf's rank, as
            # JAX writes an explicit mesh's outputs (P("x") in, P("x", None)
            # out: another jit cache entry, a second compile of the step); the
            # jitted init's state (the same configurations) is committed to the
            # mesh like the step's outputs. So the step compiles once.
            full = {k: NamedSharding(mesh, P(*_tree.padded_spec(s, np.ndim(values[k]))))
                    for k, s in specs.items()}  # fmt: skip
            mine = per_member(jax.device_put(params, full), train_members)
            state = {name: jitted[name] for name in train_members}
            new_params, new_state, updates = train(train_tx, mine, state)
            check_state(
                f"{mesh_name} after update",
                new_state,
                train_members,
                params,
                shardings,
                mesh,
                jitted=True,
            )
            check_updates(f"{mesh_name} update", updates, train_members, params)
            for name, (_, keys) in train_members.items():
                for key in keys:
                    got, want = np.asarray(new_params[name][key]), np.asarray(reference[name][key])
                    # rtol 1e-6 of the leaf's scale: a sharded reduction sums in
                    # another order (per-leaf norms, trust ratios, Newton-Schulz)
                    scale = float(np.max(np.abs(want)))
                    err = float(np.max(np.abs(got - want)))
                    if not err <= 1e-6 * scale:
                        fail(
                            "training",
                            f"{mesh_name} {name}[{key}]: max |diff| {err:.3g} (scale {scale:.3g})",
                        )
            # packed: partitioned leaves stay loose, replicated small ones are packed
            offsets = eager["packed"].offsets
            for key in keys_where(specs, sharded=True):
                if offsets[key] is not None:
                    fail("packed", f"{mesh_name}: partitioned leaf {key} was packed")
            for key in keys_where(specs, sharded=False):
                if offsets[key] is None:
                    fail("packed", f"{mesh_name}: replicated small leaf {key} was left loose")
            RECORD[f"{mesh_name}_seconds"] = round(time.perf_counter() - t0, 1)


STEPS = 3
# The step is ``STEP_SIZE * update``: the raw blocks' directions are O(1) per
# element (a trust ratio rescales each update to its param's norm), and steps
# that large amplify float32 round-off of a reduction summed in another order
# past 1e-6 in three steps; 0.1 is a learning rate such blocks get in use.
STEP_SIZE = 0.1


def train(tx, params, state):
    """``STEPS`` calls of one jitted step: final params, state, last updates.

    (One step compiles in about half the time of a scan over steps; the step's
    outputs have the shardings of its inputs, so it compiles once -- counted
    in ``RECORD["step compiles"]`` and checked.)"""

    @jax.jit
    def step(params, state, k):
        updates, state = tx.update(grads_at(params, k), state, params)
        scaled = jax.tree.map(lambda u: STEP_SIZE * u, updates)
        return gl.apply_updates(params, scaled), state, updates

    for k in range(STEPS):
        params, state, updates = step(params, state, jnp.float32(k))
    RECORD.setdefault("step compiles", []).append(step._cache_size())
    if step._cache_size() != 1:  # a state leaf's sharding (or type) changed in the step
        fail("training", f"the step compiled {step._cache_size()} times, not once")
    return params, state, updates


def keys_where(specs, *, sharded):
    return [k for k, s in specs.items() if any(a is not None for a in s) == sharded]


def check_explicit_and_manual_modes():
    """What users of explicit axes (jax.make_mesh) and of shard_map meet beyond
    the table: set_hyperparams keeps the value's placement (no recompile),
    load_state of an eval_shape'd state inside jax.set_mesh, minimize without
    set_mesh, a gradient laid out against its param named in the error, and
    MultiSteps inside shard_map equal to the jitted step."""
    import os
    import tempfile

    section("modes")
    devices = np.array(jax.devices())
    explicit = Mesh(devices.reshape(4, 2), ("x", "y"), axis_types=(AxisType.Explicit,) * 2)
    auto = Mesh(devices, ("x",))
    values = {"w": np.arange(32, dtype=np.float32).reshape(8, 4) / 32, "s": np.float32(0.5)}

    for name, mesh, spec in [("explicit", explicit, P("x", "y")), ("auto", auto, P("x"))]:
        params = {
            "w": jax.device_put(values["w"], NamedSharding(mesh, spec)),
            "s": jax.device_put(values["s"], NamedSharding(mesh, P())),
        }
        tx = gl.inject_hyperparams(gl.adam)(learning_rate=0.1)
        traces = []

        @jax.jit
        def step(p, st, tx=tx, traces=traces):
            traces.append(1)
            u, st = tx.update(jax.tree.map(jnp.cos, p), st, p)
            return gl.apply_updates(p, u), st

        p, st = step(params, tx.init(params))
        before = st.hyperparams["learning_rate"].sharding
        st = gl.set_hyperparams(st, learning_rate=0.05)
        after = st.hyperparams["learning_rate"].sharding
        if after != before:
            fail("modes", f"{name}: set_hyperparams moved the value from {before} to {after}")
        p, st = step(p, st)
        if len(traces) != 1:
            fail("modes", f"{name}: the step traced {len(traces)} times after set_hyperparams")

    # load_state with like=eval_shape(...) over explicit axes: inside set_mesh
    params = {"w": jax.device_put(values["w"], NamedSharding(explicit, P("x", "y")))}
    tx = gl.adam(0.1)
    scratch = tempfile.TemporaryDirectory()  # removed after the last load below (or at exit)
    path = os.path.join(scratch.name, "state.npz")
    gl.save_state(path, tx.init(params))
    with jax.set_mesh(explicit):
        restored = gl.load_state(path, like=jax.eval_shape(tx.init, params))
    if restored[0].mu["w"].sharding.spec != P("x", "y"):
        fail("modes", f"load_state in set_mesh: mu placed {restored[0].mu['w'].sharding}")
    try:
        gl.load_state(path, like=jax.eval_shape(tx.init, params))
        fail("modes", "load_state of an abstract-mesh like outside set_mesh did not refuse")
    except ValueError as e:
        if "set_mesh" not in str(e):
            fail("modes", f"load_state's error does not say what to do: {e}")

    # minimize over explicit axes, no set_mesh (its first evaluation used to run eagerly)
    def fun(p):
        return jnp.sum((p["w"] - 1.0) ** 2)

    result = gl.minimize(fun, params, gl.lbfgs(), max_steps=20, tol=1e-6)
    if not bool(result.converged) or result.params["w"].sharding.spec != P("x", "y"):
        fail(
            "modes",
            f"minimize over explicit axes: {result.converged}, {result.params['w'].sharding}",
        )

    # a gradient laid out against its state (explicit): a ValueError naming the leaf
    one_axis = Mesh(devices, ("x",), axis_types=(AxisType.Explicit,))
    square = np.eye(8, dtype=np.float32)
    for mesh, param_spec, grad_spec in [
        (explicit, P("x", "y"), P("y", "x")),
        (one_axis, P("x", None), P(None, "x")),  # one mesh axis on both dims: JAX refuses
    ]:
        p = {"w": jax.device_put(square, NamedSharding(mesh, param_spec))}
        wrong = {"w": jax.device_put(square, NamedSharding(mesh, grad_spec))}
        for name, tx in [("momentum", gl.sgd(0.1, momentum=0.9)), ("adam", gl.adam(0.1))]:
            try:
                tx.update(wrong, tx.init(p), p)
                fail("modes", f"{name}: a {grad_spec} gradient for a {param_spec} param passed")
            except ValueError as e:
                if "['w']" not in str(e):
                    fail("modes", f"{name}: the layout error does not name the leaf: {e}")

    # a state on another device than the default, uncommitted: restored there
    tx = gl.adam(0.1)
    with jax.default_device(devices[3]):
        state = tx.init({"w": jnp.asarray(values["w"])})
    gl.save_state(path, state)
    restored = gl.load_state(path, like=state)
    placed = {d for x in jax.tree.leaves(restored) for d in x.devices()}
    if placed != {devices[3]} or any(x.committed for x in jax.tree.leaves(restored)):
        fail("modes", f"load_state moved an uncommitted state from {devices[3]} to {placed}")
    # ... and a like without a placement lands where the caller's default device is
    bare = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    with jax.default_device(devices[5]):
        restored = gl.load_state(path, like=bare)
    placed = {d for x in jax.tree.leaves(restored) for d in x.devices()}
    if placed != {devices[5]}:
        fail("modes", f"load_state ignored the caller's default device: {placed}")
    # ... and inside jax.set_mesh an uncommitted leaf stays on its device (jnp.asarray
    # there would spread it over the mesh, clashing with params on one device)
    with jax.set_mesh(auto):
        restored = gl.load_state(path, like=state)
    placed = {d for x in jax.tree.leaves(restored) for d in x.devices()}
    if placed != {devices[3]}:
        fail("modes", f"load_state inside set_mesh placed the state on {placed}")
    scratch.cleanup()

    # MultiSteps inside shard_map (manual mode) == the jitted step
    params = {"w": jax.device_put(values["w"], NamedSharding(auto, P("x")))}
    tx = gl.MultiSteps(gl.adam(0.1), 2)
    state = tx.init(params)
    specs = jax.tree.map(lambda x: P("x") if x.ndim == 2 else P(), state)

    def body(p, st):
        u, st = tx.update(jax.tree.map(jnp.cos, p), st, p)
        return gl.apply_updates(p, u), st

    manual = jax.jit(
        jax.shard_map(
            body, mesh=auto, in_specs=({"w": P("x")}, specs), out_specs=({"w": P("x")}, specs)
        )
    )
    plain = jax.jit(body)
    pm, sm, pp, sp = params, state, params, state
    for _ in range(4):
        pm, sm = manual(pm, sm)
        pp, sp = plain(pp, sp)
    err = float(jnp.max(jnp.abs(pm["w"] - pp["w"])))
    if err > 1e-6:
        fail("modes", f"MultiSteps inside shard_map differs from the jitted step by {err}")


def check_global_norm():
    """Cross-leaf reductions, sharded: the global norm vs an independent float64
    NumPy sum, clipping by it, and apply_if_finite's finiteness check."""
    section("global_norm")
    values = param_values()
    want = np.sqrt(sum(np.sum(np.square(v.astype(np.float64))) for v in values.values()))
    for mesh_name, mesh, specs in meshes():
        params = {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in values.items()}
        for how, norm in [
            ("eager", _tree.global_norm(params)),
            ("jit", jax.jit(_tree.global_norm)(params)),
        ]:
            if not np.isclose(float(norm), want, rtol=1e-6):
                fail("global_norm", f"{mesh_name} {how}: {float(norm)} vs {want}")
        # clipping to half the norm scales every leaf by the same factor
        clip = gl.clip_by_global_norm(0.5 * want)
        clipped, _ = jax.jit(clip.update)(params, clip.init(params))
        for k, v in values.items():
            if not np.allclose(np.asarray(clipped[k]), 0.5 * v, rtol=1e-6):
                fail("global_norm", f"{mesh_name} clip_by_global_norm[{k}]")
        # the finiteness check: one NaN on one device's shard of w skips the step
        guard = gl.apply_if_finite(gl.sgd(0.1), 3)
        bad = {k: v.copy() for k, v in values.items()}
        bad["w"][-1, -1] = np.nan  # on the last device's shard
        bad = {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in bad.items()}
        updates, state = jax.jit(guard.update)(bad, guard.init(params), params)
        if bool(state.last_finite) or any(float(jnp.max(jnp.abs(u))) for u in updates.values()):
            fail("global_norm", f"{mesh_name} apply_if_finite applied a NaN step: {state}")
        updates, state = jax.jit(guard.update)(params, guard.init(params), params)
        if not bool(state.last_finite):
            fail("global_norm", f"{mesh_name} apply_if_finite skipped a finite step")


# ----------------------------------------------------------------------------- collectives

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")


def collectives(compiled) -> dict[str, list[str]]:
    """``{op: [operand shape, ...]}`` of every cross-device collective in a
    compiled program (a combined tuple all-reduce lists each of its operands).

    Collectives inside a branch of a ``conditional`` (a ``lax.cond``: the global
    norm's overflow rescue runs only when a sum of squares overflows) are listed
    under ``"<op> (branch)"``, not with those every step runs."""
    text = compiled.as_text()
    branches = set()
    pattern = r"(?:branch_computations=\{([^}]*)\}|(?:true|false)_computation=(%?[\w.\-]+))"
    for m in re.finditer(pattern, text):
        names = m.group(1) or m.group(2)
        branches.update(n.strip().lstrip("%") for n in names.split(","))
    found: dict[str, list[str]] = {op: [] for op in COLLECTIVES}
    found.update({op + " (branch)": [] for op in COLLECTIVES})
    current = None
    for line in text.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if header:
            current = header.group(1)
        for op in COLLECTIVES:
            m = re.search(rf"= (.+?) {op}(?:-start)?\(", line)
            if m:
                key = op + " (branch)" if current in branches else op
                found[key] += re.findall(r"[a-z]+\d*\[[\d,]*\]", m.group(1))
                found[key + " ops"] = found.get(key + " ops", 0) + 1
    return found


def mlp_problem():
    rng = np.random.default_rng(1)
    sizes = [32, 64, 64, 16]
    params = [
        {"w": (rng.normal(size=(m, n)) / np.sqrt(m)).astype(np.float32), "b": np.zeros(n)}
        for m, n in itertools.pairwise(sizes)
    ]
    params = jax.tree.map(lambda a: a.astype(np.float32), params)
    x = rng.normal(size=(64, 32)).astype(np.float32)
    y = rng.integers(0, 16, 64).astype(np.int32)
    return params, x, y


def mlp_loss(params, x, y):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    logits = x @ params[-1]["w"] + params[-1]["b"]
    return jnp.mean(gl.losses.softmax_cross_entropy_with_integer_labels(logits, y))


def train_step(tx, apply=None):
    apply = apply or gl.apply_updates

    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(mlp_loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return apply(params, updates), state, loss

    return step


def check_collectives():
    """In a compiled data-parallel step the only collectives are the gradient
    reduction (plus, for the global norm, scalars); no optimizer state moves.

    Data-parallel: params (and so state) replicated, the batch split over 8
    devices. Fully sharded: params split along their first axis (where it
    divides), state following them. Each optimizer's step is compared with
    plain SGD's (no state, no norm): its all-gathers (params, for the forward
    pass) and the non-scalar operands of its all-reduces (gradients) must be
    SGD's; what clipping adds must be scalars (partial sums of squares).
    """
    import optax

    section("collectives")
    params, x, y = mlp_problem()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch = NamedSharding(mesh, P("data"))
    layouts = {
        "data-parallel": lambda a: P(),
        "fully-sharded": lambda a: P("data") if a.ndim and a.shape[0] % 8 == 0 else P(),
    }
    optimizers = {
        "sgd": (gl.sgd(0.1), gl.apply_updates),
        "adamw": (gl.adamw(0.01), gl.apply_updates),
        "clip+adamw": (gl.chain(gl.clip_by_global_norm(1.0), gl.adamw(0.01)), gl.apply_updates),
        "optax clip+adamw": (
            optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(0.01)),
            optax.apply_updates,
        ),
    }
    for layout, spec in layouts.items():
        p = jax.tree.map(lambda a, spec=spec: jax.device_put(a, NamedSharding(mesh, spec(a))),
                         params)  # fmt: skip
        xs, ys = jax.device_put(x, batch), jax.device_put(y, batch)
        found = {}
        for name, (tx, apply) in optimizers.items():
            with jax.numpy_dtype_promotion("standard"):  # Optax is not strict-clean
                state = tx.init(p)
                compiled = jax.jit(train_step(tx, apply)).lower(p, state, xs, ys).compile()
            found[name] = collectives(compiled)
            RECORD[f"collectives {layout} {name}"] = {
                op: v if op.endswith("ops") else len(v) for op, v in found[name].items() if v
            }
        base = found["sgd"]
        RECORD[f"collectives {layout} sgd shapes"] = base
        for name, got in found.items():
            if name.startswith("optax"):
                continue  # recorded, not asserted
            for op in COLLECTIVES:
                if op == "all-reduce":
                    big = sorted(s for s in got[op] if not s.endswith("[]"))
                    if big != sorted(s for s in base[op] if not s.endswith("[]")):
                        fail("collectives", f"{layout} {name}: all-reduce of {big}, sgd's: "
                                            f"{base[op]}")  # fmt: skip
                    extra = len(got[op]) - len(base[op])
                    allowed = len(jax.tree.leaves(params)) if "clip" in name else 0
                    if not 0 <= extra <= allowed:
                        fail("collectives", f"{layout} {name}: {extra} more scalar all-reduce "
                                            f"operands than sgd (at most {allowed})")  # fmt: skip
                    # the norm's overflow rescue (a lax.cond branch, run only on
                    # overflow): again at most one scalar per leaf, nothing big
                    rare = got[op + " (branch)"]
                    if len(rare) > allowed or any(not s.endswith("[]") for s in rare):
                        fail("collectives", f"{layout} {name}: all-reduce in a "
                                            f"conditional branch of {rare} "
                                            f"(at most {allowed} scalars)")  # fmt: skip
                elif sorted(got[op]) != sorted(base[op]) or got[op + " (branch)"]:
                    branch = got[op + " (branch)"]
                    fail("collectives", f"{layout} {name}: {op} of {got[op]} (in conditional "
                                        f"branches: {branch}), sgd's: {base[op]}")  # fmt: skip
        # replicated params: the gradient reduction (and the loss), nothing else
        others = [op for op in COLLECTIVES if op != "all-reduce" and found["clip+adamw"][op]]
        if layout == "data-parallel" and others:
            fail("collectives", f"data-parallel: {others} in {found['clip+adamw']}")


# ----------------------------------------------------------------------------- sweeps


def check_sweep():
    """``gl.sweep(mesh=...)`` gives the unsharded sweep's numbers, and its program
    has no collectives: each device trains its own configurations."""
    from sweep_multiprocess import arrays, compare, problem

    from gradlab.run import _sweep

    section("sweep")
    programs = []
    fit_memory = _sweep._fit_memory

    def capture(compile_for, compiled, *args):
        programs.append(compiled)
        return fit_memory(compile_for, compiled, *args)

    _sweep._fit_memory = capture
    try:
        plain = arrays(gl.sweep(**problem()))
        devices = np.array(jax.devices())
        runs = {  # what: (sweep's arguments, configurations per device)
            "1-D mesh": (dict(mesh=Mesh(devices, ("configs",))), 2),  # 12 padded to 16
            "1-D mesh, chunks of 3 (8)": (
                dict(mesh=Mesh(devices, ("configs",)), chunk_size=3),
                1,
            ),
            "1-D mesh with an explicit axis (jax.make_mesh)": (
                dict(mesh=Mesh(devices, ("configs",), axis_types=(AxisType.Explicit,))),
                2,
            ),
            "2-D mesh, axis b": (
                dict(mesh=Mesh(devices.reshape(2, 4), ("a", "b")), mesh_axis="b"),
                3,
            ),
        }
        for what, (kwargs, rows) in runs.items():
            del programs[:]
            got = arrays(gl.sweep(**problem(), **kwargs))
            bad = compare(got, plain)  # to 1e-6 of each array's scale
            if bad:
                fail("sweep", f"{what}: {bad} differ from the unsharded sweep")
            for compiled in programs:
                found = {op: v for op, v in collectives(compiled).items() if v}
                if found:
                    fail("sweep", f"{what}: collectives {found}")
                text = compiled.as_text()
                entry = next(line for line in text.splitlines() if line.startswith("ENTRY"))
                RECORD[f"sweep {what}"] = entry[entry.index("(") : entry.index(")") + 1][:200]
                if f"s32[{rows}]" not in entry:  # the seeds: this device's configurations
                    fail("sweep", f"{what}: not {rows} configurations per device: {entry}")
    finally:
        _sweep._fit_memory = fit_memory


def record_optax():
    """For the record, not asserted: where Optax's jitted init puts its moments."""
    import optax

    for mesh_name, mesh, specs in meshes():
        params = {
            k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in param_values().items()
        }
        try:
            state = jax.jit(optax.adam(0.1).init)(params)
            RECORD[f"optax_jit_init_mu_w_{mesh_name}"] = str(state[0].mu["w"].sharding)
        except ValueError as e:  # explicit axes, outside jax.set_mesh
            RECORD[f"optax_jit_init_mu_w_{mesh_name}"] = f"ValueError: {str(e)[:120]}"
        state = jax.jit(gl.adam(0.1).init)(params)
        RECORD[f"gradlab_jit_init_mu_w_{mesh_name}"] = str(state[0].mu["w"].sharding)


def main():
    assert jax.device_count() == 8, jax.devices()
    t0 = time.perf_counter()
    for check in (check_every_transformation, check_explicit_and_manual_modes, check_global_norm,
                  check_collectives, check_sweep, record_optax):  # fmt: skip
        t = time.perf_counter()
        check()
        RECORD[f"seconds {check.__name__}"] = round(time.perf_counter() - t, 1)
    RECORD["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({**FAILURES, "record": RECORD}))


if __name__ == "__main__":
    main()
