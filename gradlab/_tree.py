"""Tree arithmetic shared by every building block — written once, here.

Conventions (so each block stays a few lines):

* Arithmetic on a leaf runs in its *compute dtype*: float32 for 16-bit
  floats (bfloat16/float16), the leaf's own dtype otherwise. Results are cast
  back to the storage dtype (the update's dtype, or a moment's ``mu_dtype``).
  This is why ``b2=0.999`` still means 0.999 for bfloat16 params (in bfloat16
  it rounds to 1.0 and the second moment would never decay).
* Hyperparameters may be Python numbers or (traced) arrays; :func:`hp` casts
  them to the compute dtype explicitly, so strict dtype promotion holds.
* Every map over ``updates`` together with a state tree goes through
  :func:`map_like`, which checks the structures first and raises a readable
  error naming both, instead of a deep JAX traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab._checks import check_same_shapes, check_same_structure

Tree = Any

INT32_MAX = np.iinfo(np.int32).max

# Leaves up to this many elements are "small": their kernel launches cost more
# than their bytes, so cross-leaf work batches them (global_norm, gl.packed).
SMALL_LEAF = 1 << 12


def compute_dtype(dtype: Any) -> np.dtype:
    """Dtype in which a leaf's update is computed: at least float32."""
    dtype = np.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4:
        return np.dtype(jnp.float32)
    return dtype


def hp(value: Any, dtype: Any) -> jax.Array:
    """A hyperparameter (number or array, maybe traced) as an array of ``dtype``.

    A Python or NumPy int goes straight to ``dtype``: through the default int32
    first, ``eps=2**31`` (or ``np.int64(2**32 + 1)``) wrapped inside JAX.
    """
    if (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, np.ndarray | np.integer) and np.issubdtype(value.dtype, np.integer)
    ):
        return jnp.asarray(value, dtype)
    return jnp.asarray(value).astype(dtype)


@functools.cache
def is_float(dtype: Any) -> bool:
    """Whether ``dtype`` is a floating-point dtype (bfloat16 included)."""
    return bool(jnp.issubdtype(dtype, jnp.floating))


def hides_leaves(tree: Tree) -> bool:
    """Whether ``tree`` holds a leaf an outer wrapper hid: a ``MaskedNode``
    (gradlab's, or Optax's from ``optax.masked``/``optax.partition``)."""

    def hidden(x: Any) -> bool:
        return type(x).__name__ == "MaskedNode"

    return any(hidden(x) for x in jax.tree.leaves(tree, is_leaf=hidden))


def as_updates(updates: Tree) -> Tree:
    """``updates`` with every leaf a floating-point array, or a ``TypeError``.

    Python numbers become float arrays, as Optax accepts them (under a trace
    too, where a Python int is a weakly typed int: :func:`is_number`).
    Integer or boolean leaves are refused, naming the leaf: ``-0.1 * 1`` kept
    in an int32 update would be truncated to 0 without a word. So are complex
    leaves: the blocks square gradients as ``g*g``, not ``|g|**2``.
    """
    leaves, treedef = jax.tree.flatten(updates)
    # The common case (all float arrays) costs one attribute read per leaf.
    if all(is_float(getattr(x, "dtype", np.int8)) for x in leaves):
        return updates
    fixed = []
    for path, x in jax.tree_util.tree_flatten_with_path(updates)[0]:
        if is_number(x):  # a Python number, maybe traced (a weak int)
            x = as_param(x)
        dtype = getattr(x, "dtype", None)
        if dtype is None or not is_float(dtype):
            what = f"dtype {dtype}" if dtype is not None else type(x).__name__
            raise TypeError(
                f"gradient leaf {jax.tree_util.keystr(path) or '(root)'} must be a "
                f"floating-point array, got {what}"
            )
        fixed.append(x)
    return treedef.unflatten(fixed)


def map_like(
    fn: Callable[..., Any], updates: Tree, *trees: Tree, tree_name: str = "optimizer state"
) -> Tree:
    """``jax.tree.map(fn, updates, *trees)`` after checking structures and shapes match.

    ``trees`` mirror the updates leaf for leaf (moments, params). A mismatch
    raises ``ValueError`` showing both structures, or naming the leaf and both
    shapes, calling the other tree ``tree_name``; a non-float gradient leaf
    raises ``TypeError`` (:func:`as_updates`).
    """
    treedef, columns = leaves_like(updates, *trees, tree_name=tree_name)
    return treedef.unflatten([fn(*leaf) for leaf in zip(*columns, strict=True)])


def leaves_like(
    updates: Tree, *trees: Tree, tree_name: str = "optimizer state"
) -> tuple[Any, list[list[Any]]]:
    """``(treedef, [update leaves, leaves of each tree])`` after the checks of
    :func:`map_like`: for blocks that work on all the leaves at once (one
    overflow rescue for every leaf's norm, :func:`norms`) before mapping."""
    updates = as_updates(updates)  # first: a string leaf is a type error, not a shape one
    # explicit mesh axes are rare: read the updates' types once, the trees' only then
    typed = trees and any(explicit_sharding(u) is not None for u in jax.tree.leaves(updates))
    for tree in trees:
        check_same_structure(tree, updates, tree_name, "gradient")
        check_same_shapes(tree, updates, tree_name, "gradient")
        if typed:
            check_same_layouts(tree, updates, tree_name, "gradient")
    leaves, treedef = jax.tree.flatten(updates)
    columns = [treedef.flatten_up_to(numbers_as_params(tree)) for tree in trees]
    return treedef, [leaves, *columns]


