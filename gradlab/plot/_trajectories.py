"""``gl.plot.trajectories``: optimizers moving over a 2-D loss surface."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab._checks import (
    check_bools,
    check_int,
    check_number,
    check_positive,
    check_scalar_output,
    check_transformation,
)
from gradlab.plot._common import axes as _axes
from gradlab.plot._common import (
    check_ax,
    check_count,
    check_figsize,
    check_scalar,
    shape_of,
)
from gradlab.run._minimize import stepper


def _signature(optimizer: Any, x0: jax.Array) -> tuple:
    """What must agree for optimizers to share one vmapped scan: the state's
    tree structure and its leaves' shapes and dtypes."""
    shapes = jax.eval_shape(optimizer.init, x0)
    leaves, treedef = jax.tree.flatten(shapes)
    return treedef, tuple((s.shape, s.dtype) for s in leaves)


def _scan_fn(fun: Callable, optimizers: list[Any], x0: jax.Array, num_steps: int) -> Callable:
    """``run(index, state) -> path``: ``num_steps`` updates of optimizer ``index``
    from ``x0`` in one ``lax.scan`` (a ``lax.switch`` picks the update, so
    optimizers whose states share a structure run under one ``vmap``)."""
    value_and_grad = jax.value_and_grad(fun)
    steps = [stepper(fun, opt, opt.init(x0)) for opt in optimizers]

    def run(index, state):
        def body(carry, _):
            carry = steps[0](*carry) if len(steps) == 1 else jax.lax.switch(index, steps, *carry)
            return carry, carry[0]

        value, grad = value_and_grad(x0)
        _, path = jax.lax.scan(body, (x0, state, value, grad), length=num_steps)
        return jnp.concatenate([x0[None], path])

    return run


def optimizer_paths(
    fun: Callable, optimizers: Mapping[str, Any], x0: Any, num_steps: int
) -> dict[str, np.ndarray]:
    """``{name: (num_steps + 1, 2) array}``: each optimizer's iterates from ``x0``.

    Each step is ``update(grad, state, x, value=, grad=, value_fn=fun)`` (so
    line searches and :func:`gradlab.lbfgs` work); optimizers whose states
    share a structure (``sgd`` at several learning rates, ``sgd`` with and
    without Nesterov) run as one compiled, vmapped scan; the others get one
    scan each.
    """
    x0 = jnp.asarray(x0)
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        x0 = x0.astype(jnp.float32)
    groups: dict[tuple, list[str]] = {}
    for name, opt in optimizers.items():
        groups.setdefault(_signature(opt, x0), []).append(name)
    paths = {}
    for names in groups.values():
        members = [optimizers[n] for n in names]
        run = _scan_fn(fun, members, x0, num_steps)
        states = [opt.init(x0) for opt in members]
        if len(members) == 1:
            out = jax.jit(run)(0, states[0])[None]
        else:
            stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
            out = jax.jit(jax.vmap(run))(jnp.arange(len(members)), stacked)
        for name, path in zip(names, np.asarray(out, np.float64), strict=True):
            paths[name] = path
    return {name: paths[name] for name in optimizers}


def _default_bounds(fun: Callable, paths: dict[str, np.ndarray], dtype: Any) -> tuple:
    """The extent of the points of the paths that do not diverge, plus 15%. A
    path diverges when its last loss is above its first (or not finite); it
    leaves the frame, or it would stretch the frame until the other paths are a
    dot (sgd reaches |x| ~ 1e5 in 50 steps on Rosenbrock) and then until the
    whole surface overflows. If every path diverges: their points where the
    loss is finite."""
    kept, everyone = [], []
    for path in paths.values():
        path = path[np.all(np.isfinite(path), axis=1)]
        values = np.asarray(jax.vmap(fun)(jnp.asarray(path, dtype)), np.float64)
        finite = path[np.isfinite(values)]
        everyone.append(finite if finite.size else path)
        if values.size and np.isfinite(values[-1]) and values[-1] <= values[0]:
            kept.append(finite)
    points = np.concatenate(kept or everyone)
    lo, hi = points.min(axis=0), points.max(axis=0)
    # paths that barely move get a frame of at least 1e-3 of their scale: an
    # absolute floor around x0 = 1000 drew float32's lattice, not the surface
    floor = 1e-3 * np.maximum(1.0, np.abs(lo + hi) / 2)
    pad = 0.15 * np.maximum(hi - lo, floor)
    return tuple((float(a), float(b)) for a, b in zip(lo - pad, hi + pad, strict=True))


