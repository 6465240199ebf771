"""Joining schedules end to end."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradlab._checks import check_schedule_value, is_traced
from gradlab.schedules._common import Schedule, as_float, as_sequence, float_dtype, stepped


def join(
    schedules: Sequence[Callable[[Any], Any]], boundaries: Sequence[int] | ArrayLike
) -> Schedule:
    """Run ``schedules[0]`` until ``boundaries[0]``, then ``schedules[1]``, ...

    ``lr_t = schedules[i](t - boundaries[i-1])`` for
    ``boundaries[i-1] <= t < boundaries[i]``: each schedule restarts its own
    count at 0 when it takes over (Optax ``join_schedules``; PyTorch
    ``SequentialLR(schedulers, milestones=boundaries)``). ``boundaries`` has
    one entry fewer than ``schedules``, is sorted, and may be a traced array;
    concrete boundaries may lie beyond int32 (integer steps are compared with
    them exactly: in the step's dtype, or on the host in int64 for concrete steps
    outside int32).
    The sub-schedules receive steps in the step's dtype and their values are
    cast to the default float dtype.

    Example — a constant warm phase, then exponential decay:
        >>> from gradlab import schedules
        >>> s = schedules.join(
        ...     [schedules.constant(0.1), schedules.exponential_decay(1.0, 0.5)], [3]
        ... )
        >>> [round(s(k).item(), 4) for k in range(6)]
        [0.1, 0.1, 0.1, 1.0, 0.5, 0.25]
    """
    schedules = list(schedules)
    if not schedules:
        raise ValueError("schedules must contain at least one schedule, got []")
    for i, s in enumerate(schedules):
        if not callable(s):
            raise TypeError(f"schedules[{i}] must be a callable step -> value, got {s!r}")
    boundaries = as_sequence("boundaries", boundaries, minimum=0)
    n = jnp.shape(boundaries)[0]
    if n != len(schedules) - 1:
        got = "a traced array" if is_traced(boundaries) else np.asarray(boundaries).tolist()
        raise ValueError(
            f"boundaries must have len(schedules) - 1 = {len(schedules) - 1} entries, got {n}: "
            f"{got}"
        )

    i32, i64 = np.iinfo(np.int32), np.iinfo(np.int64)

    def part(i: int, t: Any) -> jax.Array:
        value = schedules[i](t)
        check_schedule_value(f"schedules[{i}]", value, scalar=False)
        if jnp.shape(value) not in ((), jnp.shape(t)):  # a vector would broadcast
            raise ValueError(
                f"schedules[{i}] must return one value per step, got shape "
                f"{jnp.shape(value)} for steps of shape {jnp.shape(t)}"
            )
        return as_float(value)

    def on_host(steps: np.ndarray) -> jax.Array:
        """Concrete integer steps outside int32 (x64 off, or int64 steps): the
        phases and the counts ``t - boundary`` in exact int64 arithmetic on the
        host, each part called only with the steps of its own phase (0 elsewhere),
        as NumPy int32 where they fit and float64 where they do not (a foreign
        schedule's ``jnp.asarray`` would silently wrap int64 to int32)."""
        steps = np.maximum(steps, 0)  # a negative step is step 0, as everywhere
        ints = [int(b) for b in np.asarray(boundaries).reshape(-1)]
        # a boundary beyond int64 is reached by no step: it and the later phases end
        reachable = next((k for k, b in enumerate(ints) if b > i64.max), len(ints))
        bounds = np.asarray(ints[:reachable], np.int64)
        phase = np.searchsorted(bounds, steps, side="right")
        out = jnp.zeros(steps.shape, float_dtype())
        for i in np.unique(phase).tolist():
            here = phase == i
            t = np.where(here, steps - (bounds[i - 1] if i else 0), 0)
            t = t.astype(np.int32 if t.max(initial=0) <= i32.max else np.float64)
            out = jnp.where(here, part(i, t[()] if t.ndim == 0 else t), out)
        return out

    def schedule(step: ArrayLike):
        if not isinstance(step, jax.Array) and not is_traced(step):
            concrete = np.asarray(step)
            beyond_int64 = concrete.dtype.kind == "O" or (  # Python ints beyond int64
                concrete.dtype.kind == "u" and concrete.size and np.max(concrete) > i64.max
            )
            if beyond_int64:  # counted in floats
                step = as_float(np.maximum(np.asarray(concrete, np.float64), 0.0))
            elif (
                concrete.dtype.kind in "iu"
                and concrete.size
                and (np.max(concrete) > i32.max or np.min(concrete) < i32.min)
            ):
                if not is_traced(boundaries):
                    return on_host(concrete.astype(np.int64))
                step = as_float(np.maximum(concrete, 0))  # traced boundaries: floats
        step = jnp.asarray(step)
        if step.dtype == bool:  # as every other schedule takes it: 0 or 1
            step = step.astype(jnp.int32)
        if jnp.issubdtype(step.dtype, jnp.integer) and step.dtype.itemsize < 4:
            step = step.astype(jnp.int32)  # a boundary of 300 must not wrap in uint8
        never = np.zeros(n, bool)  # boundaries no step of this dtype reaches
        if not jnp.issubdtype(step.dtype, jnp.integer):
            bounds = as_float(boundaries).astype(step.dtype)  # as multistep_decay does
        elif is_traced(boundaries):
            bounds = boundaries.astype(step.dtype)
        else:  # exact: jnp.asarray would wrap a boundary of 2**31 to -2**31 (x64 off)
            top = int(np.iinfo(step.dtype).max)
            ints = [int(b) for b in np.asarray(boundaries).reshape(-1)]  # Python ints: no overflow
            never = np.asarray([b > top for b in ints], bool)
            bounds = jnp.asarray(np.asarray([min(b, top) for b in ints], step.dtype))

        # broadcast: a part may return a Python float (Optax's constant_schedule does)
        out = jnp.zeros(step.shape, float_dtype()) + part(0, step)
        for i in range(1, len(schedules)):
            if never[i - 1]:
                break
            b = bounds[i - 1]
            out = jnp.where(step < b, out, part(i, step - b))
        return out

    return stepped(schedule)
