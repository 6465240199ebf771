"""``gl.plot.lr_finder``: the range test's curve, with its suggested learning rate."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradlab._checks import check_bools
from gradlab.plot._common import axes as _axes
from gradlab.plot._common import check_ax
from gradlab.run import _grid
from gradlab.run._lr_finder import FELL

MARKERS = {"valley": "o", "steepest": "v", "minimum": "s"}


def lr_finder(result: Any, *, show_raw: bool = True, ax: Any = None) -> Any:
    """Plot a :class:`gradlab.LRFinderResult`: smoothed loss against learning rate
    (log axis), the raw loss faintly, and the suggestions — the chosen one as a
    dashed vertical line, every rule as a marker on the curve.

    A result of a grid (or of ``jax.vmap``) draws one curve per configuration.
    The value axis is cut a little above the starting loss, so the explosion
    that stopped the test does not flatten the interesting part.

    Args:
        result: what :func:`gradlab.lr_finder` returned.
        show_raw: also draw the unsmoothed loss.
        ax: a matplotlib ``Axes`` to draw into; a new figure if ``None``.

    Returns:
        The ``matplotlib.figure.Figure``.

    Example:
        >>> loss_fn = lambda p, batch: jnp.sum((p - batch) ** 2)
        >>> batches = lambda step: jnp.ones(3)
        >>> fig = gl.plot.lr_finder(gl.lr_finder(gl.adam, loss_fn, jnp.zeros(3), batches))
    """
    from gradlab.run import LRFinderResult

    if not isinstance(result, LRFinderResult):
        raise TypeError(
            f"result must be what gl.lr_finder returned (an LRFinderResult), got a "
            f"{type(result).__name__}"
        )
    check_bools(show_raw=show_raw)
    check_ax(ax)
    lrs = np.atleast_2d(np.asarray(result.learning_rates, np.float64))
    raw = np.atleast_2d(np.asarray(result.losses, np.float64))
    smooth = np.atleast_2d(np.asarray(result.smoothed, np.float64))
    stops = np.atleast_1d(np.asarray(result.stop_step))
    chosen = np.atleast_1d(np.asarray(result.suggestion, np.float64))
    rules = {k: np.atleast_1d(np.asarray(v, np.float64)) for k, v in result.suggestions.items()}
    configs = result.config_dicts() if hasattr(result, "config_dicts") else None
    n = lrs.shape[0]
    shown = {k: _grid.describe([c[k] for c in configs]) for k in (configs or [{}])[0]}

    ax = _axes(ax, figsize=(7.0, 4.2))
    cycle = [f"C{i}" for i in range(10)]
    top = -np.inf
    bottom = np.inf
    for i in range(n):
        color = cycle[i % 10]
        label = None
        if n > 1:
            label = ", ".join(f"{k}={shown[k][i]}" for k in configs[i]) if configs else f"#{i}"
        valid = np.arange(lrs.shape[1]) < stops[i]
        single = "o" if valid.sum() == 1 else None  # (a test that stopped at step 1: one point)
        if show_raw:
            ax.plot(lrs[i], raw[i], color=color, alpha=0.25, lw=0.8, marker=single)
        ax.plot(lrs[i][valid], smooth[i][valid], color=color, lw=1.6, label=label, marker=single)
        for rule, values in rules.items():
            if not np.isfinite(values[i]):
                continue
            at = (
                np.interp(np.log(values[i]), np.log(lrs[i][valid]), smooth[i][valid])
                if valid.any()
                else np.nan
            )
            ax.plot(
                [values[i]],
                [at],
                MARKERS.get(rule, "o"),
                color=color,
                mfc="none",
                ms=7,
                label=f"{rule} {values[i]:.2g}" if n == 1 else None,
            )
        if np.isfinite(chosen[i]):  # NaN: the test found nothing to suggest
            ax.axvline(chosen[i], color=color, ls="--", lw=1.0)
        finite = smooth[i][valid][np.isfinite(smooth[i][valid])]
        if finite.size:
            # Cut a little above the start when the curve falls below it (by
            # the range test's own measure); a curve that never does is shown
            # whole (it was cut at its start).
            drop = finite[0] - finite.min()
            fell = drop > FELL * abs(finite[0])
            top = max(top, finite[0] + 0.5 * drop if fell else finite.max())
            bottom = min(bottom, finite.min())
    if np.isfinite(top) and np.isfinite(bottom) and top > bottom:
        pad = 0.05 * (top - bottom)
        ax.set_ylim(bottom - pad, top)
    ax.set_xscale("log" if np.all(lrs > 0) else "linear")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    rule = getattr(result, "rule", "")
    if n == 1 and not np.isfinite(chosen[0]):
        ax.set_title("range test: no suggestion (the loss never fell below its first value)")
    elif n == 1:
        ax.set_title(f"range test: suggested {chosen[0]:.3g} ({rule}, dashed)")
    else:
        ax.set_title(f"range tests: dashed = suggested ({rule})")
    ax.grid(True, alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:  # none when nothing was suggested
        ax.legend(fontsize="small")
    return ax.figure
