"""``gl.plot.schedules``: learning-rate schedules side by side."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradlab._checks import check_bools
from gradlab.plot._common import axes as _axes
from gradlab.plot._common import check_ax, check_count


def _values(label: Any, fn: Callable, steps: np.ndarray) -> np.ndarray:
    """``fn`` at every step, as float64 of ``steps``' shape: one call on the
    array; a schedule of Python control flow on its step (``if step < 10``)
    is called once per step instead, and one returning a single value for the
    array (Optax's ``constant_schedule``) holds it at every step."""
    try:
        values = fn(steps)
    except Exception:  # a schedule of one step at a time: call it at each
        values = [fn(int(step)) for step in steps]
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        shown = repr(values)
        shown = shown if len(shown) <= 120 else f"{shown[:117]}..."
        raise TypeError(
            f"schedules[{label!r}] must return real numbers, got {shown} "
            f"for steps {steps[0]}..{steps[-1]}"
        ) from e
    if values.shape == ():
        return np.full(steps.shape, values)
    if values.shape[:1] != steps.shape:  # (steps, k): k curves, as matplotlib draws them
        raise ValueError(
            f"schedules[{label!r}] must return one value (or one row) per step: called on "
            f"arange({steps.size}) it returned shape {values.shape}, not {steps.shape}"
        )
    return values


def schedules(
    schedules: Mapping[str, Callable[[Any], Any]] | Callable[[Any], Any],
    num_steps: int,
    *,
    log_scale: bool = False,
    ax: Any = None,
) -> Any:
    """Plot schedules side by side over steps ``0 .. num_steps - 1``.

    Args:
        schedules: ``{label: schedule}`` (a single schedule is also accepted).
        num_steps: how many steps to evaluate; each schedule is called once on
            ``arange(num_steps)`` (a schedule that cannot take an array, one of
            Python control flow on its step, is called at each step).
        log_scale: a logarithmic value axis (values <= 0 are not drawn); None is False.
        ax: a matplotlib ``Axes`` to draw into; a new figure if ``None``.

    Returns:
        The ``matplotlib.figure.Figure`` holding the plot.

    Example:
        >>> import gradlab as gl
        >>> from gradlab import schedules
        >>> fig = gl.plot.schedules(
        ...     {"cosine": schedules.cosine_decay(1.0, 100), "step": schedules.step_decay(1.0, 30)},
        ...     num_steps=120,
        ... )
        >>> len(fig.axes[0].lines)
        2
    """
    if callable(schedules) and not isinstance(schedules, Mapping):
        schedules = {"schedule": schedules}
    if not isinstance(schedules, Mapping):
        raise TypeError(f"schedules must be a dict {{label: schedule}}, got {schedules!r}")
    if not schedules:
        raise ValueError("schedules must contain at least one schedule, got {}")
    for label, fn in schedules.items():
        if not callable(fn):
            raise TypeError(f"schedules[{label!r}] must be a callable step -> value, got {fn!r}")
    check_count("num_steps", num_steps, 1)
    if log_scale is not None:  # None: a linear axis, as False
        check_bools(log_scale=log_scale)
    check_ax(ax)
    num_steps = int(num_steps)

    ax = _axes(ax, figsize=(7.0, 4.0))
    steps = np.arange(num_steps)
    for label, fn in schedules.items():
        # one step is one point: a line without a marker would draw nothing
        marker = "o" if num_steps == 1 else None
        ax.plot(steps, _values(label, fn, steps), marker=marker, label=str(label))
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    ax.set_xlim(0, max(num_steps - 1, 1))
    ax.grid(True, alpha=0.3)
    if len(schedules) > 1 or next(iter(schedules)) != "schedule":
        ax.legend()
    return ax.figure
