"""L-BFGS: a quasi-Newton direction from the last few steps, then a line search.

``lbfgs`` is a short chain: :func:`scale_by_lbfgs` (the two-loop recursion,
``H g``), a sign flip (or ``-learning_rate``), and a line search choosing the
step along that direction. The line search comes last so that the value and
gradient it computes are those at ``params + updates`` (the next iterate), and
:func:`gradlab.value_and_grad_from_state` / :func:`gradlab.minimize` reuse them
instead of evaluating the objective again.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab import _tree
from gradlab._checks import (
    check_in_range,
    check_scalars,
    check_state,
    check_transformation,
    static_int,
)
from gradlab._core import PER_LEAF, GradientTransformation, TransformationLike, chain, structural
from gradlab.blocks import scale, scale_by_learning_rate
from gradlab.optimizers._linesearch import (
    _decided_once,
    _scalar_dtype,
    _select,
    _vdot,
    eager_jit,
    scale_by_zoom_linesearch,
)


class ScaleByLbfgsState(NamedTuple):
    """State of :func:`scale_by_lbfgs`.

    ``count``: int32 updates so far; ``params``, ``updates``: the previous
    iterate and its gradient (to form the next pair; named as in Optax's
    ``ScaleByLBFGSState``, and not ``grad``: ``optax.value_and_grad_from_state``
    reads the one field named ``grad`` in a state, the line search's); ``diff_params``,
    ``diff_grads``: the memory ``s_i = x_{i+1} - x_i`` and
    ``y_i = g_{i+1} - g_i``, one array per leaf with a leading axis of
    ``memory_size`` (a circular buffer); ``rho``: ``1 / <s_i, y_i>`` per slot
    (0 for an empty slot, which makes it a no-op in the recursion);
    ``index``: int32 slot the next pair goes to.
    """

    count: jax.Array
    params: Any
    updates: Any
    diff_params: Any
    diff_grads: Any
    rho: jax.Array
    index: jax.Array


def _slot(memory: Any, j: jax.Array) -> Any:
    """Slot ``j`` of every leaf's memory."""
    return jax.tree.map(lambda m: jax.lax.dynamic_index_in_dim(m, j, keepdims=False), memory)


def _axpy(a: jax.Array, x: Any, y: Any) -> Any:
    """``y + a x`` leafwise, in each leaf's dtype."""
    return jax.tree.map(lambda u, v: v + a.astype(v.dtype) * u.astype(v.dtype), x, y)


def _in_compute_dtype(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.astype(_tree.compute_dtype(x.dtype)), tree)


@functools.partial(eager_jit, static_argnames=())
def _lbfgs_update(updates, state, params, eps):
    """One step of :func:`scale_by_lbfgs` (module level: compiled once when eager)."""
    m = state.rho.shape[0]
    # In the state's dtypes (the params' compute dtypes): a float32 gradient of
    # float64 params must not turn the stored pairs float32 (a scan carry).
    g = _tree.map_like(lambda u, s: u.astype(s.dtype), updates, state.updates)
    x = _tree.map_like(lambda p, s: p.astype(s.dtype), params, state.params, tree_name="state")
    dt = state.rho.dtype

    # 1. The newest pair, kept if it has positive curvature and its 1 / <s, y>
    # and <s, y> / <y, y> are finite and positive: with |y| ~ 1e-20 (float32)
    # <y, y> underflows to 0, and gamma would be inf and the direction NaN.
    s = jax.tree.map(jnp.subtract, x, state.params)
    y = jax.tree.map(jnp.subtract, g, state.updates)
    sy, ss, yy = _vdot(s, y, dt), _vdot(s, s, dt), _vdot(y, y, dt)
    usable = (yy > 0) & jnp.isfinite(1 / sy) & jnp.isfinite(sy / yy)
    keep = (state.count > 0) & (sy > _tree.hp(eps, dt) * jnp.sqrt(ss * yy)) & usable
    slot = state.index
    keep_leaf = _decided_once(keep)  # read by 2 writes per leaf

    def write(memory, new):
        old = jax.lax.dynamic_index_in_dim(memory, slot, keepdims=False)
        return jax.lax.dynamic_update_index_in_dim(memory, jnp.where(keep_leaf, new, old), slot, 0)

    diff_params = jax.tree.map(write, state.diff_params, s)
    diff_grads = jax.tree.map(write, state.diff_grads, y)
    # (each division guarded by its own where: a 1 / 0 in the branch not taken
    # is an inf whose derivative makes reverse-mode gradients NaN, e.g. at the
    # first step from x0 = 0, where s = 0)
    rho = state.rho.at[slot].set(jnp.where(keep, 1 / jnp.where(keep, sy, 1), state.rho[slot]))
    index = jnp.where(keep, (slot + 1) % m, slot)

    # 2. The two-loop recursion over the slots, newest first (empty slots
    # have rho = 0 and s = y = 0: they change nothing).
    order = (index - 1 - jnp.arange(m, dtype=jnp.int32)) % m

    def newest_to_oldest(q, j):
        alpha = rho[j] * _vdot(_slot(diff_params, j), q, dt)
        return _axpy(-alpha, _slot(diff_grads, j), q), alpha

    q, alphas = jax.lax.scan(newest_to_oldest, g, order)
    newest = order[0]
    # 1 / |g|, with |g| exact below float32's 1e-19 floor of the global norm:
    # the unit-length step of an empty memory stays unit length there too.
    g_norm = _tree.exact_norm(g).astype(dt)
    g_norm = jnp.where(g_norm > 0, g_norm, 1)  # a zero gradient: a zero step
    inv_norm = 1 / g_norm

    # The newest pair's <y, y>, read inside a lax.cond (where rho > 0, its only
    # use): read next to the write, XLA copied all of diff_grads (memory_size x
    # params) to write one slot in place -- 14x the params in temporaries for a
    # donated update, Optax's 5x. Under vmap both branches run (the same value).
    def newest_curvature(memory):
        y_new = _slot(memory, newest)
        return rho[newest] * _vdot(y_new, y_new, dt)

    curvature = jax.lax.cond(
        rho[newest] > 0, newest_curvature, lambda memory: jnp.zeros((), dt), diff_grads
    )
    gamma = jnp.where(rho[newest] > 0, 1 / jnp.where(rho[newest] > 0, curvature, 1), inv_norm)
    r = jax.tree.map(lambda v: gamma.astype(v.dtype) * v, q)

    def oldest_to_newest(r, j_alpha):
        j, alpha = j_alpha
        beta = rho[j] * _vdot(_slot(diff_grads, j), r, dt)
        return _axpy(alpha - beta, _slot(diff_params, j), r), None

    r, _ = jax.lax.scan(oldest_to_newest, r, (order[::-1], alphas[::-1]))
    # A finite gradient gets a finite direction: should the recursion still
    # overflow (extreme scales), take the unit-length gradient step instead.
    fallback = jax.tree.map(lambda v: v / g_norm.astype(v.dtype), g)
    r = _select(_tree.all_finite(r) | ~_tree.all_finite(g), r, fallback)

    out = jax.tree.map(lambda v, u: v.astype(u.dtype), r, _tree.as_updates(updates))
    new_state = ScaleByLbfgsState(
        _tree.safe_increment(state.count), x, g, diff_params, diff_grads, rho, index
    )
    return out, new_state


@structural("memory_size")
def scale_by_lbfgs(memory_size: int = 10, eps: Any = 1e-10) -> GradientTransformation:
    """The L-BFGS direction ``H_k g_k`` (Nocedal & Wright 2006, Algorithm 7.4).

    With the last ``m = memory_size`` pairs ``s_i = x_{i+1} - x_i``,
    ``y_i = g_{i+1} - g_i`` and ``rho_i = 1 / <s_i, y_i>``, the two-loop
    recursion applies the inverse-Hessian approximation to ``g``::

        q = g
        for i = newest .. oldest:  a_i = rho_i <s_i, q>;  q -= a_i y_i
        r = gamma q,  gamma = <s, y> / <y, y> of the newest pair (eq. 7.20)
        for i = oldest .. newest:  b = rho_i <y_i, r>;    r += (a_i - b) s_i

    and returns ``r`` (a preconditioned gradient: follow it with a negative
    scale, as :func:`lbfgs` does). With an empty memory ``gamma = 1 / |g|``:
    the first step has unit length, as in scipy's L-BFGS-B. A pair is stored
    only when ``<s, y> > eps |s| |y|`` (the curvature condition; otherwise the
    update could lose positive definiteness) and ``1 / <s, y>`` and ``gamma``
    are finite and positive (not so when ``<y, y>`` underflows, at gradients of
    ~1e-20 in float32). A finite gradient always gets a finite direction (the
    unit-length gradient step, should the recursion overflow). Inner products run over the whole
    pytree; the memory is kept per leaf. Equivalent of ``optax.scale_by_lbfgs``.

    Args:
        memory_size: number of pairs kept (known when tracing: it sets the state's shape).
        eps: relative tolerance of the curvature safeguard (>= 0).

    >>> tx = gl.chain(gl.scale_by_lbfgs(5), gl.scale(-1.0))   # no line search
    """
    m = static_int("memory_size", memory_size, minimum=1)
    check_scalars(eps=eps)
    check_in_range("eps", eps, 0.0)

    def init(params):
        # A new buffer for every field: one array twice in a state cannot be
        # donated to a jitted step (XLA refuses to donate a buffer twice).
        def zeros():
            return _in_compute_dtype(_tree.zeros_like(params))

        def memory():
            return jax.tree.map(lambda z: jnp.broadcast_to(z, (m, *z.shape)), zeros())

        return ScaleByLbfgsState(
            count=_tree.step_counter(params),
            params=zeros(),
            updates=zeros(),
            diff_params=memory(),
            diff_grads=memory(),
            rho=jnp.broadcast_to(_tree.scalar_like(params, 0, _scalar_dtype(params)), (m,)),
            index=_tree.step_counter(params),
        )

    def update(updates, state, params=None, **extra):
        check_state("scale_by_lbfgs", state, ScaleByLbfgsState)
        if params is None:
            raise ValueError(
                "scale_by_lbfgs forms its memory from the params: call update(grads, state, params)"
            )
        return _lbfgs_update(updates, state, params, eps)

    # Its memory has a leading axis per leaf and its inner products span the
    # tree: it runs on the real leaves under `packed`.
    return GradientTransformation(init, update, packing=PER_LEAF)


_DEFAULT_LINESEARCH = scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess="one")


