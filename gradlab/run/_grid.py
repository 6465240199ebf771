"""Hyperparameter grids: expansion, validation, and the split into compiled groups.

Shared by :func:`gradlab.sweep` and :func:`gradlab.lr_finder`. A grid is

* a mapping ``{name: [values]}`` — the cartesian product, the last name
  varying fastest (``itertools.product`` order); a key that is a *tuple* of
  names zips: ``{("b1", "b2"): [(0.9, 0.999), (0.95, 0.99)]}`` is two
  configurations, not four;
* or a list of mappings — the configurations themselves (the zipped form for
  whole configurations), all with the same names.

``sweep``/``lr_finder`` annotate the first form ``Mapping[Any, Any]``: mapping keys
are invariant, so a ``dict[str, list[float]]`` built before the call would not match
a ``str | tuple[str, ...]`` key type; keys and values are checked here, at run time.

Numbers (ints and floats, not bools) are *traced*: configurations that differ
only in numbers run in one ``vmap``. Everything else (strings, bools, None,
callables, ...) is *static*: each distinct combination is its own group, one
compiled computation. A number that ``make_optimizer`` cannot trace (it
branches on it in Python, ``momentum or None``) is found by tracing one
configuration with only that name traced, and becomes static too.
"""

from __future__ import annotations

import inspect
import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab._checks import NEEDS_A_VALUE

Config = dict[str, Any]


def _is_value_list(values: Any) -> bool:
    if isinstance(values, str | bytes | Mapping) or not hasattr(values, "__len__"):
        return False
    return not (isinstance(values, np.ndarray | jax.Array) and values.ndim != 1)


def expand(grid: Any) -> list[Config]:
    """The configurations of ``grid``, in grid order (see the module docstring)."""
    if isinstance(grid, Mapping):
        if not grid:
            raise ValueError("grid must name at least one hyperparameter, got {}")
        axes: list[list[Config]] = []
        for key, values in grid.items():
            names = key if isinstance(key, tuple) else (key,)
            for name in names:
                if not isinstance(name, str) or not name.isidentifier():
                    raise TypeError(f"grid keys must be names (str), got {name!r}")
            if not _is_value_list(values):
                raise TypeError(
                    f"grid[{key!r}] must be a list of values, got {values!r}; "
                    f"for a single value write [{values!r}]"
                )
            values = list(values)
            if not values:
                raise ValueError(f"grid[{key!r}] is empty: give at least one value")
            if isinstance(key, tuple):
                for v in values:
                    if not isinstance(v, tuple | list) or len(v) != len(names):
                        raise ValueError(
                            f"grid[{key!r}] zips {len(names)} names, so each value must be a "
                            f"tuple of {len(names)}, got {v!r}"
                        )
                axes.append([dict(zip(names, v, strict=True)) for v in values])
            else:
                axes.append([{key: v} for v in values])
        flat_names = [n for part in axes for n in part[0]]
        duplicated = sorted({n for n in flat_names if flat_names.count(n) > 1})
        if duplicated:
            raise ValueError(f"grid names each hyperparameter once, got {duplicated} twice")
        return [
            {k: v for part in combo for k, v in part.items()} for combo in itertools.product(*axes)
        ]
    if isinstance(grid, Sequence) and not isinstance(grid, str | bytes):
        configs = list(grid)
        if not configs:
            raise ValueError("grid must hold at least one configuration, got []")
        for i, c in enumerate(configs):
            if not isinstance(c, Mapping):
                raise TypeError(f"grid[{i}] must be a dict of hyperparameters, got {c!r}")
            if set(c) != set(configs[0]):
                raise ValueError(
                    f"every configuration of grid must name the same hyperparameters: "
                    f"grid[0] has {sorted(configs[0])}, grid[{i}] has {sorted(c)}"
                )
            for name in c:
                if not isinstance(name, str) or not name.isidentifier():
                    raise TypeError(f"grid keys must be names (str), got {name!r}")
        return [dict(c) for c in configs]
    raise TypeError(
        "grid must be a dict {name: [values]} (cartesian product) or a list of "
        f"configuration dicts, got {type(grid).__name__}"
    )


