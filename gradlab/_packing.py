"""The fast path: run a transformation on packed, contiguous buffers.

Why: XLA on CPU emits several kernels *per leaf* for an optimizer step, and
each kernel launch costs microseconds. With hundreds of small leaves (biases,
norm scales) the step is launch-bound, ~100x below memory bandwidth. Packing
every small leaf of a dtype into one contiguous buffer turns the optimizer's
arithmetic into a handful of fused loops over long arrays, with the moments
*stored* packed (so they are read and written once, not gathered every step).
This is PyTorch's multi-tensor ("foreach"/fused) idea, done with pure JAX.

How, honestly: every member of the wrapped transformation says how it runs on
buffers (its declared ``packing``, see :mod:`gradlab._core`):

* elementwise members (Adam's moments, momentum, scaling, the global-norm
  clip, weight decay) run on the buffers as they are;
* per-leaf members (per-leaf flags or keys, and later per-matrix algorithms)
  run on the unpacked leaves, their state kept per leaf;
* combinators (``chain``, masks) build their buffer form from their members'
  (:class:`PackContext`); masks are resolved against the *real* params tree
  first (:mod:`gradlab._masks`), then packed like the params;
* a member that declares nothing (an Optax transformation) is refused with a
  ``TypeError`` naming it, unless wrapped in ``gl.elementwise`` or
  ``gl.per_leaf``: never silently different numbers.

Which leaves are packed: those of at most ``max_leaf_size`` elements that are
not split over several devices (a property of each leaf's own sharding: a
partitioned leaf stays loose, its state follows its sharding). Larger leaves
stay loose too: they are bandwidth-bound already, and packing them would add
a copy. The choice is recorded in the state (``offsets``: None for a loose
leaf), so ``update`` -- where gradients are tracers -- repeats it exactly.

Compile time: a slice at a constant offset is a distinct kernel per leaf, and
XLA compiles each one (~5 ms on CPU), so 1000 leaves would cost seconds. The
state therefore keeps each packed leaf's offset as an int32 scalar and the
updates are cut out with ``dynamic_slice`` at that *runtime* offset: leaves of
the same shape then share one compiled kernel. Each packed leaf traces just
two primitives (its ``dynamic_slice`` here, the add in ``apply_updates``),
built with ``lax`` rather than ``jnp`` wrappers, because on many-leaf trees
compile time follows the size of the traced program.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _masks, _tree
from gradlab._checks import (
    check_same_shapes,
    check_same_structure,
    check_state,
    check_transformation,
    leaf_paths,
    path_difference,
    short_structure,
    static_int,
)
from gradlab._core import (
    ELEMENTWISE,
    PER_LEAF,
    WHOLE_TREE,
    GradientTransformation,
    TransformationLike,
    call_update,
)

# Break-even on CPU: a leaf's ~3 kernel launches (~2.5 us each) against the
# ~20 extra bytes/param that packing moves (gather the gradient, cut the update).
DEFAULT_MAX_LEAF_SIZE = _tree.SMALL_LEAF


# A packed buffer: an array; for a packed mask, a NumPy array where the mask is
# static, or a Python bool where it is also uniform (Layout.pack_mask).
PackedBuffer = jax.Array | np.ndarray | bool


class Packed(NamedTuple):
    """A packed tree: one flat buffer per dtype for small leaves, big leaves as they are.

    A packed mask (``Layout.pack_mask``) holds a NumPy buffer where the mask is
    static, or a Python bool where it is also uniform."""

    buffers: dict[str, PackedBuffer]
    loose: tuple[Any, ...]


class PackedState(NamedTuple):
    """``inner``: the wrapped transformation's state, over packed buffers;
    ``offsets``: a tree like the params holding each packed leaf's start in its
    buffer (an int32 scalar), and None for a leaf kept loose. Being shaped like
    the params, it is what a gradient tree is checked against."""

    inner: Any
    offsets: Any

    # the inner transformation's updates are returned unchanged, unpacked (see
    # gradlab.optimizers._linesearch.final_linesearch_state)
    passes_updates_of = "inner"


class Layout:
    """Where each leaf of a tree lives in its :class:`Packed` form (static metadata).

    ``packable[i]`` says whether leaf ``i`` goes into its dtype's buffer; the
    rest (shapes, dtypes, positions) follows from the tree's shapes and dtypes.
    """

    def __init__(self, tree: Any, packable: list[bool]):
        leaves, self.treedef = jax.tree.flatten(tree)
        self.shapes = [tuple(jnp.shape(x)) for x in leaves]
        self.dtypes = [jnp.result_type(x) for x in leaves]
        self.slots: list[tuple[str, int, int] | tuple[None, int, None]] = []
        sizes: dict[str, int] = {}
        n_loose = 0
        for shape, dtype, pack in zip(self.shapes, self.dtypes, packable, strict=True):
            if pack:
                size = int(np.prod(shape, dtype=np.int64))
                key = np.dtype(dtype).name
                self.slots.append((key, sizes.get(key, 0), size))
                sizes[key] = sizes.get(key, 0) + size
            else:
                self.slots.append((None, n_loose, None))
                n_loose += 1
        self.group_sizes = sizes
        self.group_dtypes = {np.dtype(d).name: d for d in self.dtypes}

    @classmethod
    def of_params(cls, params: Any, max_leaf_size: int) -> Layout:
        """Pack the small float leaves that are not split over several devices."""
        leaves = jax.tree.leaves(params)
        # A leaf of symbolic size (jax.export's shape polymorphism) stays loose, as a
        # big one: its size is unknown until the exported step is called.
        packable = [
            isinstance(size := math.prod(jnp.shape(x)), int)
            and size <= max_leaf_size
            and jnp.issubdtype(jnp.result_type(x), jnp.inexact)
            and not _tree.may_be_partitioned(x)
            for x in leaves
        ]
        return cls(params, packable)

    @classmethod
    def of_state(cls, updates: Any, offsets: Any) -> Layout:
        """The layout ``init`` chose, read off the state's offsets (None = loose),
        after checking that the gradient tree has the params' structure."""
        treedef = jax.tree.structure(updates)
        try:
            flat = treedef.flatten_up_to(offsets)
        except (ValueError, TypeError):
            paths = leaf_paths(offsets, is_leaf=lambda o: o is None)
            where = path_difference(
                paths, leaf_paths(updates), "the optimizer state", "the gradient"
            )
            raise ValueError(
                "gradient tree does not match the optimizer state tree.\n"
                f"  optimizer state (offsets; None = unpacked leaf): {short_structure(offsets)}\n"
                f"  gradient: {short_structure(updates)}\n"
                f"{where}\n"
                "(Was the optimizer state initialised with different params?)"
            ) from None
        return cls(updates, [o is not None for o in flat])

    @property
    def packs_anything(self) -> bool:
        return bool(self.group_sizes)

    def pack(self, tree: Any) -> Packed:
        """Concatenate the small leaves of each dtype group; keep the others."""
        leaves = self.treedef.flatten_up_to(tree)
        parts: dict[str, list[jax.Array]] = {k: [] for k in self.group_sizes}
        loose = []
        # lax rather than jnp throughout: one primitive per leaf, so tracing a
        # 1000-leaf tree stays cheap (jnp wrappers cost ~10x more per call).
        for leaf, (key, _, size) in zip(leaves, self.slots, strict=True):
            if key is None:
                loose.append(leaf)
                continue
            leaf = jnp.asarray(leaf)
            if leaf.dtype != self.group_dtypes[key]:  # a per-leaf member's output
                leaf = jax.lax.convert_element_type(leaf, self.group_dtypes[key])
            parts[key].append(jax.lax.reshape(leaf, (size,)))
        buffers: dict[str, PackedBuffer] = {k: _tree.concatenate(v) for k, v in parts.items()}
        return Packed(buffers, tuple(loose))

    def unpack(self, packed: Packed, offsets: tuple[jax.Array, ...] | None = None) -> Any:
        """The inverse of :meth:`pack`: slices of the buffers, reshaped.

        With ``offsets`` (runtime int32 scalars, one per packed leaf) the slices
        are ``dynamic_slice``s whose start is data, not a constant baked into
        the kernel: XLA then compiles one kernel per leaf *shape* instead of
        one per leaf (each leaf still adds ~1 ms of compile on CPU, not ~5 ms).
        """
        out = []
        i = 0
        for shape, (key, start, size) in zip(self.shapes, self.slots, strict=True):
            if key is None:
                out.append(packed.loose[start])
                continue
            buf = cast(jax.Array, packed.buffers[key])  # params/updates: arrays, not a mask
            if size == buf.shape[0]:
                piece = buf
            elif offsets is not None:
                piece = jax.lax.dynamic_slice(
                    buf, (offsets[i],), (size,), allow_negative_indices=False
                )
            else:
                piece = buf[start : start + size]
            i += 1
            out.append(piece if piece.shape == shape else jax.lax.reshape(piece, shape))
        return self.treedef.unflatten(out)

    def offsets(self, params: Any) -> Any:
        """A tree like the params: each packed leaf's start in its buffer as an
        int32 scalar (see :meth:`unpack`) placed like that leaf (replicated
        over its devices), None for loose leaves."""
        leaves = self.treedef.flatten_up_to(params)
        starts = [
            _tree.scalar_like(leaf, start, jnp.int32) if key else None
            for (key, start, _), leaf in zip(self.slots, leaves, strict=True)
        ]
        return self.treedef.unflatten(starts)

    def packed_offsets(self, offsets: Any) -> tuple[jax.Array, ...]:
        """The packed leaves' offsets, in order, from a state's offsets tree."""
        return tuple(o for o in self.treedef.flatten_up_to(offsets) if o is not None)

    def pack_mask(self, mask: Any) -> Packed:
        """A tree of (Python or array) bools with the params' structure,
        broadcast to the leaves' shapes and packed like the params.

        A buffer whose mask is static and uniform packs to a Python bool (no
        select at all); static masks stay NumPy (no device work)."""
        leaves = self.treedef.flatten_up_to(mask)
        parts: dict[str, list[Any]] = {k: [] for k in self.group_sizes}
        loose = []
        for m, shape, (key, _, size) in zip(leaves, self.shapes, self.slots, strict=True):
            static = _masks.static_bool(m)
            if key is None:
                loose.append(m if static is None else static)
            elif static is not None:
                parts[key].append(np.full(size, static))
            else:
                parts[key].append(jnp.broadcast_to(jnp.asarray(m, bool), shape).ravel())
        buffers: dict[str, PackedBuffer] = {}
        for k, v in parts.items():
            static = all(isinstance(x, np.ndarray) for x in v)
            if static and all(x.all() for x in v):
                buffers[k] = True
            elif static and not any(x.any() for x in v):
                buffers[k] = False
            else:
                buffers[k] = (
                    np.concatenate(v) if static else jnp.concatenate([jnp.asarray(x) for x in v])
                )
        return Packed(buffers, tuple(loose))


