"""``named_chain``: a chain whose state is keyed by name."""

from __future__ import annotations

from typing import Any

from gradlab._checks import check_transformation
from gradlab._core import GradientTransformation, TransformationLike, call_update


def named_chain(*transforms: tuple[str, TransformationLike]) -> GradientTransformation:
    """``chain`` with named members: the state is ``{name: member_state}``.

    Members run in the order given; keyword extras reach every member that
    takes them (as in :func:`gradlab.chain`). Names must be unique strings.
    The names also qualify hyperparameters read with
    :func:`gradlab.get_hyperparams` (``"adam/learning_rate"``).
    ``optax.named_chain``.
    ``transforms``: ``(name, transformation)`` pairs.

    >>> tx = gl.named_chain(("clip", gl.clip_by_global_norm(1.0)), ("adam", gl.adam(1e-3)))
    >>> state = tx.init(jnp.ones(2))
    >>> list(state)
    ['clip', 'adam']
    """
    names: list[str] = []
    for i, pair in enumerate(transforms):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise TypeError(
                f"named_chain argument {i} must be a (name, transformation) pair with a string "
                f"name, got {pair!r}"
            )
        name, tx = pair
        check_transformation(f"named_chain member {name!r}", tx)
        if name in names:
            raise ValueError(f"named_chain names must be unique, got {name!r} twice")
        names.append(name)

    def init(params):
        return {name: tx.init(params) for name, tx in transforms}

    def update(updates, state, params=None, **extra):
        if not isinstance(state, dict) or set(state) != set(names):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"named_chain of {names} got a state with entries {got}; was it created by "
                "this named_chain's init?"
            )
        new_state: dict[str, Any] = {}
        for name, tx in transforms:
            updates, new_state[name] = call_update(tx, updates, state[name], params, extra)
        return updates, new_state

    def packing(ctx):
        return named_chain(*((name, ctx.form(tx, name)) for name, tx in transforms))

    return GradientTransformation(init, update, packing=packing)