@structural("memory_size")
def lbfgs(
    learning_rate: Any = None,
    memory_size: int = 10,
    linesearch: TransformationLike | None = _DEFAULT_LINESEARCH,
) -> GradientTransformation:
    """L-BFGS (Liu & Nocedal 1989; Nocedal & Wright 2006, Algorithm 7.5).

    ``d = -lr * H g`` with ``H g`` from :func:`scale_by_lbfgs` (``lr = 1``
    when ``learning_rate`` is None), then ``x <- x + t d`` with ``t`` from the
    line search (default: strong Wolfe, ``c1 = 1e-4, c2 = 0.9``, trying
    ``t = 1`` first; ``linesearch=None`` takes ``t = 1``). The line search needs
    the objective: pass ``value=``, ``grad=`` and ``value_fn=`` to ``update``
    (:func:`gradlab.minimize` does), plus any data ``value_fn`` takes by name
    (``value_fn(params, batch)`` with ``batch=``). Equivalent of ``optax.lbfgs``; iterates
    like ``scipy.optimize.minimize(method="L-BFGS-B")`` without bounds.
    ``memory_size``: the number of ``(s, y)`` pairs kept (static: it sets the state's
    shape).

    >>> f = lambda x: jnp.sum((x - 1.0) ** 2) + jnp.sum(x**4)
    >>> result = gl.minimize(f, jnp.zeros(3), gl.lbfgs(), max_steps=50, tol=1e-5)
    >>> bool(result.converged)
    True
    """
    check_scalars(learning_rate=learning_rate)
    if linesearch is not None:
        check_transformation("linesearch", linesearch)
    steps = [scale_by_lbfgs(memory_size)]
    steps.append(scale(-1.0) if learning_rate is None else scale_by_learning_rate(learning_rate))
    if linesearch is not None:
        steps.append(linesearch)
    return chain(*steps)
