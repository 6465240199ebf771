"""``gl.sweep``: one model per hyperparameter configuration, all in one compiled, vmapped run.

Because every optimizer and schedule is pure and every numeric hyperparameter
may be traced, configurations that differ only in numbers are one program:
``lax.scan`` over steps whose body is ``vmap`` over configurations. The
configuration axis is the leading axis of every array in the scan's carry and
of the program's inputs, so the whole sweep is one function of arrays with a
config axis -- which ``mesh=`` shards over devices (and processes): each
device trains its share of the configurations, with no communication until
the results are gathered.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlab._checks import COUNT_MAX, check_bools, check_int, check_transformation, is_function
from gradlab._core import apply_updates
from gradlab.run import _grid
from gradlab.run._common import as_batches, check_loss, check_params, defaulted_key
from gradlab.run._progress import Progress

Params = Any

# Without a memory limit from the caller, a chunk may use this share of the
# device's free memory (other arrays, XLA's own buffers and fragmentation
# need the rest).
MEMORY_SHARE = 0.5
TABLE_ROWS = 25


class SweepBest(NamedTuple):
    """The best configuration of a sweep: its grid ``index``, ``config``, the
    ``value`` it was ranked by, and its final ``params``."""

    index: int
    config: dict[str, Any]
    value: float
    params: Params


class SweepResult(NamedTuple):
    """What :func:`gradlab.sweep` returns. Arrays are NumPy, on the host.

    Attributes:
        configs: the configurations, in grid order (with ``"seed"`` when
            ``seeds`` were given).
        losses: ``(n_configs, num_steps)`` float32: ``losses[i, k]`` is the
            training loss of configuration ``i`` at step ``k`` (before the
            ``k``-th update). NaN from the step a configuration diverged on.
        diverged_at: ``(n_configs,)`` int: the first step whose loss was NaN
            or infinite, ``-1`` if none. No update was applied from then on.
        params: final params, stacked (leading axis = configuration). A
            diverged configuration keeps the params it had when its loss
            turned non-finite (typically already non-finite themselves).
        eval_steps: number of updates after which ``eval_fn`` ran, or None.
        evals: ``{metric: (n_configs, len(eval_steps))}``, or None; NaN
            after divergence. A scalar ``eval_fn`` gives the metric ``"eval"``.
        seconds: ``(n_configs,)`` wall seconds per configuration: its group's
            compile time and its chunk's run time, shared evenly by the
            configurations of the group / chunk.
        wall_time: total wall seconds of the sweep; compile_time: of which compiling.
        num_groups: how many compiled computations (structural groups) ran.
    """

    configs: list[dict[str, Any]]
    losses: np.ndarray
    diverged_at: np.ndarray
    params: Params
    eval_steps: np.ndarray | None
    evals: dict[str, np.ndarray] | None
    seconds: np.ndarray
    wall_time: float
    compile_time: float
    num_groups: int

    @property
    def diverged(self) -> np.ndarray:
        """``(n_configs,)`` bool: which configurations diverged."""
        return self.diverged_at >= 0

    @property
    def final_loss(self) -> np.ndarray:
        """``(n_configs,)``: the loss at the last step (NaN if diverged)."""
        return self.losses[:, -1]

    @property
    def names(self) -> list[str]:
        """The swept names, in grid order."""
        return list(self.configs[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> SweepResult:
        """The configurations at ``indices`` (in that order), as a SweepResult.

        ``wall_time``, ``compile_time`` and ``num_groups`` stay the whole sweep's.
        """
        idx = np.asarray(indices).reshape(-1)
        n = len(self.configs)
        if (
            idx.dtype == bool and idx.size != n
        ):  # NumPy would raise; picking from the front is wrong
            raise ValueError(
                f"subset: a boolean mask needs {n} entries (one per configuration), got {idx.size}"
            )
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)
        if idx.size == 0:
            raise ValueError("subset needs at least one configuration index")
        pick = lambda x: x[idx]  # noqa: E731
        return self._replace(
            configs=[self.configs[i] for i in idx],
            losses=pick(self.losses),
            diverged_at=pick(self.diverged_at),
            params=jax.tree.map(pick, self.params),
            evals=None if self.evals is None else {k: pick(v) for k, v in self.evals.items()},
            seconds=pick(self.seconds),
        )

    def where(self, **values: Any) -> SweepResult:
        """The configurations whose hyperparameters equal ``values``:
        ``result.where(optimizer="adam")``."""
        unknown = sorted(set(values) - set(self.names))
        if unknown:
            raise ValueError(f"where: {unknown} are not swept names; these are {self.names}")
        idx = [i for i, c in enumerate(self.configs) if all(c[k] == v for k, v in values.items())]
        if not idx:
            raise ValueError(f"where: no configuration has {values}")
        return self.subset(idx)

    def ranking(self, by: str = "loss", mode: str = "min") -> np.ndarray:
        """Configuration indices, best first; diverged ones last.

        ``by`` is ``"loss"`` (final training loss) or the name of an
        ``eval_fn`` metric (its last value); ``mode`` is ``"min"`` or ``"max"``.
        """
        values = self._values(by)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        key = np.where(np.isfinite(values), values if mode == "min" else -values, np.inf)
        return np.argsort(key, kind="stable")

    def best(self, by: str = "loss", mode: str = "min") -> SweepBest:
        """The best configuration by final loss, or by an eval metric (see :meth:`ranking`)."""
        values = self._values(by)
        if not np.any(np.isfinite(values)):
            raise ValueError("every configuration diverged: there is no best one")
        i = int(self.ranking(by, mode)[0])
        params = jax.tree.map(lambda x: x[i], self.params)
        return SweepBest(i, dict(self.configs[i]), float(values[i]), params)

    def _values(self, by: str) -> np.ndarray:
        if by == "loss":
            return self.final_loss
        if not self.evals or by not in self.evals:
            names = ["loss", *(self.evals or {})]
            raise ValueError(f"by must be one of {names}, got {by!r}")
        return self.evals[by][:, -1]

    def to_pandas(self) -> Any:
        """One row per configuration: the hyperparameters, final and minimum
        loss, divergence, and the last value of each eval metric."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("SweepResult.to_pandas needs pandas: pip install pandas") from e
        frame = pd.DataFrame(self.configs)
        frame["final_loss"] = self.final_loss
        frame["min_loss"] = _nanmin(self.losses)
        frame["diverged_at"] = self.diverged_at  # -1: never
        for name, values in (self.evals or {}).items():
            frame[name] = values[:, -1]
        frame["seconds"] = self.seconds  # RESULT_COLUMNS: these four
        return frame

    def __str__(self) -> str:
        n, steps = self.losses.shape
        head = (
            f"sweep: {n} configurations x {steps} steps in {self.num_groups} compiled "
            f"group(s), {int(self.diverged.sum())} diverged; wall {self.wall_time:.2f} s "
            f"(compile {self.compile_time:.2f} s)"
        )
        metrics = list(self.evals or {})
        columns = ["rank", *self.names, "final loss", "min loss", *metrics]
        rows = []
        order = self.ranking()
        min_losses = _nanmin(self.losses)
        shown = {k: _grid.describe([c[k] for c in self.configs]) for k in self.names}
        for rank, i in enumerate(order[:TABLE_ROWS], 1):
            cells = [str(rank), *(shown[k][i] for k in self.names)]
            if self.diverged[i]:
                cells += [f"diverged at step {self.diverged_at[i]}", ""]
            else:
                cells += [_fmt(self.final_loss[i]), _fmt(min_losses[i])]
            cells += [_fmt(self.evals[m][i, -1]) for m in metrics]
            rows.append(cells)
        widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(columns)]
        lines = [head, "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        if n > TABLE_ROWS:
            lines.append(f"... {n - TABLE_ROWS} more (result.to_pandas() has them all)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        n, steps = self.losses.shape
        return f"SweepResult({n} configurations x {steps} steps, names={self.names})"


def _nanmin(x: np.ndarray) -> np.ndarray:
    finite = np.where(np.isfinite(x), x, np.inf)
    out = finite.min(axis=1)
    return np.where(np.isinf(out), np.nan, out)


def _fmt(value: Any) -> str:
    """A loss or metric cell: 4 significant digits."""
    return f"{float(value):.4g}"


# ----------------------------------------------------------------------------- memory


def _device_free_bytes() -> int | None:
    """Free memory of the default device (host RAM on CPU), or None if unknown."""
    stats = jax.local_devices()[0].memory_stats()  # one of this process's devices
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _program_bytes(compiled: Any) -> int | None:
    """Peak bytes of a compiled program (arguments + outputs + temporaries)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # some backends do not implement it
        return None
    if m is None:
        return None
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


def _balanced(n: int, chunk: int, unit: int = 1) -> int:
    """The smallest chunk size (a multiple of ``unit``) giving as few chunks as
    ``chunk`` does (less padding)."""
    chunks = -(-n // chunk)
    return _round_up(-(-n // chunks), unit)


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


# ----------------------------------------------------------------------------- devices


class _Layout(NamedTuple):
    """Where a sweep's arrays live: the configuration axis split over ``axes``
    of ``mesh`` (``shards`` pieces), everything else replicated."""

    mesh: Any
    axes: tuple[str, ...]

    @property
    def shards(self) -> int:
        return math.prod(self.mesh.shape[a] for a in self.axes)

    def rows(self) -> Any:
        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(self.axes))

    def replicated(self) -> Any:
        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

    def outputs(self) -> Any:
        # Over several processes each one gets the whole result (one all-gather
        # at the end of the program): a process cannot read another's shards.
        return self.rows() if jax.process_count() == 1 else self.replicated()

    def spread(self, run: Callable) -> Callable:
        """``run`` on each device's share of the configurations (``shard_map``):
        every device runs the very program of an unsharded chunk of that size,
        with no communication; the shared params and data are replicated."""
        rows, everywhere = jax.sharding.PartitionSpec(self.axes), jax.sharding.PartitionSpec()
        # check_vma=False: the shared params broadcast into the scan's carry are
        # the same on every device until the first update; nothing is reduced.
        return jax.shard_map(
            run,
            mesh=self.mesh,
            in_specs=(rows, rows, everywhere, everywhere),
            out_specs=rows,
            check_vma=False,
        )

    def is_first(self) -> jax.Array:
        """Inside :meth:`spread`: whether this is the first device (it alone reports progress)."""
        return jax.lax.axis_index(self.axes) == 0

    def put(self, tree: Any, sharding: Any) -> Any:
        """Host values as global arrays with ``sharding`` (every process holds the
        same host values and gives its devices their pieces)."""

        def one(x):
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

        return jax.tree.map(one, tree)


def _layout(mesh: Any, mesh_axis: Any) -> _Layout | None:
    if mesh is None:
        if mesh_axis is not None:
            raise ValueError("mesh_axis needs a mesh to name an axis of, got mesh=None")
        return None
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    axes = mesh.axis_names if mesh_axis is None else mesh_axis
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    unknown = [a for a in axes if a not in mesh.axis_names]
    if unknown or not axes or len(set(axes)) != len(axes):
        raise ValueError(
            f"mesh_axis must name distinct axes of the mesh {tuple(mesh.axis_names)}, "
            f"got {mesh_axis!r}"
        )
    return _Layout(mesh, axes)


# ----------------------------------------------------------------------------- the program


def _group_program(
    *,
    build: Callable[[dict[str, Any]], Any],
    loss_fn: Callable,
    init: Callable | None,
    batches: Any,
    per_config_data: bool,
    num_steps: int,
    eval_fn: Callable | None,
    eval_every: int,
    metric_names: list[str],
    notify: Callable | None,
    notify_every: int | None,
    is_first: Callable[[], Any] = lambda: True,
    reserved: Sequence[str] = (),
) -> Callable:
    """``run(hps, seeds, params, data)`` for one group: every argument and output
    has the configuration axis first (``params`` and ``data`` are shared).
    Tracing it checks ``loss_fn`` and ``eval_fn`` (scalars) and records the
    metric names in ``metric_names`` (none of them in ``reserved``). ``is_first()``:
    whether this copy of the program reports progress (one of the devices, when
    spread over several)."""
    grad_fn = jax.value_and_grad(loss_fn)
    eval_rows = sorted({*range(eval_every - 1, num_steps, eval_every), num_steps - 1})

    def step_one(hp, data_key, params, state, alive, step, data, batch):
        if batch is None:  # per-configuration data order (seeds)
            batch = batches.at(data, step, data_key)
        check_loss(jax.eval_shape(loss_fn, params, batch))  # at trace time: a clear error
        loss, grads = grad_fn(params, batch)
        updates, state = build(hp).update(grads, state, params, value=loss)
        # A non-finite loss ends the configuration: from this step on its params
        # are frozen and its losses NaN. `ok` is known before the update, so
        # the select fuses into apply_updates' loop (a separate pass over the
        # params and state, or a finiteness reduction over them, cost ~30%
        # of the step on the benchmark MLP). The state of a dead configuration
        # goes on computing garbage: it is never read, and vmap keeps it apart
        # from the others.
        ok = alive & jnp.isfinite(loss)
        new_params = apply_updates(params, updates)
        params = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_params, params)
        return params, state, ok, jnp.where(ok, loss.astype(jnp.float32), jnp.float32(jnp.nan))

    def eval_one(params):
        values = eval_fn(params)
        metric_names[:] = _check_eval(values, reserved)
        return values if isinstance(values, Mapping) else {"eval": values}

    def evaluate(params, alive):
        values = jax.vmap(eval_one)(params)
        return {
            k: jnp.where(alive, jnp.asarray(v, jnp.float32), jnp.nan) for k, v in values.items()
        }

    def run(hps, seeds, params, data):
        keys = jax.vmap(lambda seed: jax.random.split(jax.random.key(seed)))(seeds)
        init_keys, data_keys = keys[:, 0], keys[:, 1]
        size = data_keys.shape[0]
        if init is not None:
            params0 = jax.vmap(init)(init_keys)
        else:
            params0 = jax.tree.map(lambda x: jnp.broadcast_to(x, (size, *jnp.shape(x))), params)
        state0 = jax.vmap(lambda hp, p: build(hp).init(p))(hps, params0)
        alive0 = jnp.ones((size,), bool)
        diverged0 = jnp.full((size,), -1, jnp.int32)
        if eval_fn is not None:
            blank = jax.tree.map(
                lambda s: jnp.full(s.shape, jnp.nan, jnp.float32),
                jax.eval_shape(evaluate, params0, alive0),
            )

        def body(carry, step):
            params, state, alive, diverged_at = carry
            # With shared data the batch is computed once, outside the vmap.
            batch = None if per_config_data else batches.at(data, step, data_keys[0])
            params, state, ok, loss = jax.vmap(step_one, in_axes=(0, 0, 0, 0, 0, None, None, None))(
                hps, data_keys, params, state, alive, step, data, batch
            )
            diverged_at = jnp.where(alive & ~ok, step, diverged_at)
            out = {"loss": loss}
            if eval_fn is not None:
                due = ((step + 1) % eval_every == 0) | (step == num_steps - 1)
                out["evals"] = jax.lax.cond(due, evaluate, lambda p, a: blank, params, ok)
            if notify_every is not None:
                jax.lax.cond(
                    ((step + 1) % notify_every == 0) & is_first(),
                    lambda s: jax.debug.callback(notify, s),
                    lambda s: None,
                    step + 1,
                )
            return (params, state, ok, diverged_at), out

        carry = (params0, state0, alive0, diverged0)
        steps = jnp.arange(num_steps, dtype=jnp.int32)  # int32 under x64 too, as diverged0
        (params, _, _, diverged_at), out = jax.lax.scan(body, carry, steps)
        evals = None
        if eval_fn is not None:
            rows = jnp.asarray(eval_rows)
            evals = {k: v[rows].T for k, v in out["evals"].items()}
        return params, out["loss"].T, diverged_at, evals

    return run


# ----------------------------------------------------------------------------- sweep


def sweep(
    make_optimizer: Callable[..., Any],
    loss_fn: Callable[[Params, Any], jax.Array],
    params: Params | Callable[[jax.Array], Params],
    batches: Any,
    grid: Mapping[Any, Any] | Sequence[Mapping[str, Any]],
    *,
    num_steps: int,
    seeds: Sequence[int] | None = None,
    chunk_size: int | None = None,
    memory_limit: int | None = None,
    eval_fn: Callable[[Params], Any] | None = None,
    eval_every: int | None = None,
    progress: bool | None = None,
    mesh: jax.sharding.Mesh | None = None,
    mesh_axis: str | Sequence[str] | None = None,
) -> SweepResult:
    """Train one model per hyperparameter configuration, all configurations in one
    compiled, vmapped computation (``vmap`` over configurations inside a
    ``lax.scan`` over steps).

    For each configuration ``c`` of ``grid``: ``tx = make_optimizer(**c)``, then
    ``num_steps`` steps of ``loss, g = value_and_grad(loss_fn)(params, batch)``;
    ``params <- apply_updates(params, tx.update(g, state, params, value=loss))``.

    Numbers in the grid (learning rates, ``b1``, a schedule's ``peak_value``,
    ``warmup_steps``, ``decay_steps``, ...) are traced: configurations that
    differ only in numbers train in one ``vmap``. Other values (optimizer
    names, schedule families, ``nesterov=True``, callables) split the grid
    into groups, one compiled computation each; the result is in grid order.
    A number ``make_optimizer`` needs in Python (``momentum or None``) is
    detected by tracing and grouped the same way, with a warning.

    Each call compiles its programs anew (``compile_time`` in the result;
    about a second for a small model on a CPU), even for the same grid: the
    program closes over this call's functions and progress report. A
    coarse-to-fine search pays it once per call; put every configuration in
    one grid (or a longer one) where you can.

    Args:
        make_optimizer: ``make_optimizer(**config) -> GradientTransformation``.
        loss_fn: ``loss_fn(params, batch) -> scalar`` (take the batch mean).
        params: initial params (shared by all configurations), or a function
            ``key -> params`` called with a key per configuration: the first of
            ``jax.random.split(jax.random.key(seed))`` (the second draws its
            batches), ``seed`` 0 without ``seeds``.
        batches: arrays stacked along steps (step ``k`` uses ``batches[k % len]``:
            a few batches are cycled as epochs), or a pure function
            ``step -> batch`` (e.g. draws with ``jax.random`` from a dataset on
            the device), or ``(step, key) -> batch`` to get each
            configuration's data key (its seed's).
        grid: ``{name: [values]}`` — the cartesian product, the last name
            varying fastest; a tuple key zips: ``{("b1", "b2"): [(0.9, 0.999),
            (0.95, 0.99)]}``. Or a list of configuration dicts.
        num_steps: training steps per configuration.
        seeds: optional integer seeds; every configuration runs once per seed
            (a seed ensemble). The seed keys ``params`` (if a function) and
            ``batches`` (if it takes a key); configs then include ``"seed"``.
            With neither, every seed runs the same numbers: a warning says so.
        chunk_size: how many configurations run at a time (memory). By
            default as many as fit in ``memory_limit``, measured from the
            compiled program (``memory_analysis``), not guessed. All chunks of
            a group reuse one compiled program (the last chunk is padded).
        memory_limit: bytes a chunk may use; default half the device's free
            memory (the host's available RAM on CPU).
        eval_fn: optional ``eval_fn(params) -> scalar or {name: scalar}``
            (held-out loss, accuracy), run every ``eval_every`` steps and after
            the last one.
        eval_every: steps between evaluations (default ``num_steps // 10``).
        progress: a progress bar (tqdm if installed, else one line per chunk)
            on stderr; ``None`` shows it when stderr is a terminal.
        mesh: a ``jax.sharding.Mesh`` to spread the configurations over: the
            configuration axis of the program's inputs and outputs is split
            over the mesh (``NamedSharding`` on the leading axis), the shared
            params and data are replicated, and each device runs, through
            ``shard_map``, the program of an unsharded chunk on its share --
            no communication. Chunks are padded to a multiple of the device
            count. The numbers are those of the sweep without a mesh, up to
            float32 rounding (XLA may compile a device's program with other
            kernels). The mesh may span several processes
            (``jax.distributed.initialize``): every process calls ``sweep``
            with the same arguments and gets the whole result.
            ``memory_limit`` is then per device.
        mesh_axis: the mesh axis (or axes) the configurations are split over;
            default all of them.

    Returns:
        :class:`SweepResult` — loss history, divergence, stacked final params,
        eval history; ``best()``, ``print(result)`` (a table sorted by final
        loss), ``to_pandas()``, ``gl.plot.sweep(result)``.

    A configuration whose loss turns NaN/Inf is marked diverged and frozen
    (its params no longer change, its history is NaN from then on) without
    touching the others: each configuration's numbers are its own.

    Example:
        >>> def loss_fn(p, batch):
        ...     x, y = batch
        ...     return jnp.mean((x @ p - y) ** 2)
        >>> x = jax.random.normal(jax.random.key(0), (32, 3))
        >>> y = x @ jnp.array([1.0, -2.0, 0.5])
        >>> make = lambda learning_rate, b1: gl.adam(learning_rate, b1=b1)
        >>> grid = {"learning_rate": [1e-3, 1e-2, 1e-1], "b1": [0.8, 0.9]}
        >>> result = gl.sweep(make, loss_fn, jnp.zeros(3), lambda step: (x, y), grid,
        ...                   num_steps=100)
        >>> print(result)          # a table sorted by final loss  # doctest: +SKIP
        >>> result.best().config
        {'learning_rate': 0.1, 'b1': 0.8}

        Spread over every device (8 devices train 8 times the configurations
        in about the time of one chunk):

        >>> mesh = jax.make_mesh((jax.device_count(),), ("configs",))
        >>> result = gl.sweep(make, loss_fn, jnp.zeros(3), lambda step: (x, y), grid,
        ...                   num_steps=100, mesh=mesh)
    """
    t_start = time.perf_counter()
    if jax.config.jax_disable_jit:  # JAX's own refusal names no way out
        raise RuntimeError(
            "sweep compiles each group ahead of time (lower().compile()), which JAX refuses "
            "under jax.disable_jit(): debug the loss or the optimizer on one configuration "
            "(a plain training loop) instead"
        )
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable (params, batch) -> loss, got {loss_fn!r}")
    if progress is not None:
        check_bools(progress=progress)  # "no" is truthy: it would show the bar
    if isinstance(num_steps, bool):
        raise TypeError("num_steps must be an integer, got a bool")
    check_int("num_steps", num_steps, 1, maximum=COUNT_MAX)
    num_steps = int(num_steps)
    if chunk_size is not None:
        if isinstance(chunk_size, bool):
            raise TypeError("chunk_size must be an integer, got a bool")
        check_int("chunk_size", chunk_size, 1)
        chunk_size = int(chunk_size)
    if memory_limit is not None:
        check_int("memory_limit", memory_limit, 1)
    layout = _layout(mesh, mesh_axis)
    unit = 1 if layout is None else layout.shards  # chunk sizes are multiples of it
    if eval_fn is None:
        if eval_every is not None:
            raise ValueError("eval_every needs an eval_fn to run, got eval_fn=None")
        eval_every = num_steps
    else:
        if not callable(eval_fn):
            raise TypeError(f"eval_fn must be a callable params -> metrics, got {eval_fn!r}")
        if eval_every is None:
            eval_every = max(1, num_steps // 10)
        check_int("eval_every", eval_every, 1, maximum=COUNT_MAX)
        eval_every = int(eval_every)

    configs = _grid.expand(grid)
    names = list(configs[0])
    _grid.check_names(make_optimizer, "make_optimizer", names)
    # Every configuration is built once with its concrete values, so a bad
    # value (a negative learning rate) raises here, naming the configuration.
    # Inside the sweep the numbers are traced and no longer checked.
    for i, config in enumerate(configs):
        try:
            check_transformation(f"make_optimizer(**grid[{i}])", make_optimizer(**config))
        except (ValueError, TypeError) as e:
            raise type(e)(f"grid configuration {i} {config}: {e}") from e
    if seeds is not None:
        if "seed" in names:
            raise ValueError("grid must not name 'seed' when seeds are given")
        if isinstance(seeds, int | str) or not hasattr(seeds, "__len__") or not len(seeds):
            raise TypeError(f"seeds must be a non-empty list of integers, got {seeds!r}")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int | np.integer):
                raise TypeError(f"seeds must be integers, got {s!r}")
            if not -(2**31) <= s < 2**31:
                raise ValueError(f"seeds must fit in int32, got {s}")
        configs = [{**c, "seed": int(s)} for c in configs for s in seeds]
    data = as_batches(batches)
    params = check_params(params)
    init = params if is_function(params) else None
    shared_params = None if init is not None else jax.tree.map(jnp.asarray, params)
    per_config_data = seeds is not None and data.takes_key
    if seeds is not None and not data.takes_key and len(set(seeds)) > 1:
        optional = defaulted_key(data.fn)
        hint = (
            f"; batches' {optional!r} has a default, so batches is called with the step "
            f"only: to key the data order by seed, drop the default (def batches(step, "
            f"{optional}))"
            if optional
            else ""
        )
        if init is None:
            warnings.warn(
                f"sweep: seeds={[int(s) for s in seeds]!r} key nothing here -- params is a "
                "fixed tree (not a function key -> params) and batches take no key (not "
                "(step, key) -> batch) -- so every seed runs the same numbers" + hint,
                stacklevel=2,
            )
        elif optional:
            warnings.warn(
                "sweep: the seeds key the params only, every seed draws the same batches" + hint,
                stacklevel=2,
            )
    # "seed" is the sweep's own (params/data) seed only when it came from
    # seeds=; a grid's "seed" is make_optimizer's argument (noisy_sgd's seed).
    own = "seed" if seeds is not None else None
    config_seeds = np.asarray([c.get("seed", 0) if own else 0 for c in configs], np.int32)

    def build(static, hp):
        hp = {k: v for k, v in hp.items() if k != own}
        return make_optimizer(**{k: v for k, v in static.items() if k != own}, **hp)

    def probe(static, hp):  # one step of one configuration, to find untraceable names
        key = jax.random.key(0)
        p = init(key) if init is not None else shared_params
        tx = build(static, hp)
        loss, grads = jax.value_and_grad(loss_fn)(p, data.at(data.stacked, jnp.int32(0), key))
        return tx.update(grads, tx.init(p), p, value=loss)

    # Compile every group before running any: the chunk sizes (and so the
    # progress total) come from the compiled programs' memory.
    report = Progress(progress, num_steps=num_steps, what="sweep")
    metric_names: list[str] = []  # in eval_fn's order (pytrees sort dict keys)

    def compile_group(g):
        t0 = time.perf_counter()
        numeric = {k: v for k, v in g.numeric.items() if k != own}
        run = _group_program(
            build=lambda hp: build(g.static, hp),
            loss_fn=loss_fn,
            init=init,
            batches=data,
            per_config_data=per_config_data,
            num_steps=num_steps,
            eval_fn=eval_fn,
            eval_every=eval_every,
            metric_names=metric_names,
            notify=report.steps_done,
            notify_every=report.block_every,
            reserved=RESERVED_NAMES + tuple(configs[0]),
            **({} if layout is None else {"is_first": layout.is_first}),
        )
        if layout is None:
            jitted = jax.jit(run)
        else:
            rows, replicated = layout.rows(), layout.replicated()
            jitted = jax.jit(
                layout.spread(run),
                in_shardings=(rows, rows, replicated, replicated),
                out_shardings=layout.outputs(),
            )

        def compile_for(size):
            # Placed like the chunks it will run on: over a mesh with explicit
            # axes (jax.make_mesh's default) the layout is part of the type.
            at = None if layout is None else layout.rows()
            hps = {
                k: jax.ShapeDtypeStruct((size,), v.dtype, sharding=at) for k, v in numeric.items()
            }
            seeds = jax.ShapeDtypeStruct((size,), np.int32, sharding=at)
            return jitted.lower(hps, seeds, shared, stacked).compile()

        n = _round_up(len(g.indices), unit)
        if chunk_size is not None:
            size = min(_round_up(chunk_size, unit), n)
            compiled = compile_for(size)
        else:
            size, compiled = _fit_memory(compile_for, compile_for(n), n, memory_limit, unit)
        return numeric, size, compiled, time.perf_counter() - t0

    shared, stacked = shared_params, data.stacked  # the program's shared arguments
    if layout is not None:
        shared = layout.put(shared_params, layout.replicated())
        stacked = layout.put(data.stacked, layout.replicated())
    plans = _grid.build_groups(configs, compile_group, probe, "make_optimizer")
    compile_total = sum(seconds for _, (_, _, _, seconds) in plans)

    order: list[int] = []
    pieces: list[Any] = []
    config_seconds = np.zeros(len(configs))
    report.start(sum(-(-len(g.indices) // size) for g, (_, size, _, _) in plans), compile_total)
    put = (lambda x: x) if layout is None else lambda x: layout.put(x, layout.rows())
    try:
        for g, (numeric, size, compiled, group_compile) in plans:
            n = len(g.indices)
            indices = np.asarray(g.indices)
            for start in range(0, n, size):
                rows = list(range(start, min(start + size, n)))
                count = len(rows)
                rows += [rows[-1]] * (size - count)  # pad: repeat the last configuration
                report.start_chunk(g.label())
                t0 = time.perf_counter()
                # NumPy in, NumPy out: no eager JAX operations (each would compile).
                hps = put({k: v[rows] for k, v in numeric.items()})
                seeds_in = put(config_seeds[indices[rows]])
                out = jax.device_get(compiled(hps, seeds_in, shared, stacked))
                run_seconds = time.perf_counter() - t0
                report.end_chunk(f"{count} configs ({g.label()})")
                pieces.append(jax.tree.map(lambda x, count=count: np.asarray(x)[:count], out))
                done = indices[rows[:count]].tolist()
                order += done
                config_seconds[done] += run_seconds / count + group_compile / n
    finally:
        report.close()

    inverse = np.argsort(np.asarray(order))
    stacked = jax.tree.map(lambda *xs: np.concatenate(xs)[inverse], *pieces)
    final_params, losses, diverged_at, evals = stacked
    if evals is not None:
        evals = {k: evals[k] for k in metric_names}
    eval_steps = None
    if eval_fn is not None:
        eval_steps = np.asarray(
            sorted({*range(eval_every, num_steps + 1, eval_every), num_steps}), np.int32
        )
    return SweepResult(
        configs=configs,
        losses=losses,
        diverged_at=diverged_at.astype(np.int64),
        params=final_params,
        eval_steps=eval_steps,
        evals=evals,
        seconds=config_seconds,
        wall_time=time.perf_counter() - t_start,
        compile_time=compile_total,
        num_groups=len(plans),
    )


# Names an eval metric may not take: ``best(by=)``/``ranking`` read "loss" as the
# training loss, and ``to_pandas`` has these columns (plus the swept names).
RESULT_COLUMNS = ("final_loss", "min_loss", "diverged_at", "seconds")  # to_pandas' own
RESERVED_NAMES = ("loss", *RESULT_COLUMNS)


def _check_eval(values: Any, reserved: Sequence[str] = ()) -> list[str]:
    """The metric names of an ``eval_fn`` output (a scalar is ``"eval"``); a name
    in ``reserved`` is a ``ValueError`` (it would hide or overwrite a column)."""
    items = values.items() if isinstance(values, Mapping) else [("eval", values)]
    clash = sorted(str(name) for name, _ in items if name in reserved)
    if clash:
        raise ValueError(
            f"eval_fn's metric names {clash} are taken (the training loss, a result column "
            f"or a swept name: {sorted(set(reserved))}); rename them, e.g. 'val_loss'"
        )
    for name, v in items:
        if jnp.shape(v) != ():
            raise ValueError(
                f"eval_fn must return a scalar or a dict of scalars, got {name!r} of shape "
                f"{jnp.shape(v)}"
            )
    return [name for name, _ in items]


def _fit_memory(
    compile_for: Callable[[int], Any],
    compiled: Any,
    n: int,
    memory_limit: int | None,
    unit: int = 1,
) -> tuple[int, Any]:
    """The chunk size whose compiled program fits the memory limit, and that program.

    The program for all ``n`` configurations is compiled first (the common
    case: it fits). Otherwise the smallest program (``unit`` configurations:
    one per device when sharded) gives the per-configuration and fixed costs
    (memory is linear in the chunk size). Sizes are multiples of ``unit``;
    a sharded program's memory is per device, as is its limit.
    """
    limit = memory_limit if memory_limit is not None else _device_free_bytes()
    if limit is not None and memory_limit is None:
        limit = int(limit * MEMORY_SHARE)
    total = _program_bytes(compiled)
    if limit is None or total is None or total <= limit or n <= unit:
        return n, compiled
    one = _program_bytes(compile_for(unit))
    per_config = max((total - one) / (n - unit), 1.0)
    fixed = one - per_config * unit
    size = math.floor((limit - fixed) / per_config) // unit * unit
    size = _balanced(n, int(max(unit, min(n, size))), unit)
    return size, compile_for(size)
