"""Line searches as transformations: the step size along the incoming direction.

A line search receives a *direction* ``d`` as its updates (already a descent
direction: ``-g``, ``-H g``, ...) and returns ``t * d``, with the step ``t``
chosen by evaluating the objective along the ray ``x + t d``. It needs three
keyword extras (Optax's convention):

* ``value_fn``: ``params -> scalar``, the objective (close over any data, or
  take it by name: ``value_fn(params, batch)`` gets ``update(..., batch=b)``'s
  ``b`` -- the extras its signature names reach it, Optax's rule);
* ``value``, ``grad``: the objective and its gradient at ``params`` (computed
  from ``value_fn`` when missing, at the cost of one evaluation).

Each trial evaluates the value *and* gradient at the trial point (the zoom
search needs the slope; the backtracking search keeps the gradient so that
nobody has to recompute it). The value and gradient at the accepted point are
kept in the state; :func:`value_and_grad_from_state` reads them back, so a loop
evaluates the objective only inside the line search. This holds when the line
search is the last member of a chain that changes the updates (as in
:func:`gradlab.lbfgs`): then ``params + updates`` is the accepted point.

Trials whose value or slope is not finite (a function that is ``+inf`` outside
its domain, an overflow) count as failed trials: the step shrinks, and the
search never returns a NaN. If no acceptable step is found within the budget,
the best point found with a sufficient decrease is taken, or no step at all
(``t = 0``, ``info.succeeded`` False).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import (
    COUNT_MAX,
    check_choice,
    check_in_range,
    check_int,
    check_positive,
    check_real,
    check_scalar_output,
    check_scalars,
    check_state,
    is_traced,
)
from gradlab._core import PER_LEAF, GradientTransformation, apply_updates


class LinesearchInfo(NamedTuple):
    """What the last search did: ``num_evaluations`` (int32: calls of ``value_fn``'s
    value and gradient) and ``succeeded`` (bool: the accepted step satisfies the
    search's conditions; False when it fell back to the best point or to no step)."""

    num_evaluations: jax.Array
    succeeded: jax.Array


class ZoomLinesearchState(NamedTuple):
    """``step_size``: the accepted step ``t``; ``value``, ``grad``: objective and
    gradient at ``params + t d`` (``value`` is +inf before the first search);
    ``info``: a :class:`LinesearchInfo`."""

    step_size: jax.Array
    value: jax.Array
    grad: Any
    info: LinesearchInfo


class BacktrackingLinesearchState(NamedTuple):
    """As :class:`ZoomLinesearchState`, for the backtracking (Armijo) search;
    after a search that ran out of steps (``info.succeeded`` False, no step
    taken), ``step_size`` is the next step to try, where the next search starts."""

    step_size: jax.Array
    value: jax.Array
    grad: Any
    info: LinesearchInfo


LINESEARCH_STATES = (ZoomLinesearchState, BacktrackingLinesearchState)


# ----------------------------------------------------------------- shared parts


def _scalar_dtype(tree: Any) -> np.dtype:
    """The dtype of step sizes and values: the widest compute dtype of the leaves."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return np.dtype(jnp.float32)
    return np.result_type(*(_tree.compute_dtype(jnp.result_type(x)) for x in leaves))


def _vdot(a: Any, b: Any, dtype: Any) -> jax.Array:
    """``<a, b>`` summed over all leaves, in ``dtype``."""
    parts = [
        jnp.sum(x.astype(dtype) * y.astype(dtype))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    ]
    return jnp.sum(jnp.stack(parts)) if parts else jnp.zeros((), dtype)


def _select(pred: jax.Array, a: Any, b: Any) -> Any:
    """``a`` where ``pred`` (a scalar) else ``b``, leafwise."""
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def _decided_once(pred: jax.Array) -> jax.Array:
    """``pred`` (a scalar bool), computed once however many leaves read it.

    XLA fuses cheap scalar work (compares, adds, ands) into every consumer: a
    predicate built from whole-tree sums (an objective's value, inner products
    over all leaves) that selects every leaf was recomputed inside each leaf's
    kernel, so the program, and the compile time, grew with the square of the
    leaf count. A square root is an op XLA does not duplicate into its
    consumers (an ``optimization_barrier`` here left the program unchanged); of 0
    or 1 it is exact. Each leaf's kernel keeps its own arithmetic, so the
    results keep their bits (measured: float32 and float64, jitted, eager,
    vmapped and ``minimize``). A ``lax.cond`` in its place did not: XLA:CPU
    contracts ``a * b + c`` into an FMA within a kernel, and moving the
    objective's last ops into another kernel moved gradients by an ulp.
    """
    return jnp.sqrt(pred.astype(jnp.float32)) > 0


def _initial_state(cls: type, params: Any) -> Any:
    dt = _scalar_dtype(params)
    info = LinesearchInfo(_tree.step_counter(params), _tree.scalar_like(params, False, bool))
    step, value = _tree.scalar_like(params, 1, dt), _tree.scalar_like(params, jnp.inf, dt)
    return cls(step, value, _tree.zeros_like(params), info)


def _rounded(x: jax.Array) -> jax.Array:
    """``x`` as stored in its (16-bit) dtype, even where XLA keeps excess precision."""
    if x.dtype not in (jnp.bfloat16, jnp.float16):
        return x
    info = jnp.finfo(x.dtype)
    wide = jax.lax.reduce_precision(x.astype(jnp.float32), info.nexp, info.nmant)
    return wide.astype(x.dtype)


class _Ray(NamedTuple):
    """The objective along ``x + t d``: ``phi(t)`` and ``phi'(t) = <grad, d>``."""

    params: Any
    direction: Any
    value: jax.Array  # phi(0)
    slope: jax.Array  # phi'(0)
    grad: Any  # the gradient at t = 0
    dtype: np.dtype
    value_and_grad: Callable[[Any], tuple[jax.Array, Any]]

    def step(self, t: jax.Array) -> Any:
        """The update ``t d`` the search returns for step ``t``.

        Where ``d`` is not finite the entry is ``d`` itself: a NaN or Inf gradient
        shows in its leaf's update (``apply_if_finite`` then skips the step), as
        in every other transformation, and the trial point there is not finite,
        so the search fails. The select also keeps the product rounded on its
        own: without it XLA:CPU fuses ``x + t d`` in :meth:`point` into one
        multiply-add, one ulp away from the caller's ``apply_updates(params, t d)``
        run eagerly (hunt63), and the value and gradient kept in the state would
        belong to another point."""
        scaled = _tree.scale(self.direction, t)
        return jax.tree.map(
            lambda u, d: jnp.where(jnp.isfinite(d), u, d.astype(u.dtype)), scaled, self.direction
        )

    def point(self, t: jax.Array) -> Any:
        # Exactly what the caller will compute: params + the returned update,
        # rounded to each param's dtype. For 16-bit params the rounding is
        # forced: XLA may drop a convert to bfloat16 and back (excess precision)
        # when the objective upcasts, and then value and gradient belong to a
        # point the caller never sees.
        return jax.tree.map(_rounded, apply_updates(self.params, self.step(t)))

    def evaluate(self, t: jax.Array) -> tuple[jax.Array, jax.Array, Any]:
        """``(phi(t), phi'(t), gradient)``; phi is +inf where not finite (a failed trial)."""
        value, grad = self.value_and_grad(self.point(t))
        value = jnp.asarray(value).astype(self.dtype)
        slope = _vdot(grad, self.direction, self.dtype)
        ok = jnp.isfinite(value) & jnp.isfinite(slope)
        inf = jnp.asarray(jnp.inf, self.dtype)
        return jnp.where(ok, value, inf), jnp.where(ok, slope, inf), grad


def _search_inputs(name: str, updates: Any, params: Any, extra: dict[str, Any]) -> tuple:
    """``(value_fn, updates, params, value, grad)`` from ``update``'s arguments,
    with a clear error when the objective is missing."""
    value_fn = extra.get("value_fn")
    if params is None or value_fn is None:
        raise ValueError(
            f"{name} evaluates the objective along the update: call "
            "update(direction, state, params, value=f(params), grad=grad_f(params), "
            "value_fn=f) with f: params -> scalar (inside an Optax wrapper -- optax.chain, "
            "MultiSteps, apply_if_finite, multi_transform drop extras for members that are "
            "not GradientTransformationExtraArgs -- wrap it as "
            "optax.GradientTransformationExtraArgs(*tx))"
        )
    value = extra.get("value")
    if value is not None:
        check_real(f"{name}: value", value, "the objective's value at params, a real scalar")
    if value is not None and jnp.shape(value) != ():  # (1,): a stacking error deep in the loop
        raise ValueError(
            f"{name}: value must be the objective's value at params, a scalar, "
            f"got an array of shape {jnp.shape(value)}"
        )
    fn_kwargs = _Extras(_named_extras(value_fn, extra))
    return value_fn, fn_kwargs, _tree.as_updates(updates), params, value, extra.get("grad")


@contextlib.contextmanager
def _masked_hint(name: str, params: Any) -> Iterator[None]:
    """Inside masked/partition the search sees params with ``MaskedNode`` leaves: an
    objective that reads only the visible ones runs, but one that fails there (or a
    whole-tree ``grad=``) gets an error saying why and what to do (hunt79), instead
    of "gradient tree does not match" or a TypeError from inside value_fn."""
    try:
        yield
    except Exception as e:
        if not _tree.hides_leaves(params):
            raise
        first = (str(e).splitlines() or [""])[0]
        raise ValueError(
            f"{name} evaluates value_fn on the params it sees, but inside masked or partition "
            "those are only some of them (the others are MaskedNode), and it failed there "
            f"({type(e).__name__}: {first}). Optimize only the leaves to move, closing over the "
            "others (value_fn=lambda w: f({**fixed, 'w': w})), or run it on the whole tree with "
            "the others' gradient zeroed first: chain(freeze(mask), lbfgs()), mask True on the "
            "leaves to keep"
        ) from e


@jax.tree_util.register_pytree_node_class
class _Extras:
    """Extras passed on to ``value_fn`` (a tree): arrays are traced leaves of the
    compiled search; anything else -- a Python flag (``train=True``), a string, a
    callable -- stays static, closed over as Optax's searches (which compile
    nothing themselves) see it, so ``if train:`` inside ``value_fn`` works."""

    def __init__(self, tree: Any) -> None:
        self.tree = tree

    def tree_flatten(self) -> tuple[list[Any], Any]:
        leaves, treedef = jax.tree.flatten(self.tree)
        arrays = tuple(isinstance(x, jax.Array | np.ndarray | np.generic) for x in leaves)
        static = tuple(None if a else _Static(x) for x, a in zip(leaves, arrays, strict=True))
        return [x for x, a in zip(leaves, arrays, strict=True) if a], (treedef, static)

    @classmethod
    def tree_unflatten(cls, aux: Any, children: Any) -> _Extras:
        treedef, static = aux
        dynamic = iter(children)
        leaves = [next(dynamic) if s is None else s.value for s in static]
        return cls(treedef.unflatten(leaves))


class _Static:
    """A static extra, compared by value where it can be hashed (a new compile
    only for a new value), else by identity."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def _key(self) -> Any:
        try:
            hash(self.value)
        except TypeError:
            return ("id", id(self.value))
        return ("value", type(self.value), self.value)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Static) and self._key() == other._key()


def _named_extras(value_fn: Callable[..., Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The extras of ``update`` that ``value_fn``'s signature names (Optax's rule,
    ``value_fn(params, batch)`` gets ``update(..., batch=b)``'s ``b``), but for the
    search's own ``value``, ``grad`` and ``value_fn``. Others are ignored."""
    try:
        names = inspect.signature(value_fn).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): params only
        return {}
    own = ("value", "grad", "value_fn")
    return {k: v for k, v in extra.items() if k in names and k not in own}