def _describe(tx: Any) -> str:
    """A transformation, in words: its type and its update function's name."""
    update = getattr(tx, "update", None)
    name = getattr(update, "__qualname__", type(update).__name__)
    return f"{type(tx).__module__}.{type(tx).__qualname__} with update {name}"


class PackContext:
    """What a combinator's packing rule may use to build its buffer form.

    ``tree``: the params tree the member sees -- at ``update``, the params if
    given, else the gradient tree (masks are resolved against it); inside a
    mask (:meth:`seeing`), that tree with the unmasked leaves replaced by empty
    nodes, as the unpacked member sees it. ``keep``: which of the layout's
    leaves ``tree`` holds (None: all).
    ``apart_log``: the path of every member the forms built so far cannot run
    on the whole buffers under a mask -- per-leaf members and whole-tree
    reductions (shared by a context and its children; see
    :meth:`runs_on_buffers`).
    """

    def __init__(
        self,
        layout: Layout,
        tree: Any,
        offsets: Any,
        path: tuple[str, ...] = (),
        apart_log: list[str] | None = None,
        keep: list[bool] | None = None,
    ):
        self.layout, self.tree, self.offsets, self.path = layout, tree, offsets, path
        self.apart_log = [] if apart_log is None else apart_log
        self.keep = keep

    def child(self, where: str, apart_log: list[str] | None = None) -> PackContext:
        """The context of a member named ``where``."""
        log = self.apart_log if apart_log is None else apart_log
        path = (*self.path, where)
        return PackContext(self.layout, self.tree, self.offsets, path, log, self.keep)

    def seeing(self, tree: Any, keep: list[bool]) -> PackContext:
        """The context of a masked member: it sees ``tree`` (this context's tree
        with the leaves whose ``keep`` is False replaced by empty nodes)."""
        full = self.keep if self.keep is not None else [True] * len(keep)
        chosen = iter(keep)
        keep = [next(chosen) if k else False for k in full]
        return PackContext(self.layout, tree, self.offsets, self.path, self.apart_log, keep)

    def runs_on_buffers(self, tx: Any, where: str) -> tuple[GradientTransformation, bool]:
        """``tx``'s buffer form, and whether a mask may run it on the whole
        buffers, selecting the masked elements of its output: only if no member
        runs per leaf (fed the whole tree, ``add_noise`` would draw keys for
        leaves it must not see) and none reduces over the whole tree (a global
        norm would count the unmasked elements)."""
        log: list[str] = []
        form = self.child(where, log).form_here(tx)
        return form, not log

    def reduces_whole_tree(self) -> None:
        """Record, from a combinator's rule, that its form reduces over every
        element (``apply_if_finite``'s finiteness test)."""
        self.apart_log.append(" > ".join(self.path))

    def form(self, tx: Any, where: str) -> GradientTransformation:
        """The buffer form of member ``tx`` (``where`` names it in errors)."""
        return self.child(where).form_here(tx)

    def form_here(self, tx: Any) -> GradientTransformation:
        """The buffer form of ``tx``, this context being its own."""
        here = self
        packing = tx.packing if isinstance(tx, GradientTransformation) else None
        if packing == ELEMENTWISE:
            return tx
        if packing == WHOLE_TREE:
            here.reduces_whole_tree()
            return tx
        if packing == PER_LEAF:
            return here.per_leaf(tx)
        if callable(packing):
            return packing(here)
        raise TypeError(
            f"packed cannot run {' > '.join(here.path)} ({_describe(tx)}): it does not "
            "declare how it runs on packed buffers, and guessing could silently change its "
            "numbers. If each output element depends only on the same element of the "
            "updates, state and params (and on scalars), wrap it as gl.elementwise(tx); "
            "otherwise gl.per_leaf(tx) runs it on the unpacked leaves."
        )

    def mask(self, spec: Any) -> Packed:
        """A mask (tree, prefix or callable) resolved against the tree the member
        sees, as unpacked, then packed (False on the leaves it does not see)."""
        mask = _masks.check_shapes(_masks.check_bools(_masks.resolve(spec, self.tree)), self.tree)
        if self.keep is not None:
            seen = iter(jax.tree.structure(self.tree).flatten_up_to(mask))
            mask = self.layout.treedef.unflatten([next(seen) if k else False for k in self.keep])
        return self.layout.pack_mask(mask)

    def per_leaf(self, tx: Any) -> GradientTransformation:
        """``tx`` run on the unpacked leaves; its state is kept per leaf."""
        self.apart_log.append(" > ".join(self.path))
        layout, real_tree, offsets = self.layout, self.tree, self.offsets

        def init(packed_params):
            return tx.init(real_tree)  # init only: `tree` is the real params

        def update(updates, state, params=None, **extra):
            tree_u = layout.unpack(updates, offsets)
            tree_p = None if params is None else layout.unpack(params, offsets)
            out, state = call_update(tx, tree_u, state, tree_p, extra)
            return layout.pack(out), state

        return GradientTransformation(init, update, packing=PER_LEAF)


