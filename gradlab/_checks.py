"""Argument validation shared by every gradlab constructor.

The rule: *concrete* bad hyperparameters raise at
construction with the argument's name and value; *traced* values (inside
``jit``/``vmap``) are never inspected, so sweeps over hyperparameters work.
Schedules (callables) are validated by the schedule itself, not here.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import jax
import numpy as np

__all__ = [
    "check_bools",
    "check_choice",
    "check_float_dtype",
    "check_in_range",
    "check_int",
    "check_nonnegative",
    "check_number",
    "check_params",
    "check_positive",
    "check_real",
    "check_same_shapes",
    "check_same_structure",
    "check_scalar_output",
    "check_scalars",
    "check_schedule",
    "check_schedule_value",
    "check_seed",
    "check_state",
    "check_transformation",
    "is_function",
    "is_real_dtype",
    "is_traced",
    "keyword_alias",
    "leaf_paths",
    "path_difference",
    "short_structure",
    "static_int",
]


def is_traced(value: Any) -> bool:
    """True if ``value`` is (or contains) a JAX tracer: its value is unknown now."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))


def is_function(value: Any) -> bool:
    """``value`` is a function (a mask ``params -> tree``, an init ``key ->
    params``), not a tree of data: callable, with each of its pytree leaves
    callable (Optax's rule for masks; a plain function is its own leaf). An
    Equinox module holding arrays or bools is callable, but a tree; a
    ``jax.tree_util.Partial`` (a function with data bound to it) is a function."""
    if isinstance(value, jax.tree_util.Partial):
        return True
    if not callable(value):
        return False
    leaves = jax.tree.leaves(value)
    return not leaves or all(callable(leaf) for leaf in leaves)