def eager_jit(fn: Callable[..., Any], static_argnames: tuple[str, ...]) -> Callable[..., Any]:
    """``fn`` compiled with ``jax.jit`` when called on concrete values, ``fn`` itself
    under a trace (inside the caller's ``jit``/``vmap``/``scan`` it is inlined anyway).

    Why: an eager call of a function holding ``lax.while_loop``/``lax.scan``
    compiles those loops anew every time (their bodies are fresh closures), a
    second or so per L-BFGS step on a CPU; jitted, the second and later steps
    with the same objective reuse the compiled search.

    The searches compiled for an objective (keyword ``value_fn``) are kept by its
    identity, weakly (:class:`_SearchCache`; a bound method by its instance and
    function), each holding the objective weakly: a search, and the data the
    objective closes over, go with the objective (a static argument of one
    module-level ``jax.jit`` kept every objective and its data alive: a new
    closure per step kept a copy of each batch, forever; hunt48). As with
    ``jax.jit``, an objective is compiled once: data it reads that changes
    between calls (a global, a dict entry) is not seen -- close over the new data
    instead. An objective that cannot be weakly referenced (a NamedTuple's
    method) is a static argument, as before; one that cannot be hashed either
    runs uncompiled.
    """
    statics = tuple(n for n in static_argnames if n != "value_fn")
    if statics == static_argnames:
        jitted = jax.jit(fn, static_argnames=static_argnames)

        @functools.wraps(fn)  # found by module and name: pickled by reference (cloudpickle)
        def plain(*args: Any, **kwargs: Any) -> Any:
            dynamic = (args, {k: v for k, v in kwargs.items() if k not in static_argnames})
            return fn(*args, **kwargs) if is_traced(dynamic) else jitted(*args, **kwargs)

        return plain
    compiled = _SearchCache()
    static = jax.jit(fn, static_argnames=static_argnames)  # for objects with no weak reference

    # found by module and name, the wrapper pickles by reference: cloudpickle (Ray,
    # joblib, Dask) copied a closure by value, its cache's weak references with it,
    # and refused any optimizer holding a search once one had run eagerly (hunt50)
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        dynamic = (args, {k: v for k, v in kwargs.items() if k not in static_argnames})
        if is_traced(dynamic):
            return fn(*args, **kwargs)
        value_fn = kwargs["value_fn"]
        # a bound method is a new object at each attribute access: keyed by its
        # instance and function
        method = inspect.ismethod(value_fn)
        owner, key = (value_fn.__self__, value_fn.__func__) if method else (value_fn, None)
        search = compiled.get(owner, key)
        if search is None:
            try:
                held = _WeakObjective(value_fn)
            except TypeError:  # (a NamedTuple's method, a __slots__ class): a static
                # argument, kept alive, as a jax.jit of a function closing over it would
                try:
                    hash(value_fn)
                except TypeError:
                    return fn(*args, **kwargs)  # unhashable too: uncompiled
                return static(*args, **kwargs)
            search = jax.jit(functools.partial(fn, value_fn=held), static_argnames=statics)
            compiled.put(owner, key, search)
        kwargs.pop("value_fn")
        return search(*args, **kwargs)

    return call


