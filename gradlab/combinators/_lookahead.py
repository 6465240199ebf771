"""``lookahead``: k fast steps forward, one slow step back (Zhang et al. 2019)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab import _tree
from gradlab._checks import (
    COUNT_MAX,
    check_bools,
    check_in_range,
    check_int,
    check_scalars,
    check_state,
    check_transformation,
    keyword_alias,
)
from gradlab._core import GradientTransformation, TransformationLike, call_update
from gradlab.combinators._masking import packed_apart
from gradlab.combinators._walk import find_one


class LookaheadState(NamedTuple):
    """``steps_since_sync``: int32 fast steps since the last synchronisation;
    ``slow``: the slow params (a tree like the params: evaluate the model with
    them, :func:`lookahead_params`); ``fast_state``: the fast optimizer's state."""

    steps_since_sync: jax.Array
    slow: Any
    fast_state: Any


@keyword_alias("fast_optimizer", "fast")
def lookahead(
    fast: TransformationLike,
    sync_period: Any,
    slow_step_size: Any,
    reset_state: bool = False,
) -> GradientTransformation:
    """Lookahead (Zhang et al. 2019, "k steps forward, 1 step back").

    Your params are the *fast* weights ``θ``: ``fast`` updates them every step.
    Every ``sync_period`` (``k``) steps the *slow* weights ``φ``, kept in the
    state, move toward them and the fast weights restart from there:
    ``φ <- φ + α (θ - φ)``, ``θ <- φ`` (``α = slow_step_size``), done by
    returning the update ``φ_new - θ`` at that step. Evaluate with the slow
    weights: ``gl.lookahead_params(state)``. ``reset_state=True`` also
    restarts ``fast``'s state at each synchronisation. Needs ``params`` in
    ``update``. Same trajectory as ``optax.lookahead``, whose params are a
    ``LookaheadParams(fast, slow)`` pair; here they stay a plain tree (its
    keyword ``fast_optimizer=`` is accepted too).

    >>> tx = gl.lookahead(gl.adam(1e-3), sync_period=5, slow_step_size=0.5)
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> for _ in range(5):
    ...     updates, state = tx.update(jnp.ones(2), state, params)
    ...     params = gl.apply_updates(params, updates)
    >>> gl.lookahead_params(state)   # the slow weights: halfway to the fast ones
    Array([-0.0025, -0.0025], dtype=float32)
    """
    check_bools(reset_state=reset_state)
    check_transformation("fast", fast)
    check_scalars(sync_period=sync_period, slow_step_size=slow_step_size)
    check_int("sync_period", sync_period, minimum=1, maximum=COUNT_MAX)
    check_in_range("slow_step_size", slow_step_size, 0.0, 1.0)

    def init(params):
        _tree.check_float_params(params, "lookahead init")
        slow = jax.tree.map(_tree.strong_copy, params)
        return LookaheadState(_tree.step_counter(params), slow, fast.init(params))

    def update(updates, state, params=None, **extra):
        check_state("lookahead", state, LookaheadState)
        if params is None:
            raise ValueError("lookahead uses the params: call update(updates, state, params)")
        fast_updates, fast_state = call_update(fast, updates, state.fast_state, params, extra)
        steps = _tree.safe_increment(state.steps_since_sync)
        sync = steps >= jnp.asarray(sync_period, jnp.int32)

        def leaf(u, p, s):
            dt = _tree.compute_dtype(p.dtype)
            # the fast weights as apply_updates will store them
            theta = (p.astype(dt) + u.astype(dt)).astype(p.dtype).astype(dt)
            phi = s.astype(dt) + _tree.hp(slow_step_size, dt) * (theta - s.astype(dt))
            new_slow = jnp.where(sync, phi.astype(s.dtype), s)
            out = jnp.where(sync, (phi - p.astype(dt)).astype(u.dtype), u)
            return out, new_slow

        pairs = _tree.map_like(leaf, fast_updates, params, state.slow, tree_name="params")
        out, slow = _tree.split_outputs(pairs, fast_updates, 2)
        if reset_state:
            fresh = fast.init(params)
            fast_state = jax.tree.map(lambda f, n: jnp.where(sync, f, n), fresh, fast_state)
        return out, LookaheadState(jnp.where(sync, 0, steps), slow, fast_state)

    def packing(ctx):
        # The slow weights stay a tree like the params (lookahead_params reads
        # them); the fast optimizer is packed on its own.
        fast_packed = packed_apart(ctx, fast, "lookahead fast")
        return ctx.per_leaf(lookahead(fast_packed, sync_period, slow_step_size, reset_state))

    return GradientTransformation(init, update, packing=packing)


def lookahead_params(state: Any) -> Any:
    """The slow (evaluation) params of the one :func:`lookahead` in ``state``
    (its own state, or any state holding exactly one, e.g. inside a chain)."""
    return find_one(state, LookaheadState, "lookahead_params").slow
