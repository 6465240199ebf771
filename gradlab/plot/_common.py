"""Shared by every plot: matplotlib imported lazily, pyplot-free figures."""

from __future__ import annotations

from typing import Any


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