def _check_packs_like_params(layout: Layout, params: Any) -> None:
    """Buffers are grouped by dtype: a gradient that packs unlike its param is refused."""
    leaves = jax.tree.leaves(params)
    pairs = zip(leaves, layout.dtypes, layout.slots, strict=True)
    for i, (p, dt, (key, _, _)) in enumerate(pairs):
        if key is not None and jnp.result_type(p) != dt:
            path = jax.tree_util.tree_flatten_with_path(params)[0][i][0]
            raise TypeError(
                f"packed: the gradient at {jax.tree_util.keystr(path)} is {dt} but the "
                f"param is {jnp.result_type(p)}; packed groups leaves by dtype, so pass "
                "gradients in the params' dtypes (or use the transformation unpacked)"
            )


def _state_buffers(state: Any) -> dict[str, tuple[int, ...]]:
    """The packed buffers found in a state, by dtype: ``{dtype: shapes}``."""
    found: dict[str, set] = {}
    for leaf in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, Packed)):
        if isinstance(leaf, Packed):
            for k, b in leaf.buffers.items():
                found.setdefault(k, set()).add(tuple(jnp.shape(b)))
    return {k: tuple(sorted(v)) for k, v in found.items()}


def _explain_mismatch(layout: Layout, inner: Any) -> None:
    """Without params, the gradient alone decides the buffers: if they differ
    from the state's (built from the params), say so in the user's terms."""
    state_groups = _state_buffers(inner)
    grad_groups = {k: ((n,),) for k, n in layout.group_sizes.items()}
    if not state_groups or grad_groups == state_groups:
        return
    # Which leaves pack is read off the state, so a shape change moves no leaf
    # between buffers: other dtypes, or the same total spread over the dtypes
    # differently, mean a gradient leaf came in another dtype than its param.
    total_grad = sum(layout.group_sizes.values())
    total_state = sum(max(math.prod(s) for s in shapes) for shapes in state_groups.values())
    if set(grad_groups) != set(state_groups) or total_grad == total_state:
        raise TypeError(
            "packed: the gradient's dtypes differ from the params' the state was built for: "
            f"the gradient packs into {sorted(grad_groups)} buffers, the state holds "
            f"{sorted(state_groups)} ones. Pass gradients in the params' dtypes (e.g. "
            "float32 gradients of bfloat16 params: cast them), or pass params to update "
            "to be told which leaf differs."
        ) from None
    raise ValueError(
        "packed: the gradient's leaves add up to other buffer sizes than the params' the "
        f"state was built for (gradient: {grad_groups}, state: {state_groups}): a gradient "
        "leaf has another shape than its param. Pass params to update to be told which."
    ) from None