def _surface(fun: Callable, bounds, resolution: int, dtype: Any):
    xs = np.linspace(*bounds[0], resolution)
    ys = np.linspace(*bounds[1], resolution)
    gx, gy = np.meshgrid(xs, ys)
    grid = jnp.asarray(np.stack([gx, gy], axis=-1), dtype)
    # Eager: a few whole-grid operations, cheaper than compiling them.
    z = np.asarray(jax.vmap(jax.vmap(fun))(grid), np.float64)
    return gx, gy, z


def _log_levels(z: np.ndarray, num_levels: int, decades: float) -> np.ndarray:
    """Contour levels geometrically spaced above the surface's minimum, so the
    flat valley floor and the steep walls both get lines."""
    finite = z[np.isfinite(z)]
    if not finite.size:
        raise ValueError(
            "the loss is not finite anywhere inside the plot's bounds (check that fun is "
            "finite somewhere): pass bounds=((xmin, xmax), (ymin, ymax)) around the region "
            "to draw"
        )
    lo, hi = finite.min(), finite.max()
    if lo == hi:
        warnings.warn(
            f"the loss is constant ({lo:g}) inside the plot's bounds: there are no contour "
            "lines to draw",
            stacklevel=3,
        )
    span = max(hi - lo, np.finfo(np.float64).tiny)
    # np.unique: levels closer than the float spacing at ``lo`` (many decades
    # above a minimum far from 0) coincide, and contour levels must increase.
    return np.unique(lo + span * np.logspace(-decades, 0.0, num_levels))


def _check_bounds(bounds: Any) -> None:
    """``((xmin, xmax), (ymin, ymax))``: finite numbers, each min below its max."""
    expected = "bounds must be ((xmin, xmax), (ymin, ymax))"
    if shape_of("bounds", bounds) != (2, 2):
        raise ValueError(f"{expected}, got {bounds!r}")
    if np.asarray(bounds).dtype == bool:
        raise TypeError(f"{expected} of numbers, got booleans {bounds!r}")
    check_number("bounds", bounds)  # numbers (TypeError), finite (ValueError)
    lo, hi = np.asarray(bounds, np.float64).T
    if not np.all(lo < hi):
        raise ValueError(f"{expected} with xmin < xmax and ymin < ymax, got {bounds!r}")


def _check_levels(levels: Any) -> None:
    """A number of levels (an int >= 1), or the levels: finite, increasing."""
    if shape_of("levels", levels) == ():
        check_int("levels", levels, minimum=1)
        return
    arr = np.asarray(levels)
    if arr.ndim != 1 or arr.dtype == bool:
        raise ValueError(
            f"levels must be a number of levels or a 1-D sequence of levels, got {levels!r}"
        )
    check_number("levels", levels)
    if arr.size == 0 or np.any(np.diff(arr.astype(np.float64)) <= 0):
        raise ValueError(f"levels must be a non-empty increasing sequence, got {levels!r}")


