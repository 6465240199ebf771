"""The fast path: run a transformation on packed, contiguous buffers.

Why: XLA on CPU emits several kernels *per leaf* for an optimizer step, and
each kernel launch costs microseconds. With hundreds of small leaves (biases,
norm scales) the step is launch-bound, ~100x below memory bandwidth. Packing
every small leaf of a dtype into one contiguous buffer turns the optimizer's
arithmetic into a handful of fused loops over long arrays, with the moments
*stored* packed (so they are read and written once, not gathered every step).
This is PyTorch's multi-tensor ("foreach"/fused) idea, done with pure JAX.

How: :func:`packed` wraps any transformation built from gradlab's blocks
(they are pytree-generic, so they run unchanged on the packed tree). Leaves
larger than ``max_leaf_size`` stay separate ("loose"): they are
bandwidth-bound already, and packing them would add a copy. The updates are
unpacked once at the end, so the pytree-in/pytree-out contract and the
numbers are unchanged (same arithmetic per element; global norms sum in a
different order, i.e. equal to round-off).

Compile time: a slice at a constant offset is a distinct kernel per leaf, and
XLA compiles each one (~5 ms on CPU), so 1000 leaves would cost seconds. The
state therefore keeps each packed leaf's offset as an int32 scalar and the
updates are cut out with ``dynamic_slice`` at that *runtime* offset: leaves of
the same shape then share one compiled kernel. Each packed leaf traces just
two primitives (its ``dynamic_slice`` here, the add in ``apply_updates``),
built with ``lax`` rather than ``jnp`` wrappers, because on many-leaf trees
compile time follows the size of the traced program.

Sharding: packing concatenates leaves, which would gather sharded params to
one device. So when more than one device is visible, nothing is packed and
every leaf keeps its own state, which follows the leaf's sharding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import (
    check_int,
    check_same_structure,
    check_transformation,
    short_structure,
)
from gradlab._core import GradientTransformation

# Break-even on CPU: a leaf's ~3 kernel launches (~2.5 us each) against the
# ~20 extra bytes/param that packing moves (gather the gradient, cut the update).
DEFAULT_MAX_LEAF_SIZE = _tree.SMALL_LEAF


class Packed(NamedTuple):
    """A packed tree: one flat buffer per dtype for small leaves, big leaves as they are."""

    buffers: dict[str, jax.Array]
    loose: tuple[Any, ...]


class PackedState(NamedTuple):
    """``inner``: the wrapped transformation's state, over packed buffers;
    ``offsets``: a tree like the params holding each packed leaf's start in its
    buffer (an int32 scalar), and None for a leaf kept loose. Being shaped like
    the params, it is what a gradient tree is checked against."""

    inner: Any
    offsets: Any


class Layout:
    """Where each leaf of a tree lives in its :class:`Packed` form (static metadata).

    Computed from shapes and dtypes only, so ``init`` (concrete params) and
    ``update`` (traced gradients) derive the same layout independently.
    """

    def __init__(self, tree: Any, max_leaf_size: int):
        leaves, self.treedef = jax.tree.flatten(tree)
        self.shapes = [tuple(jnp.shape(x)) for x in leaves]
        self.dtypes = [jnp.result_type(x) for x in leaves]
        self.slots: list[tuple[str, int, int] | tuple[None, int, None]] = []
        sizes: dict[str, int] = {}
        n_loose = 0
        pack_all = jax.device_count() == 1
        for shape, dtype in zip(self.shapes, self.dtypes, strict=True):
            size = int(np.prod(shape, dtype=np.int64))
            if pack_all and size <= max_leaf_size and jnp.issubdtype(dtype, jnp.inexact):
                key = np.dtype(dtype).name
                self.slots.append((key, sizes.get(key, 0), size))
                sizes[key] = sizes.get(key, 0) + size
            else:
                self.slots.append((None, n_loose, None))
                n_loose += 1
        self.group_sizes = sizes

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
            else:
                parts[key].append(jax.lax.reshape(jnp.asarray(leaf), (size,)))
        buffers = {k: v[0] if len(v) == 1 else jax.lax.concatenate(v, 0) for k, v in parts.items()}
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
            buf = packed.buffers[key]
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

    def offsets(self) -> Any:
        """A tree like the params: each packed leaf's start in its buffer as an
        int32 scalar (see :meth:`unpack`), None for loose leaves."""
        starts = [jnp.asarray(start, jnp.int32) if key else None for key, start, _ in self.slots]
        return self.treedef.unflatten(starts)

    def packed_offsets(self, offsets: Any) -> tuple[jax.Array, ...]:
        """The packed leaves' offsets from a state's offsets tree, checking that
        the tree has this layout's structure (the gradient's)."""
        try:
            flat = self.treedef.flatten_up_to(offsets)
        except (ValueError, TypeError):
            gradient = self.treedef.unflatten([0] * self.treedef.num_leaves)
            raise ValueError(
                "gradient tree does not match the optimizer state tree.\n"
                f"  optimizer state (offsets; None = unpacked leaf): {short_structure(offsets)}\n"
                f"  gradient: {short_structure(gradient)}\n"
                "(Was the optimizer state initialised with different params?)"
            ) from None
        return tuple(o for o in flat if o is not None)

    def pack_mask(self, mask: Any) -> Packed:
        """A tree of (Python or array) bools, broadcast and packed like the params."""
        leaves = self.treedef.flatten_up_to(mask)
        parts: dict[str, list[Any]] = {k: [] for k in self.group_sizes}
        loose = []
        for m, shape, (key, _, size) in zip(leaves, self.shapes, self.slots, strict=True):
            if key is None:
                loose.append(m)
            elif isinstance(m, bool | np.bool_):
                parts[key].append(np.full(size, bool(m)))
            else:
                parts[key].append(jnp.broadcast_to(jnp.asarray(m, bool), shape).ravel())
        buffers = {}
        for k, v in parts.items():
            static = all(isinstance(x, np.ndarray) for x in v)
            if static and all(x.all() for x in v):
                buffers[k] = True  # decay everything: no select needed
            elif static and not any(x.any() for x in v):
                buffers[k] = False
            else:
                buffers[k] = (
                    np.concatenate(v) if static else jnp.concatenate([jnp.asarray(x) for x in v])
                )
        return Packed(buffers, tuple(loose))


def _check_packs_like_params(layout: Layout, params: Any, max_leaf_size: int) -> None:
    """Buffers are grouped by dtype: a gradient that packs unlike its param is refused.

    (Only the rare mixed-dtype case pays for a second layout.)
    """
    leaves = jax.tree.leaves(params)
    if all(getattr(p, "dtype", None) == dt for p, dt in zip(leaves, layout.dtypes, strict=True)):
        return
    params_layout = Layout(params, max_leaf_size)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    for i, (path, p) in enumerate(flat):
        if params_layout.slots[i][0] != layout.slots[i][0]:
            u = layout.dtypes[i]
            raise TypeError(
                f"packed: the gradient at {jax.tree_util.keystr(path)} is {u} but the "
                f"param is {jnp.result_type(p)}; packed groups leaves by dtype, so pass "
                "gradients in the params' dtypes (or use the transformation unpacked)"
            )


def packed(
    transform: GradientTransformation, max_leaf_size: int = DEFAULT_MAX_LEAF_SIZE
) -> GradientTransformation:
    """Run ``transform`` on packed buffers: the multi-tensor fast path.

    Small leaves (at most ``max_leaf_size`` elements) of each dtype are packed
    into one contiguous buffer; ``transform``'s state is stored packed; the
    updates come back as a tree like the params. Same numbers as the plain
    path (to round-off in global norms). Works with any chain of gradlab
    blocks, including masks (``add_decayed_weights(mask=...)``).

    >>> tx = packed(adamw(1e-3, weight_decay=1e-2))

    Packing is skipped (every leaf loose) when more than one device is
    visible, so sharded params keep their sharding and their state follows it,
    and when ``transform`` keeps no per-param state (plain ``sgd``), where it
    would only add copies. Buffers are grouped by dtype, so a gradient must
    come in its param's dtype (``TypeError`` otherwise, when ``params`` are
    passed to ``update``).
    """
    check_transformation("transform", transform)
    check_int("max_leaf_size", max_leaf_size, minimum=0)

    def init(params):
        layout = Layout(params, max_leaf_size)
        packed_params = layout.pack(params)
        state = transform.init(packed_params)
        buffer_shapes = {b.shape for b in packed_params.buffers.values()}
        if not any(jnp.shape(x) in buffer_shapes for x in jax.tree.leaves(state)):
            # No per-param state (e.g. plain sgd): packing would only add copies.
            return PackedState(transform.init(params), jax.tree.map(lambda _: None, params))
        return PackedState(state, layout.offsets())

    def update(updates, state, params=None, **extra):
        updates = _tree.as_updates(updates)
        if params is not None:
            check_same_structure(params, updates, "params", "updates")
        layout = Layout(updates, max_leaf_size)
        if params is not None:
            _check_packs_like_params(layout, params, max_leaf_size)
        offsets = layout.packed_offsets(state.offsets)  # checks the gradient's structure
        if not offsets:  # nothing was packed at init
            new_updates, inner = transform.update(updates, state.inner, params, **extra)
            return new_updates, PackedState(inner, state.offsets)
        p = layout.pack(params) if params is not None else None
        new_updates, inner = transform.update(
            layout.pack(updates), state.inner, p, **extra, _packing=layout
        )
        return layout.unpack(new_updates, offsets), PackedState(inner, state.offsets)

    return GradientTransformation(init, update)
