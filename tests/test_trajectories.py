"""``gl.plot.trajectories``: the drawn paths are the optimizers' iterates (NumPy
recurrences written here), over log-spaced contours; the animation saves as a GIF."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib
import matplotlib.figure
from matplotlib.animation import FuncAnimation

import gradlab as gl

C = np.array([1.0, 10.0])  # a narrow valley: f = 0.5 * (x^2 + 10 y^2)
X0 = np.array([-2.0, 1.0])
STEPS = 12


def valley(x):
    return 0.5 * jnp.sum(jnp.asarray(C, x.dtype) * x**2)


def sgd_path(lr, momentum=0.0):
    """torch.optim.SGD's recurrence: v = momentum v + g; x -= lr v."""
    x, v, path = X0.copy(), np.zeros(2), [X0.copy()]
    for _ in range(STEPS):
        v = momentum * v + C * x
        x = x - lr * v
        path.append(x)
    return np.array(path)


OPTIMIZERS = {
    "sgd 0.05": gl.sgd(0.05),
    "sgd 0.18": gl.sgd(0.18),  # shares sgd 0.05's state structure: one vmapped scan
    "momentum": gl.sgd(0.05, momentum=0.8),
    "lbfgs": gl.lbfgs(),
}


@pytest.fixture(scope="module")
def figure():
    return gl.plot.trajectories(valley, OPTIMIZERS, X0, STEPS, resolution=40)


def test_paths_are_the_optimizers_iterates(figure):
    assert isinstance(figure, matplotlib.figure.Figure)
    (ax,) = figure.axes
    lines = {line.get_label(): line for line in ax.lines}
    expected = {
        "sgd 0.05": sgd_path(0.05),
        "sgd 0.18": sgd_path(0.18),  # lr * 10 = 1.8: zig-zags across the valley
        "momentum": sgd_path(0.05, momentum=0.8),
    }
    for name, path in expected.items():
        drawn = np.stack([lines[name].get_xdata(), lines[name].get_ydata()], axis=1)
        np.testing.assert_allclose(drawn, path, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(np.sign(expected["sgd 0.18"][:, 1])) != 0)  # the zig-zag
    lbfgs = np.stack([lines["lbfgs"].get_xdata(), lines["lbfgs"].get_ydata()], axis=1)
    assert lbfgs.shape == (STEPS + 1, 2)
    np.testing.assert_allclose(lbfgs[-1], 0.0, atol=1e-4)  # solved in a few steps
    values = 0.5 * np.sum(C * lbfgs**2, axis=1)
    assert np.all(np.diff(values) <= 1e-7)  # the line search never goes uphill


def test_start_and_ends_are_marked_over_log_spaced_contours(figure):
    (ax,) = figure.axes
    labels = [line.get_label() for line in ax.lines]
    assert "start" in labels
    start = ax.lines[labels.index("start")]
    np.testing.assert_allclose([start.get_xdata()[0], start.get_ydata()[0]], X0)
    ends = [line for line in ax.lines if line.get_marker() == "X"]
    assert len(ends) == len(OPTIMIZERS)
    (contours,) = [c for c in ax.collections if hasattr(c, "levels")]
    assert len(contours.levels) == 20
    # Log spacing above the minimum: the gaps between levels grow geometrically,
    # over 4 decades (1.62x per level).
    gaps = np.diff(contours.levels)
    np.testing.assert_allclose(gaps[1:] / gaps[:-1], 10 ** (4 / 19), rtol=1e-6)


def test_animation_moves_the_optimizers_together_and_saves_as_gif(tmp_path):
    opts = {"sgd": gl.sgd(0.05), "adam": gl.adam(0.3)}
    ax = matplotlib.figure.Figure(figsize=(3, 2.5)).subplots()
    anim = gl.plot.trajectories(valley, opts, X0, 3, animate=True, resolution=20, ax=ax)
    assert isinstance(anim, FuncAnimation)
    path = tmp_path / "paths.gif"
    anim.save(path, writer="pillow", dpi=40)
    assert path.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    # After the last frame, the drawn path is the whole path.
    sgd = next(line for line in ax.lines if line.get_label() == "sgd")
    assert len(sgd.get_xdata()) == 4


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"x0 must have shape \(2,\)"):
        gl.plot.trajectories(valley, {"sgd": gl.sgd(0.1)}, np.zeros(3), 5)
    with pytest.raises(TypeError, match="non-empty dict"):
        gl.plot.trajectories(valley, {}, X0, 5)
    with pytest.raises(TypeError, match="GradientTransformation"):
        gl.plot.trajectories(valley, {"sgd": "sgd"}, X0, 5)
    with pytest.raises(ValueError, match="num_steps must be >= 1, got 0"):
        gl.plot.trajectories(valley, {"sgd": gl.sgd(0.1)}, X0, 0)