def check_names(fn: Callable, fn_name: str, names: Sequence[str], *, fixed: int = 0) -> None:
    """Each grid name is a keyword ``fn`` accepts, and nothing ``fn`` needs is missing.

    ``fixed`` positional arguments are supplied by the caller (the learning
    rate for ``lr_finder``'s ``make_optimizer``).
    """
    if not callable(fn):
        raise TypeError(f"{fn_name} must be a callable, got {fn!r}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins: let the call itself complain
        return
    try:
        sig.bind(*([None] * fixed), **dict.fromkeys(names))
    except TypeError as e:
        if not names and fixed:  # no grid: the caller's argument(s) must be enough
            raise ValueError(
                f"{fn_name}{sig} cannot be called with the learning rate alone: {e}. Without "
                f"a grid, {fn_name} must be lr -> optimizer (give its other parameters "
                "defaults, or values through grid=)"
            ) from None
        raise ValueError(
            f"grid names {sorted(names)} do not fit {fn_name}{sig}: {e}. Every grid name "
            f"must be a parameter of {fn_name}, and the grid must give every parameter "
            "without a default"
        ) from None


def is_number(value: Any) -> bool:
    """A real scalar that can be traced: int or float, not bool."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, int | float | np.integer | np.floating):
        return True
    if isinstance(value, np.ndarray | jax.Array) and value.ndim == 0:
        return value.dtype.kind in "iu" or bool(jnp.issubdtype(value.dtype, jnp.floating))
    return False


def describe(values: Sequence[Any]) -> list[str]:
    """Short display texts of one hyperparameter's values (a table column, a
    plot's ticks and legend): a number to 4 significant digits (whatever its
    type: Python, NumPy or a 0-d array), a function by the name of the factory
    that made it (``cosine_decay``, not its inner ``schedule``), anything else
    by ``str`` cut to 24 characters. Different values that would read the same
    (two ``cosine_decay`` schedules) get ``#1``, ``#2``, ... in order of first
    appearance."""

    def text(v: Any) -> str:
        if is_number(v):
            x = v.item() if hasattr(v, "item") else v
            return f"{x:.4g}" if isinstance(x, float) else str(x)
        if callable(v):
            name = getattr(v, "__qualname__", None) or getattr(v, "__name__", None)
            if name is None:  # a functools.partial, a callable object
                name = getattr(getattr(v, "func", None), "__name__", None) or type(v).__name__
            return name.split(".<locals>", 1)[0]
        s = str(v)
        return s if len(s) <= 24 else s[:23] + "\u2026"

    texts = [text(v) for v in values]
    distinct: dict[str, list[Any]] = {}
    for v, t in zip(values, texts, strict=True):
        seen = distinct.setdefault(t, [])
        if not any(_same(v, w) for w in seen):
            seen.append(v)
    out = []
    for v, t in zip(values, texts, strict=True):
        seen = distinct[t]
        k = next(i for i, w in enumerate(seen, 1) if _same(v, w))
        out.append(t if len(seen) == 1 else f"{t}#{k}")
    return out


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b) if not callable(a) else False
    except Exception:  # an array's ambiguous truth value, an odd __eq__
        return False


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))  # unhashable statics: compared by identity
    return ("value", type(value), value)


class Group(NamedTuple):
    """Configurations that run in one compiled computation.

    ``indices``: their positions in the grid; ``static``: the values they
    share (passed as they are); ``numeric``: ``name -> (len(indices),)`` arrays
    (traced under ``vmap``).
    """

    indices: list[int]
    static: Config
    numeric: dict[str, np.ndarray]

    def label(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.static.items()) or "all"

    def numeric_row(self, i: int) -> Config:
        return {k: v[i] for k, v in self.numeric.items()}


def _stack(name: str, values: list[Any]) -> np.ndarray:
    arrays = [np.asarray(v) for v in values]
    if all(a.dtype.kind in "iu" for a in arrays):
        for v in values:  # a cast would wrap 2**33 to 0, silently
            if not -(2**31) <= int(v) < 2**31:
                raise ValueError(
                    f"grid {name!r}: {v} does not fit in int32 (whole numbers are swept as "
                    f"int32; pass {float(v)!r} for a float)"
                )
        return np.asarray(arrays, dtype=np.int32)
    dtype = jnp.result_type(float)  # float32, or float64 under x64
    return np.asarray([a.astype(np.float64) for a in arrays]).astype(dtype)


def split(configs: list[Config], static_names: frozenset[str] = frozenset()) -> list[Group]:
    """Group ``configs`` by their static values, in order of first appearance."""
    groups: dict[Any, tuple[list[int], Config, dict[str, list[Any]]]] = {}
    for i, config in enumerate(configs):
        key = []
        for name, value in config.items():
            if name not in static_names and is_number(value):
                key.append((name, "number"))
            else:
                key.append((name, _hashable(value)))
        entry = groups.setdefault(tuple(key), ([], {}, {}))
        entry[0].append(i)
        for name, value in config.items():
            if name not in static_names and is_number(value):
                entry[2].setdefault(name, []).append(value)
            else:
                entry[1][name] = value
    return [
        Group(idx, static, {k: _stack(k, v) for k, v in numeric.items()})
        for idx, static, numeric in groups.values()
    ]


def build_groups(
    configs: list[Config],
    build: Callable[[Group], Any],
    probe: Callable[[Config, Config], Any],
    what: str,
) -> list[tuple[Group, Any]]:
    """Split ``configs`` into groups and ``build(group)`` each (trace and compile).

    Building traces the group's numbers. When that fails with a concretization
    error — ``make_optimizer`` needs a value in Python — each number of the group
    is traced alone through ``probe(static, numeric)`` (under ``jax.eval_shape``:
    nothing is computed) to find the culprits; they become static, with a
    warning (each of their values is then compiled separately), and the group
    is split and built again. The common case costs no extra trace.
    """
    built: list[tuple[Group, Any]] = []
    queue = split(configs)
    while queue:
        group = queue.pop(0)
        try:
            built.append((group, build(group)))
            continue
        except NEEDS_A_VALUE:
            names = _names_needing_values(group, probe)
            if not names:
                raise  # not a hyperparameter's fault: the loss or the data
        warnings.warn(
            f"{what} needs concrete values of {sorted(names)} (it branches on them in "
            "Python, or they set shapes), so each of their values is compiled separately; "
            "where they do not set shapes, write the optimizer with jnp.where/lax.cond to "
            "sweep them in one vmap",
            stacklevel=3,
        )
        members = [configs[i] for i in group.indices]
        statics = frozenset(names) | {k for k in group.static}
        queue = [
            Group([group.indices[j] for j in sub.indices], sub.static, sub.numeric)
            for sub in split(members, statics)
        ] + queue
    return built


def _names_needing_values(group: Group, probe: Callable[[Config, Config], Any]) -> set[str]:
    found = set()
    row = group.numeric_row(0)
    for name in row:
        static = {**group.static, **{k: v.item() for k, v in row.items() if k != name}}
        try:
            jax.eval_shape(lambda x, static=static, name=name: probe(static, {name: x}), row[name])
        except NEEDS_A_VALUE:
            found.add(name)
    return found