def check_same_layouts(expected: Tree, got: Tree, expected_name: str, got_name: str) -> None:
    """Over explicit mesh axes (the sharding part of each array's type), two
    leaves whose layouts JAX cannot combine elementwise -- split along
    different mesh axes, or one mesh axis on different axes of the two --
    raise ``ValueError`` naming the leaf and both layouts (JAX's own error
    names neither). Replicated against split is fine: JAX broadcasts."""
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(expected)[0], jax.tree.leaves(got), strict=True
    ):
        sa, sb = explicit_sharding(a), explicit_sharding(b)
        if sa is None or sb is None:
            continue
        pa, pb = padded_spec(sa.spec, np.ndim(a)), padded_spec(sb.spec, np.ndim(b))
        # Elementwise, each axis takes the side that is split: a conflict where
        # both are split differently, or one mesh axis ending up on two axes.
        merged = [x if x is not None else y for x, y in zip(pa, pb, strict=True)]
        clash = any(x is not None and y is not None and x != y for x, y in zip(pa, pb, strict=True))
        if clash or len(_axes(merged)) != len(set(_axes(merged))):
            raise ValueError(
                f"{got_name} leaf {jax.tree_util.keystr(path) or '(root)'} is laid out as "
                f"{sb.spec} but the {expected_name} leaf as {sa.spec} (explicit mesh axes): "
                f"give the {got_name} its param's sharding (jax.reshard)"
            )


def padded_spec(spec: Any, ndim: int) -> tuple:
    """A ``PartitionSpec``'s entries for all ``ndim`` axes (trailing ones None)."""
    return tuple(spec) + (None,) * (ndim - len(spec))


def split_outputs(tree_of_tuples: Tree, like: Tree, n: int) -> tuple[Tree, ...]:
    """Split a tree whose leaves are n-tuples into n trees shaped like ``like``."""
    treedef = jax.tree.structure(like)
    leaves = treedef.flatten_up_to(tree_of_tuples)
    return tuple(treedef.unflatten([leaf[i] for leaf in leaves]) for i in range(n))


def is_number(x: Any) -> bool:
    """A Python int or float (not a bool), or what JAX makes of one when it is
    an argument of a traced function (``jax.jit(tx.init)({"a": 1})``: a weakly
    typed integer scalar). Such param leaves are floats, as in Optax."""
    if isinstance(x, bool):
        return False
    if isinstance(x, int | float):
        return True
    if not isinstance(x, jax.Array):
        return False
    aval = jax.typeof(x)
    return aval.weak_type and aval.shape == () and jnp.issubdtype(aval.dtype, jnp.integer)


def numbers_as_params(tree: Tree) -> Tree:
    """``tree`` with each Python-number leaf (:func:`is_number`) as a float
    array (:func:`as_param`), as Optax takes them; other leaves as they are."""
    return jax.tree.map(lambda x: as_param(x) if is_number(x) else x, tree)


def check_float_params(params: Tree, where: str) -> None:
    """Refuse integer and boolean param leaves with a ``TypeError`` naming the leaf.

    An optimizer moves params by fractions: int32 state or an int32 sum would
    silently round every update away. Python numbers are fine (taken as floats).
    """
    leaves = jax.tree.leaves(params)
    if all(is_float(getattr(x, "dtype", np.int8)) for x in leaves):
        return
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = getattr(x, "dtype", None)
        if is_number(x):
            continue
        if dtype is None and (isinstance(x, bool) or not isinstance(x, int | float)):
            raise TypeError(
                f"{where}: param leaf {jax.tree_util.keystr(path) or '(root)'} is a "
                f"{type(x).__name__} ({x!r}); params are arrays (or Python numbers)"
            )
        if dtype is not None and not is_float(dtype):
            raise TypeError(
                f"{where}: param leaf {jax.tree_util.keystr(path) or '(root)'} has dtype "
                f"{dtype}; gradlab optimizes floating-point params only (cast it, e.g. "
                "x.astype(jnp.float32), or keep it out of the optimized tree)"
            )


def as_param(x: Any) -> jax.Array:
    """A param leaf as an array; a Python number becomes a float (as in Optax)."""
    if isinstance(x, jax.ShapeDtypeStruct):  # else: float() of it, deep in jnp.asarray
        raise TypeError(
            f"params must be arrays, got an abstract leaf {x} (jax.ShapeDtypeStruct): "
            "for the state's shapes and dtypes use jax.eval_shape(tx.init, params); "
            "to build a state, init with arrays"
        )
    if isinstance(x, int | float) and not isinstance(x, bool):
        return jnp.asarray(float(x))
    if is_number(x):  # a Python int, traced
        return jnp.asarray(x, jnp.result_type(float))
    return jnp.asarray(x)


def strong_copy(x: Any, dtype: Any = None) -> jax.Array:
    """A copy of the param leaf ``x`` in ``dtype`` (default: its own), never
    weakly typed: a state leaf copied from a Python-number param (weak) would
    come back strong from ``update``, and a jitted step would compile twice.
    A copy, so that params and state can both be donated to a jitted step."""
    x = as_param(x)
    return jnp.array(x, dtype=dtype or x.dtype, copy=True)


