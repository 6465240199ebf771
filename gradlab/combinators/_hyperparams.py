"""Hyperparameters kept in the state: ``inject_hyperparams``; reading and
setting them anywhere in a nested state: ``get_hyperparams``, ``set_hyperparams``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab import _tree
from gradlab._checks import (
    check_float_dtype,
    check_schedule_value,
    check_state,
    describe,
    is_real_dtype,
)
from gradlab._core import GradientTransformation, TransformationLike, call_update
from gradlab.combinators import _walk


class InjectHyperparamsState(NamedTuple):
    """``count``: int32 steps so far; ``hyperparams``: ``{name: array}``, the values
    used by the last step (before the first: the first step's); ``inner_state``:
    the inner transformation's state."""

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    inner_state: Any

    # the inner transformation's updates are returned unchanged (see
    # gradlab.optimizers._linesearch.final_linesearch_state)
    passes_updates_of = "inner_state"


def inject_hyperparams(
    factory: Callable[..., TransformationLike],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """``factory`` with its numeric hyperparameters kept in the state.

    ``inject_hyperparams(gl.adam)(learning_rate=sched, b1=0.9)`` is
    ``gl.adam(sched, b1=0.9)`` whose hyperparameters (those given and the
    defaults) live in ``state.hyperparams``, a dict of arrays: read them
    (:func:`get_hyperparams`: the learning rate actually used), change them
    between steps (:func:`set_hyperparams`: a new value is a new array of the
    same dtype and shape, so a jitted step never recompiles), or vmap over
    them. Which arguments are hyperparameters:

    * numbers and numeric arrays: stored at ``init``; floats as float32 (or
      float64 when a param is float64), whatever the params' dtype, so bfloat16
      params never get a bfloat16 learning rate (Optax stores them in the
      params' dtype, its issue #1414); ints as int32;
    * callables (schedules): evaluated at the step count each step, the value
      stored — unless named in ``static_args`` (a callable that is not a
      schedule) or named ``*mask`` (``adamw``'s ``mask``, ``lars``'s
      ``trust_ratio_mask``: static without asking; Optax evaluates such a mask
      at the step count, and a typical ``lambda p: tree.map(lambda x: x.ndim >
      1, p)`` then masks out every leaf, silently). So are the integers a
      factory declares structural (a state's shape or a loop's length:
      ``lbfgs``' ``memory_size``, ``adafactor``'s ``min_dim_size_to_factor``,
      ``muon``'s ``ns_steps``). A callable whose value at
      step 0 is not a number raises ``TypeError``. Any numeric argument may be a
      schedule here, even one ``factory`` takes as a number only (Adam's
      ``b1`` following ``gl.schedules.one_cycle_momentum``);
    * anything else (bools, None, strings, dtypes): static, passed as given.

    ``hyperparam_dtype`` overrides the float dtype. The trajectory is
    bit-for-bit that of ``factory`` called with the same values: a float
    hyperparameter reaches the inner transformation as the float32 (float64)
    array that the inner one would have rounded it to anyway (Optax's injected
    runs differ from plain ones, its issues #583 and #1532). Eagerly always;
    under ``jit`` as tested for ``sgd``, ``adam`` and ``adamw``. Other jitted
    runs can differ in the last bits of the params (seen: ``schedule_free_*``,
    ``muon``, ``adan``, ``adafactor``, ``adadelta``, ``amsgrad``, ``novograd``,
    ``sm3``; tens of ulps over 50 steps): XLA simplifies arithmetic on a value it
    sees as a constant (a division by ``b1``) and not on an injected, runtime one. A schedule's
    stored value is overwritten at the next step: to override it, inject a
    number instead. The state is :class:`InjectHyperparamsState`.

    Values that only ``init`` reads -- ``initial_accumulator_value``
    (``adagrad``, ``yogi``), ``initial_scale`` (``rmsprop``), ``rprop``'s
    initial step size, ``add_noise``'s ``seed`` -- are stored and may be
    vmapped (each lane is initialised with its own), but changing them with
    :func:`set_hyperparams` after ``init`` changes nothing: the state they
    built is already there (as in Optax). Build a new state instead.

    A foreign factory (``optax.adam``) computes with the stored float32 values
    as given: with bfloat16 params, Optax's arithmetic then promotes its
    moments to float32 after the first step (a changed ``lax.scan`` carry).
    Optax's own ``inject_hyperparams`` stores bfloat16 values instead, where
    ``b2 = 0.999`` rounds to 1 and Adam's first update is NaN. gradlab's
    factories keep each param's dtype with float32 values.

    >>> tx = gl.inject_hyperparams(gl.adamw)(learning_rate=1e-3, weight_decay=0.01)
    >>> params = {"w": jnp.ones(3)}
    >>> state = gl.set_hyperparams(tx.init(params), learning_rate=3e-4)
    >>> gl.get_hyperparams(state)["learning_rate"]
    Array(0.0003, dtype=float32)
    """
    if not callable(factory):
        raise TypeError(
            "factory must be a function that builds a GradientTransformation (e.g. gl.adam), "
            f"got {factory!r}"
        )
    check_float_dtype("hyperparam_dtype", hyperparam_dtype)  # int32 truncated lr=0.1 to 0
    if isinstance(static_args, str):
        static = {static_args}
    elif isinstance(static_args, Iterable) and all(isinstance(a, str) for a in static_args):
        static = set(static_args)
    else:
        raise TypeError(
            f"static_args must be a parameter name or an iterable of names, got {static_args!r}"
        )
    declared = set(getattr(factory, "structural_args", ()))  # gradlab._core.structural
    signature = inspect.signature(factory)
    unknown = static - set(signature.parameters)
    if unknown:
        raise ValueError(
            f"static_args {sorted(unknown)} are not parameters of {_name(factory)} "
            f"(it has {list(signature.parameters)})"
        )

    @functools.wraps(factory)
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        for alias, name in getattr(factory, "keyword_aliases", {}).items():
            if alias in kwargs and name not in kwargs:  # masked(inner=...): Optax's name
                kwargs[name] = kwargs.pop(alias)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:  # name the factory: "got an unexpected keyword argument 'b'"
            raise TypeError(f"inject_hyperparams({_name(factory)}): {e}") from None
        bound.apply_defaults()
        numeric, schedules = {}, {}
        for name, value in bound.arguments.items():
            # A mask is a callable of the params, never of the step count.
            fixed = name in static or name in declared or name.endswith("mask")
            kind = "static" if fixed else _kind(value)
            if kind == "numeric":
                numeric[name] = value
            elif kind == "schedule":
                schedules[name] = value

        def build(values):
            arguments = {**bound.arguments, **values}
            call = inspect.BoundArguments(signature, arguments)  # type: ignore[arg-type]
            return factory(*call.args, **call.kwargs)

        # Bad values raise now, with the factory's message (schedules by their
        # first value: the factory itself may not take a schedule there).
        first = {k: fn(_tree.step_counter()) for k, fn in schedules.items()}
        for k, value in first.items():
            try:
                check_schedule_value(k, value)
            except (TypeError, ValueError) as e:
                raise TypeError(
                    f"inject_hyperparams({_name(factory)}): {k} is a callable, taken for a "
                    f"schedule, but at step 0: {e}. If it is not a schedule, name it in "
                    f"static_args=({k!r},)"
                ) from None
        build(first)
        integer = {k: _int_dtype(v) for k, v in (numeric | first).items() if _is_int(v)}
        return _injected(build, numeric, schedules, hyperparam_dtype, _name(factory), integer)

    # ``Callable[...]``, not the factory's ParamSpec: any numeric argument may be a
    # schedule or an array, which a factory typed ``b1: float`` would not admit
    return wrapped


def _name(factory: Any) -> str:
    return getattr(factory, "__qualname__", type(factory).__name__)


def _kind(value: Any) -> str:
    """The kind of an argument: numeric, schedule, or static (kept out of the state)."""
    if value is None or isinstance(value, bool | np.bool_ | str | type | np.dtype):
        return "static"
    if isinstance(value, int | float | np.integer | np.floating):
        return "numeric"
    if isinstance(value, jax.Array | np.ndarray):
        dtype = value.dtype
        numeric = jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
        return "numeric" if numeric else "static"
    return "schedule" if callable(value) else "static"


def _float_dtype(params: Any, override: Any) -> np.dtype:
    """float32, or float64 when a param computes in float64 (so the stored value is
    the one the inner transformation would compute with: bit-identical runs)."""
    if override is not None:
        return np.dtype(override)
    for x in jax.tree.leaves(params):
        if _tree.compute_dtype(jnp.result_type(x)) == np.float64:
            return np.dtype(np.float64)
    return np.dtype(np.float32)


def _is_int(value: Any) -> bool:
    return bool(jnp.issubdtype(jnp.result_type(value), jnp.integer))


def _int_dtype(value: Any) -> np.dtype:
    """The dtype an integer hyperparameter is stored in: an unsigned array keeps its
    own (a ``jax.random.PRNGKey``'s uint32 words stay a valid key, as in Optax), any
    other integer is int32."""
    if isinstance(value, jax.Array | np.ndarray) and jnp.issubdtype(
        value.dtype, jnp.unsignedinteger
    ):
        return np.dtype(value.dtype)
    return np.dtype(np.int32)


def _store(params: Any, value: Any, float_dtype: Any, int_dtype: Any) -> jax.Array:
    """A hyperparameter as stored: an integer in ``int_dtype``, the rest
    ``float_dtype``; always a new buffer (a state holding one buffer twice cannot be
    donated to a jitted step), a scalar replicated over the params' devices
    (``_tree.scalar_like``)."""
    value = jnp.asarray(value)
    dtype = int_dtype if int_dtype is not None else float_dtype
    if value.ndim == 0:
        return _tree.scalar_like(params, value, dtype)
    return jnp.array(value, dtype=dtype, copy=True)


def _as_stored(key: str, value: Any, float_dtype: Any, int_dtype: Any) -> jax.Array:
    """``value`` as a stored hyperparameter, by Optax's rule: a (strongly typed) JAX
    float array as it is (as ``init`` stored it, or as set so: an untouched state
    never changes); any other float (a Python or NumPy number, a weak-typed value)
    ``float_dtype``; an integer hyperparameter (``int_dtype`` not None) in
    ``int_dtype`` -- a float set by hand for it is a ``TypeError``, as in
    :func:`set_hyperparams` -- and an integer set for a float one ``float_dtype``
    (a ``1`` set by hand for a learning rate was stored int32: a jitted step
    recompiled, a scan carry changed type, and under strict dtype promotion the
    step failed)."""
    strong = isinstance(value, jax.Array) and not value.weak_type
    value = jnp.asarray(value)
    if int_dtype is not None:
        if not jnp.issubdtype(value.dtype, jnp.integer):
            raise TypeError(
                f"hyperparameter {key!r} is stored as {np.dtype(int_dtype)} (it was given "
                f"as an integer); state.hyperparams[{key!r}] was set to a {value.dtype} "
                "value. Inject it as a float to set float values."
            )
        return value.astype(int_dtype)
    if jnp.issubdtype(value.dtype, jnp.integer):  # (under jit a NumPy int is strong)
        return value.astype(float_dtype)
    return value if strong else value.astype(float_dtype)


def _injected(
    build: Callable[[dict], Any],
    numeric: dict[str, Any],
    schedules: dict[str, Callable],
    dtype_override: Any,
    name: str,
    integer: dict[str, np.dtype],
    form: Callable[[Any], Any] = lambda tx: tx,
) -> GradientTransformation:
    """The injected transformation; ``form`` maps each built inner transformation
    to what runs (itself, or its buffer form under ``packed``)."""

    # ``integer``: the dtype of each integer hyperparameter (numbers, and schedules by
    # their value at step 0); the rest are floats
    def init(params):
        count = _tree.step_counter(params)
        dtype = _float_dtype(params, dtype_override)
        values = {k: _store(params, v, dtype, integer.get(k)) for k, v in numeric.items()}
        values |= {
            k: _store(params, fn(count), dtype, integer.get(k)) for k, fn in schedules.items()
        }
        return InjectHyperparamsState(count, values, form(build(values)).init(params))

    def update(updates, state, params=None, **extra):
        check_state(f"inject_hyperparams({name})", state, InjectHyperparamsState)
        _check_names(name, state.hyperparams, numeric.keys() | schedules.keys())
        # A value set by hand (Optax's ``state.hyperparams[k] = 0.05``, ``tree_set``)
        # is stored as ``init`` stores it: the state stays arrays of fixed dtypes
        # (a Python float or a weak-typed value would change them).
        dtype = _float_dtype(updates if params is None else params, dtype_override)
        values = {k: _as_stored(k, v, dtype, integer.get(k)) for k, v in state.hyperparams.items()}
        for k, fn in schedules.items():  # a scheduled value set by hand is ignored
            # as init stores it: an integer in its dtype, a float in the params' dtype
            # (without params: as stored)
            kept = params is None and jnp.issubdtype(values[k].dtype, jnp.floating)
            to = integer.get(k, values[k].dtype if kept else dtype)
            values[k] = jnp.asarray(fn(state.count)).astype(to)
        out, inner = call_update(form(build(values)), updates, state.inner_state, params, extra)
        return out, InjectHyperparamsState(_tree.safe_increment(state.count), values, inner)

    def packing(ctx):
        def buffer_form(tx):
            return ctx.form(tx, f"inject_hyperparams({name})")

        return _injected(build, numeric, schedules, dtype_override, name, integer, buffer_form)

    return GradientTransformation(init, update, packing=packing)


# ----------------------------------------------------------- reading, setting


def _is_injected(x: Any) -> bool:
    """An injected-hyperparameters state: ours, or Optax's (same field names)."""
    fields = getattr(x, "_fields", ())
    return (
        isinstance(x, tuple)
        and "hyperparams" in fields
        and "inner_state" in fields
        and isinstance(x.hyperparams, dict)
    )


def _qualifiers(path: _walk.Path, level: int, most_named: int) -> list[str]:
    """The path components that qualify a name at ``level``: 0 none, 1 to
    ``most_named`` the last that many dict keys (``named_chain`` names,
    ``partition`` labels), then dict keys and sequence indices (chain
    positions), then every component."""
    named = [str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)]
    if level <= most_named:
        return named[max(0, len(named) - level) :] if level else []
    positional = jax.tree_util.DictKey | jax.tree_util.SequenceKey | jax.tree_util.FlattenedIndexKey
    keep = [k for k in path if isinstance(k, positional)] if level == most_named + 1 else path
    return [jax.tree_util.keystr((k,)).strip("[].'\"") for k in keep]


def _entries(state: Any) -> dict[str, tuple[_walk.Path, str, Any]]:
    """``{key: (path, name, injected state)}``: the bare name where it is unique,
    else the shortest qualification that tells its places apart."""
    by_name: dict[str, list[tuple[_walk.Path, Any]]] = {}
    for path, node in _walk.find(state, _is_injected):
        for name in node.hyperparams:
            by_name.setdefault(name, []).append((path, node))
    entries = {}
    for name, places in by_name.items():
        most_named = max(len(_walk.names(path)) for path, _ in places)
        for level in range(most_named + 3):
            quals = [_qualifiers(path, level, most_named) for path, _ in places]
            keys = ["/".join([*q, name]) for q in quals]
            # unique, and none bare when the name is in several places (the bare
            # name of an ambiguous hyperparameter is a KeyError, hunt81) -- but for
            # the outermost injection, whose path is empty: nothing can qualify it
            bare = [not q and bool(path) for q, (path, _) in zip(quals, places, strict=True)]
            if len(set(keys)) == len(keys) and (len(keys) == 1 or not any(bare)):
                break
        entries.update(
            {k: (path, name, node) for k, (path, node) in zip(keys, places, strict=True)}
        )
    return dict(sorted(entries.items()))


def get_hyperparams(state: Any) -> dict[str, jax.Array]:
    """Every injected hyperparameter anywhere in ``state``, by name.

    Searches chains, :func:`named_chain` and :func:`partition` states,
    wrappers (masked, apply_if_finite, MultiSteps, lookahead, packed) and
    nested injections; Optax's ``inject_hyperparams`` states too. A name
    injected in several places is qualified by the ``named_chain`` names and
    ``partition`` labels on its way (``"head/learning_rate"``), or, where
    these do not tell them apart, by chain positions (``"0/learning_rate"``).
    Only the outermost injection of a factory that injects inside itself
    (its state's own ``hyperparams``: no path to qualify it by) keeps the bare
    name next to the qualified inner ones.
    The values are those the last step used.

    >>> halving = gl.schedules.exponential_decay(0.1, decay_rate=0.5)
    >>> tx = gl.inject_hyperparams(gl.sgd)(learning_rate=halving)
    >>> params = jnp.ones(2)
    >>> state = tx.init(params)
    >>> for _ in range(3):
    ...     _, state = tx.update(params, state, params)
    >>> gl.get_hyperparams(state)["learning_rate"]   # the third step's: 0.1 * 0.5**2
    Array(0.025, dtype=float32)
    """
    return {key: node.hyperparams[name] for key, (_, name, node) in _entries(state).items()}


def set_hyperparams(state: Any, **values: Any) -> Any:
    """``state`` with the named injected hyperparameters replaced (keys as in
    :func:`get_hyperparams`; pass qualified keys as ``**{"head/learning_rate": 1e-3}``).

    Each value is cast to the stored dtype and shape (a scalar broadcasts over
    a vmapped batch), so a jitted step does not recompile; it takes effect at
    the next ``update``. An unknown or ambiguous key raises ``KeyError``
    listing the available keys; a float for an integer hyperparameter raises
    ``TypeError``. Values are not validated here (the inner transformation
    checks concrete ones when it runs eagerly).
    ``values``: the new value for each key.

    >>> tx = gl.inject_hyperparams(gl.adam)(learning_rate=1e-3)
    >>> state = gl.set_hyperparams(tx.init(jnp.ones(2)), learning_rate=1e-4)
    >>> gl.get_hyperparams(state)["learning_rate"]
    Array(0.0001, dtype=float32)
    """
    keys = _entries(state)
    wanted: dict[_walk.Path, dict[str, Any]] = {}
    for key, value in values.items():
        if key not in keys:
            raise KeyError(_unknown(key, keys))
        path, name, _ = keys[key]
        wanted.setdefault(path, {})[name] = value

    def replace(path, node):
        if path not in wanted:
            return node
        new = dict(node.hyperparams)
        for name, value in wanted[path].items():
            new[name] = _cast_like(name, value, node.hyperparams[name])
        return node._replace(hyperparams=new)

    return _walk.rebuild(state, _is_injected, replace)


def _check_names(name: str, hyperparams: Any, injected: Iterable[str]) -> None:
    """``state.hyperparams`` holds the injected names, no more, no fewer: a key set by
    hand with a typo (``["lr"] = 0.5``) was ignored, the step kept the old value."""
    keys = set(hyperparams) if isinstance(hyperparams, Mapping) else set()
    unknown, missing = sorted(keys - set(injected)), sorted(set(injected) - keys)
    if unknown or missing:
        raise ValueError(
            f"inject_hyperparams({name}): state.hyperparams "
            + (f"has {unknown}, not hyperparameters injected here" if unknown else "")
            + (" and " if unknown and missing else "")
            + (f"lacks {missing}" if missing else "")
            + f"; the injected ones are {sorted(injected)} (gl.set_hyperparams checks names)"
        )


def _unknown(key: str, keys: dict) -> str:
    available = ", ".join(repr(k) for k in sorted(keys)) or "none: no injected hyperparameters"
    if sum(k.endswith("/" + key) for k in keys) > 1:
        return (
            f"hyperparameter {key!r} is ambiguous (injected in several places); "
            f"use one of: {available}"
        )
    return f"no injected hyperparameter {key!r}; available: {available}"


def _cast_like(name: str, value: Any, old: jax.Array) -> jax.Array:
    dtype = getattr(value, "dtype", None)
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, int | float | np.number | jax.Array | np.ndarray)
        or (dtype is not None and (not is_real_dtype(dtype) or np.dtype(dtype) == np.bool_))
    ):  # a boolean array is no learning rate of 1.0, a PRNG key no number
        raise TypeError(
            f"hyperparameter {name!r} must be a number or an array, got {describe(value)}"
        )
    value = jnp.asarray(value)
    old_int = jnp.issubdtype(old.dtype, jnp.integer)
    if old_int and not jnp.issubdtype(value.dtype, jnp.integer):
        raise TypeError(
            f"hyperparameter {name!r} is stored as {old.dtype} (it was given as an integer); "
            f"got a {value.dtype} value. Inject it as a float to set float values."
        )
    shape = jnp.shape(old)
    try:
        fits = np.broadcast_shapes(jnp.shape(value), shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"hyperparameter {name!r} has shape {shape}, got shape {jnp.shape(value)}")
    # a new buffer, even for a value already stored elsewhere (donation)
    new = jnp.array(jnp.broadcast_to(value.astype(old.dtype), shape), copy=True)
    if isinstance(old, jax.Array) and not isinstance(old, jax.core.Tracer) and old.committed:
        # where the old value lived (replicated over the params' devices): on
        # one device it would make the jitted step compile again
        new = jax.device_put(new, old.sharding)
    return new
