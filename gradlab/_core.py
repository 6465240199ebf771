"""The core: a gradient transformation is a pair of pure functions.

``init(params) -> state`` and ``update(updates, state, params=None, **extra)
-> (updates, state)``. A :class:`GradientTransformation` is structurally an
Optax one (a NamedTuple of ``init`` and ``update``), so it drops into code
written for Optax, and Optax transformations drop into gradlab's combinators.

Two things a wrapper needs to know about a member are *declared*, never
guessed from a keyword that one caller happens to send:

* whether its ``update`` takes keyword extras (``value=``, ``grad=``, ...):
  read off its signature, as Optax's ``with_extra_args_support`` rule does —
  a member whose ``update`` has no ``**extra`` gets none (:func:`call_update`);
* how it runs on packed buffers (:attr:`GradientTransformation.packing`,
  read by :func:`gradlab.packed`).
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol, TypeVar

import jax
import jax.numpy as jnp

from gradlab._checks import (
    check_same_shapes,
    check_same_structure,
    check_transformation,
    short_structure,
)
from gradlab._tree import as_param, is_float

Params = Any
Updates = Any
State = Any
Schedule = Callable[[Any], Any]

# How a transformation runs under `gl.packed` (GradientTransformation.packing):
ELEMENTWISE = "elementwise"
"""Safe on concatenated buffers as it is: each output element depends only on the
same element of the updates, state and params, and on scalars that do not
depend on them (hyperparameters, step counters, the loss value); its state is
scalars or trees shaped like the updates."""
WHOLE_TREE = "whole_tree"
"""Safe on concatenated buffers as it is, like :data:`ELEMENTWISE`, except that
its outputs also depend on a reduction over every element (the global norm of
``clip_by_global_norm``). Under a mask it must see the masked leaves only, so
``masked`` runs it on them (packed apart), not on the whole buffers."""
PER_LEAF = "per_leaf"
"""Needs the real leaves (their shapes, their tree, one key or flag per leaf):
under `packed` it runs on the unpacked leaves and keeps its state per leaf."""


class InitFn(Protocol):
    """``init(params) -> state``."""

    def __call__(self, params: Params, /) -> State: ...


class UpdateFn(Protocol):
    """``update(updates, state, params=None, **extra) -> (updates, state)``.

    Typed loosely (any arguments), as a transformation's ``update`` may or may
    not take ``params`` and keyword extras. (The fields are callable Protocols,
    not ``Callable``s, as Optax's are: pyright binds a ``Callable`` NamedTuple
    field like a method when it matches a protocol.)"""

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Updates, State]: ...


class _InitUpdate(NamedTuple):
    init: InitFn
    update: UpdateFn


class GradientTransformation(_InitUpdate):
    """A pure ``(init, update)`` pair.

    ``update(updates, state, params=None, **extra)`` returns
    ``(new_updates, new_state)``. ``extra`` carries keyword information such
    as ``value=`` (the current loss); transforms ignore what they don't use.

    ``packing`` declares how :func:`gradlab.packed` may run it:
    :data:`ELEMENTWISE` (on concatenated buffers as it is), :data:`WHOLE_TREE`
    (on the buffers too, but it reduces over all of them), :data:`PER_LEAF`
    (on the unpacked leaves), a rule ``ctx -> GradientTransformation`` that
    builds its buffer form (combinators, masks), or ``None``: undeclared, and
    ``packed`` refuses it. The tuple itself stays ``(init, update)``, as in
    Optax. NamedTuple's ``_replace`` returns an undeclared transformation: a
    new ``init`` or ``update`` need not keep the declaration (``copy`` and
    ``deepcopy`` keep it).

    Example::

        tx = gl.chain(gl.clip_by_global_norm(1.0), gl.adam(1e-3))
        state = tx.init(params)
        updates, state = tx.update(grads, state, params)
        params = gl.apply_updates(params, updates)
    """

    packing: Any = None  # instances set it in their __dict__; see __new__

    def __new__(
        cls,
        init: InitFn,
        update: UpdateFn,
        *,
        packing: Any = None,
    ) -> GradientTransformation:
        self = super().__new__(cls, init, update)
        if packing is not None:
            self.packing = packing
        return self


class TransformationLike(Protocol):
    """What gradlab's combinators accept, for type checkers: an ``(init, update)``
    tuple — a gradlab :class:`GradientTransformation` or an Optax one. (NamedTuple
    classes are nominal to a checker, so a parameter typed with gradlab's class
    would reject Optax's, which work at run time; the tuple's ``__len__`` and
    ``__iter__`` keep out objects that only have the two methods, such as an
    ``optax.MultiSteps``, which the combinators refuse at run time.)"""

    @property
    def init(self) -> InitFn: ...

    @property
    def update(self) -> UpdateFn: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...


class EmptyState(NamedTuple):
    """State of a stateless transformation."""


_F = TypeVar("_F", bound=Callable[..., Any])


def structural(*names: str) -> Callable[[_F], _F]:
    """Declare a factory's structural arguments: Python ints that fix a state's
    shape or a loop's length (``lbfgs``' ``memory_size``). They cannot be
    traced, so :func:`gradlab.inject_hyperparams` keeps them static. The
    factory itself is returned, its type (signature) unchanged."""

    def declare(factory: _F) -> _F:
        factory.structural_args = tuple(names)  # type: ignore[attr-defined]
        return factory

    return declare


def stateless(
    update: Callable[..., tuple[Updates, State]], *, packing: Any = None
) -> GradientTransformation:
    """A transformation without state: ``init`` returns :class:`EmptyState`."""
    return GradientTransformation(lambda params: EmptyState(), update, packing=packing)


# ----------------------------------------------------------------- extras rule

_TAKES_EXTRA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def takes_extra(update: Callable[..., Any]) -> bool:
    """Whether ``update`` accepts keyword extras (has a ``**extra`` parameter)."""
    try:
        return _TAKES_EXTRA[update]
    except (KeyError, TypeError):
        pass
    try:
        params = inspect.signature(update).parameters.values()
        found = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    except (TypeError, ValueError):  # builtins without a signature: pass nothing extra
        found = False
    with contextlib.suppress(TypeError):  # not weak-referenceable: just don't cache
        _TAKES_EXTRA[update] = found
    return found


def call_update(
    tx: Any, updates: Updates, state: State, params: Params, extra: dict[str, Any]
) -> tuple[Updates, State]:
    """``tx.update(updates, state, params, **extra)``, Optax's extra-argument rule:
    a member whose ``update`` takes no ``**extra`` is called without them."""
    if extra and not takes_extra(tx.update):
        return tx.update(updates, state, params)
    return tx.update(updates, state, params, **extra)


# ----------------------------------------------------------------- apply, chain


def apply_updates(params: Params, updates: Updates) -> Params:
    """``params + updates`` leafwise, keeping each param's dtype.

    When the dtypes differ the sum is formed in their promoted dtype (JAX's
    rules: bfloat16 + float32 is float32) and then rounded to the param's
    dtype, as Optax: the update is never rounded to the param's dtype first.
    A floating-point update on an integer or boolean param is refused
    (``TypeError`` naming the leaf): rounding it back to an integer would
    silently lose it (``5 + 0.6`` stays 5). Integer updates on integer params
    (counters kept in the params) add exactly; a complex update on a real
    param is refused too (its imaginary part would be dropped). Python numbers
    are floats.
    Shapes must match (``ValueError`` naming the leaf and both shapes),
    checked when tracing, at no run-time cost.
    """
    check_same_structure(params, updates, "params", "updates")
    check_same_shapes(params, updates, "params", "updates")

    def add(path, p, u):
        if not isinstance(u, jax.Array):  # a Python number or a NumPy array
            u = as_param(u)
        # A Python number is a float param; a weakly typed int array (what a
        # Python int becomes under jit) too, unless it counts integer updates.
        p = jnp.asarray(p) if isinstance(p, jax.Array) and not is_float(u.dtype) else as_param(p)
        if p.dtype == u.dtype:
            # lax, not jnp: one primitive per leaf keeps tracing many-leaf trees cheap.
            return jax.lax.add(p, u)
        if is_float(u.dtype) and not jnp.issubdtype(p.dtype, jnp.inexact):  # int/bool
            raise TypeError(
                f"apply_updates: param leaf {jax.tree_util.keystr(path) or '(root)'} has dtype "
                f"{p.dtype} and its update is {u.dtype}: the sum would be rounded back to "
                f"{p.dtype}, silently losing the update. Optimize floating-point params "
                "(cast the leaf, e.g. x.astype(jnp.float32))."
            )
        if jnp.issubdtype(u.dtype, jnp.complexfloating) and not jnp.issubdtype(
            p.dtype, jnp.complexfloating
        ):
            raise TypeError(
                f"apply_updates: param leaf {jax.tree_util.keystr(path) or '(root)'} has dtype "
                f"{p.dtype} and its update is {u.dtype}: the sum would drop the update's "
                "imaginary part. Give complex params a complex dtype, or take the real part."
            )
        with jax.numpy_dtype_promotion("standard"):  # JAX's rules, even under "strict"
            wide = jnp.promote_types(p.dtype, u.dtype)
        return jax.lax.add(p.astype(wide), u.astype(wide)).astype(p.dtype)

    return jax.tree_util.tree_map_with_path(add, params, updates)


def chain(*transforms: TransformationLike) -> GradientTransformation:
    """Compose transformations: each one's output updates feed the next.

    The state is a tuple of the members' states. Keyword extras (``value=``,
    ...) reach every member whose ``update`` takes ``**extra`` (Optax's rule:
    an Optax member without it gets none). Equivalent of ``optax.chain``.
    Under :func:`gradlab.packed` each member runs as it declares.
    ``transforms``: the members (gradlab's or Optax's), applied in the order given.
    """
    for i, t in enumerate(transforms):
        check_transformation(f"chain argument {i}", t)

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None, **extra):
        if type(state) is not tuple or len(state) != len(transforms):
            got = (
                f"a tuple of {len(state)} states ({', '.join(type(s).__name__ for s in state)})"
                if type(state) is tuple
                else f"a {type(state).__name__} ({short_structure(state, 200)})"
            )
            raise ValueError(
                f"chain of {len(transforms)} transformations got {got} as its state, where "
                f"its init gives a tuple of {len(transforms)}: was the state created by this "
                "chain's init? (A state of another optimizer?)"
            )
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            updates, s = call_update(t, updates, s, params, extra)
            new_state.append(s)
        return updates, tuple(new_state)

    def packing(ctx):
        return chain(*(ctx.form(t, f"chain member {i}") for i, t in enumerate(transforms)))

    return GradientTransformation(init, update, packing=packing)


def elementwise(transform: Any) -> GradientTransformation:
    """Declare a (foreign) transformation elementwise, so :func:`gradlab.packed`
    runs it on concatenated buffers. You vouch for it: each output element must
    depend only on the same element of the updates, state and params and on
    scalars, and its state must be scalars or trees shaped like the updates.
    ``transform``: any transformation with ``init`` and ``update`` (e.g. an Optax one).

    >>> import optax
    >>> tx = gl.packed(gl.chain(gl.elementwise(optax.scale_by_adam()), gl.scale(-1e-3)))
    """
    check_transformation("transform", transform)
    return GradientTransformation(transform.init, _with_extras(transform), packing=ELEMENTWISE)


def per_leaf(transform: Any) -> GradientTransformation:
    """Declare that :func:`gradlab.packed` must run ``transform`` on the unpacked
    leaves (always correct; it keeps its state per leaf). For foreign
    transformations that are not elementwise (``optax.masked``, per-leaf norms).
    """
    check_transformation("transform", transform)
    return GradientTransformation(transform.init, _with_extras(transform), packing=PER_LEAF)


def _with_extras(transform: Any) -> Callable[..., tuple[Updates, State]]:
    """``transform.update`` taking keyword extras, and dropping them for an
    update that takes none (Optax's rule, as in :func:`chain`)."""
    if takes_extra(transform.update):
        return transform.update

    def update(updates, state, params=None, **extra):
        return transform.update(updates, state, params)

    return update


def as_schedule(value: Any) -> Schedule:
    """A hyperparameter that may be a schedule, as a function of the step."""
    return value if callable(value) else (lambda count: value)