def _like(x: Any, value: Any, dtype: Any) -> jax.Array:
    """``value`` broadcast to ``x``'s shape, in ``dtype``, placed like ``x``.

    A select on ``x`` with an all-False predicate, not ``zeros_like``: under
    ``jax.jit(init)`` the output of ``zeros_like`` depends on no input and
    lands on ONE device (Optax's behaviour), while the select lets XLA
    propagate ``x``'s sharding to it. The compiled program is still just a
    broadcast (the select on a constant predicate is folded away after
    partitioning); eagerly, it keeps the committed sharding as well.
    """
    x = as_param(x)
    dt = np.dtype(dtype or x.dtype)
    return jnp.where(jnp.zeros(x.shape, bool), x.astype(dt), hp(value, dt))


def zeros_like(tree: Tree, dtype: Any = None) -> Tree:
    """Zeros shaped like each param leaf, in ``dtype`` (default: the leaf's dtype).

    Each state leaf follows its param's sharding, eagerly and under ``jit``:
    optimizer state lives where its param lives, nothing is gathered to one
    device. Integer params are refused (:func:`check_float_params`).
    """
    return full_like(tree, 0, dtype)


def full_like(tree: Tree, value: Any, dtype: Any = None) -> Tree:
    """``value`` broadcast like each param leaf (following its sharding), in ``dtype``."""
    check_float_params(tree, "init")
    return jax.tree.map(lambda x: _like(x, value, dtype), tree)


def full_along(x: Any, axes: Sequence[int], value: Any = 0, dtype: Any = None) -> jax.Array:
    """``value`` shaped like the param leaf ``x`` restricted to ``axes`` (the
    other axes dropped), in ``dtype``, placed like ``x`` along the kept axes.

    For state that is not shaped like its param: Adafactor's row and column
    statistics (every axis but one), SM3's accumulator per axis (one axis),
    NovoGrad's per-leaf scalar (no axis). It is built by :func:`_like` from
    ``x[0, ..., :, ...]`` (index 0 along each dropped axis), so it is split
    over the devices along a kept axis as ``x`` is and replicated over the
    mesh axes of the dropped ones -- eagerly and under ``jax.jit(init)``; the
    compiled ``init`` is still just a broadcast (the slice feeds only the
    folded select). A ``(16, 8)`` param sharded ``P("x", "y")`` gets row
    statistics ``(8,)`` sharded ``P("y")``.
    """
    x = as_param(x)
    keep = tuple(sorted(int(a) % max(x.ndim, 1) for a in axes))
    shape = tuple(x.shape[a] for a in keep)
    typed = explicit_sharding(x)
    if typed is not None:  # sharding in types: x[0] along a split axis is refused
        dropped = tuple(a for a in range(x.ndim) if a not in keep)
        if isinstance(x, jax.core.Tracer) or isinstance(value, jax.core.Tracer):
            # A sum over the dropped axes has the type wanted (their split
            # gone, the kept axes' kept); it feeds only the folded select.
            return _like(jnp.sum(x, axis=dropped), value, dtype)
        spec = padded_spec(typed.spec, x.ndim)
        kept = jax.sharding.PartitionSpec(*(spec[a] for a in keep))
        placed = jax.sharding.NamedSharding(typed.mesh, kept)
        return jax.device_put(np.full(shape, value, np.dtype(dtype or x.dtype)), placed)
    if any(x.shape[a] == 0 for a in range(x.ndim) if a not in keep):
        return jnp.full(shape, value, np.dtype(dtype or x.dtype))  # nothing to slice
    part = x[tuple(slice(None) if a in keep else 0 for a in range(x.ndim))]
    return _like(part, value, dtype)


