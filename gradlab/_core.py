"""The core: a gradient transformation is a pair of pure functions.

``init(params) -> state`` and ``update(updates, state, params=None, **extra)
-> (updates, state)``. A :class:`GradientTransformation` is structurally an
Optax one, so it drops into code written for Optax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab._checks import check_same_structure, check_transformation

Params = Any
Updates = Any
State = Any
Schedule = Callable[[Any], Any]


class GradientTransformation(NamedTuple):
    """A pure ``(init, update)`` pair.

    ``update(updates, state, params=None, **extra)`` returns
    ``(new_updates, new_state)``. ``extra`` carries keyword information such
    as ``value=`` (the current loss); transforms ignore what they don't use.

    Example::

        tx = gl.chain(gl.clip_by_global_norm(1.0), gl.adam(1e-3))
        state = tx.init(params)
        updates, state = tx.update(grads, state, params)
        params = gl.apply_updates(params, updates)
    """

    init: Callable[[Params], State]
    update: Callable[..., tuple[Updates, State]]


class EmptyState(NamedTuple):
    """State of a stateless transformation."""


def apply_updates(params: Params, updates: Updates) -> Params:
    """``params + updates`` leafwise, keeping each param's dtype.

    The sum is formed in the wider of the two dtypes and rounded once to the
    param's dtype (so float32 updates on bfloat16 params round only once).
    """
    check_same_structure(params, updates, "params", "updates")

    def add(p, u):
        p = jnp.asarray(p)
        if not isinstance(u, jax.Array):  # a Python number or a NumPy array
            u = jnp.asarray(u)
        if p.dtype == u.dtype and p.shape == u.shape:
            # lax, not jnp: one primitive per leaf keeps tracing many-leaf trees cheap.
            return jax.lax.add(p, u)
        wide = p.dtype if p.dtype.itemsize >= u.dtype.itemsize else u.dtype
        return (p.astype(wide) + u.astype(wide)).astype(p.dtype)

    return jax.tree.map(add, params, updates)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Compose transformations: each one's output updates feed the next.

    The state is a tuple of the members' states; keyword extras
    (``value=``, ...) are forwarded to every member.
    Equivalent of ``optax.chain``.
    """
    for i, t in enumerate(transforms):
        check_transformation(f"chain argument {i}", t)

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None, **extra):
        if not isinstance(state, tuple) or len(state) != len(transforms):
            raise ValueError(
                f"chain of {len(transforms)} transformations got a state with "
                f"{len(state) if isinstance(state, tuple) else type(state).__name__} entries; "
                "was it created by this chain's init?"
            )
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            updates, s = t.update(updates, s, params, **extra)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


def as_schedule(value: Any) -> Schedule:
    """A hyperparameter that may be a schedule, as a function of the step."""
    return value if callable(value) else (lambda count: value)
