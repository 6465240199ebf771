"""What type checkers see of the public API (hunt43), checked at run time.

The suite runs no type checker, so these tests read the annotations the way a
checker would (``typing.get_type_hints``, the source's ``TYPE_CHECKING`` block)
and hold them against what the code does.
"""

from __future__ import annotations

import ast
import collections.abc
import inspect
import os
import pathlib
import tomllib
import types
import typing
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlab as gl
from gradlab import _checks, _core, _packing

ROOT = pathlib.Path(gl.__file__).resolve().parent.parent


def test_py_typed_marker_is_shipped():
    """PEP 561: without ``gradlab/py.typed`` mypy skips gradlab ("missing library
    stubs or py.typed marker") and every gradlab name is ``Any``. It is named as
    package data, since setuptools >= 68 (the build floor) ships it by default
    only from 69.0."""
    assert (pathlib.Path(gl.__file__).parent / "py.typed").is_file()
    with open(ROOT / "pyproject.toml", "rb") as f:
        config = tomllib.load(f)
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["gradlab"]


def test_lazy_submodules_are_imported_for_type_checkers():
    """``gl.schedules``/``gl.losses``/``gl.plot`` load through ``__getattr__`` (-> Any);
    an ``if TYPE_CHECKING:`` import of each gives checkers the module's types.
    (That importing gradlab still leaves matplotlib alone: test_plot.py.)"""
    tree = ast.parse((pathlib.Path(gl.__file__)).read_text())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in ast.walk(node):
                if isinstance(stmt, ast.ImportFrom) and stmt.module == "gradlab":
                    imported |= {a.asname or a.name for a in stmt.names}
    assert imported == set(gl._LAZY_SUBMODULES)


def _is_identity_decorator_type(t: Any) -> bool:
    """``Callable[[F], F]`` with ``F`` a TypeVar bound to a callable."""
    if typing.get_origin(t) is not collections.abc.Callable:
        return False
    params, ret = typing.get_args(t)
    return isinstance(ret, typing.TypeVar) and params == [ret] and ret.__bound__ is not None


@pytest.mark.parametrize("decorator", [_checks.keyword_alias, _core.structural])
def test_signature_decorators_are_typed_to_return_the_function_type(decorator):
    """A bare ``Callable`` return erased the signatures of the 12 decorated public
    functions to ``(*Any, **Any) -> Any`` for checkers (no argument checking,
    mypy --strict ``no-any-return`` on ``return gl.lbfgs()``)."""
    assert _is_identity_decorator_type(typing.get_type_hints(decorator)["return"])


ALIASED = [
    gl.partition,
    gl.masked,
    gl.apply_if_finite,
    gl.lookahead,
    gl.scale_by_learning_rate,
    gl.MultiSteps.__new__,
]
STRUCTURAL = [
    gl.lbfgs,
    gl.adafactor,
    gl.muon,
    gl.scale_by_lbfgs,
    gl.scale_by_factored_rms,
    gl.scale_by_muon,
]


@pytest.mark.parametrize("fn", ALIASED + STRUCTURAL, ids=lambda f: f.__qualname__)
def test_decorated_public_functions_keep_their_signature(fn):
    """inspect, help() and the runtime declarations (``keyword_aliases``,
    ``structural_args``, read by inject_hyperparams) see the function's own."""
    own = inspect.unwrap(fn)
    assert inspect.signature(fn) == inspect.signature(own)
    assert typing.get_type_hints(fn) == typing.get_type_hints(own)
    if fn in ALIASED:
        assert fn.__wrapped__ is own and fn.keyword_aliases
    else:
        assert fn is own and fn.structural_args


def test_multisteps_declared_type_describes_what_it_returns():
    """``MultiSteps(...)`` returns a GradientTransformation carrying
    ``has_updated``/``gradient_transformation`` (README, Optax), not a ``MultiSteps``;
    its declared type was ``GradientTransformation``, without those attributes,
    and ``every_k_schedule`` (``int | Callable``) left out the arrays it takes."""
    hints = typing.get_type_hints(gl.MultiSteps.__new__)
    declared = hints["return"]
    assert issubclass(declared, gl.GradientTransformation)
    attributes = set(typing.get_type_hints(declared)) - set(
        typing.get_type_hints(gl.GradientTransformation)
    )
    assert attributes == {"has_updated", "gradient_transformation"}
    assert jax.Array in typing.get_args(hints["every_k_schedule"])

    tx = gl.MultiSteps(gl.sgd(0.1), every_k_schedule=jnp.asarray(2))
    assert type(tx) is gl.GradientTransformation  # unchanged at run time
    params = jnp.ones(2)
    state = tx.init(params)
    assert not bool(tx.has_updated(state))
    assert tx.gradient_transformation() is tx