def explicit_sharding(x: Any) -> Any:
    """``x``'s sharding when its type carries one over explicit mesh axes
    (``jax.make_mesh``'s default; JAX's "sharding in types"), else None: pass
    it as ``out_sharding`` to whatever builds a value of that type afresh.

    ``x`` is an array or a ``jax.ShapeDtypeStruct``. Concrete arrays give
    their own sharding (its mesh holds the devices, so the result can be built
    outside ``jax.set_mesh``); traced ones their abstract sharding."""
    aval = x if isinstance(x, jax.ShapeDtypeStruct) else jax.typeof(x)
    sharding = getattr(aval, "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or not any(_is_explicit(mesh, axis) for axis in _axes(sharding.spec)):
        return None
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return x.sharding
    return sharding


def _axes(spec: Any) -> list[str]:
    """The mesh axis names a ``PartitionSpec`` uses."""
    names: list[str] = []
    for entry in spec:
        if entry is not None:
            names.extend(entry if isinstance(entry, tuple) else (entry,))
    return names


def _is_explicit(mesh: Any, axis: str) -> bool:
    types = dict(zip(mesh.axis_names, mesh.axis_types, strict=True))
    return types.get(axis) == jax.sharding.AxisType.Explicit


def per_dtype(fn: Callable[[np.dtype], Any]) -> Callable[[Any], Any]:
    """Memoise ``fn(dtype)`` for one ``update`` call.

    Hyperparameter casts and scalar terms (bias corrections, ``1 - b``) are
    then traced once per dtype instead of once per leaf: with hundreds of
    leaves that is most of the trace and compile time of a step.
    """
    cache: dict[np.dtype, Any] = {}

    def get(dtype: Any) -> Any:
        key = np.dtype(dtype)
        if key not in cache:
            cache[key] = fn(key)
        return cache[key]

    return get


def scale(tree: Tree, factor: Any) -> Tree:
    """``factor * x`` for every leaf, computed in the compute dtype, stored as x's dtype."""
    return _by_scalar(tree, factor, jnp.multiply)


def unscale(tree: Tree, divisor: Any) -> Tree:
    """``x / divisor`` for every leaf, like :func:`scale` (see :func:`divide`): the
    two factors once per dtype, not per leaf (review9: 3x the equations on 200
    leaves). No eager shortcut on the divisor's value: that would read it back to
    the host at every eager step."""
    factors = per_dtype(lambda dt: _division_factors(hp(divisor, dt)))

    def leaf(x: jax.Array) -> jax.Array:
        s, r = factors(compute_dtype(x.dtype))
        return ((x.astype(s.dtype) * s) * r).astype(x.dtype)

    return jax.tree.map(leaf, as_updates(tree))


def _division_factors(d: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(s, r)`` with ``x / d == (x * s) * r`` (see :func:`divide`)."""
    dt = jnp.result_type(d)
    s = jnp.where(d > jnp.asarray(2.0**64, dt), jnp.asarray(2.0**-64, dt), jnp.ones((), dt))
    return s, 1 / (d * s)


def divide(x: jax.Array, d: jax.Array) -> jax.Array:
    """``x / d`` for a scalar (or broadcast) ``d``, kept where ``1 / d`` is subnormal.

    XLA rewrites ``x / broadcast(d)`` as ``x * broadcast(1 / d)``, and ``1 / d``
    is subnormal, flushed to 0 on CPU, for ``d`` above ``2^126`` (~8.5e37 in
    float32): a clip of a norm of 1e38 gave zeros, not the unit direction
    (hunt47). So a ``d`` above ``2^64`` and ``x`` are both scaled by ``2^-64``
    first: exact, and ``1 / (d 2^-64)`` is ``2^64 / d``, so every result that is
    normal is the same number as ``x * (1 / d)``'s.
    """
    s, r = _division_factors(d)
    return (x * s.astype(x.dtype)) * r.astype(x.dtype)


def _by_scalar(tree: Tree, value: Any, op: Callable[[jax.Array, jax.Array], jax.Array]) -> Tree:
    value_as = per_dtype(lambda dt: hp(value, dt))

    def leaf(x):
        dt = compute_dtype(x.dtype)
        return op(value_as(dt), x.astype(dt)).astype(x.dtype)

    return jax.tree.map(leaf, as_updates(tree))


def moment_step(
    g: jax.Array,
    m: jax.Array,
    decay: Any,
    order: int,
    complement: Any = None,
    dtype: Any = None,
) -> jax.Array:
    """One EMA step of the ``order``-th moment: ``decay*m + (1-decay)*g**order``.

    Computed in the compute dtype; returned in the compute dtype (callers cast
    to the moment's storage dtype once, after using it). Pass ``decay`` and
    ``complement = 1 - decay`` already cast (see :func:`per_dtype`) to keep
    per-leaf tracing small. ``dtype``: the compute dtype, when the caller
    mixes several state dtypes (default: the wider of ``m``'s and ``g``'s).
    """
    dt = dtype
    if dt is None:
        dt = np.result_type(compute_dtype(m.dtype), compute_dtype(g.dtype))
    d = hp(decay, dt)
    c = 1 - d if complement is None else hp(complement, dt)
    gx = g.astype(dt)
    gx = gx if order == 1 else gx * gx if order == 2 else gx**order
    # Optax's operand order: XLA contracts it the same way in jit(step) and in
    # an unrolled scan (d * m + c * gx gave other bits there)
    return c * gx + d * m.astype(dt)


def as_stored(x: jax.Array, storage_dtype: Any) -> jax.Array:
    """``x`` (compute dtype) as it will be stored in ``storage_dtype``, read back.

    Blocks compute their output from the state *as stored*: with bfloat16
    state, using the unrounded value makes XLA recompute it from the old state
    in the output kernel and copy the donated state buffers (Adam on 16M
    bfloat16 params: 31.6 ms -> 10.4 ms). Not for float16, whose narrow range
    underflows small second moments to 0 (an update of m/eps = inf): there the
    unrounded value is kept, at the price of that copy.
    """
    storage = np.dtype(storage_dtype)
    if storage == x.dtype or jnp.finfo(storage).maxexp < jnp.finfo(jnp.float32).maxexp:
        return x
    return x.astype(storage).astype(x.dtype)


def debias(decay: Any, count: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """Bias correction ``1 - decay**count`` as a ``dtype`` scalar (count already incremented).

    Pass the leaf's compute dtype: in float64 a float32 correction would cost
    ~1e-6 relative error per step. (XLA computes it once per dtype.)
    """
    return 1 - count_power(hp(decay, dtype), count.astype(dtype))


def count_power(x: jax.Array, n: jax.Array) -> jax.Array:
    """``x ** n`` for a float ``n`` holding a count ``>= 0``, with derivatives up
    to the third finite and right at ``x = 0`` (in every mode, inside
    ``lax.scan`` too): JAX's power rule gives the second derivative of ``x ** 1``
    there as ``0 * inf``, NaN Hessians of Adam at ``b1 = 0``. At 0, the
    polynomial ``x ** n`` for ``n <= 3`` (0 beyond: its derivatives vanish)."""
    nonzero = x != 0
    power = jnp.power(jnp.where(nonzero, x, 1), n)
    x2 = x * x
    # nested wheres, not jnp.select: the same choice, a fifth less eager time per Adam step
    cubic = jnp.where(n == 3, x2 * x, jnp.zeros_like(x))
    at_zero = jnp.where(
        n == 0, jnp.ones_like(x), jnp.where(n == 1, x, jnp.where(n == 2, x2, cubic))
    )
    return jnp.where(nonzero, power, at_zero)


def sum_of_squares(x: jax.Array, dt: Any) -> jax.Array:
    """``sum(x**2)`` in ``dt``, without a full ``dt`` copy of a narrower ``x``."""
    if x.dtype != dt:
        # Whoever uses the norm (a clip) converts x to float32 too. XLA shares
        # one convert between both and, as the reduction kernel cannot fuse a
        # shared producer, materialises a full float32 copy of x: 18 of 36 ms
        # for clip -> adamw on 16M bfloat16 params (15 ms with the barrier).
        # The barrier keeps the norm's convert its own, fused into the sum.
        x = jax.lax.optimization_barrier(x)
    return jnp.sum(jnp.square(x.astype(dt)))


def may_be_partitioned(x: Any) -> bool:
    """Whether ``x`` may be split over several devices -- a property of the
    data, not of the host.

    Concrete: its sharding is not fully replicated. Traced: its abstract
    sharding names a mesh axis (explicit sharding) or, in JAX's default (auto)
    mode where a tracer's layout is left to XLA, it lives on a mesh of more
    than one device. Values on one device (or on no mesh) read False.
    """
    if isinstance(x, jax.core.Tracer):
        sharding = getattr(jax.typeof(x), "sharding", None)
        spec, mesh = getattr(sharding, "spec", None), getattr(sharding, "mesh", None)
        if spec is not None and any(axis is not None for axis in spec):
            return True
        if mesh is None or mesh.size <= 1:
            return False
        explicit = jax.sharding.AxisType.Explicit
        return not all(t == explicit for t in mesh.axis_types)  # auto: unknown layout
    sharding = getattr(x, "sharding", None)
    return sharding is not None and not sharding.is_fully_replicated


_CONCAT_FANIN = 32


def concatenate(parts: list[jax.Array]) -> jax.Array:
    """``concatenate(parts)`` as a tree of concatenations of at most 32 parts.

    XLA:CPU fuses one concatenation of a thousand operands (with their
    producers) into a single loop that looks up each element's operand: in a
    training loop, where the gradient is packed anew every step, that costs
    more than the optimizer's arithmetic (and seconds of compile). Chunks of
    32, kept apart by an optimization barrier so XLA does not fuse them back
    into one, concatenate at memory speed.
    """
    while len(parts) > 1:
        parts = [
            chunk[0] if len(chunk) == 1 else jax.lax.concatenate(chunk, 0)
            for chunk in (parts[i : i + _CONCAT_FANIN] for i in range(0, len(parts), _CONCAT_FANIN))
        ]
        if len(parts) > 1:
            parts = list(jax.lax.optimization_barrier(parts))
    return parts[0]


def reduction_parts(leaves: list[jax.Array]) -> list[jax.Array]:
    """The arrays a whole-tree reduction (a norm, a finiteness check) reduces:
    the big leaves as they are, and the small ones concatenated per dtype, 32
    to a part -- then reduce each part and the stacked results once."""
    # Small leaves are summed as concatenated vectors (per dtype): a reduction
    # per leaf costs ~3 kernels, and XLA fuses all the per-leaf sums into one
    # kernel whose compile time grows superlinearly (1000 leaves of 100: 3.7 s
    # to compile, 2000 leaves: 22 s; concatenated 0.4 s / 1.0 s, and half the
    # run time). The copy is cheap for small leaves; big ones are reduced in
    # place. Not leaves that may be partitioned: XLA would gather their shards,
    # or shard the concatenation and then the leaf (and its moments) with it.
    # A leaf of symbolic size (jax.export's shape polymorphism) counts as big.
    small: dict[Any, list[jax.Array]] = {}
    parts = []
    for x in leaves:
        size = jnp.size(x)
        if isinstance(size, int) and size <= SMALL_LEAF and not may_be_partitioned(x):
            small.setdefault(jnp.result_type(x), []).append(jax.lax.reshape(x, (size,)))
        else:
            parts.append(x)
    # Concatenated in chunks of 32 leaves, each chunk its own part (reduced
    # apart, the per-part results stacked): one vector for all would be a
    # second concatenation, of the chunks, and a second copy of the leaves held
    # in memory (a donated clip -> adam step on 120 small leaves: 3.0x the
    # params in temporaries, Optax 2.0x; now 2.0x).
    for v in small.values():
        parts += [
            v[i] if len(v) == i + 1 else jax.lax.concatenate(v[i : i + _CONCAT_FANIN], 0)
            for i in range(0, len(v), _CONCAT_FANIN)
        ]
    return parts


def all_finite(tree: Tree) -> jax.Array:
    """Whether every element of every leaf is finite, in a few reductions.

    Small leaves are concatenated per dtype, 32 at a time, and reduced together (as in
    :func:`global_norm`: a reduction per leaf costs kernels and,
    fused, a compile time that grows superlinearly with the leaf count); big
    leaves are reduced in place; the per-part flags are stacked and reduced once.
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.asarray(True)
    parts = reduction_parts(leaves)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in parts]))