def describe(value: Any) -> str:
    """``repr(value)`` for an error message, but one line for a PRNG key array
    (whose repr spells out its key data over several lines)."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return f"a PRNG key array of shape {np.shape(value)} (dtype {dtype})"
    return repr(value)


def _concrete(name: str, value: Any) -> np.ndarray | None:
    """The value as a NumPy array, or None when it is traced (skip validation, but
    for its dtype: a traced boolean is refused as a concrete one is)."""
    if is_traced(value):
        if isinstance(value, jax.Array) and value.dtype == np.bool_:
            raise TypeError(f"{name} must be a number, got a traced boolean array")
        return None
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a number, got the boolean {value!r}")
    try:
        arr = np.asarray(value)
    except Exception as e:  # pragma: no cover - exotic objects
        raise TypeError(f"{name} must be a number or an array, got {describe(value)}") from e
    if not is_real_dtype(arr.dtype):
        raise TypeError(
            f"{name} must be a real number or a numeric array, got {value!r} (dtype {arr.dtype})"
        )
    if arr.dtype.kind == "b":  # as the Python bool above: np.array(True) is no delta of 1.0
        raise TypeError(f"{name} must be a number, got a boolean array: {_fmt(value)}")
    if arr.dtype.kind == "f" and not jax.config.jax_enable_x64:
        big = np.isfinite(arr) & (np.abs(arr) > np.finfo(np.float32).max)
        if np.any(big):  # it would become inf as float32: 1e39 passed as "finite"
            raise ValueError(
                f"{name} must fit in float32 (|x| <= 3.4e38; enable jax_enable_x64 for "
                f"more), got {_fmt(value)}"
            )
    return arr


def _fmt(value: Any) -> str:
    arr = np.asarray(value)
    return repr(arr.item()) if arr.ndim == 0 else f"array {arr.tolist()!r}"


def check_number(name: str, value: Any) -> None:
    """``value`` is a number or numeric array and (if concrete) finite."""
    arr = _concrete(name, value)
    if arr is not None and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {_fmt(value)}")


def check_in_range(
    name: str,
    value: Any,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    on_device: bool = True,
) -> None:
    """Check ``lo <= value <= hi`` (``<`` where open) for concrete values.

    The message states the expected interval in mathematical notation,
    e.g. ``b1 must be in [0, 1), got 1.5``. A value computed on the device
    (``on_device``; not a host-side NumPy setting) must stay inside once
    rounded to float32, unless ``jax_enable_x64`` is on.
    """
    arr = _concrete(name, value)
    if arr is None:
        return
    if not np.all(np.isfinite(arr)):  # inf/nan hyperparameters are never meaningful
        raise ValueError(f"{name} must be finite, got {_fmt(value)}")
    ok = (arr > lo) if lo_open else (arr >= lo)
    ok &= (arr < hi) if hi_open else (arr <= hi)
    if not np.all(ok):
        # infinities are never accepted (above): their ends are always open
        left = "(" if lo_open or lo == -math.inf else "["
        right = ")" if hi_open or hi == math.inf else "]"
        lo_s = "-inf" if lo == -math.inf else f"{lo:g}"
        hi_s = "inf" if hi == math.inf else f"{hi:g}"
        if lo == 0 and hi == math.inf:
            expect = "> 0" if lo_open else ">= 0"
        else:
            expect = f"in {left}{lo_s}, {hi_s}{right}"
        raise ValueError(f"{name} must be {expect}, got {_fmt(value)}")
    # Computed in float32, a value inside its interval may round onto an end:
    # b2 = 1 - 1e-9 is 1.0 there (1 - b2 = 0: NaN steps), rprop's eta_plus 1 + 1e-9 is 1.
    if not on_device or arr.dtype.kind != "f" or jax.config.jax_enable_x64:
        return
    r = arr.astype(np.float32)
    more = "enable jax_enable_x64 and use float64 params for more digits"
    if math.isfinite(hi) and np.any((arr < hi) & (r >= hi)):
        if hi_open:
            raise ValueError(
                f"{name} must be below {hi:g} in float32, where it is computed; got "
                f"{_fmt(value)}, which rounds to {hi:g} ({more})"
            )
        raise ValueError(
            f"{name} = {_fmt(value)} rounds to {hi:g} in float32, where it is computed: "
            f"pass {hi:g} if that is meant ({more})"
        )
    if lo_open and math.isfinite(lo) and np.any((arr > lo) & (r <= lo)):
        raise ValueError(
            f"{name} must be above {lo:g} in float32, where it is computed; got "
            f"{_fmt(value)}, which rounds to {lo:g} ({more})"
        )


def check_positive(name: str, value: Any) -> None:
    """``value > 0`` (concrete values only)."""
    check_in_range(name, value, 0.0, lo_open=True)


def check_nonnegative(name: str, value: Any) -> None:
    """``value >= 0`` (concrete values only)."""
    check_in_range(name, value, 0.0)


COUNT_MAX = 2**31 - 1  # step counters are int32 (saturating): a larger count never comes


def check_int(
    name: str, value: Any, minimum: int | None = None, maximum: int | None = None
) -> None:
    """``value`` is an integer (Python or integer array) in ``[minimum, maximum]``.

    Floats with an integral value (``30.0``) are accepted, since step counts
    often arrive as floats from config files; ``2.5`` steps is an error.
    Counts compared with int32 step counters take ``maximum=COUNT_MAX``
    (``patience=10**10`` used to overflow inside JAX at the first step).
    """
    arr = _concrete(name, value)
    if arr is None:
        return
    if arr.dtype.kind not in "biu":  # compared in float64: float32(2**31 - 1) is 2**31
        arr = arr.astype(np.float64)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise ValueError(f"{name} must be an integer, got {_fmt(value)}")
    if minimum is not None and not np.all(arr >= minimum):
        raise ValueError(f"{name} must be >= {minimum}, got {_fmt(value)}")
    if maximum is not None and not np.all(arr <= maximum):
        raise ValueError(f"{name} must be <= {maximum}, got {_fmt(value)}")


def check_seed(name: str, value: Any) -> None:
    """A PRNG seed: an integer that ``jax.random.key`` keeps whole -- 32 bits, or
    64 under x64 (beyond them it would drop the high bits: 2**40 gave the key of 0)."""
    bits = 64 if jax.config.jax_enable_x64 else 32
    check_int(name, value, minimum=-(2 ** (bits - 1)), maximum=2**bits - 1)


class NeedsAValue(TypeError):
    """A setting that shapes the program got a traced value (:func:`static_int`);
    one of :data:`NEEDS_A_VALUE`, so ``sweep`` and ``lr_finder`` compile each of
    its values separately, as for a Python branch on a hyperparameter."""


def static_int(name: str, value: Any, minimum: int | None = None) -> int:
    """An integer that shapes the state or the program (a memory size, a
    factoring threshold): known when tracing, checked like :func:`check_int`
    (``10.0`` and a concrete 0-d integer array are fine), returned as an int."""
    if is_traced(value):
        raise NeedsAValue(f"{name} must be known when tracing (it sets shapes), got a traced value")
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be an integer, got the boolean {value!r}")
    check_int(name, value, minimum)
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be a single integer, got {_fmt(value)}")
    return int(np.asarray(value))


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """``value`` is one of ``choices`` (static string options)."""
    if value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {opts}, got {value!r}")


def short_structure(tree: Any, limit: int = 300) -> str:
    """A tree's structure as text, shortened in the middle to ``limit`` chars."""
    text = str(jax.tree.structure(tree)).removeprefix("PyTreeDef(").removesuffix(")")
    if len(text) > limit:
        half = limit // 2 - 3
        text = f"{text[:half]} ... {text[-half:]}"
    return text


