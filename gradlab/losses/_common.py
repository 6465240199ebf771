"""Helpers shared by the loss modules: dtypes, shape checks, label checks.

Conventions every loss follows:

* The output has the floating dtype of the *first* argument (predictions,
  logits, probabilities, distances, anchors). Integer or boolean first
  arguments become the default float dtype. Labels, targets and
  hyperparameters are cast to that dtype, so a float32 model with float64
  targets or a float32 learning signal for bfloat16 logits works under
  ``jax.numpy_dtype_promotion("strict")``.
* Shapes are static, so shape checks run at trace time and raise the same
  ``ValueError`` eagerly and under ``jit``.
* Label *values* are data, not hyperparameters: they are checked only when
  concrete (an eager call); under ``jit``/``vmap`` nothing is inspected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab._checks import check_real, is_traced
from gradlab._tree import hp

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


def _check_real(name: str, x: Any) -> None:
    """Refuse a complex ``x``: ``astype(float)`` would keep its real part silently
    (``l2_penalty([3+4j])`` was 4.5), where the optimizers refuse complex leaves.
    Refuse a non-number (strings, ``None``, a PRNG key) too, naming ``name``:
    NumPy's ufunc or JAX's array errors named nothing (hunt80). Only the type
    is read (NumPy's ``iscomplexobj``: JAX's takes a list of strings to JAX)."""
    if (jnp if is_traced(x) else np).iscomplexobj(x):
        raise TypeError(
            f"{name} must be real, got a complex value of dtype {jnp.result_type(x)} "
            "(a loss of it would silently drop the imaginary part; pass jnp.abs(x) "
            "or the real and imaginary parts as two real arrays)"
        )
    check_real(name, x, "a real number or a numeric array")


def python_ints(x: Any) -> Any:
    """A Python int, or a list of them, as a NumPy array (int64; float64 beyond
    it), which the NumPy integer paths take at its value: through JAX's int32,
    ``3_000_000_000`` raised ``OverflowError`` (hunt80). Anything else unchanged."""
    if not isinstance(x, int | list | tuple) or isinstance(x, bool) or is_traced(x):
        return x
    try:
        arr = np.asarray(x)
    except ValueError:  # a ragged list: JAX says so
        return x
    if arr.dtype.kind == "O" and all(type(v) is int for v in arr.ravel()):
        return arr.astype(np.float64)  # ints beyond int64
    return arr if arr.dtype.kind in "iu" else x  # floats keep JAX's (weak) types


def as_float(x: ArrayLike, name: str = "the input") -> Array:
    """``x`` as a JAX array of a floating dtype (ints and bools -> default float).

    A NumPy integer array (or Python ints) goes to the float dtype directly:
    through JAX's int32 first, an int64 3e9 would wrap (a Python int overflow).
    Complex ``x`` raises ``TypeError``.
    """
    x = python_ints(x)
    _check_real(name, x)
    if isinstance(x, np.ndarray | np.generic) and x.dtype.kind in "biu":
        return jnp.asarray(x, jnp.result_type(float))  # (not bfloat16: kind "V")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def cast(value: Any, dtype: Any, name: str = "the input") -> Array:
    """Labels, targets and hyperparameters (possibly traced) as ``dtype`` (the
    blocks' :func:`gradlab._tree.hp`); complex values raise ``TypeError``."""
    value = python_ints(value)
    _check_real(name, value)
    return hp(value, dtype)


def check_same_shape(name_a: str, a: ArrayLike, name_b: str, b: ArrayLike) -> None:
    """Raise ``ValueError("a shape (...) and b shape (...) differ")`` if they do.

    No broadcasting on purpose: ``(n, 1)`` against ``(n,)`` silently gives an
    ``(n, n)`` loss in NumPy semantics, the classic regression bug.
    """
    sa, sb = np.shape(a), np.shape(b)  # a list too (jnp.shape of one is deprecated)
    if sa != sb:
        raise ValueError(f"{name_a} shape {sa} and {name_b} shape {sb} differ")


def check_broadcasts_to(name: str, value: ArrayLike, shape: tuple[int, ...]) -> None:
    """A hyperparameter array (``delta``, ``margin``, ``alpha``) broadcasts to the
    loss's ``shape`` without changing it: a ``(n, 1)`` margin on ``n`` triplets
    would give an ``(n, n)`` loss, and one that does not broadcast JAX's error."""
    vs = jnp.shape(value)
    try:
        ok = np.broadcast_shapes(vs, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} of shape {vs} must broadcast to the loss's shape {tuple(shape)} "
            "without changing it"
        )


def check_class_axis(name: str, x: ArrayLike) -> None:
    """The class losses need a last (class) axis."""
    if jnp.ndim(x) < 1:
        raise ValueError(
            f"{name} must have a last axis of classes (ndim >= 1), got shape {jnp.shape(x)}"
        )


def check_label_values(
    name: str, labels: ArrayLike, ok: Callable[[np.ndarray], np.ndarray], expected: str
) -> None:
    """If ``labels`` is concrete, raise ``ValueError`` where ``ok(labels)`` is False
    (complex or non-numeric labels: ``TypeError``, traced or not)."""
    _check_real(name, labels)
    if is_traced(labels):
        return
    arr = np.asarray(labels)
    good = ok(arr)
    if not np.all(good):
        bad = arr[~good] if arr.ndim else arr
        raise ValueError(f"{name} must be {expected}, got {np.ravel(bad)[0].item()!r}")


def prob_eps(dtype: Any) -> float:
    """Clipping margin for probabilities: machine epsilon of ``dtype``.

    float32: 1.19e-7 (max loss -log(eps) = 15.9), float64: 2.2e-16 (36.0),
    bfloat16: 7.8e-3 (4.85), float16: 9.8e-4 (6.9). ``1 - eps`` is exactly
    representable in each, so clipping to ``[eps, 1 - eps]`` never rounds to 1.
    """
    return float(jnp.finfo(dtype).eps)


def abs_(x: Array) -> Array:
    """``|x|`` whose gradient is ``sign(x)``: 0 at ``x = 0`` (``jnp.abs`` gives 1 there).

    ``x * sign(x)`` is exactly ``|x|``, and ``sign``'s derivative is 0, so the
    gradient is ``sign(x)``: the subgradient torch's ``L1Loss`` and an L1
    penalty's ``sign(w)`` use, and the one that lets a weight at 0 stay there.
    """
    return x * jnp.sign(x)


def safe_log(x: Array) -> Array:
    """``log(x)`` with ``log(0) = -inf`` and a finite (zero) gradient at 0.

    The double ``where`` keeps NaN out of the backward pass (the JAX FAQ's
    trick): the unused branch never sees 0.
    """
    positive = x > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, x, 1)), -jnp.inf)