def _union_members(t: Any) -> tuple[Any, ...]:
    return typing.get_args(t) if typing.get_origin(t) in (typing.Union, types.UnionType) else (t,)


def _mapping_key_types(t: Any) -> list[Any]:
    return [
        typing.get_args(m)[0]
        for m in _union_members(t)
        if typing.get_origin(m) in (collections.abc.Mapping, dict)
    ]


@pytest.mark.parametrize(
    ("fn", "param"), [(gl.sweep, "grid"), (gl.lr_finder, "grid"), (gl.partition, "transforms")]
)
def test_dict_arguments_take_any_key_type(fn, param):
    """Mapping/dict keys are invariant: ``grid = {"lr": [...]}`` (a ``dict[str, ...]``
    variable) did not match ``Mapping[str | tuple[str, ...], ...]``, nor
    ``groups = {"decay": ...}`` ``dict[Hashable, ...]``. Keys are checked at run time."""
    keys = _mapping_key_types(typing.get_type_hints(fn)[param])
    assert keys and all(k is Any for k in keys)


GENERICS = (
    os.PathLike,
    collections.abc.Callable,
    collections.abc.Mapping,
    collections.abc.Sequence,
    dict,
    list,
    tuple,
    set,
    type,
)


def _bare_generics(t: Any) -> list[Any]:
    """Generic classes used without their parameters (pyright --strict: "partially
    unknown" on every call), anywhere inside ``t``."""
    if t in GENERICS:
        return [t]
    args = [x for a in typing.get_args(t) for x in (a if isinstance(a, list) else [a])]
    return [b for a in args for b in _bare_generics(a)]


def _public_callables():
    for module in (gl, gl.schedules, gl.losses, gl.plot):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not inspect.ismodule(obj):
                yield pytest.param(obj, id=f"{module.__name__}.{name}")


@pytest.mark.parametrize("obj", list(_public_callables()))
def test_public_annotations_resolve_and_have_no_bare_generics(obj):
    """``str | os.PathLike`` (save_state, load_state), ``Sequence[Callable]``
    (schedules.join), ``Callable`` (plot.schedules, plot.trajectories) were
    ``PathLike[Unknown]``/``(...) -> Unknown`` to pyright --strict, an error on
    every call. Also: every public annotation resolves at run time."""
    hints = typing.get_type_hints(obj.__new__ if obj is gl.MultiSteps else obj)
    assert {name: _bare_generics(t) for name, t in hints.items() if _bare_generics(t)} == {}


def test_packed_buffers_declared_type_holds_a_packed_mask():
    """A packed mask's buffers hold NumPy arrays and Python bools (static masks),
    not only the ``jax.Array`` declared before."""
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    layout = _packing.Layout.of_params(params, max_leaf_size=100)
    value_type = typing.get_args(typing.get_type_hints(_packing.Packed)["buffers"])[1]
    allowed = tuple(typing.get_args(value_type)) or (value_type,)
    for mask in (
        {"a": True, "b": True},
        {"a": True, "b": False},
        {"a": np.array(True), "b": False},
    ):
        for buffer in layout.pack_mask(mask).buffers.values():
            assert isinstance(buffer, allowed), (mask, type(buffer))


# The transformation parameter of every public function that takes one.
TAKES_TRANSFORMATION = [
    (gl.chain, "transforms"),
    (gl.named_chain, "transforms"),
    (gl.masked, "transform"),
    (gl.apply_if_finite, "transform"),
    (gl.MultiSteps.__new__, "transform"),
    (gl.partition, "transforms"),
    (gl.lookahead, "fast"),
    (gl.packed, "transform"),
    (gl.schedule_free, "base_optimizer"),
    (gl.lbfgs, "linesearch"),
]