class _SearchCache:
    """``{(owner, key): search}`` keyed by the owner's *identity*, held weakly: an
    entry goes when its owner does. (A WeakKeyDictionary compares keys with
    ``__eq__``: two models equal by value but holding other data shared one
    search, review11; and unhashable owners were compiled at every call.)"""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, dict[Any, Any]]] = {}

    def get(self, owner: Any, key: Any) -> Any:
        entry = self._entries.get(id(owner))
        if entry is None or entry[0]() is not owner:
            return None
        return entry[1].get(key)

    def put(self, owner: Any, key: Any, search: Any) -> None:
        oid = id(owner)
        entry = self._entries.get(oid)
        if entry is None or entry[0]() is not owner:

            def forget(ref: weakref.ref, oid: int = oid) -> None:
                if self._entries.get(oid, (None,))[0] is ref:
                    del self._entries[oid]

            entry = (weakref.ref(owner, forget), {})
            self._entries[oid] = entry
        entry[1][key] = search


class _WeakObjective:
    """Calls the objective through a weak reference: the search compiled for it
    does not keep it (or its data) alive. Traced only while the objective is."""

    __slots__ = ("_ref",)

    def __init__(self, value_fn: Callable[..., Any]) -> None:
        method = inspect.ismethod(value_fn)
        self._ref = weakref.WeakMethod(value_fn) if method else weakref.ref(value_fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        value_fn = self._ref()
        if value_fn is None:  # not reached: a search is traced in the call that has it
            raise RuntimeError("the objective of this compiled line search was deleted")
        return value_fn(*args, **kwargs)


def _scalar_objective(
    value_fn: Callable[..., Any], fn_kwargs: dict[str, Any]
) -> Callable[..., Any]:
    """``value_fn(params, **fn_kwargs)``, its output checked when traced: a real
    scalar, else an error naming ``value_fn`` (``jax.grad``'s own names neither)."""

    def objective(params: Any) -> Any:
        value = value_fn(params, **fn_kwargs.tree)
        check_scalar_output("value_fn", value, " (the objective)")
        return value

    return objective


def _ray(value_fn, fn_kwargs, updates, params, value, grad) -> _Ray:
    """The objective along the search direction, starting values included."""
    value_and_grad = jax.value_and_grad(_scalar_objective(value_fn, fn_kwargs))
    if value is None or grad is None:  # one extra evaluation, but a working search
        value, grad = value_and_grad(params)
    else:  # in the params' dtypes, as every gradient the search computes (a loop carry)
        grad = _tree.map_like(lambda g, p: g.astype(p.dtype), grad, params, tree_name="params")
    dt = _scalar_dtype(params)
    return _Ray(
        params,
        updates,
        jnp.asarray(value).astype(dt),
        _vdot(grad, updates, dt),
        grad,
        dt,
        value_and_grad,
    )


def _check_common(max_steps_name: str, max_steps: Any, c1: Any) -> None:
    check_scalars(**{max_steps_name: max_steps}, c1=c1)
    check_int(max_steps_name, max_steps, minimum=1, maximum=COUNT_MAX)
    check_in_range("c1", c1, 0.0, 1.0, lo_open=True, hi_open=True)


def _floats(**values: Any) -> dict[str, Any]:
    """Python ints among real-valued settings as floats: they reach a jitted
    search as arguments, where ``max_stepsize=2**31`` overflowed int32."""
    return {
        k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in values.items()
    }


def _auto_rtol(params: Any) -> float:
    """``approx_decrease_rtol="auto"``: 1e-6 (~8 float32 ulps) scaled to the
    precision of the search's values."""
    dt = _scalar_dtype(params)
    return 1e-6 * min(1.0, float(np.finfo(dt).eps / np.finfo(np.float32).eps))


def _initial_step(strategy: str, previous: jax.Array, factor: Any, max_step: Any, dt: Any):
    """``1`` (Newton-like directions), or the previous step times ``factor``
    (first-order directions; a failed previous search (0) restarts from 1)."""
    one = jnp.ones((), dt)
    t = one if strategy == "one" else jnp.where(previous > 0, previous * _tree.hp(factor, dt), one)
    return t if max_step is None else jnp.minimum(t, _tree.hp(max_step, dt))


# ----------------------------------------------------------------- zoom (strong Wolfe)


class _Zoom(NamedTuple):
    """The loop carry of the zoom search (Nocedal & Wright, Alg. 3.5/3.6).

    ``lo`` is the best step so far with a sufficient decrease (0 at first):
    every bracket [lo, hi] holds a strong-Wolfe step."""

    count: jax.Array  # evaluations done
    zooming: jax.Array  # False: bracketing (Alg. 3.5); True: zooming (Alg. 3.6)
    done: jax.Array
    succeeded: jax.Array
    trial: jax.Array
    lo: jax.Array
    lo_value: jax.Array
    lo_slope: jax.Array
    lo_grad: Any
    hi: jax.Array
    hi_value: jax.Array
    hi_slope: jax.Array
    widths: jax.Array  # the bracket's width after the last two zoom steps


def _interpolate(lo, f_lo, df_lo, hi, f_hi, df_hi, bisect):
    """The next trial inside the bracket ``[lo, hi]`` (either order).

    The minimiser of the cubic through ``(phi, phi')`` at both ends (N&W eq.
    3.59); if it does not exist, the minimiser of the quadratic through
    ``phi(lo), phi'(lo), phi(hi)``; if neither, or when ``bisect``, the
    midpoint. The result is kept at least 10% of the bracket away from its
    ends (no wasted trial next to a known point; when the minimiser is
    near ``lo``, the bracket shrinks 10x at once). Non-finite end values leave
    only the midpoint: a search that left the domain of ``f`` halves its way back.
    """
    width = hi - lo  # signed: zoom brackets may be reversed
    # Cubic: Hermite interpolation of phi on [lo, hi].
    d1 = df_lo + df_hi - 3 * (f_lo - f_hi) / (lo - hi)
    rad = d1 * d1 - df_lo * df_hi
    d2 = jnp.sign(width) * jnp.sqrt(jnp.maximum(rad, 0))
    cubic = hi - width * (df_hi + d2 - d1) / (df_hi - df_lo + 2 * d2)
    # Both only from finite ends: with phi(hi) = inf the quadratic's curvature
    # is inf and its minimiser lo itself (then clipped to 10% of the way).
    finite = jnp.isfinite(f_lo) & jnp.isfinite(f_hi) & jnp.isfinite(df_lo)
    cubic_ok = finite & jnp.isfinite(df_hi) & (rad >= 0) & _inside(cubic, lo, width)
    # Quadratic: phi(lo) + phi'(lo) s + a s², through phi(hi).
    curv = (f_hi - f_lo - df_lo * width) / (width * width)
    quad = lo - df_lo / (2 * curv)
    quad_ok = finite & (curv > 0) & _inside(quad, lo, width)
    middle = lo + width / 2
    t = jnp.where(bisect, middle, jnp.where(cubic_ok, cubic, jnp.where(quad_ok, quad, middle)))
    left, right = jnp.minimum(lo, hi), jnp.maximum(lo, hi)
    margin = 0.1 * (right - left)
    return jnp.clip(t, left + margin, right - margin)


def _inside(t, lo, width):
    """``t`` finite and inside the bracket."""
    return jnp.isfinite(t) & (t >= jnp.minimum(lo, lo + width)) & (t <= jnp.maximum(lo, lo + width))


def _zoom_search(ray: _Ray, t0, max_steps, c1, c2, increase_factor, max_step, approx_rtol):
    """Run the strong-Wolfe search; returns the final carry (accepted step in ``lo``)."""
    dt = ray.dtype
    c1, c2 = _tree.hp(c1, dt), _tree.hp(c2, dt)
    inc = _tree.hp(increase_factor, dt)
    t_max = jnp.asarray(jnp.inf, dt) if max_step is None else _tree.hp(max_step, dt)
    zero, inf = jnp.zeros((), dt), jnp.asarray(jnp.inf, dt)
    max_steps = jnp.asarray(max_steps).astype(jnp.int32)
    descent = jnp.isfinite(ray.value) & (ray.slope < 0)

    def body(s: _Zoom) -> _Zoom:
        t = s.trial
        value, slope, grad = ray.evaluate(t)
        # Sufficient decrease (Armijo), and not above the best point so far (Alg.
        # 3.5 "phi(a_i) >= phi(a_{i-1})", Alg. 3.6 "phi(a_j) >= phi(a_lo)"; a tie
        # goes to lo here, so that in a bracket flat to rounding the slope's sign
        # still decides where the minimum is).
        decrease = (value <= ray.value + c1 * t * ray.slope) & (value <= s.lo_value)
        if approx_rtol is not None:
            # Hager & Zhang's (2005) approximate form, read off the slope: once
            # phi(t) is within rounding of phi(0), differences of values are noise
            # but phi' is still accurate (float32 values stop resolving a descent
            # long before the gradient is small).
            near = jnp.abs(value - ray.value) <= _tree.hp(approx_rtol, dt) * jnp.abs(ray.value)
            decrease |= near & (slope <= (2 * c1 - 1) * ray.slope)
        curvature = jnp.abs(slope) <= -c2 * ray.slope
        accept = decrease & curvature
        # Where the bracket goes (N&W Alg. 3.5 in bracketing, 3.6 in zooming):
        # no decrease -> t is the new hi; decrease and slope pointing back toward
        # lo (slope * (hi - lo) >= 0; while bracketing: slope >= 0) -> hi = lo;
        # then lo = t. Bracketing with a decrease and a negative slope: go further.
        flip = jnp.where(s.zooming, slope * (s.hi - s.lo) >= 0, slope >= 0)
        new_hi = ~decrease | flip
        hi, hi_value, hi_slope = (
            jnp.where(~decrease, t, jnp.where(flip, s.lo, s.hi)),
            jnp.where(~decrease, value, jnp.where(flip, s.lo_value, s.hi_value)),
            jnp.where(~decrease, slope, jnp.where(flip, s.lo_slope, s.hi_slope)),
        )
        lo, lo_value, lo_slope = (
            jnp.where(decrease, t, s.lo),
            jnp.where(decrease, value, s.lo_value),
            jnp.where(decrease, slope, s.lo_slope),
        )
        lo_grad = _select(_decided_once(decrease), grad, s.lo_grad)
        zooming = s.zooming | new_hi
        expand = jnp.minimum(t * inc, t_max)
        # Moré & Thuente's (1994) rule: if two zoom steps did not shrink the
        # bracket to 2/3, bisect (interpolation stuck near one end).
        width = jnp.abs(hi - lo)
        bisect = s.zooming & (width >= 0.66 * s.widths[1])
        widths = jnp.where(s.zooming, jnp.stack([width, s.widths[0]]), jnp.stack([width, inf]))
        zoomed = _interpolate(lo, lo_value, lo_slope, hi, hi_value, hi_slope, bisect)
        trial = jnp.where(zooming, zoomed, expand)
        count = s.count + 1
        # Stop: accepted; out of evaluations; at max_step with no bracket (the
        # best we may do); or a bracket too narrow to hold a new float.
        stuck = jnp.where(zooming, (trial == lo) | (trial == hi), t >= t_max)
        done = accept | (count >= max_steps) | stuck
        return _Zoom(
            count, zooming, done, accept, trial, lo, lo_value, lo_slope, lo_grad,
            hi, hi_value, hi_slope, widths,
        )  # fmt: skip

    start = _Zoom(
        count=jnp.zeros((), jnp.int32),
        zooming=jnp.zeros((), bool),
        done=~descent,
        succeeded=jnp.zeros((), bool),
        trial=t0,
        lo=zero,
        lo_value=ray.value,
        lo_slope=ray.slope,
        lo_grad=ray.grad,
        hi=inf,
        hi_value=inf,
        hi_slope=inf,
        widths=jnp.stack([inf, inf]),
    )
    return jax.lax.while_loop(lambda s: ~s.done, body, start)


@functools.partial(eager_jit, static_argnames=("value_fn", "initial_guess"))
def _zoom_update(updates, params, value, grad, state, hyper, fn_kwargs, *, value_fn, initial_guess):
    ray = _ray(value_fn, fn_kwargs, updates, params, value, grad)
    t0 = _initial_step(initial_guess, state.step_size, 1.0, hyper["max_stepsize"], ray.dtype)
    s = _zoom_search(
        ray, t0, hyper["max_steps"], hyper["c1"], hyper["c2"], hyper["increase_factor"],
        hyper["max_stepsize"], hyper["approx_rtol"],
    )  # fmt: skip
    info = LinesearchInfo(s.count, s.succeeded)
    new_state = ZoomLinesearchState(s.lo, s.lo_value, s.lo_grad, info)
    return ray.step(s.lo), new_state


def scale_by_zoom_linesearch(
    max_linesearch_steps: int = 20,
    c1: Any = 1e-4,
    c2: Any = 0.9,
    *,
    max_stepsize: Any = None,
    increase_factor: Any = 2.0,
    initial_guess: str = "keep",
    approx_decrease_rtol: Any = "auto",
) -> GradientTransformation:
    """Strong-Wolfe line search (Nocedal & Wright 2006, Algorithms 3.5 and 3.6).

    Finds ``t`` with, for ``phi(t) = f(x + t d)``:

    * sufficient decrease: ``phi(t) <= phi(0) + c1 t phi'(0)``;
    * curvature (strong Wolfe): ``|phi'(t)| <= c2 |phi'(0)|``;

    and returns ``t * d``. Bracketing tries ``t0, increase_factor * t0, ...``
    until a bracket is found; zooming picks trials by cubic interpolation of
    ``phi`` and ``phi'`` at the bracket's ends (a quadratic, or bisection, as
    fallbacks), kept 10% inside the bracket, with Moré & Thuente's (1994) rule
    of bisecting when two trials did not shrink the bracket to 2/3. Trials
    where ``f`` or its slope is not finite count as failed (the bracket
    shrinks); each trial costs one evaluation of ``f`` and its gradient. Once
    ``phi(t)`` is within ``approx_decrease_rtol * |phi(0)|`` of ``phi(0)``
    (differences of values are rounding noise there), sufficient decrease is
    read off the slope, ``phi'(t) <= (2 c1 - 1) phi'(0)`` (Hager & Zhang 2005's
    approximate Wolfe condition): without it a float32 search cannot get the
    gradient small. Inside that window a step may *raise* ``f`` (by at most the
    window), so the default ``"auto"`` sizes it to the values' rounding:
    ``1e-6`` (Hager & Zhang's and Optax's constant, ~8 ulps) for float32 and
    narrower params, ``1e-6 * eps64 / eps32 ~ 1.9e-15`` for float64 (a fixed
    ``1e-6`` there let a search climb ``5`` on ``f = 1e7 + O(1)`` to a local
    maximum, hunt63). The same conditions and constants as
    ``optax.scale_by_zoom_linesearch`` (``slope_rtol=c1``, ``curv_rtol=c2``,
    ``approx_dec_rtol=1e-6`` whatever the dtype); its trials
    inside a zoom are interpolated with other safeguards, so where ``t = 1`` is
    not accepted the two may accept different steps (both satisfying the
    conditions) and their paths part, after a few to a few dozen iterations
    on Rosenbrock depending on the start.

    Args:
        max_linesearch_steps: most evaluations per search (a bounded ``lax.while_loop``).
        c1, c2: the conditions' constants, ``0 < c1 < c2 < 1``.
        max_stepsize: an upper bound on ``t`` (None: none).
        increase_factor: growth of the step while bracketing (> 1).
        initial_guess: ``"one"``: start at ``t = 1`` (Newton-like directions,
            L-BFGS); ``"keep"``: start at the previous accepted step
            (first-order directions).
        approx_decrease_rtol: where the approximate condition takes over (>= 0),
            relative to ``|phi(0)|``; ``"auto"``: by the params' precision (above);
            None: the exact Armijo condition only. ``inject_hyperparams`` keeps
            ``"auto"`` (a string) static: pass a number to make it injectable.

    Extras of ``update``: ``value_fn`` (required), ``value``, ``grad``, and the
    extras ``value_fn``'s signature names (``batch=``), passed on to it.

    >>> tx = gl.chain(gl.sgd(1.0), gl.scale_by_zoom_linesearch())
    >>> f = lambda x: jnp.sum((x - 3.0) ** 2)
    >>> x = jnp.zeros(2); state = tx.init(x)
    >>> u, state = tx.update(jax.grad(f)(x), state, x, value=f(x), grad=jax.grad(f)(x), value_fn=f)
    >>> gl.apply_updates(x, u)   # the exact minimiser along -grad
    Array([3., 3.], dtype=float32)
    """
    _check_common("max_linesearch_steps", max_linesearch_steps, c1)
    check_scalars(c2=c2, increase_factor=increase_factor, max_stepsize=max_stepsize)
    check_in_range("c2", c2, 0.0, 1.0, lo_open=True, hi_open=True)
    if not (is_traced(c1) or is_traced(c2)) and float(np.asarray(c1)) >= float(np.asarray(c2)):
        raise ValueError(f"c1 must be < c2, got c1={c1!r} and c2={c2!r}")
    check_in_range("increase_factor", increase_factor, 1.0, lo_open=True)
    if max_stepsize is not None:
        check_positive("max_stepsize", max_stepsize)
    check_choice("initial_guess", initial_guess, ("one", "keep"))
    auto_rtol = isinstance(approx_decrease_rtol, str)
    if auto_rtol:
        check_choice("approx_decrease_rtol", approx_decrease_rtol, ("auto",))
    elif approx_decrease_rtol is not None:
        check_scalars(approx_decrease_rtol=approx_decrease_rtol)
        check_in_range("approx_decrease_rtol", approx_decrease_rtol, 0.0)

    def init(params):
        return _initial_state(ZoomLinesearchState, params)

    hyper = {
        "max_steps": max_linesearch_steps,
        **_floats(
            c1=c1, c2=c2, increase_factor=increase_factor, max_stepsize=max_stepsize,
            approx_rtol=None if auto_rtol else approx_decrease_rtol,
        ),
    }  # fmt: skip

    def update(updates, state, params=None, **extra):
        check_state("scale_by_zoom_linesearch", state, ZoomLinesearchState)
        name = "scale_by_zoom_linesearch"
        value_fn, fn_kwargs, *inputs = _search_inputs(name, updates, params, extra)
        used = {**hyper, "approx_rtol": _auto_rtol(params)} if auto_rtol else hyper
        with _masked_hint(name, params):
            return _zoom_update(
                *inputs, state, used, fn_kwargs, value_fn=value_fn, initial_guess=initial_guess
            )

    # It calls the objective on the real params tree: never on packed buffers.
    return GradientTransformation(init, update, packing=PER_LEAF)


# ----------------------------------------------------------------- backtracking (Armijo)


@functools.partial(eager_jit, static_argnames=("value_fn", "initial_guess"))
def _backtracking_update(
    updates, params, value, grad, state, hyper, fn_kwargs, *, value_fn, initial_guess
):
    ray = _ray(value_fn, fn_kwargs, updates, params, value, grad)
    dt = ray.dtype
    shrink, c = _tree.hp(hyper["decrease_factor"], dt), _tree.hp(hyper["c1"], dt)
    t0 = _initial_step(
        initial_guess, state.step_size, hyper["increase_factor"], hyper["max_stepsize"], dt
    )
    # After a search that ran out of steps (no move, succeeded False, step_size
    # = the next step it would have tried), the next one tries the full step
    # (1, or max_stepsize) first -- near a minimum in float32 small steps are
    # lost in rounding where the full one still decreases f -- then continues
    # from where the last one stopped: restarting there every time would
    # repeat it exactly (the same point, direction and memory), forever.
    max_steps = jnp.asarray(hyper["max_steps"]).astype(jnp.int32)
    ran_out_before = ~state.info.succeeded & (state.info.num_evaluations >= max_steps)
    resume = ran_out_before & (state.step_size > 0)
    full = _initial_step("one", state.step_size, 1.0, hyper["max_stepsize"], dt)
    t0 = jnp.where(resume, full, t0)
    descent = jnp.isfinite(ray.value) & (ray.slope < 0)

    def body(carry):
        count, _, t, *_ = carry
        value, _, grad = ray.evaluate(t)
        ok = value <= ray.value + c * t * ray.slope
        smaller = t * shrink
        smaller = jnp.where(resume & (count == 0), jnp.minimum(state.step_size, smaller), smaller)
        t_next = jnp.where(ok, t, smaller)
        return count + 1, ok, t_next, value, grad

    def cond(carry):
        count, ok, *_ = carry
        return ~ok & (count < max_steps) & descent

    start = (jnp.zeros((), jnp.int32), jnp.zeros((), bool), t0, ray.value, ray.grad)
    count, ok, t, value, grad = jax.lax.while_loop(cond, body, start)
    # No acceptable step: stay where we are (its value and gradient are known);
    # if the steps ran out, keep the next one to try for the next search.
    ran_out = ~ok & descent & (count >= max_steps)
    step = jnp.where(ok, t, jnp.zeros((), dt))
    value = jnp.where(ok, value, ray.value)
    grad = _select(ok, grad, ray.grad)
    kept = jnp.where(ran_out, t, step)
    new_state = BacktrackingLinesearchState(kept, value, grad, LinesearchInfo(count, ok))
    return ray.step(step), new_state


def scale_by_backtracking_linesearch(
    max_backtracking_steps: int = 20,
    c1: Any = 1e-4,
    decrease_factor: Any = 0.8,
    *,
    increase_factor: Any = 1.5,
    max_stepsize: Any = 1.0,
    initial_guess: str = "keep",
) -> GradientTransformation:
    """Backtracking line search with the Armijo condition (Nocedal & Wright, Alg. 3.1).

    Tries ``t0, decrease_factor * t0, decrease_factor² * t0, ...`` and returns
    ``t * d`` for the first ``t`` with ``f(x + t d) <= f(x) + c1 t <grad f(x), d>``
    (a non-finite ``f`` counts as failing it). The search starts from the
    previous step times ``increase_factor`` (``initial_guess="keep"``, capped at
    ``max_stepsize``) or from ``t0 = 1`` (``"one"``). When all
    ``max_backtracking_steps`` fail, the params do not move (``t = 0``; Optax
    takes the last, non-decreasing step instead), ``step_size`` holds the next
    step it would have tried and ``info.succeeded`` is False; the next search
    tries the full step first, then continues from there, so the same failed
    search is not repeated forever. Equivalent of
    ``optax.scale_by_backtracking_linesearch(slope_rtol=c1, store_grad=True)``,
    with its defaults (``0.8``, ``1.5``): with ``increase_factor=1`` and
    ``"keep"`` a step, once shrunk, never grows back (L-BFGS on 10-D Rosenbrock
    from ``[-1.2, 1] * 5``, float64, ``tol=1e-5``: 139 steps instead of 78).

    Extras of ``update``: ``value_fn`` (required), ``value``, ``grad``, and the
    extras ``value_fn``'s signature names (``batch=``), passed on to it.

    >>> tx = gl.chain(gl.sgd(1.0), gl.scale_by_backtracking_linesearch())
    """
    _check_common("max_backtracking_steps", max_backtracking_steps, c1)
    check_scalars(
        decrease_factor=decrease_factor, increase_factor=increase_factor, max_stepsize=max_stepsize
    )
    check_in_range("decrease_factor", decrease_factor, 0.0, 1.0, lo_open=True, hi_open=True)
    check_in_range("increase_factor", increase_factor, 1.0)
    if max_stepsize is not None:
        check_positive("max_stepsize", max_stepsize)
    check_choice("initial_guess", initial_guess, ("one", "keep"))

    def init(params):
        return _initial_state(BacktrackingLinesearchState, params)

    hyper = {
        "max_steps": max_backtracking_steps,
        **_floats(
            c1=c1, decrease_factor=decrease_factor, increase_factor=increase_factor,
            max_stepsize=max_stepsize,
        ),
    }  # fmt: skip

    def update(updates, state, params=None, **extra):
        check_state("scale_by_backtracking_linesearch", state, BacktrackingLinesearchState)
        name = "scale_by_backtracking_linesearch"
        value_fn, fn_kwargs, *inputs = _search_inputs(name, updates, params, extra)
        with _masked_hint(name, params):
            return _backtracking_update(
                *inputs, state, hyper, fn_kwargs, value_fn=value_fn, initial_guess=initial_guess
            )

    return GradientTransformation(init, update, packing=PER_LEAF)


# ----------------------------------------------------------------- reuse


def find_linesearch_states(state: Any) -> list[Any]:
    """Every line-search state inside a (nested) optimizer state, in tree order."""
    is_ls = lambda x: isinstance(x, LINESEARCH_STATES)  # noqa: E731
    return [x for x in jax.tree.leaves(state, is_leaf=is_ls) if is_ls(x)]


def final_linesearch_state(state: Any, *, ordered: bool = False) -> Any | None:
    """The state of the line search whose step *is* the optimizer's update, or None.

    That is the search reached from the top by following the last member of
    every chain (a plain tuple; a ``named_chain``'s dict) and the inner state
    of wrappers that declare they return their inner updates unchanged (a
    ``passes_updates_of`` field name on their state class:
    ``inject_hyperparams``, ``apply_if_finite``, ``packed``). Only then is the
    point where it evaluated the objective the new params. A search followed by
    another member (``chain(lbfgs(), scale(0.5))``) or inside a wrapper that
    changes the step (``MultiSteps``, ``lookahead``, ``masked``, ``partition``)
    gives None. A ``named_chain`` of several members is followed only when
    ``ordered`` (its dict as ``init``/``update`` built it, in member order; JAX
    rebuilds dicts in sorted key order, so a state that went through ``jit``
    no longer tells which member is last).
    """
    node = state
    while not isinstance(node, LINESEARCH_STATES):
        field = getattr(type(node), "passes_updates_of", None)
        if type(node) is tuple and node:
            node = node[-1]
        elif type(node) is dict and node and (ordered or len(node) == 1):
            node = node[list(node)[-1]]
        elif isinstance(field, str):
            node = getattr(node, field)
        else:
            return None
    return node


def value_and_grad_from_state(
    value_fn: Callable[..., Any],
) -> Callable[..., tuple[jax.Array, Any]]:
    """``jax.value_and_grad(value_fn)``, but reading the value and gradient the
    line search already computed at the current params from the optimizer state
    (``optax.value_and_grad_from_state``).

    The returned function is called as ``fn(params, *args, state=opt_state, **kwargs)``.
    It evaluates ``value_fn`` only when the state holds no value yet (before
    the first update, or after a search where the objective was not finite).
    The line search's step must be the optimizer's update (true of
    :func:`gradlab.lbfgs`, also inside ``chain``, ``inject_hyperparams``,
    ``apply_if_finite`` and ``packed``), so that the stored point is
    ``params``; otherwise (a member after it, or a wrapper that changes the
    step such as ``MultiSteps``) it raises ``ValueError`` rather than return
    values at another point.

    >>> tx = gl.lbfgs()
    >>> f = lambda x: jnp.sum((x - 1.0) ** 2) + jnp.sum(x**4)
    >>> value_and_grad = gl.value_and_grad_from_state(f)
    >>> x = jnp.zeros(3); state = tx.init(x)
    >>> for _ in range(10):
    ...     value, grad = value_and_grad(x, state=state)
    ...     u, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
    ...     x = gl.apply_updates(x, u)
    """
    if not callable(value_fn):
        raise TypeError(
            f"value_fn must be the objective, a callable params -> value, got {value_fn!r}"
        )

    def fn(params: Any, *args: Any, state: Any, **kwargs: Any) -> tuple[jax.Array, Any]:
        ls = final_linesearch_state(state)
        if ls is None:
            found = len(find_linesearch_states(state))
            raise ValueError(
                "value_and_grad_from_state needs an optimizer whose update is a line search's "
                "step (scale_by_zoom_linesearch or scale_by_backtracking_linesearch last in "
                f"its chain, as in gl.lbfgs()); found {found} line search(es), none whose "
                "step is the update (another member follows it, or a wrapper such as "
                "MultiSteps or lookahead changes its step): use jax.value_and_grad"
            )
        extras = _Extras((args, kwargs))  # arrays traced, a Python flag static
        return _stored_or_computed(params, extras, ls.value, ls.grad, value_fn=value_fn)

    return fn


@functools.partial(eager_jit, static_argnames=("value_fn",))
def _stored_or_computed(params, extras, value, grad, *, value_fn):
    args, kwargs = extras.tree

    def compute():
        return _cast_like(jax.value_and_grad(value_fn)(params, *args, **kwargs), (value, grad))

    return jax.lax.cond(jnp.isfinite(value), lambda: (value, grad), compute)


def _cast_like(tree: Any, like: Any) -> Any:
    """``tree`` with each leaf cast to the dtype of ``like``'s leaf (lax.cond branches agree)."""
    return jax.tree.map(lambda x, y: jnp.asarray(x).astype(y.dtype), tree, like)