def _keeps_array_state(transform: GradientTransformation, params: Any) -> bool:
    """Whether ``transform`` keeps per-element state (a state leaf with ndim >= 1):
    without it (plain ``sgd``), packing would only add copies. Read off the
    state's shapes (``eval_shape``), which depend on structure and shapes only."""
    shapes = jax.eval_shape(transform.init, params)
    return any(len(s.shape) > 0 for s in jax.tree.leaves(shapes))


def packed(
    transform: TransformationLike, max_leaf_size: int = DEFAULT_MAX_LEAF_SIZE
) -> GradientTransformation:
    """Run ``transform`` on packed buffers: the multi-tensor fast path.

    Small leaves (at most ``max_leaf_size`` elements) of each dtype are packed
    into one contiguous buffer; ``transform``'s state is stored packed; the
    updates come back as a tree like the params. Same numbers as the plain
    path to round-off: global norms sum in another order, and a leaf of one
    element (shape ``()``, ``(1,)``, ...), computed as one element of a longer
    vector, may round an ulp apart (XLA:CPU computes a one-element division
    otherwise than a vector's). Every
    member runs as it declares (``tx.packing``): elementwise ones on the
    buffers, per-leaf ones on the unpacked leaves, masks resolved against the
    real params; a member that declares nothing (an Optax transformation)
    raises ``TypeError`` naming it -- wrap it in :func:`gradlab.elementwise`
    or :func:`gradlab.per_leaf`.

    >>> tx = gl.packed(gl.adamw(1e-3, weight_decay=1e-2))
    >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    >>> updates, state = tx.update(params, tx.init(params), params)
    >>> jax.tree.map(jnp.shape, updates)   # a tree like the params
    {'b': (3,), 'w': (2, 3)}

    A leaf split over several devices stays loose (its state follows its
    sharding); so does every leaf when ``transform`` keeps no per-element
    state (plain ``sgd``), where packing would only add copies. Buffers are
    grouped by dtype, so a gradient must come in its param's dtype; params must
    be floating-point (an integer leaf that a mask keeps out:
    ``masked(packed(tx), mask)``). Under
    ``jit`` in JAX's default (auto) sharding mode a traced leaf's placement is
    unknown: call ``init`` eagerly on sharded params.
    """
    check_transformation("transform", transform)
    max_leaf_size = static_int("max_leaf_size", max_leaf_size, minimum=0)

    def init(params):
        _check_float_params(params)
        layout = Layout.of_params(params, max_leaf_size)
        # Built even when nothing ends up packed: an undeclared member is
        # refused whatever the params.
        form = PackContext(layout, params, None).form(transform, "transform")
        if not (layout.packs_anything and _keeps_array_state(transform, params)):
            loose = jax.tree.map(lambda _: None, params)
            return PackedState(transform.init(params), loose)
        return PackedState(form.init(layout.pack(params)), layout.offsets(params))

    def update(updates, state, params=None, **extra):
        check_state("packed", state, PackedState)
        updates = _tree.as_updates(updates)
        if params is not None:
            check_same_structure(params, updates, "params", "gradient")
            check_same_shapes(params, updates, "params", "gradient")
        layout = Layout.of_state(updates, state.offsets)
        if not layout.packs_anything:  # nothing was packed at init
            new_updates, inner = call_update(transform, updates, state.inner, params, extra)
            return new_updates, PackedState(inner, state.offsets)
        if params is not None:
            _check_packs_like_params(layout, params)
        offsets = layout.packed_offsets(state.offsets)
        real = params if params is not None else updates
        form = PackContext(layout, real, offsets).form(transform, "transform")
        packed_params = layout.pack(params) if params is not None else None
        try:
            new_updates, inner = call_update(
                form, layout.pack(updates), state.inner, packed_params, extra
            )
        except (ValueError, TypeError):
            if params is None:
                _explain_mismatch(layout, state.inner)
            raise
        return layout.unpack(new_updates, offsets), PackedState(inner, state.offsets)

    # Nested inside another `packed`, it runs on the real leaves (and packs them itself).
    return GradientTransformation(init, update, packing=PER_LEAF)


def _check_float_params(params: Any) -> None:
    """``packed`` takes floating-point params only, whatever its member: an
    integer leaf that ``masked``/``partition`` keep out unpacked would still
    reach the buffers' forms (and the gradient checks) here. Refused up front,
    naming the leaf, rather than as a loose leaf deep inside (hunt79)."""
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = jnp.result_type(x)
        if not _tree.is_float(dtype):
            raise TypeError(
                f"packed: param leaf {jax.tree_util.keystr(path) or '(root)'} has dtype "
                f"{dtype}; packed takes floating-point params only. To keep a non-float leaf "
                "out of the optimizer, put packed inside the mask -- masked(packed(tx), mask) "
                "or partition({..., 'opt': packed(tx)}, labels) -- or leave it out of the tree"
            )


Rule = Callable[[PackContext], GradientTransformation]
