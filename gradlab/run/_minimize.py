"""``minimize``: run an optimizer on a deterministic objective until convergence.

The seeds' flowchart, compiled: compute the gradient; if its norm is at most
``tol``, stop (converged); otherwise update and loop. One ``lax.while_loop``,
so the whole solve is a single XLA computation that ``jit`` compiles and
``vmap`` batches (over starting points, or over hyperparameters by building
the optimizer inside the vmapped function).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import (
    COUNT_MAX,
    check_int,
    check_nonnegative,
    check_scalars,
    check_transformation,
    is_function,
)
from gradlab._core import apply_updates, call_update
from gradlab.optimizers._linesearch import final_linesearch_state
from gradlab.run._common import check_params


class MinimizeResult(NamedTuple):
    """What :func:`minimize` returns (arrays; batched under ``vmap``).

    ``params``: the last iterate; ``value``: the objective there;
    ``grad_norm``: the global norm of its gradient; ``num_steps``: int32
    optimizer updates taken; ``converged``: ``grad_norm <= tol`` (and not
    ``failed``); ``failed``: the value, gradient or params became NaN/Inf,
    which stopped the loop;
    ``aux``: ``fun``'s auxiliary output at ``params`` (``has_aux=True``), else None.
    """

    params: Any
    value: jax.Array
    grad_norm: jax.Array
    num_steps: jax.Array
    converged: jax.Array
    failed: jax.Array
    aux: Any = None


class _Carry(NamedTuple):
    params: Any
    state: Any
    value: jax.Array
    grad: Any
    grad_norm: jax.Array
    num_steps: jax.Array


def stepper(
    value_fn: Callable[[Any], Any], optimizer: Any, state: Any
) -> Callable[[Any, Any, Any, Any], tuple[Any, Any, Any, Any]]:
    """``step(params, state, value, grad) -> (params, state, value, grad)``: one
    update with the extras a line search needs (``value``, ``grad``, ``value_fn``),
    then the value and gradient at the new params -- read from the line search's
    state when its step is the update (it evaluated them there already, see
    ``final_linesearch_state``), else computed. ``state`` (an initial state)
    tells which case applies."""
    value_and_grad = jax.value_and_grad(value_fn)
    # states from init/update: a named_chain's dict is in member order
    reuse = final_linesearch_state(state, ordered=True) is not None

    def step(params, state, value, grad):
        extra = {"value": value, "grad": grad, "value_fn": value_fn}
        updates, state = call_update(optimizer, grad, state, params, extra)
        params = apply_updates(params, updates)
        if reuse:
            ls = final_linesearch_state(state, ordered=True)
            new_value, new_grad = ls.value, ls.grad
        else:
            new_value, new_grad = value_and_grad(params)
        # Keep the loop carry's dtypes (a float32 objective of float64 params).
        new_value = jnp.asarray(new_value).astype(jnp.result_type(value))
        new_grad = jax.tree.map(lambda n, o: n.astype(o.dtype), new_grad, grad)
        return params, state, new_value, new_grad

    return step


def minimize(
    fun: Callable[[Any], Any],
    x0: Any,
    optimizer: Any,
    *,
    max_steps: int,
    tol: Any,
    has_aux: bool = False,
) -> MinimizeResult:
    """Minimize ``fun`` from ``x0`` with ``optimizer`` until ``|grad| <= tol`` or ``max_steps``.

    One ``lax.while_loop``: compute ``value, grad = value_and_grad(fun)(params)``;
    stop if the gradient's global norm (over the whole pytree) is at most
    ``tol``, if the value, gradient or params are not finite (``failed``), or after
    ``max_steps`` updates; else ``updates, state = optimizer.update(grad, state,
    params, value=value, grad=grad, value_fn=fun)`` and ``params += updates``.

    Works with any gradlab optimizer or chain (and Optax ones): first-order
    optimizers cost one evaluation of ``fun`` and its gradient per step; with
    a line search (:func:`gradlab.lbfgs`) the evaluations happen inside the
    search, and the value and gradient at the accepted point are read from its
    state when its step is the update (as in ``lbfgs``, also inside ``chain``,
    ``inject_hyperparams``, ``apply_if_finite``, ``packed``); otherwise (a
    member after the search, or a wrapper such as ``MultiSteps`` changing its
    step) they are computed at the new params. Contrast: Optax leaves this
    loop to the user and has no convergence flag; ``scipy.optimize.minimize``
    stops on a gradient test too.

    ``jit``: call it inside a jitted function (each eager call compiles its
    loop anew, in a ``jax.jit`` of its own, released after the call). ``vmap``:
    over ``x0``, or over hyperparameters by building the optimizer inside the
    vmapped function; a batch runs until its last member stops, the others keep
    their final values.

    Args:
        fun: ``params -> scalar`` (``has_aux=True``: ``-> (scalar, aux)``).
        x0: the starting params (any pytree of float arrays).
        optimizer: a ``GradientTransformation``.
        max_steps: most updates (>= 1; may be traced).
        tol: gradient-norm tolerance (>= 0; may be traced).
        has_aux: whether ``fun`` returns ``(value, aux)``; ``aux`` at the final
            params is in the result (one extra evaluation of ``fun``, after the loop).

    Returns:
        A :class:`MinimizeResult`.

    >>> rosen = lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    >>> r = gl.minimize(rosen, jnp.array([-1.2, 1.0]), gl.lbfgs(), max_steps=100, tol=1e-4)
    >>> bool(r.converged), r.params.round(3)
    (True, Array([1., 1.], dtype=float32))
    """
    if not callable(fun):
        raise TypeError(f"fun must be a callable params -> scalar, got {fun!r}")
    check_transformation("optimizer", optimizer)
    check_scalars(max_steps=max_steps, tol=tol)
    check_int("max_steps", max_steps, minimum=1, maximum=COUNT_MAX)
    check_nonnegative("tol", tol)
    if is_function(x0):
        raise TypeError(f"x0 must be a pytree of float arrays, got the callable {x0!r}")
    x0 = check_params(x0, "x0")

    def typed(p):  # a string or None gave JAX's error naming the lambda, not fun
        out = fun(p)
        value = out[0] if has_aux and isinstance(out, tuple | list) and len(out) == 2 else out
        if not isinstance(value, jax.Array | np.ndarray | np.generic | int | float | tuple | list):
            raise TypeError(f"fun must return a float scalar, got {value!r}")
        return out

    out = jax.eval_shape(typed, x0)
    if has_aux:
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise TypeError(f"has_aux=True: fun must return a pair (value, aux), got {out}")
        out = out[0]
    elif isinstance(out, tuple | list):
        raise ValueError(
            f"fun must return a scalar, got a {type(out).__name__} (for (value, aux) pass "
            "has_aux=True)"
        )
    if getattr(out, "shape", None) != ():
        got = f"an array of shape {out.shape}" if hasattr(out, "shape") else repr(out)
        raise ValueError(f"fun must return a scalar, got {got}")
    value_fn = (lambda p: fun(p)[0]) if has_aux else fun
    # jitted (inlined under the caller's jit): eagerly, JAX differentiates
    # arrays over explicit mesh axes only inside jax.set_mesh
    value, grad = jax.jit(jax.value_and_grad(value_fn))(x0)
    value = jnp.asarray(value)
    state = optimizer.init(x0)
    step = stepper(value_fn, optimizer, state)
    norm_dtype = jax.eval_shape(_tree.global_norm, grad).dtype  # its dtype, no computing
    tol_ = _tree.hp(tol, norm_dtype)
    max_steps_ = jnp.asarray(max_steps).astype(jnp.int32)

    def finite(c: _Carry) -> jax.Array:
        return jnp.isfinite(c.value) & jnp.isfinite(c.grad_norm) & _tree.all_finite(c.params)

    def run(start: _Carry, tol_: jax.Array, max_steps_: jax.Array) -> _Carry:
        def cond(c: _Carry) -> jax.Array:
            return (c.num_steps < max_steps_) & (c.grad_norm > tol_) & finite(c)

        def body(c: _Carry) -> _Carry:
            params, state, value, grad = step(c.params, c.state, c.value, c.grad)
            return _Carry(params, state, value, grad, _tree.exact_norm(grad), c.num_steps + 1)

        return jax.lax.while_loop(cond, body, start)

    start = _Carry(x0, state, value, grad, _tree.exact_norm(grad), jnp.zeros((), jnp.int32))
    # In a jax.jit of its own (inlined under the caller's jit): an eager
    # lax.while_loop of fresh closures left ~4-8 MiB in JAX's caches per call (hunt48);
    # this jitted function, and what it compiled, go when the call returns.
    c = jax.jit(run)(start, tol_, max_steps_)
    aux = fun(c.params)[1] if has_aux else None
    failed = ~finite(c)
    return MinimizeResult(
        c.params, c.value, c.grad_norm, c.num_steps, (c.grad_norm <= tol_) & ~failed, failed, aux
    )
