"""``python -m gradlab``: a whole hyperparameter sweep as one vmapped computation.

Trains a small MLP on scikit-learn's handwritten digits (bundled with
scikit-learn: no download) across optimizers x learning-rate schedules x
learning rates with :func:`gradlab.sweep`. Configurations that differ only in
numbers train in one ``vmap`` — the schedules too, whose shapes are numbers
(warm-up length, final value) — so each optimizer is one compiled program.
It prints a leaderboard, what the same sweep would cost as a loop of single
runs (measured on a few, extrapolated), and the lecture's "comparison of
optimization algorithms" table measured on the sweep instead of asserted,
and writes PNG plots. ``python -m gradlab lr-find`` runs the learning-rate
range test on the same model.

Needs the ``examples`` extra: ``pip install "gradlab[examples]"`` (scikit-learn,
tqdm, matplotlib).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import gradlab as gl

# name -> learning rate (a number or a schedule) -> optimizer. Adding an
# optimizer to the showcase is one line here.
OPTIMIZERS: dict[str, Callable[[Any], gl.GradientTransformation]] = {
    "sgd": lambda lr: gl.sgd(lr),
    "momentum": lambda lr: gl.sgd(lr, momentum=0.9),
    "nesterov": lambda lr: gl.sgd(lr, momentum=0.9, nesterov=True),
    "adagrad": lambda lr: gl.adagrad(lr),
    "rmsprop": lambda lr: gl.rmsprop(lr),
    "adam": lambda lr: gl.adam(lr),
    "adamw": lambda lr: gl.adamw(lr, weight_decay=1e-2),
    "nadam": lambda lr: gl.nadam(lr),
    "lion": lambda lr: gl.lion(lr, weight_decay=1e-2),
    "adafactor": lambda lr: gl.adafactor(lr),
}

# name -> shape of warmup_cosine_decay: (warm-up as a fraction of the steps -- at least
# one step, see schedule_shape -- final rate as a fraction of the peak). One family, so
# a schedule is two *numbers*: all schedules of an optimizer train in the same vmap as
# its learning rates.
SCHEDULES: dict[str, tuple[float, float]] = {
    "constant": (0.0, 1.0),  # no warm-up, "decays" from the peak to the peak
    "cosine": (0.0, 0.0),
    "warmup-cosine": (0.1, 0.0),
}

# The lecture's table ("Lecture 8: Loss, Optimization and Scheduling",
# "Comparison of Optimization Algorithms"): what it asserts, per optimizer.
LECTURE = {
    "speed": {"sgd": "Slow", "momentum": "Moderate", "rmsprop": "Fast", "adam": "Fastest"},
    "generalization": {"sgd": "Good", "momentum": "Best", "rmsprop": "Moderate", "adam": "Good"},
    "memory": {"sgd": "Lowest", "momentum": "Low", "rmsprop": "Moderate", "adam": "High"},
    "sensitivity": {"sgd": "High", "momentum": "Moderate", "rmsprop": "Low", "adam": "Lowest"},
}
LECTURE_NAME = {"adamw": "adam", "nesterov": "momentum"}  # "Adam/AdamW"; Nesterov is momentum

QUICK = {"steps": 300, "hidden": 32, "lrs": 6, "lr_min": 1e-3, "lr_max": 1.0,
         "schedules": "constant,warmup-cosine"}  # fmt: skip
FULL = {"steps": 1000, "hidden": 64, "lrs": 9, "lr_min": 1e-4, "lr_max": 1.0,
        "schedules": ",".join(SCHEDULES)}  # fmt: skip


# ----------------------------------------------------------------------------- the problem


class Digits(NamedTuple):
    """scikit-learn's 8x8 digits, pixels scaled to [0, 1], split 70/15/15."""

    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    x_test: jax.Array
    y_test: jax.Array


