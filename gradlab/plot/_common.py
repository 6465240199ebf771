"""Shared by every plot: matplotlib imported lazily, pyplot-free figures, and
the checks of the arguments the plots share (made before any work is done)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradlab._checks import check_int, check_positive


def figure_module() -> Any:
    """``matplotlib.figure``, or an ImportError saying how to install it."""
    try:
        import matplotlib.figure
    except ImportError as e:  # pragma: no cover - exercised by monkeypatching
        raise ImportError(
            "gradlab.plot needs matplotlib, which is not installed. "
            "Install it with: pip install gradlab[plot]"
        ) from e
    return matplotlib.figure


def axes(ax: Any, figsize: tuple[float, float]) -> Any:
    """``ax`` itself, or the single axes of a new (pyplot-free) figure."""
    figure = figure_module()
    if ax is not None:
        return ax
    return figure.Figure(figsize=figsize, layout="constrained").subplots()


def shape_of(name: str, value: Any) -> tuple[int, ...]:
    """``np.shape(value)``, or a ValueError naming ``name`` for a ragged sequence."""
    try:
        return np.shape(value)
    except ValueError as e:  # ragged nesting: NumPy cannot give it a shape
        raise ValueError(f"{name} must be rectangular (not ragged), got {value!r}") from e


def check_scalar(name: str, value: Any, what: str = "number") -> None:
    """``value`` is one value (0-d), not a sequence or an array of them."""
    shape = shape_of(name, value)
    if shape != ():
        raise ValueError(f"{name} must be a single {what}, got {value!r} (of shape {shape})")


def check_count(name: str, value: Any, minimum: int) -> None:
    """``value`` is one integer ``>= minimum`` (a step count, a number of levels)."""
    check_scalar(name, value, "integer")
    check_int(name, value, minimum)


def check_ax(ax: Any) -> None:
    """``ax`` is None (a new figure) or a matplotlib ``Axes`` to draw into."""
    if ax is None:
        return
    figure_module()  # matplotlib installed, or the ImportError saying how
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise TypeError(
            f"ax must be a matplotlib Axes (or None for a new figure), got {ax!r} "
            f"of type {type(ax).__name__}"
        )


def check_figsize(figsize: Any) -> None:
    """``figsize`` is ``(width, height)`` in inches, both finite and > 0."""
    if shape_of("figsize", figsize) != (2,):
        raise ValueError(f"figsize must be (width, height) in inches, got {figsize!r}")
    check_positive("figsize", figsize)
