"""``gl.plot.sweep``: a sweep's curves, and its final values against each hyperparameter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradlab._checks import check_choice, check_in_range
from gradlab.plot._common import check_scalar, figure_module
from gradlab.run import _grid

MAX_LEGEND = 10


def _ema(curves: np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected EMA along axis 1, NaN where the curve is NaN."""
    if beta == 0:
        return curves
    out = np.full_like(curves, np.nan, dtype=np.float64)
    avg = np.zeros(curves.shape[0])
    for k in range(curves.shape[1]):
        x = curves[:, k]
        avg = np.where(np.isfinite(x), beta * avg + (1 - beta) * x, avg)
        out[:, k] = np.where(np.isfinite(x), avg / (1 - beta ** (k + 1)), np.nan)
    return out


def _spans_decades(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return finite.size > 1 and bool(np.all(finite > 0)) and finite.max() / finite.min() >= 10


def _is_numeric(values: list[Any]) -> bool:
    """Numbers of any kind (Python, NumPy, 0-d arrays), as the sweep traces them."""
    return all(_grid.is_number(v) for v in values)


def sweep(
    result: Any,
    *,
    metric: str = "loss",
    smoothing: float = 0.0,
    log_scale: bool | None = None,
    by: Sequence[str] | str | None = None,
    mode: str = "min",
) -> Any:
    """Plot a :class:`gradlab.SweepResult`: training curves, one colour per
    configuration, and the final value against each swept hyperparameter.

    The first panel draws each configuration's loss history (or the history of
    the eval metric ``metric``); a curve of a diverged configuration ends where
    it diverged. Each further panel puts the final value against one swept
    hyperparameter (numbers on a log axis when they span a decade or more;
    strings and bools as categories), each point in its configuration's
    colour, with thin lines joining configurations that differ only in that
    (numeric) hyperparameter; diverged configurations are marked ``x`` at the
    worst value drawn (the top for a loss, the bottom with ``mode="max"``).

    Args:
        result: what :func:`gradlab.sweep` returned (``result.where(...)`` or
            ``result.subset(...)`` to draw fewer configurations).
        metric: ``"loss"`` or the name of an ``eval_fn`` metric.
        smoothing: EMA factor in ``[0, 1)`` for the curves (bias-corrected;
            mini-batch losses are noisy), 0 for none.
        log_scale: log value axis; ``None`` picks it when the values span a
            decade or more.
        by: the hyperparameters to put the final values against, one panel
            each: a list of swept names, or one name (default: every swept one
            that takes more than one value).
        mode: ``"min"`` (lower is better: a loss) or ``"max"`` (an accuracy),
            as in ``result.best``; it places the diverged markers.

    Returns:
        The ``matplotlib.figure.Figure``.

    Example:
        >>> loss_fn = lambda p, batch: jnp.sum((p - batch) ** 2)
        >>> batches = lambda step: jnp.ones(3)
        >>> grid = {"learning_rate": [1e-2, 1e-1, 1.0]}
        >>> result = gl.sweep(gl.adam, loss_fn, jnp.zeros(3), batches, grid, num_steps=50)
        >>> fig = gl.plot.sweep(result, smoothing=0.9)
        >>> fig.savefig("sweep.png")   # doctest: +SKIP
    """
    from gradlab.run import SweepResult

    if not isinstance(result, SweepResult):
        raise TypeError(
            f"result must be what gl.sweep returned (a SweepResult), got a {type(result).__name__}"
        )
    if not isinstance(metric, str):
        raise TypeError(f"metric must be 'loss' or the name of an eval metric, got {metric!r}")
    check_scalar("smoothing", smoothing)
    check_in_range("smoothing", smoothing, 0.0, 1.0, hi_open=True, on_device=False)  # NumPy
    if log_scale is not None and not isinstance(log_scale, bool | np.bool_):
        raise TypeError(f"log_scale must be True, False or None (automatic), got {log_scale!r}")
    check_choice("mode", mode, ("min", "max"))
    names = result.names
    if by is not None:
        given = by
        try:
            by = [by] if isinstance(by, str) else list(by)
        except TypeError:  # not iterable: by=1
            by = None
        if by is None or not all(isinstance(k, str) for k in by):
            raise TypeError(f"by must be a swept name or a list of swept names, got {given!r}")
        unknown = [k for k in by if k not in names]
        if unknown:
            raise ValueError(f"by: {unknown} are not swept names; these are {names}")
    figure = figure_module()
    if metric == "loss":
        curves = np.asarray(result.losses, np.float64)
        steps = np.arange(curves.shape[1])
        final = result.final_loss.astype(np.float64)
        ylabel, xlabel = "training loss", "step"
    else:
        if not result.evals or metric not in result.evals:
            raise ValueError(
                f"metric must be 'loss' or one of {list(result.evals or {})}, got {metric!r}"
            )
        curves = np.asarray(result.evals[metric], np.float64)
        steps = np.asarray(result.eval_steps)
        final = curves[:, -1]
        ylabel, xlabel = metric, "step (updates)"
    curves = _ema(curves, float(smoothing))
    n = curves.shape[0]
    differ = [k for k in names if len({repr(c[k]) for c in result.configs}) > 1] or names[:1]
    varied = differ if by is None else list(by)
    if log_scale is None:
        log_scale = _spans_decades(curves.ravel())
    elif log_scale:
        values = curves[np.isfinite(curves)]
        if values.size and values.min() <= 0:
            raise ValueError(
                f"log_scale=True needs positive values, but the {ylabel} reaches "
                f"{values.min():.4g}: pass log_scale=False (or None, automatic)"
            )

    panels = 1 + len(varied)
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    fig = figure.Figure(figsize=(4.6 * cols, 3.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)

    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    colors = [cmap(i / max(n - 1, 1)) for i in range(n)]
    shown = {k: _grid.describe([c[k] for c in result.configs]) for k in names}
    ax = axes[0]
    one_point = curves.shape[1] == 1  # a one-step sweep: a line of one point draws nothing
    for i in range(n):
        label = ", ".join(f"{k}={shown[k][i]}" for k in differ)
        ax.plot(steps, curves[i], "o-" if one_point else "-", color=colors[i], lw=1.2, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (f" (EMA {smoothing:g})" if smoothing else ""))
    if log_scale:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{n} configurations")
    if n <= MAX_LEGEND:  # below the panels: labels name every varied hyperparameter
        fig.legend(loc="outside lower center", ncols=1 if n < 4 else 2, fontsize="small")

    diverged = np.asarray(result.diverged) | ~np.isfinite(final)
    finite = final[~diverged]
    worst = (finite.max() if mode == "min" else finite.min()) if finite.size else 1.0
    for ax, name in zip(axes[1:panels], varied, strict=True):
        values = [c[name] for c in result.configs]
        if _is_numeric(values):
            x = np.asarray([float(v) for v in values], np.float64)
            log_x = _spans_decades(x)
        else:
            labels = list(dict.fromkeys(shown[name]))
            x = np.asarray([labels.index(t) for t in shown[name]], np.float64)
            crowded = len(labels) > 4 or max(map(len, labels)) > 10
            ax.set_xticks(range(len(labels)), labels, rotation=30 if crowded else 0,
                          ha="right" if crowded else "center")  # fmt: skip
            log_x = False
        # Thin lines join configurations equal in every other hyperparameter
        # (along a numeric axis only: categories have no order to follow).
        others = [k for k in names if k != name]
        lines: dict[str, list[int]] = {}
        for i, c in enumerate(result.configs):
            lines.setdefault(repr([c[k] for k in others]), []).append(i)
        for members in lines.values() if _is_numeric(values) else ():
            ok = [i for i in members if not diverged[i]]
            ok.sort(key=lambda i: x[i])
            if len(ok) > 1:
                ax.plot(x[ok], final[ok], color="0.75", lw=0.8, zorder=1)
        ax.scatter(
            x[~diverged],
            final[~diverged],
            c=[colors[i] for i in np.flatnonzero(~diverged)],
            zorder=2,
            s=22,
        )
        if diverged.any():
            ax.scatter(
                x[diverged],
                np.full(diverged.sum(), worst),
                marker="x",
                color="tab:red",
                zorder=3,
                label="diverged",
            )
            ax.legend(fontsize="small")
        if log_x:
            ax.set_xscale("log")
        if log_scale:
            ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(f"final {ylabel}")
        ax.grid(True, alpha=0.3)
    return fig