def load_digits(seed: int = 0) -> Digits:
    """The digits dataset (1797 images), shuffled with ``seed`` and split."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        sys.exit(
            "python -m gradlab trains on scikit-learn's digits dataset; install the examples "
            'extra: pip install "gradlab[examples]"'
        )
    x, y = sk_load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x = (x[order] / 16.0).astype(np.float32)
    y = y[order].astype(np.int32)
    n_val = n_test = int(0.15 * len(x))
    n_train = len(x) - n_val - n_test
    cuts = [0, n_train, n_train + n_val, len(x)]
    parts = []
    for a, b in itertools.pairwise(cuts):
        parts += [jnp.asarray(x[a:b]), jnp.asarray(y[a:b])]
    return Digits(*parts)


def init_mlp(key: jax.Array, sizes: tuple[int, ...]) -> list[dict[str, jax.Array]]:
    """Layers ``{"w", "b"}`` with He-normal weights (ReLU) and zero biases."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m), "b": jnp.zeros((n,))}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(params: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Mean softmax cross-entropy of the MLP's logits."""
    x, y = batch
    return jnp.mean(gl.losses.softmax_cross_entropy_with_integer_labels(mlp(params, x), y))


def accuracy(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(mlp(params, x), axis=-1) == y)


def minibatches(x: jax.Array, y: jax.Array, batch_size: int, seed: int = 0) -> Callable:
    """``step -> (x, y)``: a fresh permutation of the training set each epoch,
    drawn on the device with ``jax.random`` (no host round trip)."""
    n = x.shape[0]
    per_epoch = n // batch_size
    key = jax.random.key(seed)

    def batch(step):
        epoch, i = step // per_epoch, step % per_epoch
        order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        idx = jax.lax.dynamic_slice_in_dim(order, i * batch_size, batch_size)
        return x[idx], y[idx]

    return batch


def schedule(
    learning_rate: Any, warmup_steps: Any, end_factor: Any, num_steps: int
) -> Callable[[Any], Any]:
    """Warm-up to ``learning_rate``, then cosine decay to ``end_factor * learning_rate``."""
    end = end_factor * learning_rate
    return gl.schedules.warmup_cosine_decay(0.0, learning_rate, warmup_steps, num_steps, end)


def schedule_shape(name: str, num_steps: int) -> tuple[int, float]:
    """``(warmup_steps, end_factor)`` of a named schedule. A schedule with a
    warm-up warms up for at least one step when the run has room for it (a
    warm-up must end before ``num_steps``): at 5 steps or fewer, 10% rounds
    to 0 steps, and 'warmup-cosine' would be 'cosine' again."""
    warmup, end = SCHEDULES[name]
    steps = round(warmup * num_steps)
    if warmup > 0:
        steps = min(max(steps, 1), num_steps - 1)
    return steps, end


def make_optimizer(
    optimizer: str, learning_rate: Any, warmup_steps: Any, end_factor: Any, *, num_steps: int
) -> gl.GradientTransformation:
    """The optimizer of one configuration: ``OPTIMIZERS[optimizer]`` driven by a
    warm-up + cosine schedule peaking at ``learning_rate`` (every number traceable)."""
    return OPTIMIZERS[optimizer](schedule(learning_rate, warmup_steps, end_factor, num_steps))


def train_one(tx: gl.GradientTransformation, params: Any, batches: Callable, num_steps: int):
    """One configuration, the way a loop of single runs does it: a scanned training."""

    def step(carry, t):
        p, s = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, batches(t))
        updates, s = tx.update(grads, s, p, value=loss)
        return (gl.apply_updates(p, updates), s), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(num_steps))
    return params, losses


def state_bytes_per_param(optimizer: str, params: Any) -> float:
    """Bytes of optimizer state per parameter (shapes only: nothing is computed)."""
    state = jax.eval_shape(OPTIMIZERS[optimizer](0.1).init, params)
    size = lambda tree: sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))  # noqa: E731
    n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
    # Step counters are a few bytes for the whole model, not per parameter.
    per_param = [x for x in jax.tree.leaves(state) if math.prod(x.shape) > 1]
    return size(per_param) / n_params


# ----------------------------------------------------------------------------- the showcase