def global_norm(tree: Tree) -> jax.Array:
    """``sqrt(sum_i ||x_i||^2)`` over all leaves, accumulated in float32 (or float64).

    Finite inputs give a finite norm: the sum of squares overflows once some
    ``|x| >= 1.8e19`` in float32 (``1.3e154`` in float64) although the norm is
    representable, and then the sum is recomputed with every element scaled
    down by an exact power of two (LAPACK's ``nrm2`` idea). The rescue is a
    ``lax.cond``: a second pass over the data only on such a step (under ``vmap``
    both branches run). An infinite element gives ``inf``, a NaN gives NaN.
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    dt = np.result_type(*(compute_dtype(x.dtype) for x in leaves))
    parts = reduction_parts(leaves)
    # One reduction over the stacked sums, not a Python sum(): a chain of
    # hundreds of scalar adds is fused into every consumer kernel and XLA's
    # fusion pass goes quadratic (clip -> adamw on a 388-leaf tree compiled in
    # 52 s; now 3.7 s).
    return _norm_of_parts(tuple(parts), np.dtype(dt))


def exact_norm(tree: Tree) -> jax.Array:
    """The global norm down to 0: :func:`global_norm` floors it at
    ``sqrt(finfo.tiny)`` (~1e-19 in float32; its derivative divides by it).
    (Just above the floor it is ``global_norm``'s, whose squares of elements
    below ``sqrt(tiny)`` flush to 0: ``[2e-19, 5e-20]`` gives 2e-19, not 2.06e-19.)

    Below the floor it is recomputed as ``a * sqrt(sum (x / a)^2)`` with
    ``a = max |x|`` (no square underflows; 0 for a zero tree, with zero
    derivatives; NaN stays NaN), in a ``lax.cond``: the second pass runs only
    then (both run under ``vmap``). For what reads the norm as a number (a
    tolerance, a unit-length step), not as a divisor of a clip.
    """
    norm = global_norm(tree)
    leaves = [x for x in jax.tree.leaves(tree) if x.size]  # not 0-size
    if not leaves:
        return jnp.zeros((), norm.dtype)
    # module-level branches: an eager lax.cond of fresh closures compiles, and stays
    # in JAX's cache, at every call (hunt48)
    above = norm > jnp.sqrt(jnp.finfo(norm.dtype).tiny)
    return jax.lax.cond(above, _exact_norm_keep, _exact_norm_rescaled, norm, leaves)


def _exact_norm_keep(norm: jax.Array, leaves: list[jax.Array]) -> jax.Array:
    return norm


def _exact_norm_rescaled(norm: jax.Array, leaves: list[jax.Array]) -> jax.Array:
    xs = [x.astype(norm.dtype) for x in leaves]
    big = functools.reduce(jnp.maximum, [jnp.max(jnp.abs(x)) for x in xs])
    # the norm does not depend on a: held constant, no a**2 (0 in float32
    # for a = 1e-25) appears in the derivative of x / a
    a = jax.lax.stop_gradient(jnp.where(big > 0, big, 1))
    s = sum(jnp.sum(jnp.square(x / a)) for x in xs)
    return jnp.where(s > 0, a * jnp.sqrt(jnp.where(s > 0, s, 1)), s)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _norm_of_parts(parts: tuple[jax.Array, ...], dt: np.dtype) -> jax.Array:
    sq = jnp.sum(jnp.stack([sum_of_squares(x, dt) for x in parts]))
    # The norm of an all-zero tree is the smallest normal float, ~1e-19 (its
    # derivative below divides by it). A where()-guarded sqrt would be exact at
    # 0 but sends XLA's fusion pass quadratic.
    fast = jnp.sqrt(jnp.maximum(sq, jnp.finfo(dt).tiny))
    keep, rescue = _global_norm_branches(dt)
    return jax.lax.cond(jnp.isinf(sq), rescue, keep, list(parts), fast)


@_norm_of_parts.defjvp
def _norm_of_parts_jvp(dt, primals, tangents):
    # d||x|| = <x, dx> / ||x||, without differentiating through the overflow
    # rescue's lax.cond (which, eagerly under jax.grad, compiles at every call).
    (parts,), (dparts,) = primals, tangents
    n = _norm_of_parts(parts, dt)
    dot = sum(jnp.sum(x.astype(dt) * d.astype(dt)) for x, d in zip(parts, dparts, strict=True))
    return n, dot / n


def _power_of_two_scales(dt: Any) -> tuple[jax.Array, jax.Array]:
    """``(2^-k, 2^k)`` with ``k = maxexp/2 + 2`` (66 for float32): exact, normal,
    and ``2^-k`` brings every finite square below ``2^124``, so a sum of scaled
    squares overflows only when the norm itself does. (Values below ``2^-60``
    underflow on the way: nothing next to an element of at least ``2^64``,
    which is why the rescue runs.)"""
    k = jnp.finfo(dt).maxexp // 2 + 2
    one = jnp.ones((), dt)
    # Behind a barrier, not as constants: XLA's simplifier rewrites
    # ``(x * c)^2`` with a constant ``c`` as ``x^2 * c^2``, and ``c^2 = 2^-132``
    # flushes to 0 -- the rescue gave ``inf * 0 = NaN`` wherever a reduction
    # has a single element (a scalar leaf of 2^64).
    return jax.lax.optimization_barrier((jnp.ldexp(one, -k), jnp.ldexp(one, k)))


# The branches of the overflow rescues are module-level functions cached per
# static argument, with their arrays passed as operands: a lax.cond of fresh
# closures is traced and compiled anew at every eager call.
@functools.cache
def _global_norm_branches(dt: np.dtype) -> tuple[Callable, Callable]:
    def keep(parts, fast):
        return fast

    def rescue(parts, fast):
        down, up = _power_of_two_scales(dt)
        # Part by part, as the fast sum: concatenating them would gather the
        # leaves that may be partitioned (reduction_parts keeps those apart).
        sq = jnp.stack([jnp.sum(jnp.square(x.astype(dt) * down)) for x in parts])
        return jnp.sqrt(jnp.sum(sq)) * up

    return keep, rescue


def _scaled_norm(x: jax.Array, dt: np.dtype, axis: Any, keepdims: bool, scales: tuple) -> jax.Array:
    """The norm of ``x`` from its elements scaled down by an exact power of two
    (``scales``: :func:`_power_of_two_scales`), for a sum of squares that overflowed."""
    down, up = scales
    return jnp.sqrt(jnp.sum(jnp.square(x.astype(dt) * down), axis=axis, keepdims=keepdims)) * up


@functools.cache
def _norms_branches(dts: tuple, axes: tuple, keepdims: bool) -> tuple[Callable, Callable]:
    def keep(xs, sqs):
        return [jnp.sqrt(sq) for sq in sqs]

    def rescue(xs, sqs):
        scales = {dt: _power_of_two_scales(dt) for dt in set(dts)}  # one barrier per dtype
        return [
            # Only where the plain sum overflowed: elsewhere small values would underflow.
            jnp.where(jnp.isinf(sq), _scaled_norm(x, dt, axis, keepdims, scales[dt]), jnp.sqrt(sq))
            for x, sq, dt, axis in zip(xs, sqs, dts, axes, strict=True)
        ]

    return keep, rescue


def norm(x: jax.Array, dt: Any, axis: Any = None, keepdims: bool = False) -> jax.Array:
    """``sqrt(sum x^2)`` of one array (over ``axis``, an int or a tuple), in
    ``dt``, exactly 0 at 0 (where its derivative is taken as 0).

    Like :func:`global_norm`, finite inputs give a finite norm: where the sum of
    squares overflows, it is recomputed with the elements scaled down by an
    exact power of two (see :func:`norms`, which takes many leaves at once).
    """
    return norms([x], [dt], [axis], keepdims)[0]


def norms(
    xs: Sequence[jax.Array],
    dts: Sequence[Any],
    axes: Sequence[Any] | None = None,
    keepdims: bool = False,
) -> list[jax.Array]:
    """``[norm(x, dt, axis, keepdims) for ...]`` for many leaves at once, each
    finite for finite input: a sum of squares that overflows (float32: some
    ``|x| >= 1.8e19``) is recomputed from the elements scaled down by an exact
    power of two, and used only there (elsewhere small values would underflow).

    How the rescue runs, so that the step a user compiles stays the plain sums:

    * a whole-leaf norm of at most ``SMALL_LEAF`` elements (not partitioned):
      both sums always, one picked by a ``where`` (a second pass over a few
      KiB);
    * every other norm (big or partitioned leaves, norms over ``axis``): one
      ``lax.cond`` for all of them, on "any of their sums overflowed", so a big
      leaf is read once on a normal step.

    One ``lax.cond`` per leaf, as before, is an HLO conditional per leaf that
    XLA cannot fuse across: lamb, lars and adafactor over 204 leaves compiled
    in 2-2.5x Optax's time, adaptive_grad_clip in 3-4.7x and ran 2-3x slower
    (now 1.3x, 0.9x, 1.0x and 2.6x to compile, AGC 1.2x to run:
    ``benchmarks/compile.py``).
    """
    if axes is None:
        axes = [None] * len(xs)
    axes = tuple(tuple(a) if isinstance(a, list) else a for a in axes)
    dts = tuple(np.dtype(dt) for dt in dts)
    if not xs:
        return []
    return list(_norms(tuple(xs), dts, axes, keepdims))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _norms(xs: tuple, dts: tuple, axes: tuple, keepdims: bool) -> list[jax.Array]:
    sqs = []
    for x, dt, axis in zip(xs, dts, axes, strict=True):
        x = x.astype(dt)
        sqs.append(jnp.sum(x * x, axis=axis, keepdims=keepdims))
    small = [
        axis is None
        and isinstance(jnp.size(x), int)
        and jnp.size(x) <= SMALL_LEAF
        and not may_be_partitioned(x)  # its second sum would be another all-reduce
        for x, axis in zip(xs, axes, strict=True)
    ]
    # The sums as computed, not fused into their roots: XLA:CPU would take
    # sqrt(x * x) of a scalar leaf as |x| where the square underflows (jitted
    # only: the eager norm is 0), as it did not behind the per-leaf lax.cond.
    sqs = list(jax.lax.optimization_barrier(sqs))
    out: list[Any] = [None] * len(xs)
    scales = {dt: _power_of_two_scales(dt) for dt, s in zip(dts, small, strict=True) if s}
    for i, x in enumerate(xs):
        if small[i]:
            rescued = _scaled_norm(x, dts[i], axes[i], keepdims, scales[dts[i]])
            out[i] = jnp.where(jnp.isinf(sqs[i]), rescued, jnp.sqrt(sqs[i]))
    big = [i for i, s in enumerate(small) if not s]
    if big:
        big_sqs = [sqs[i] for i in big]
        overflow = jnp.any(jnp.stack([jnp.any(jnp.isinf(sq)) for sq in big_sqs]))
        keep, rescue = _norms_branches(
            tuple(dts[i] for i in big), tuple(axes[i] for i in big), keepdims
        )
        roots = jax.lax.cond(overflow, rescue, keep, [xs[i] for i in big], big_sqs)
        for i, r in zip(big, roots, strict=True):
            out[i] = r
    return out


@_norms.defjvp
def _norms_jvp(dts, axes, keepdims, primals, tangents):
    (xs,), (dxs,) = primals, tangents
    ns = _norms(xs, dts, axes, keepdims)
    out = []
    for x, dx, n, dt, axis in zip(xs, dxs, ns, dts, axes, strict=True):
        dot = jnp.sum(x.astype(dt) * dx.astype(dt), axis=axis, keepdims=keepdims)
        positive = n > 0
        out.append(jnp.where(positive, dot / jnp.where(positive, n, 1), 0))
    return ns, out


def sqrt_or_zero(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` where ``x > 0``, NaN where ``x`` is NaN, else 0, with a finite
    derivative everywhere.

    ``jnp.sqrt(jnp.maximum(x, 0))`` has the same values, but its derivative at
    a clamped ``x`` is ``inf * 0 = NaN``, which poisons ``jax.grad`` through
    every branch of a ``where`` (radam's rectifier, the 1-sqrt cooldown).
    """
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1)), jnp.where(x == x, 0, x))