def _mentions(t: Any, target: Any) -> bool:
    return t is target or any(_mentions(a, target) for a in typing.get_args(t))


@pytest.mark.parametrize(
    ("fn", "param"), TAKES_TRANSFORMATION, ids=[f.__qualname__ for f, _ in TAKES_TRANSFORMATION]
)
def test_transformation_parameters_take_any_init_update_pair(fn, param):
    """Optax transformations drop into gradlab's combinators, but a parameter typed
    with gradlab's own NamedTuple class (nominal to a checker) made pyright reject
    ``gl.chain(optax.clip(1.0), gl.adam(1e-3))`` (hunt43). They take the structural
    ``TransformationLike`` Protocol; gradlab's class appears only in return types."""
    hint = typing.get_type_hints(fn)[param]
    assert _mentions(hint, _core.TransformationLike), hint
    assert not _mentions(hint, gl.GradientTransformation), hint


def test_transformation_like_asks_for_a_tuple():
    """The combinators refuse, at run time, an object that has ``init``/``update`` but
    is no ``(init, update)`` tuple (an ``optax.MultiSteps``, a user class): the
    Protocol asks for the tuple's ``__len__``/``__iter__`` too, so a checker
    refuses them as well (review8)."""
    members = _core.TransformationLike.__dict__
    assert {"init", "update", "__len__", "__iter__"} <= set(members)
    assert isinstance(gl.adam(0.1), tuple) and len(gl.adam(0.1)) == 2


def test_init_and_update_fields_are_callable_protocols():
    """pyright binds a ``Callable``-typed NamedTuple field like a method when it
    matches a Protocol (``init`` became ``() -> State``), so gradlab's own
    transformations did not match ``TransformationLike``. The fields are callable
    Protocols, as Optax's are, and an ``(init, update)`` pair of plain functions
    (Optax's or a user's) is still what the class holds at run time."""
    hints = typing.get_type_hints(gl.GradientTransformation)
    for name in ("init", "update"):
        field = hints[name]
        assert getattr(field, "_is_protocol", False) and callable(field), field
        protocols = typing.get_type_hints(getattr(_core.TransformationLike, name).fget)
        assert protocols["return"] is field
    assert "params" in inspect.signature(_core.InitFn.__call__).parameters
    tx = gl.GradientTransformation(lambda p: (), lambda u, s, p=None: (u, s))
    assert tx.update(1.0, ())[0] == 1.0


def test_inject_hyperparams_result_takes_schedules_for_any_argument_for_checkers():
    """A ParamSpec would carry the factory's parameter types to the result, and a
    factory typed ``learning_rate: float`` would then refuse the schedule or array
    that inject_hyperparams takes for any numeric argument (review8: 4 false
    positives). The result is ``Callable[..., GradientTransformation]``; a misspelled
    argument is a TypeError naming it at run time."""
    hints = typing.get_type_hints(gl.inject_hyperparams)
    assert typing.get_args(hints["return"])[0] is Ellipsis
    assert typing.get_args(hints["factory"]) == (Ellipsis, _core.TransformationLike)
    with pytest.raises(TypeError, match="learning_rat"):
        gl.inject_hyperparams(gl.adam)(learning_rat=1e-3)


def test_partition_takes_any_mapping_as_optax_does():
    """``transforms: Mapping`` (Optax's type, and a Flax ``FrozenDict`` is one); a
    read-only mapping gives the same numbers as the dict."""
    groups = {"a": gl.sgd(0.1), "b": gl.sgd(1.0)}
    labels = {"w": "a", "b": "b"}
    params = {"w": jnp.ones(2), "b": jnp.ones(())}
    grads = {"w": jnp.full(2, 2.0), "b": jnp.asarray(3.0)}
    out = {}
    for kind, transforms in (("dict", groups), ("mapping", types.MappingProxyType(groups))):
        tx = gl.partition(transforms, labels)
        out[kind], _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(out["mapping"]["w"], np.full(2, -0.2, np.float32))
    np.testing.assert_array_equal(out["mapping"]["b"], np.float32(-3.0))
    with pytest.raises(TypeError, match="non-empty dict"):
        gl.partition([("a", gl.sgd(0.1))], labels)