def test_renders_under_agg(figure, tmp_path):
    matplotlib.use("Agg")
    figure.savefig(tmp_path / "paths.png", dpi=40)
    assert (tmp_path / "paths.png").stat().st_size > 0


def test_a_diverging_path_leaves_the_frame_instead_of_overflowing_the_surface():
    # sgd(0.1) on Rosenbrock reaches ~1e16 in 30 steps: framed around every
    # point, the whole surface was inf and the contour levels failed.
    def rosen(z):
        return (1 - z[0]) ** 2 + 100 * (z[1] - z[0] ** 2) ** 2

    fig = gl.plot.trajectories(
        rosen,
        {"sgd": gl.sgd(0.1), "adam": gl.adam(0.05)},
        jnp.array([-1.5, 2.0]),
        30,
        resolution=20,
    )
    (xmin, xmax), (ymin, ymax) = fig.axes[0].get_xlim(), fig.axes[0].get_ylim()
    assert np.isfinite([xmin, xmax, ymin, ymax]).all() and xmax - xmin < 1e8
    with pytest.raises(ValueError, match=r"not finite anywhere .* pass bounds="):
        far = ((1e20, 2e20), (1e20, 2e20))
        gl.plot.trajectories(rosen, {"sgd": gl.sgd(0.1)}, jnp.array([-1.5, 2.0]), 3, bounds=far)


def test_the_frame_holds_the_paths_that_do_not_diverge():
    # At 50 steps sgd's points are ~1e5 away with a finite loss: framed around
    # them, adam's whole path was 0.00% of the frame.
    def rosen(z):
        return (1 - z[0]) ** 2 + 100 * (z[1] - z[0] ** 2) ** 2

    optimizers = {"sgd": gl.sgd(0.1), "adam": gl.adam(0.05)}
    x0 = jnp.array([-1.5, 2.0])
    fig = gl.plot.trajectories(rosen, optimizers, x0, 50, resolution=10)
    adam = gl.plot._trajectories.optimizer_paths(rosen, optimizers, x0, 50)["adam"]
    (xmin, xmax), (ymin, ymax) = fig.axes[0].get_xlim(), fig.axes[0].get_ylim()
    assert np.ptp(adam[:, 0]) > 0.5 * (xmax - xmin) and np.ptp(adam[:, 1]) > 0.5 * (ymax - ymin)
    assert xmin <= adam[:, 0].min() and adam[:, 0].max() <= xmax


def test_optimizers_sharing_a_state_structure_run_in_one_vmapped_scan(monkeypatch):
    from gradlab.plot import _trajectories

    groups = []
    scan_fn = _trajectories._scan_fn

    def record(fun, optimizers, x0, num_steps):
        groups.append(len(optimizers))
        return scan_fn(fun, optimizers, x0, num_steps)

    monkeypatch.setattr(_trajectories, "_scan_fn", record)
    optimizers = {**OPTIMIZERS, "sgd 0.1": gl.sgd(0.1), "nesterov": gl.sgd(0.05, 0.8, True)}
    paths = _trajectories.optimizer_paths(valley, optimizers, X0, 3)
    # the three sgd rates share one scan; momentum and Nesterov another; lbfgs its own
    assert sorted(groups) == [1, 2, 3], groups
    np.testing.assert_allclose(paths["sgd 0.18"], sgd_path(0.18)[:4], rtol=1e-5)


def test_odd_objectives_get_a_frame_a_warning_or_an_error_naming_fun():
    """hunt73: a path that does not move around x0 = 1000 was framed +-1.5e-4
    (float32's lattice, not the surface); a constant loss drew an empty frame
    without a word; a vector-valued fun failed inside jax.grad."""
    bowl = lambda z: jnp.sum((z - 1000.0) ** 2)  # noqa: E731
    fig = gl.plot.trajectories(bowl, {"still": gl.sgd(0.0)}, jnp.array([1000.0, 1000.0]), 2,
                               resolution=8)  # fmt: skip
    (xmin, xmax) = fig.axes[0].get_xlim()
    assert xmax - xmin >= 0.29  # 1e-3 of the scale, padded 15% a side
    with pytest.warns(UserWarning, match=r"the loss is constant \(1\)"):
        gl.plot.trajectories(lambda z: 0.0 * jnp.sum(z) + 1.0, {"sgd": gl.sgd(0.1)},
                             jnp.array([1.0, 2.0]), 2, resolution=8)  # fmt: skip
    with pytest.raises(ValueError, match=r"fun must return a scalar, got shape \(2,\)"):
        gl.plot.trajectories(lambda z: z**2, {"sgd": gl.sgd(0.1)}, jnp.array([1.0, 2.0]), 2)
    with pytest.raises(TypeError, match=r"fun must return a float, got dtype int32"):
        gl.plot.trajectories(lambda z: jnp.sum(z).astype(jnp.int32), {"sgd": gl.sgd(0.1)},
                             jnp.array([1.0, 2.0]), 2)  # fmt: skip