def trajectories(
    fun: Callable[[Any], Any],
    optimizers: Mapping[str, Any],
    x0: Any,
    num_steps: int,
    *,
    animate: bool = False,
    bounds: tuple[tuple[float, float], tuple[float, float]] | None = None,
    levels: int | Any = 20,
    decades: float = 4.0,
    resolution: int = 120,
    ax: Any = None,
    figsize: tuple[float, float] = (6.0, 5.0),
    interval: int = 150,
    num_frames: int | None = None,
) -> Any:
    """The paths of several optimizers over the contour plot of a 2-D loss surface.

    Every optimizer starts at ``x0`` (shape ``(2,)``) and takes ``num_steps``
    updates of ``fun`` (see :func:`optimizer_paths`: line searches and
    ``lbfgs`` get the value and gradient they need). The surface is drawn with
    contour levels spaced logarithmically above its minimum; the start is a
    black star, each path's end a cross in its colour.

    Args:
        fun: ``x -> scalar`` for ``x`` of shape ``(2,)`` (jnp operations).
        optimizers: ``{label: GradientTransformation}``.
        x0: the common starting point.
        num_steps: updates per optimizer.
        animate: return a ``matplotlib.animation.FuncAnimation`` of the
            optimizers moving together (one frame per step) instead of a figure;
            save it with ``anim.save("paths.gif", writer="pillow")`` or show it in
            a notebook with ``HTML(anim.to_jshtml())``.
        bounds: ``((xmin, xmax), (ymin, ymax))`` of the plot (finite, each min
            below its max); default: the extent of the paths that do not
            diverge (a path whose last loss is above its first does), plus a
            margin: a diverging path leaves the frame.
        levels: number of log-spaced contour levels (>= 1), or the levels
            themselves (increasing).
        decades: the log-spaced levels span this many decades (> 0) above the
            minimum; levels the float resolution cannot tell apart are merged.
        resolution: grid points per axis for the surface.
        ax: a matplotlib ``Axes`` to draw into (a new figure if None).
        figsize: size of a new figure.
        interval: milliseconds (> 0) between animation frames.
        num_frames: frames of the animation (evenly spaced steps, first and last
            included); default one per step. Each frame redraws the figure, so
            fewer frames make a smaller GIF, faster.

    Returns:
        The ``matplotlib.figure.Figure``, or a ``FuncAnimation`` with ``animate=True``.

    Example:
        >>> rosen = lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        >>> fig = gl.plot.trajectories(
        ...     rosen, {"adam": gl.adam(0.05), "lbfgs": gl.lbfgs()}, jnp.array([-1.5, 2.0]), 50
        ... )
    """
    if not callable(fun):
        raise TypeError(f"fun must be a callable x -> scalar, got {fun!r}")
    if not isinstance(optimizers, Mapping) or not optimizers:
        raise TypeError(
            f"optimizers must be a non-empty dict {{label: optimizer}}, got {optimizers!r}"
        )
    for name, opt in optimizers.items():
        check_transformation(f"optimizers[{name!r}]", opt)
    if shape_of("x0", x0) != (2,):
        raise ValueError(f"x0 must have shape (2,) (a point in the plane), got {np.shape(x0)}")
    check_number("x0", x0)
    out = jax.eval_shape(fun, jnp.asarray(x0, jnp.result_type(jnp.asarray(x0).dtype, float)))
    check_scalar_output("fun", out, " (the loss at a point of the plane)")
    check_count("num_steps", num_steps, minimum=1)
    check_bools(animate=animate)
    if bounds is not None:
        _check_bounds(bounds)
    _check_levels(levels)
    check_scalar("decades", decades)
    check_positive("decades", decades)
    check_count("resolution", resolution, minimum=2)
    check_ax(ax)
    check_figsize(figsize)
    check_scalar("interval", interval)
    check_positive("interval", interval)
    if num_frames is not None:
        check_count("num_frames", num_frames, minimum=2)
    num_steps = int(num_steps)

    paths = optimizer_paths(fun, optimizers, x0, num_steps)
    dtype = jnp.result_type(jnp.asarray(x0).dtype, jnp.float32)
    if bounds is None:
        bounds = _default_bounds(fun, paths, dtype)
    else:
        bounds = tuple((float(a), float(b)) for a, b in np.asarray(bounds, np.float64))
    gx, gy, z = _surface(fun, bounds, int(resolution), dtype)
    if np.ndim(levels) == 0:
        levels = _log_levels(z, int(levels), float(decades))

    ax = _axes(ax, figsize=figsize)
    import matplotlib  # available: _axes imported it

    # One colour per level (not per value): log-spaced levels would otherwise
    # all take the colormap's low end.
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, len(levels)))
    ax.contour(gx, gy, z, levels=levels, colors=colors, linewidths=0.7)
    start = np.asarray(x0, np.float64)
    ax.plot(*start, marker="*", color="black", markersize=12, linestyle="none", label="start")
    lines, ends = [], []
    for name, path in paths.items():
        (line,) = ax.plot(path[:, 0], path[:, 1], "o-", markersize=2.5, linewidth=1.2, label=name)
        (end,) = ax.plot(
            path[-1:, 0], path[-1:, 1], marker="X", markersize=9, color=line.get_color()
        )
        lines.append(line)
        ends.append(end)
    ax.set_xlim(*bounds[0])
    ax.set_ylim(*bounds[1])
    ax.set_xlabel("$x_0$")
    ax.set_ylabel("$x_1$")
    ax.legend(loc="best", fontsize="small")
    if not animate:
        return ax.figure

    from matplotlib.animation import FuncAnimation

    title = ax.set_title("step 0")

    def draw(k):
        for line, end, path in zip(lines, ends, paths.values(), strict=True):
            line.set_data(path[: k + 1, 0], path[: k + 1, 1])
            end.set_data(path[k : k + 1, 0], path[k : k + 1, 1])
        title.set_text(f"step {k}")
        return [*lines, *ends, title]

    frames = np.arange(num_steps + 1)
    if num_frames is not None:
        frames = np.unique(np.linspace(0, num_steps, int(num_frames)).round().astype(int))
    draw(0)
    return FuncAnimation(ax.figure, draw, frames=frames, interval=float(interval), blit=False)