def _options(args: argparse.Namespace) -> argparse.Namespace:
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    chosen = ",".join(OPTIMIZERS) if args.optimizers is None else args.optimizers
    args.optimizers = _names(chosen, OPTIMIZERS, "--optimizers")
    args.schedules = _names(args.schedules, SCHEDULES, "--schedules")
    # Two names of the same (warmup_steps, end_factor) would be one schedule twice:
    # where() could not tell them apart, and the tables would count it twice.
    seen: dict[tuple[int, float], str] = {}
    for name in args.schedules:
        first = seen.setdefault(schedule_shape(name, args.steps), name)
        if first != name:
            print(
                f"note: at --steps {args.steps}, '{name}' is the same schedule as '{first}' "
                "(no room for a warm-up step): it is left out"
            )
    args.schedules = list(seen.values())
    return args


def _check_batch_size(batch_size: int, n_train: int) -> None:
    if batch_size > n_train:
        sys.exit(f"--batch-size {batch_size}: the training split has only {n_train} images")


def _names(text: str, known: dict, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        sys.exit(f"{option}: unknown {unknown or text!r}; choose from {', '.join(known)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        sys.exit(f"{option}: {', '.join(twice)} given twice")
    return names


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def fmt(cells):
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def showcase(args: argparse.Namespace) -> None:
    args = _options(args)
    data = load_digits(args.seed)
    sizes = (64, args.hidden, 10)
    params = init_mlp(jax.random.key(args.seed), sizes)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    _check_batch_size(args.batch_size, len(data.y_train))
    batches = minibatches(data.x_train, data.y_train, args.batch_size, args.seed)
    lrs = np.geomspace(args.lr_min, args.lr_max, args.lrs).tolist()
    shapes = [schedule_shape(s, args.steps) for s in args.schedules]
    grid = {
        "optimizer": args.optimizers,
        ("warmup_steps", "end_factor"): shapes,  # zipped: one entry per schedule
        "learning_rate": lrs,
    }
    n_configs = len(args.optimizers) * len(args.schedules) * len(lrs)
    device = jax.devices()[0]
    print(f"gradlab {gl.__version__} showcase on {device.platform.upper()} ({device.device_kind})")
    print(
        f"data:  scikit-learn digits, 8x8 images, 10 classes: {len(data.y_train)} train / "
        f"{len(data.y_val)} validation / {len(data.y_test)} test"
    )
    print(
        f"model: MLP {'-'.join(map(str, sizes))} (ReLU), {n_params:,} params; "
        f"mini-batches of {args.batch_size}, {args.steps} steps"
    )
    print(
        f"grid:  {len(args.optimizers)} optimizers x {len(args.schedules)} schedules x "
        f"{len(lrs)} learning rates ({lrs[0]:g} .. {lrs[-1]:g}) = {n_configs} configurations, "
        f"{len(args.optimizers)} compiled groups (one per optimizer: its schedules and learning "
        "rates are numbers, and train in one vmap)\n"
    )

    def evaluate(p):
        return {
            "train_loss": loss_fn(p, (data.x_train, data.y_train)),
            "val_acc": accuracy(p, data.x_val, data.y_val),
            "test_acc": accuracy(p, data.x_test, data.y_test),
        }

    make = functools.partial(make_optimizer, num_steps=args.steps)
    result = gl.sweep(
        make, loss_fn, params, batches, grid,
        num_steps=args.steps,
        eval_fn=evaluate,
        eval_every=max(1, args.steps // 20),
        progress=False if args.no_progress else None,
    )  # fmt: skip
    print(
        f"\nsweep: {n_configs} configurations x {args.steps} steps in {result.wall_time:.1f} s "
        f"wall ({result.compile_time:.1f} s compiling {result.num_groups} programs, "
        f"{result.wall_time - result.compile_time:.1f} s training); "
        f"{int(result.diverged.sum())} diverged"
    )
    if args.loop_sample > 0:
        _loop_estimate(result, make, params, batches, args, n_configs)

    _leaderboard(result, args)
    _comparison(result, params, args, float(evaluate(params)["train_loss"]))
    if not args.no_plots:
        _plots(result, make, args, lrs)


def _loop_estimate(result, make, params, batches, args, n_configs: int) -> None:
    """Time a few configurations the way a loop of single runs does it (build
    the optimizer, jit its scanned training: one compile per configuration)
    and extrapolate to the whole grid."""
    picks = np.linspace(0, n_configs - 1, min(args.loop_sample, n_configs)).round().astype(int)
    times = []
    for i in picks:
        config = result.configs[i]
        t0 = time.perf_counter()
        tx = make(**config)
        run = jax.jit(lambda p, tx=tx: train_one(tx, p, batches, args.steps))
        jax.block_until_ready(run(params))
        times.append(time.perf_counter() - t0)
    per_run = float(np.mean(times))
    estimate = per_run * n_configs
    print(
        f"the same sweep as a Python loop of single runs (one jit each): ~{estimate:.0f} s "
        f"(ESTIMATE: {len(times)} runs measured, {per_run:.2f} s each incl. compile, x "
        f"{n_configs}) -> the vmapped sweep is ~{estimate / result.wall_time:.0f}x faster"
    )


def _part(result, args, optimizer: str, schedule_name: str):
    """The configurations of one optimizer and schedule."""
    warmup_steps, end_factor = schedule_shape(schedule_name, args.steps)
    return result.where(optimizer=optimizer, warmup_steps=warmup_steps, end_factor=end_factor)


def _leaderboard(result, args) -> None:
    """Best learning rate of each optimizer and schedule (by validation accuracy)."""
    rows = []
    for opt in args.optimizers:
        for sched in args.schedules:
            part = _part(result, args, opt, sched)
            if _all_diverged(part):
                rows.append((-1.0, [opt, sched, "-", "diverged", "-", "-", "-"]))
                continue
            best = part.best("val_acc", mode="max")
            i = best.index
            group_seconds = float(part.seconds.sum())
            rows.append(
                (
                    best.value,
                    [
                        opt,
                        sched,
                        f"{best.config['learning_rate']:.3g}",
                        f"{part.evals['train_loss'][i, -1]:.4f}",
                        f"{100 * best.value:.1f}",
                        f"{100 * part.evals['test_acc'][i, -1]:.1f}",
                        f"{group_seconds:.2f}",
                    ],
                )
            )
    rows.sort(key=lambda r: -r[0])
    header = ["optimizer", "schedule", "best lr", "train loss", "val acc %", "test acc %"]
    header.append("wall s")
    print("\nLeaderboard: the best learning rate of each optimizer and schedule (by validation")
    print("accuracy); wall s = compile + training time of that optimizer and schedule, all its")
    print("learning rates (its share of the optimizer's one compiled program):")
    print(_table(["#", *header], [[str(k), *r] for k, (_, r) in enumerate(rows, 1)]))


def _steps_to(curve: np.ndarray, steps: np.ndarray, target: float) -> float:
    hit = np.flatnonzero(curve <= target)
    return float(steps[hit[0]]) if hit.size else math.inf


def _comparison(result, params, args, initial_loss: float) -> None:
    """The lecture's table, measured: one column per optimizer, on one schedule."""
    sched = args.schedules[0]
    steps = result.eval_steps
    cols, speed, general, memory, spread = [], [], [], [], []
    for opt in args.optimizers:
        part = _part(result, args, opt, sched)
        train = part.evals["train_loss"]
        cols.append(opt)
        fastest = min(_steps_to(train[i], steps, args.target_loss) for i in range(len(train)))
        speed.append(f">{args.steps}" if math.isinf(fastest) else f"{fastest:.0f}")
        if _all_diverged(part):
            general.append("diverged")
        else:
            best = part.best("val_acc", mode="max")
            general.append(f"{100 * part.evals['test_acc'][best.index, -1]:.1f}%")
        memory.append(f"{state_bytes_per_param(opt, params):.0f}")
        final = np.where(np.isfinite(train[:, -1]), train[:, -1], initial_loss)
        final = np.clip(final, 1e-12, initial_loss)  # a blown-up run counts as untrained
        spread.append(f"{np.std(np.log10(final)):.2f}")

    def lecture(kind):
        return [LECTURE[kind].get(LECTURE_NAME.get(o, o), "-") for o in cols]

    rows = [
        [f"training speed: steps to train loss <= {args.target_loss:g} (fastest lr)", *speed],
        ["  lecture says", *lecture("speed")],
        ["generalization: test accuracy at the best lr (by validation)", *general],
        ["  lecture says", *lecture("generalization")],
        ["memory: optimizer state, bytes per parameter", *memory],
        ["  lecture says", *lecture("memory")],
        ["lr sensitivity: std of log10(final train loss) over the lr grid", *spread],
        ["  lecture says", *lecture("sensitivity")],
    ]
    print(
        "\nComparison of optimization algorithms (the lecture's table, measured on this sweep: "
        f"schedule '{sched}', {len(_part(result, args, cols[0], sched).configs)} "
        "learning rates each; lower is better except accuracy):"
    )
    print(_table(["metric", *cols], rows))
    print(
        "(one small model and dataset, one seed: the measured columns show what held here, "
        "not a general law; eval every "
        f"{int(steps[0])} steps, so speeds are multiples of it)"
    )


def _plots(result, make, args, lrs) -> None:
    import matplotlib

    matplotlib.use("Agg")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    sched = args.schedules[0]
    parts = {o: _part(result, args, o, sched) for o in args.optimizers}
    # An optimizer that diverged at every learning rate has no best one (the tables
    # say "diverged"): its loss curve is left out and named in the title.
    dead = [o for o, p in parts.items() if _all_diverged(p)]
    best = [p.best("val_acc", mode="max") for o, p in parts.items() if o not in dead]
    # best() indexes its own (sliced) result: find each configuration in the whole one.
    idx = [next(i for i, c in enumerate(result.configs) if c is b.config or c == b.config)
           for b in best]  # fmt: skip
    if idx:
        fig = gl.plot.sweep(result.subset(idx), metric="train_loss")
        title = f"training loss of each optimizer at its best learning rate ({sched})"
        if dead:
            title += f"\nleft out, diverged at every learning rate: {', '.join(dead)}"
        fig.suptitle(title)
        written.append(_save(fig, out / "loss_curves.png"))
    else:
        print(f"\nno loss_curves.png: every optimizer diverged at every learning rate ({sched})")

    fig = gl.plot.sweep(
        result, metric="test_acc", by=["optimizer", "learning_rate"], log_scale=False, mode="max"
    )
    fig.suptitle("test accuracy: every configuration")
    written.append(_save(fig, out / "sweep_overview.png"))

    import matplotlib.figure

    fig = matplotlib.figure.Figure(figsize=(5.0 * len(args.schedules), 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(args.schedules), sharey=True))
    for ax, s in zip(axes, args.schedules, strict=True):
        for o in args.optimizers:
            part = _part(result, args, o, s)
            acc = part.evals["test_acc"][:, -1]
            label = f"{o} (diverged)" if _all_diverged(part) else o
            ax.plot([c["learning_rate"] for c in part.configs], 100 * acc, "o-", label=label, ms=4)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (peak)")
        ax.set_title(f"schedule: {s}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy %")
    axes[-1].legend(fontsize="small")
    written.append(_save(fig, out / "accuracy_vs_lr.png"))

    shapes = {s: schedule(1.0, *schedule_shape(s, args.steps), args.steps) for s in args.schedules}
    fig = gl.plot.schedules(shapes, args.steps)
    fig.axes[0].set_ylabel("learning rate / peak")
    fig.axes[0].set_title("the schedules of the sweep (scaled by each learning rate)")
    written.append(_save(fig, out / "schedules.png"))
    print(f"\nplots written to {out.resolve()}{os.sep}: {', '.join(p.name for p in written)}")


def _all_diverged(part) -> bool:
    """Whether every configuration of ``part`` diverged (no finite validation accuracy)."""
    return not np.any(np.isfinite(part.evals["val_acc"][:, -1]))


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    fig.savefig(path, dpi=110)
    return path


# ----------------------------------------------------------------------------- lr-find


def lr_find(args: argparse.Namespace) -> None:
    """The range test of each chosen optimizer on the same model, in one call."""
    names = _names(args.optimizers, OPTIMIZERS, "--optimizers")
    data = load_digits(args.seed)
    params = init_mlp(jax.random.key(args.seed), (64, args.hidden, 10))
    _check_batch_size(args.batch_size, len(data.y_train))
    batches = minibatches(data.x_train, data.y_train, args.batch_size, args.seed)
    print(
        f"learning-rate range test on the digits MLP 64-{args.hidden}-10: {', '.join(names)}, "
        f"lr {args.min_lr:g} -> {args.max_lr:g} over {args.steps} steps"
    )
    t0 = time.perf_counter()
    result = gl.lr_finder(
        lambda lr, optimizer: OPTIMIZERS[optimizer](lr), loss_fn, params, batches,
        min_lr=args.min_lr, max_lr=args.max_lr, num_steps=args.steps, rule=args.rule,
        grid={"optimizer": names},
    )  # fmt: skip
    jax.block_until_ready(result)
    print(f"({time.perf_counter() - t0:.1f} s)")
    print(result)
    if not args.no_plots:
        import matplotlib

        matplotlib.use("Agg")
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = _save(gl.plot.lr_finder(result), out / "lr_finder.png")
        print(f"plot written to {path.resolve()}")


# ----------------------------------------------------------------------------- command line


def _integer(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (a clear usage error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"an integer is needed, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _positive(text: str) -> float:
    """An argparse type: a finite number > 0 that float32, where the training
    computes, holds as a normal number (1.2e-38 .. 3.4e38): a larger one is inf
    there, a smaller one 0 or a subnormal."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number is needed, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    f32 = np.finfo(np.float32)
    low, high = float(f32.tiny), float(f32.max)  # Python floats: no cast of value to float32
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"must fit in float32, {low:.3g} .. {high:.3g}, got {text}"
        )
    return value


def _parser() -> argparse.ArgumentParser:
    q, f = QUICK, FULL
    parser = argparse.ArgumentParser(
        prog="python -m gradlab",
        usage="python -m gradlab [options]\n       python -m gradlab lr-find [options]",
        description=(
            "The gradlab showcase: trains a small MLP on scikit-learn's handwritten digits "
            "(bundled with scikit-learn, no download) for every optimizer x learning-rate "
            "schedule x learning rate with gl.sweep: the schedules and learning rates of each "
            "optimizer train in one vmapped, compiled computation. Prints a leaderboard, what "
            "the same sweep would cost as a loop of single runs (measured on a few, "
            "extrapolated), and the lecture's 'comparison of optimization algorithms' table "
            "measured on the sweep; writes PNG plots to --out."
        ),
        epilog='Needs the examples extra: pip install "gradlab[examples]" (scikit-learn, tqdm, '
        "matplotlib).",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="a smaller sweep: under a minute on 2 CPU cores")
    add(
        "--steps",
        type=_integer(1),
        help=f"training steps per configuration (default {f['steps']}; quick {q['steps']})",
    )
    add(
        "--hidden",
        type=_integer(1),
        help=f"hidden units of the MLP (default {f['hidden']}; quick {q['hidden']})",
    )
    add(
        "--lrs",
        type=_integer(1),
        help=f"learning rates per optimizer and schedule, log-spaced from --lr-min to "
        f"--lr-max (default {f['lrs']}; quick {q['lrs']})",
    )
    add(
        "--lr-min",
        type=_positive,
        help=f"smallest learning rate (default {f['lr_min']:g}; quick {q['lr_min']:g})",
    )
    add(
        "--lr-max",
        type=_positive,
        help=f"largest learning rate (default {f['lr_max']:g}; quick {q['lr_max']:g})",
    )
    add("--optimizers", help=f"comma-separated subset of {','.join(OPTIMIZERS)} (default: all)")
    add(
        "--schedules",
        help=f"comma-separated subset of {','.join(SCHEDULES)}; the first one is the "
        f"comparison table's (default: all; quick: {q['schedules']})",
    )
    add("--batch-size", type=_integer(1), default=128, help="mini-batch size (default 128)")
    add(
        "--target-loss",
        type=_positive,
        default=0.1,
        help="training speed = steps until the full training loss first reaches this (default 0.1)",
    )
    add(
        "--loop-sample",
        type=_integer(0),
        default=3,
        help="configurations timed as separate jitted runs for the loop estimate; 0 skips "
        "it (default 3)",
    )
    add(
        "--out",
        default="gradlab-showcase",
        help="folder for the PNG plots (default ./gradlab-showcase)",
    )
    add("--no-plots", action="store_true", help="write no plots (matplotlib not needed)")
    add(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is shown only when stderr is a terminal anyway)",
    )
    add(
        "--seed",
        type=_integer(0),
        default=0,
        help="seed of the data split, the mini-batches and the initial params (default 0)",
    )

    sub = parser.add_subparsers(dest="command", title="subcommands", metavar="COMMAND")
    finder = sub.add_parser(
        "lr-find",
        prog="python -m gradlab lr-find",
        help="the learning-rate range test on the same model (lr-find --help for its options)",
        description="Leslie Smith's learning-rate range test (gl.lr_finder) on the digits MLP "
        "for several optimizers in one call: the rate grows exponentially from --min-lr to "
        "--max-lr, the test stops once the smoothed loss explodes, and the suggestion of "
        "each rule (steepest, minimum/10, valley) is printed and plotted.",
    )
    add = finder.add_argument
    add(
        "--optimizers",
        default="momentum,adam",
        help=f"comma-separated subset of {','.join(OPTIMIZERS)} (default momentum,adam)",
    )
    add("--min-lr", type=_positive, default=1e-5, help="first step's learning rate (default 1e-5)")
    add("--max-lr", type=_positive, default=10.0, help="last step's learning rate (default 10)")
    add("--steps", type=_integer(2), default=200, help="steps of the test (default 200)")
    add(
        "--rule",
        default="steepest",
        choices=["steepest", "minimum", "valley"],
        help="the suggestion printed as chosen (default steepest)",
    )
    add("--hidden", type=_integer(1), default=64, help="hidden units of the MLP (default 64)")
    add("--batch-size", type=_integer(1), default=128, help="mini-batch size (default 128)")
    add(
        "--out",
        default="gradlab-showcase",
        help="folder for the PNG plot (default ./gradlab-showcase)",
    )
    add("--no-plots", action="store_true", help="write no plot (matplotlib not needed)")
    add(
        "--seed",
        type=_integer(0),
        default=0,
        help="seed of the data split, the mini-batches and the initial params (default 0)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    before = argv[: argv.index("lr-find")] if "lr-find" in argv else []
    if any(a.startswith("-") and a not in ("-h", "--help") for a in before):
        given = " ".join(argv[: argv.index("lr-find")])
        parser.error(
            f"options before 'lr-find' would be ignored ({given}): put them after it, "
            "python -m gradlab lr-find [options]"
        )
    args = parser.parse_args(argv)
    low, high = ("min_lr", "max_lr") if args.command == "lr-find" else ("lr_min", "lr_max")
    lo, hi = getattr(args, low), getattr(args, high)
    if args.command != "lr-find":  # one given: against the other's default (--quick's or not)
        preset = QUICK if args.quick else FULL
        lo, hi = preset["lr_min"] if lo is None else lo, preset["lr_max"] if hi is None else hi
    if lo >= hi:
        parser.error(
            f"--{low.replace('_', '-')} must be below --{high.replace('_', '-')} "
            f"(got {lo:g} and {hi:g}; an option not given takes its default)"
        )
    if args.command == "lr-find" and args.max_lr / args.min_lr > float(np.finfo(np.float32).max):
        # the range test's rates are min * (max / min) ** frac, in float32
        parser.error("--max-lr / --min-lr must fit in float32 (at most 3.4e38)")
    if not args.no_plots:  # matplotlib and the folder are checked now, not after the training
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.exit(
                "python -m gradlab writes its plots with matplotlib, which is not installed: "
                "pip install matplotlib (the examples extra has it), or pass --no-plots"
            )
        try:
            pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            parser.error(f"--out {args.out!r}: cannot create the folder ({e.strerror or e})")
    if args.command == "lr-find":
        lr_find(args)
    else:
        showcase(args)


if __name__ == "__main__":
    main()