Path = tuple[str, ...]


def leaf_paths(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> list[Path]:
    """Each leaf's path in ``tree``, one ``keystr`` per key (``("['w']", ".mu")``)."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
    return [tuple(jax.tree_util.keystr((k,)) for k in path) for path, _ in flat]


def path_difference(
    expected: list[Path],
    got: list[Path],
    expected_name: str,
    got_name: str,
    *,
    prefix: bool = False,
    show: int = 3,
) -> str:
    """Lines naming the first leaf paths only one side has, for an error message
    whose structures, shortened, may no longer show the difference (a leaf
    added to the seventh of twelve layers). With ``prefix``, a path that
    extends a leaf path of the other side, or that the other side's extends,
    is shared (a mask or label prefix; a per-leaf state subtree under a
    gradient leaf)."""

    def unmatched(a: list[Path], b: list[Path]) -> list[str]:
        leaves = set(b)
        inner = {q[:i] for q in b for i in range(len(q))} if prefix else set()
        out = []
        for p in a:
            extends = prefix and any(p[:i] in leaves for i in range(len(p)))
            if p in leaves or p in inner or extends:
                continue
            out.append("".join(p) or "(root)")
        return out

    lines = []
    for name, only in (
        (expected_name, unmatched(expected, got)),
        (got_name, unmatched(got, expected)),
    ):
        if only:
            more = f" (and {len(only) - show} more)" if len(only) > show else ""
            lines.append(f"  leaves only in {name}: {', '.join(only[:show])}{more}")
    if not lines:
        lines.append(
            "  the leaf paths agree: a node's type differs (a tuple for a list, "
            "another NamedTuple class, or a leafless node such as None or ())"
        )
    return "\n".join(lines)


def check_same_structure(expected: Any, got: Any, expected_name: str, got_name: str) -> None:
    """Raise a readable ValueError if two trees differ in structure.

    Both structures are shown, shortened, so a user sees *which* keys differ
    instead of a deep JAX traceback.
    """
    s_exp, s_got = jax.tree.structure(expected), jax.tree.structure(got)
    if s_exp != s_got:
        raise ValueError(
            f"{got_name} tree does not match the {expected_name} tree.\n"
            f"  {expected_name}: {short_structure(expected)}\n"
            f"  {got_name}: {short_structure(got)}\n"
            f"{path_difference(leaf_paths(expected), leaf_paths(got), expected_name, got_name)}\n"
            f"(Was the optimizer state initialised with different params?)"
        )


def check_same_shapes(expected: Any, got: Any, expected_name: str, got_name: str) -> None:
    """Raise a ValueError naming the first leaf whose shape differs between two
    trees of the same structure. Shapes are static: this runs when tracing and
    costs nothing at run time (it replaces a bare broadcasting error, or, where
    the shapes happen to broadcast, params and state that silently change shape).
    """
    exp_leaves, got_leaves = jax.tree.leaves(expected), jax.tree.leaves(got)
    if [np.shape(x) for x in exp_leaves] == [np.shape(x) for x in got_leaves]:
        return
    paths = jax.tree_util.tree_flatten_with_path(expected)[0]
    for (path, a), b in zip(paths, got_leaves, strict=True):
        if np.shape(a) != np.shape(b):
            raise ValueError(
                f"{got_name} leaf {jax.tree_util.keystr(path) or '(root)'} has shape "
                f"{np.shape(b)} but the {expected_name} leaf has shape {np.shape(a)}"
            )


def check_params(name: str, params: Any) -> None:
    """Blocks that read the params refuse to run without them."""
    if params is None:
        raise ValueError(f"{name} uses the params: call update(updates, state, params)")


def check_float_dtype(name: str, value: Any) -> None:
    """``value`` is None or a floating-point dtype (a state's storage dtype)."""
    if value is None:
        return
    try:
        dtype = np.dtype(value)
    except TypeError as e:
        raise TypeError(f"{name} must be a dtype such as jnp.float32, got {value!r}") from e
    if not jax.numpy.issubdtype(dtype, jax.numpy.floating):  # bfloat16 is not np.floating
        raise ValueError(f"{name} must be a floating-point dtype, got {dtype}")


def check_transformation(name: str, value: Any) -> None:
    """``value`` looks like a GradientTransformation (an ``(init, update)`` tuple)."""
    if not (isinstance(value, tuple) and hasattr(value, "init") and hasattr(value, "update")):
        if hasattr(value, "gradient_transformation"):  # optax.MultiSteps
            hint = ": pass its .gradient_transformation()"
        elif callable(value):
            name_ = getattr(value, "__name__", "")
            hint = f" {name_}: call it to build one (gl.adam(1e-3), not gl.adam)"
        else:
            hint = ""
        raise TypeError(
            f"{name} must be a GradientTransformation, got {type(value).__name__}{hint}"
        )


_F = TypeVar("_F", bound=Callable[..., Any])


def keyword_alias(alias: str, name: str) -> Callable[[_F], _F]:
    """Decorator: the argument ``name`` may also be passed as ``alias=``, where
    the API's name and Optax's differ (``masked(inner=...)``, Optax's, for
    ``transform``; ``scale_by_learning_rate(lr=...)``, the API's, for
    ``learning_rate``), so code written for either runs unchanged. The
    signature shown is the function's own, to ``inspect`` and to type checkers
    (which therefore do not know the alias keyword)."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            if alias in kwargs:
                if name in kwargs:
                    raise TypeError(
                        f"{fn.__name__}() got both {name!r} and {alias!r} (another name "
                        f"for {name!r}): pass one"
                    )
                kwargs[name] = kwargs.pop(alias)
            return fn(*args, **kwargs)

        # declared, for wrappers that bind arguments against the signature
        # (inject_hyperparams): {alias: name}, accumulated over stacked aliases
        call.keyword_aliases = {**getattr(fn, "keyword_aliases", {}), alias: name}  # type: ignore[attr-defined]
        return cast(_F, call)

    return wrap


def check_bools(**flags: Any) -> None:
    """Each flag is a Python (or NumPy) bool: ``nesterov="no"`` is truthy and
    would switch the option on, the opposite of what was asked."""
    for name, value in flags.items():
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{name} must be True or False, got {value!r}")


def check_scalars(**values: Any) -> None:
    """Each value is a scalar (0-d), traced or not; callables (schedules) pass.

    An optimizer's hyperparameter applies to every element: an array of them
    would broadcast against a leaf of the same shape (a per-element learning
    rate, silently) or fail deep inside ``update``. A sweep vmaps instead.
    Traced values are checked too: their shape is static (under ``vmap`` each
    one is a scalar).
    """
    for name, value in values.items():
        if callable(value) or value is None:
            continue
        shape = np.shape(value) if not is_traced(value) else jax.numpy.shape(value)
        if shape != ():
            raise ValueError(
                f"{name} must be a scalar, got an array of shape {shape}; to sweep over "
                "several values, vmap over a function that builds the optimizer (or schedule)"
            )


def check_state(where: str, state: Any, expected: type) -> None:
    """``state`` is the ``expected`` NamedTuple a transformation's own ``init`` returns.

    A state from another optimizer, or one restored from a checkpoint as plain
    tuples/dicts, would otherwise fail deep inside ``update`` (an
    ``AttributeError``, or ``tuple.count`` compared with an int). Checked when
    tracing, at no run-time cost.
    """
    if not isinstance(state, expected):
        got, own = type(state).__name__, expected.__name__
        if got == own:  # Optax's ScaleByAdamState for gradlab's: tell them apart
            got, own = (f"{t.__module__}.{t.__qualname__}" for t in (type(state), expected))
        raise ValueError(
            f"{where} got a state of type {got} ({short_structure(state, 200)}) "
            f"where its own {own} was expected: was it created by this "
            "transformation's init? (A state of another optimizer; or one restored from a "
            "checkpoint without its structure: restore it with "
            "gl.load_state(path, like=tx.init(params)).)"
        )
    if any(isinstance(_first_leaf(field), jax.ShapeDtypeStruct) for field in state):
        raise TypeError(
            f"{where} got an abstract state (jax.ShapeDtypeStruct leaves, as "
            "jax.eval_shape(tx.init, params) returns): update needs arrays -- create the "
            "state with tx.init(params), or restore it with gl.load_state(path, like=...)"
        )


def _first_leaf(x: Any) -> Any:
    """The first leaf of a state field (down its first dict value / tuple element):
    an abstract state has all of them abstract, and following one path costs its
    depth, not a flattening of the whole tree at every eager step."""
    while isinstance(x, Mapping | list | tuple) and len(x):
        x = next(iter(x.values())) if isinstance(x, Mapping) else x[0]
    return x


# What JAX raises when Python code needs the value of a traced step (`if step < 10:`).
NEEDS_A_VALUE = (
    NeedsAValue,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
)


def required_positional(fn: Any) -> int | None:
    """How many positional arguments ``fn`` requires (None: unknown, or ``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.default is inspect.Parameter.empty for p in params)


def is_real_dtype(dtype: Any) -> bool:
    """A bool, integer or float dtype, the 16- and 8-bit floats included
    (ml_dtypes' bfloat16 has NumPy kind 'V': JAX is asked); not a PRNG key's."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:  # a PRNG key's extended dtype
        return False
    return dtype.kind in "biuf" or bool(jax.numpy.issubdtype(dtype, jax.numpy.floating))


def check_real(name: str, value: Any, what: str = "a real number") -> None:
    """``value`` is a number or an array of numbers (:func:`is_real_dtype`),
    else a ``TypeError`` naming ``name``: ``None`` would turn into NaN and
    ``"0.3"`` into a number, or fail deep in JAX. Only the type is read, so a
    traced value is checked for free."""
    if isinstance(value, int | float):  # any Python int (10**30 is NumPy's object dtype)
        return
    dtype = getattr(value, "dtype", None)
    if dtype is None and value is not None and not isinstance(value, str | bytes):
        dtype = np.asarray(value).dtype
        if dtype.kind == "O" and not any(  # [None] is no number (float64 would make it NaN),
            item is None or isinstance(item, str | bytes)
            for item in np.asarray(value, dtype=object).ravel()
        ):  # [2**70]: Python ints beyond int64 are numbers too
            with contextlib.suppress(TypeError, ValueError):
                dtype = np.asarray(value, np.float64).dtype
    if dtype is None or not is_real_dtype(dtype):
        shown = f"a traced value of dtype {dtype}" if is_traced(value) else describe(value)
        raise TypeError(f"{name} must be {what}, got {shown}")


def check_scalar_output(name: str, value: Any, hint: str = "") -> None:
    """What ``name`` (a loss, an objective) returned is one float, checked when
    tracing: a string or ``None`` is a ``TypeError``, a vector a ``ValueError``
    (``jax.grad``'s own messages name neither), an integer a ``TypeError``."""
    check_real(f"{name}'s output", value, "a float scalar")
    if jax.numpy.shape(value) != ():
        raise ValueError(f"{name} must return a scalar, got shape {jax.numpy.shape(value)}{hint}")
    dtype = getattr(value, "dtype", None)  # a ShapeDtypeStruct from eval_shape has one
    dtype = jax.numpy.result_type(value) if dtype is None else dtype
    if not jax.numpy.issubdtype(dtype, jax.numpy.floating):
        raise TypeError(f"{name} must return a float, got dtype {dtype}")


def check_schedule_value(name: str, value: Any, scalar: bool = True) -> None:
    """What a schedule returned is one real number: a scalar of an integer or
    floating dtype (or a Python int/float), traced or not (shapes and dtypes are
    static). Otherwise a ``TypeError``/``ValueError`` naming ``name`` and what came
    back, instead of an update silently broadcast to the schedule's shape or a
    dtype error deep in the block. ``scalar=False``: real numbers of any shape
    (a schedule called with an array of steps)."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} schedule must return a real number, got the boolean {value!r}")
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        if isinstance(value, int | float):
            return
        raise TypeError(f"{name} schedule must return a real number (a scalar), got {value!r}")
    if not (
        jax.numpy.issubdtype(dtype, jax.numpy.floating)
        or jax.numpy.issubdtype(dtype, jax.numpy.integer)
    ):
        raise TypeError(
            f"{name} schedule must return a real number, got a value of dtype {np.dtype(dtype)}"
        )
    shape = jax.numpy.shape(value)
    if scalar and shape != ():
        raise ValueError(
            f"{name} schedule must return a scalar, got an array of shape {shape}; to sweep "
            "over several values, vmap over a function that builds the optimizer"
        )


def check_schedule(name: str, schedule: Any) -> None:
    """A schedule given for ``name`` takes one argument (the int32 step) and returns
    one real number: checked at construction by evaluating it abstractly at an
    int32 step (``jax.eval_shape``: nothing runs). A schedule with Python control
    flow on the step (``if step < 10``) cannot be traced here; it is checked when
    it runs (:func:`check_schedule_value`, called by the blocks at each update)."""
    n = required_positional(schedule)
    if n is not None and n != 1:
        raise TypeError(
            f"{name} must be a number or a schedule step -> value of one argument, got "
            f"{schedule!r}, a function of {n} required arguments"
        )

    def probe(step):  # checked inside the trace: no tracer escapes it
        check_schedule_value(name, schedule(step))

    try:
        jax.eval_shape(probe, jax.ShapeDtypeStruct((), np.int32))
    except NEEDS_A_VALUE:
        return


def check_learning_rate(name: str, value: Any) -> None:
    """A learning rate given as ``name``: a schedule (checked as one), or a
    scalar ``>= 0`` (checked if concrete)."""
    check_scalars(**{name: value})
    if callable(value):
        check_schedule(name, value)
    else:
        check_nonnegative(name, value)
