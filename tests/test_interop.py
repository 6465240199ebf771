"""gradlab inside Optax code and Optax inside gradlab code, with ``value=`` passed.

The extra-argument rule is Optax's (``optax.with_extra_args_support``): a
member whose ``update`` takes ``**extra`` receives every keyword extra; one
whose ``update`` does not (most Optax transformations) is called without them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradlab as gl

PARAMS = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(0.3)}


def _grads(params, k):
    return jax.tree.map(lambda p: jnp.cos(p * (k + 1.0)), params)


def _train(tx, apply, steps=5, **extra):
    params, state = PARAMS, tx.init(PARAMS)
    for k in range(steps):
        updates, state = tx.update(_grads(params, k), state, params, **extra)
        params = apply(params, updates)
    return params


def _close(a, b):
    # Adam in float32: 1 - b2**t rounds differently (see tests/cases.py), ~1e-5 of a step
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-5), a, b)


@pytest.mark.parametrize("extra", [{}, {"value": jnp.float32(1.5)}], ids=["plain", "value"])
def test_optax_members_inside_gl_chain(extra):
    with jax.numpy_dtype_promotion("standard"):  # Optax is not strict-promotion clean
        ours = _train(gl.chain(optax.clip(0.5), gl.adam(0.1)), gl.apply_updates, **extra)
        ref = _train(optax.chain(optax.clip(0.5), optax.adam(0.1)), optax.apply_updates)
    _close(ours, ref)


@pytest.mark.parametrize("extra", [{}, {"value": jnp.float32(1.5)}], ids=["plain", "value"])
def test_gl_members_inside_optax_chain(extra):
    with jax.numpy_dtype_promotion("standard"):
        ours = _train(optax.chain(gl.clip(0.5), gl.adam(0.1)), optax.apply_updates, **extra)
        ref = _train(optax.chain(optax.clip(0.5), optax.adam(0.1)), optax.apply_updates)
    _close(ours, ref)


def _spy(seen):
    """A transformation recording the extras it receives."""

    def update(updates, state, params=None, **extra):
        seen.append(sorted(extra))
        return updates, state

    return gl.GradientTransformation(lambda p: gl.EmptyState(), update, packing=gl.ELEMENTWISE)


def test_gl_chain_forwards_extras_to_members_that_take_them():
    seen = []
    optax_extra = optax.GradientTransformationExtraArgs(
        lambda p: optax.EmptyState(),
        lambda u, s, p=None, **extra: seen.append(("optax", sorted(extra))) or (u, s),
    )
    tx = gl.chain(optax.scale(1.0), _spy(seen), optax_extra, gl.sgd(0.1))
    tx.update(PARAMS, tx.init(PARAMS), PARAMS, value=1.0, grad=PARAMS)
    assert seen == [["grad", "value"], ("optax", ["grad", "value"])]


def test_a_member_with_keyword_only_options_but_no_extras_gets_no_extras():
    """Only a ``**extra`` parameter takes extras (Optax's rule): a member whose
    ``update`` has its own keyword-only option is called without ``value=``, in a
    gradlab chain as in Optax's (hunt52: treating keyword-only as "takes extras"
    went unseen)."""

    def update(updates, state, params=None, *, flag=False):
        return jax.tree.map(lambda u: -u if flag else 2 * u, updates), state

    member = gl.GradientTransformation(lambda p: gl.EmptyState(), update)
    for tx in (gl.chain(member, gl.sgd(1.0)), optax.chain(member, optax.sgd(1.0))):
        u, _ = tx.update(PARAMS, tx.init(PARAMS), PARAMS, value=1.0, grad=PARAMS)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, -2 * b), u, PARAMS)


def test_optax_chain_drops_extras_for_gl_members_as_optax_does():
    # Optax wraps members that are not its GradientTransformationExtraArgs so
    # that they get no extras: gradlab cannot change that from inside.
    seen = []
    tx = optax.chain(_spy(seen), optax.scale(1.0))
    tx.update(PARAMS, tx.init(PARAMS), PARAMS, value=1.0)
    assert seen == [[]]


def test_optax_dp_aggregation_takes_per_example_gradients_inside_gl_chain():
    # Its input is not shaped like the params (a leading batch axis): a chain
    # checks the shapes of its result against the params, not of its input.
    params = {"w": jnp.ones(3), "b": jnp.zeros(())}
    per_example = {"w": jnp.arange(12.0).reshape(4, 3) / 10, "b": jnp.asarray([1.0, -2, 3, 0])}
    dp = lambda: optax.contrib.differentially_private_aggregate(1.0, 0.0, 0)  # noqa: E731
    ref_tx = optax.chain(dp(), optax.sgd(0.1))
    tx = gl.chain(dp(), gl.sgd(0.1))
    ref, _ = ref_tx.update(per_example, ref_tx.init(params), params)
    out, _ = tx.update(per_example, tx.init(params), params)
    assert jax.tree.map(jnp.shape, out) == {"w": (3,), "b": ()}
    for k in params:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-6)
    # a gradlab chain *before* the aggregation returns per-example updates
    clip_first = optax.chain(gl.chain(gl.clip_by_global_norm(1e6)), dp(), optax.sgd(0.1))
    out, _ = clip_first.update(per_example, clip_first.init(params), params)
    for k in params:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.masked(m.adam(1e-3), {"w": True, "b": False}),
        lambda m: m.partition({"a": m.adam(1e-3), "s": m.sgd(0.1, 0.9)}, {"w": "a", "b": "s"}),
        lambda m: gl.muon(0.02) if m is gl else optax.contrib.muon(0.02),
    ],
    ids=["masked", "partition", "muon"],
)
def test_optax_tree_map_params_maps_masked_and_partitioned_states_as_optax_does(make):
    # tree_map_params initialises the state with a leafless placeholder to find
    # the params-shaped parts (sharding specs for a state from the params').
    params = {"w": jnp.ones((4, 2)), "b": jnp.zeros(2)}
    specs = {"w": "SPEC_W", "b": "SPEC_B"}

    def mapped(m):
        tx = make(m)
        out = optax.tree_utils.tree_map_params(
            tx,
            lambda _, spec: spec,
            tx.init(params),
            specs,
            transform_non_params=lambda _: None,
            is_leaf=lambda x: type(x).__name__ == "MaskedNode",
        )
        return sorted(x for x in jax.tree.leaves(out) if isinstance(x, str))

    assert mapped(gl) == mapped(optax)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _CallableTree:
    """A pytree of data that is also callable, as an Equinox module is."""

    w: Any
    b: Any

    def __call__(self, *args):
        raise AssertionError("a tree of data was called as a function")


def test_a_callable_tree_of_data_is_a_mask_or_params_not_a_function():
    # Optax's rule: a mask is a function only when its leaves are callable.
    params = _CallableTree(w=jnp.ones((2, 2)), b=jnp.asarray([0.5, -1.0]))
    grads = _CallableTree(w=jnp.full((2, 2), 0.25), b=jnp.asarray([1.0, 2.0]))
    mask = _CallableTree(w=True, b=False)
    for gl_tx, ref_tx in [
        (gl.masked(gl.adam(0.1), mask), optax.masked(optax.adam(0.1), mask)),
        (gl.adamw(0.1, weight_decay=0.1, mask=mask), optax.adamw(0.1, weight_decay=0.1, mask=mask)),
    ]:
        out, _ = gl_tx.update(grads, gl_tx.init(params), params)
        with jax.numpy_dtype_promotion("standard"):  # Optax's adamw needs it
            ref, _ = ref_tx.update(grads, ref_tx.init(params), params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5), out, ref)
    # a jax.tree_util.Partial is a function even with data bound to it
    by_ndim = jax.tree_util.Partial(lambda n, p: jax.tree.map(lambda x: x.ndim == n, p), 2)
    tx = gl.masked(gl.sgd(1.0), by_ndim)
    out, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(out.w, -grads.w)
    np.testing.assert_allclose(out.b, grads.b)
    draw = jax.tree_util.Partial(lambda x, step: x[step % 2], jnp.asarray([1.0, 2.0]))
    res = gl.sweep(
        gl.sgd,
        lambda p, b: jnp.sum(p.b**2) * b,
        params,
        draw,
        {"learning_rate": [0.1]},
        num_steps=2,
    )
    np.testing.assert_allclose(res.params.b[0], np.array([0.5, -1.0]) * 0.8 * 0.6, rtol=1e-6)
    # ... and params of the run tools, not an init function ``key -> params``
    fun = lambda p: jnp.sum(p.w**2) + jnp.sum((p.b - 1.0) ** 2)  # noqa: E731
    result = gl.minimize(fun, params, gl.sgd(0.25), max_steps=40, tol=1e-4)
    np.testing.assert_allclose(result.params.b, [1.0, 1.0], atol=1e-3)
    loss = lambda p, batch: fun(p) * batch  # noqa: E731
    out = gl.sweep(gl.sgd, loss, params, jnp.ones((2,)), {"learning_rate": [0.1]}, num_steps=2)
    # plain SGD at 0.1 scales w and b - 1 by 0.8 a step
    np.testing.assert_allclose(out.params.w[0], np.full((2, 2), 0.64), rtol=1e-6)
    np.testing.assert_allclose(out.params.b[0], 1 + np.array([-0.5, -2.0]) * 0.64, rtol=1e-6)


def test_sm3_reads_its_accumulators_from_any_sequence_node():
    # Flax NNX stores each leaf's tuple of per-axis accumulators as a State keyed 0, 1.
    params = {"w": jnp.ones((2, 3))}
    grads = {"w": jnp.arange(6.0).reshape(2, 3) / 6}
    tx, ref_tx = gl.sm3(0.1), optax.sm3(0.1)
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    mu = {"w": dict(enumerate(state[0].mu["w"]))}
    state = (state[0]._replace(mu=mu), *state[1:])
    out, _ = tx.update(grads, state, params)
    ref_state = ref_tx.init(params)
    _, ref_state = ref_tx.update(grads, ref_state, params)
    ref, _ = ref_tx.update(grads, ref_state, params)
    np.testing.assert_allclose(out["w"], ref["w"], rtol=1e-6)


# ----------------------------------------------------------------- jax.export

SYMBOLIC = {
    "clip_by_global_norm+adam": lambda: gl.chain(gl.clip_by_global_norm(1.0), gl.adam(0.1)),
    "apply_if_finite": lambda: gl.apply_if_finite(gl.sgd(0.1), 3),
    "normalize_by_update_norm": lambda: gl.normalize_by_update_norm(),
    "clip_by_block_rms": lambda: gl.clip_by_block_rms(1.0),
    "scale_by_param_block_rms": lambda: gl.scale_by_param_block_rms(),
    "adafactor_unfactored": lambda: gl.adafactor(factored=False),
    "lbfgs": lambda: gl.lbfgs(),
    # packed: a leaf of symbolic size stays loose (its layout was chosen with int(size))
    "packed(clip_by_global_norm+adam)": lambda: gl.packed(
        gl.chain(gl.clip_by_global_norm(1.0), gl.adam(0.1))
    ),
}


@pytest.mark.parametrize("name", SYMBOLIC)
def test_a_step_exports_with_a_symbolic_leaf_size_and_gives_the_jitted_numbers(name):
    """``jax.export`` with shape polymorphism, as Optax's same transformations
    allow: whole-tree reductions branched in Python on ``size <= 4096`` (an
    inconclusive comparison for a symbolic size) and a leaf's RMS took
    ``np.sqrt(size)``."""
    tx = SYMBOLIC[name]()

    def f(p):
        return jnp.sum((p["w"] - 1.0) ** 2 + p["w"] ** 4) + jnp.sum(jnp.cos(p["b"]))

    def step(p):
        state = tx.init(p)
        if name == "lbfgs":
            value, grads = gl.value_and_grad_from_state(f)(p, state=state)
        else:
            value, grads = jax.value_and_grad(f)(p)
        updates, state = tx.update(grads, state, p, value=value, grad=grads, value_fn=f)
        return gl.apply_updates(p, updates)

    (n,) = jax.export.symbolic_shape("n")
    abstract = {"b": jax.ShapeDtypeStruct((3,), jnp.float32),
                "w": jax.ShapeDtypeStruct((n,), jnp.float32)}  # fmt: skip
    exported = jax.export.export(jax.jit(step))(abstract)
    for size in (1, 300):
        p = {"b": jnp.array([0.5, -1.0, 2.0]), "w": jnp.linspace(-1.0, 2.0, size)}
        got, want = exported.call(p), jax.jit(step)(p)
        # (the symbolic leaf is reduced on its own, the concrete one maybe
        # concatenated with b: a norm's summation order, an ulp)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=0), got, want)


# ------------------------------------------------ jax.export: serialize a step

SERIALIZED = {
    "adam": lambda: gl.adam(0.1),
    "clip+inject(adamw, cosine)": lambda: gl.chain(
        gl.clip_by_global_norm(1.0),
        gl.inject_hyperparams(gl.adamw)(learning_rate=gl.schedules.cosine_decay(0.1, 10)),
    ),
    "lbfgs(zoom)": lambda: gl.lbfgs(),
    "MultiSteps(apply_if_finite(sgd))": lambda: gl.MultiSteps(
        gl.apply_if_finite(gl.sgd(0.1, momentum=0.9), 3), 2
    ),
    "partition": lambda: gl.partition({"a": gl.lion(0.01), "b": gl.sm3(0.1)}, {"w": "a", "b": "b"}),
    "masked+lookahead": lambda: gl.lookahead(
        gl.chain(gl.masked(gl.add_decayed_weights(0.1), {"w": True, "b": False}), gl.sgd(0.1)),
        sync_period=2,
        slow_step_size=0.5,
    ),
    "packed(adafactor)+plateau": lambda: gl.chain(
        gl.packed(gl.adafactor(0.1)), gl.reduce_on_plateau(patience=1)
    ),
    "schedule_free_adamw": lambda: gl.schedule_free_adamw(0.1),
}


@pytest.mark.parametrize("name", SERIALIZED)
def test_an_exported_step_serializes_with_its_state_and_gives_the_jitted_numbers(name):
    """``Exported.serialize()`` needs a name for each NamedTuple in the inputs and
    outputs (Optax registers none: serializing any step with Optax state fails with
    "Cannot serialize PyTreeDef containing an unregistered type"). The deserialized
    step takes and returns the same state types, with the jitted step's numbers."""
    pytest.importorskip("flatbuffers")  # jax's serializer (a test extra)
    tx = SERIALIZED[name]()
    p = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([0.3, -0.2])}

    def f(p):
        return jnp.sum((p["w"] - 1.0) ** 2) + jnp.sum(jnp.cos(p["b"]))

    def step(p, state):
        if name == "lbfgs(zoom)":
            value, grads = gl.value_and_grad_from_state(f)(p, state=state)
        else:
            value, grads = jax.value_and_grad(f)(p)
        updates, state = tx.update(grads, state, p, value=value, grad=grads, value_fn=f)
        return gl.apply_updates(p, updates), state

    state = tx.init(p)
    blob = jax.export.export(jax.jit(step))(p, state).serialize()
    restored = jax.export.deserialize(blob)
    got, want = (p, state), (p, state)
    for _ in range(3):
        got, want = restored.call(*got), jax.jit(step)(*want)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), got, want)


def test_every_public_named_tuple_survives_serialization():
    """Each public NamedTuple (states, ``MaskedNode``, results) comes back from a
    serialized export as its own type: none is left unregistered."""
    pytest.importorskip("flatbuffers")
    names = [
        n
        for n in gl.__all__
        if isinstance(getattr(gl, n), type)
        and issubclass(getattr(gl, n), tuple)
        and not issubclass(getattr(gl, n), gl.GradientTransformation)
    ]
    assert len(names) > 30
    for n in names:
        cls = getattr(gl, n)
        exported = jax.export.export(jax.jit(lambda x, cls=cls: cls(*[x] * len(cls._fields))))
        blob = exported(jnp.float32(2.0)).serialize()
        # the name saved files hold (README): renaming a class must not pass unseen
        assert f"gradlab.{n}".encode() in bytes(blob), n
        out = jax.export.deserialize(blob).call(jnp.float32(2.0))
        assert type(out) is cls, n
        assert [float(v) for v in out] == [2.0] * len(cls._fields), n