def root(x: jax.Array) -> jax.Array:
    """``jnp.sqrt(x)`` of a second moment (``x >= 0``): the same values (NaN
    stays NaN), with a finite derivative at ``x == 0`` (1, not ``inf``).

    A moment is 0 only where every gradient it saw was 0, and then its own
    tangent is 0 too: the true derivative of ``m / (sqrt(v) + eps)`` there has
    no ``v`` term, but ``inf * 0`` made it NaN, forward and reverse (e.g.
    through adam's first step on a zero-initialised output layer, whose hidden
    layers get exactly zero gradients). Guarded by ``where``, not a custom
    JVP: JAX inlines a custom JVP's primal inside ``lax.scan``'s second
    derivatives, where the NaN came back. (:func:`sqrt_or_zero` is for
    arguments that may be negative, taken as 0; here NaN must stay NaN.)
    """
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1)), x)


def pow_or_zero(x: jax.Array, p: jax.Array) -> jax.Array:
    """``x ** p`` where ``x > 0``; at ``x <= 0``, 0 (1 if ``p == 0``), with finite
    derivatives (in ``x`` and ``p``) everywhere; NaN where ``x`` or ``p`` is (a
    NaN ``decay_steps`` made a polynomial decay ``end_value`` at every step).

    ``0 ** p`` with ``p < 1`` has an infinite derivative in its base, and
    ``d/dp 0 ** p = 0 * log 0``: NaN in forward mode (``jax.jvp``) through a
    decay that has ended, even where the value does not depend on them.
    """
    positive = x > 0
    at_zero = jnp.where((x == x) & (p == p), jnp.where(p == 0, 1, 0), jnp.nan)
    return jnp.where(positive, jnp.power(jnp.where(positive, x, 1), p), at_zero)


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1`` for an int32 step counter, saturating at 2**31 - 1."""
    return jnp.where(count < INT32_MAX, count + 1, jnp.asarray(INT32_MAX, count.dtype))


def scalar_like(params: Tree, value: Any, dtype: Any) -> jax.Array:
    """A scalar ``value`` in ``dtype`` that lives where ``params`` live: replicated
    over their devices, eagerly and under ``jax.jit(init)``.

    Why not ``jnp.full((), value)``: when every leaf of a state is such a
    constant (``sgd``'s counter alone, ``zero_nans``' flags), ``jax.jit(init)``
    drops the unused params and compiles for ONE device; the committed counter
    then clashes with sharded params in the jitted step ("incompatible
    devices"). Derived from a param (:func:`full_along`), it is on the params'
    mesh; the compiled ``init`` is still a constant.
    """
    for x in jax.tree.leaves(params):
        # arrays only: a bad leaf (a string) is refused by name where the
        # params are checked, not here inside jnp
        if hasattr(x, "dtype") and np.size(x):
            return full_along(x, (), value, dtype)
    return jnp.full((), value, dtype)


def step_counter(params: Tree = None) -> jax.Array:
    """A fresh int32 step counter (0), placed with ``params`` when given
    (:func:`scalar_like`; every ``init`` passes its params)."""
    if params is None:
        return jnp.zeros((), jnp.int32)
    return scalar_like(params, 0, jnp.int32)
