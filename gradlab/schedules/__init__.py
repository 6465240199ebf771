"""Learning-rate schedules: pure functions ``step -> value``.

``schedule(k)`` is the value used for the update at 0-based step ``k`` — the
learning rate a PyTorch scheduler gives after ``k`` calls to
``scheduler.step()``. Every schedule accepts a Python int, a 0-d or an N-d
integer array of steps (returning values of the same shape, in the default
float dtype), works under ``jit`` and ``vmap``, and accepts *traced*
parameters — values and step counts alike — so a sweep can ``vmap`` over the
shape of a schedule. Concrete bad arguments raise ``ValueError`` at
construction, naming the argument.

>>> import jax.numpy as jnp
>>> from gradlab import schedules
>>> lr = schedules.warmup_cosine_decay(0.0, 1e-3, warmup_steps=100, decay_steps=1000)
>>> [round(v, 6) for v in lr(jnp.array([0, 50, 100, 1000])).tolist()]
[0.0, 0.0005, 0.001, 0.0]
"""

from gradlab.schedules._cosine import cosine_decay, cosine_warm_restarts
from gradlab.schedules._cyclic import cyclic, one_cycle, one_cycle_momentum
from gradlab.schedules._decay import (
    constant,
    exponential_decay,
    inverse_time_decay,
    linear,
    multistep_decay,
    piecewise_constant,
    polynomial_decay,
    step_decay,
)
from gradlab.schedules._join import join
from gradlab.schedules._warmup import (
    warmup_cosine_decay,
    warmup_linear_decay,
    warmup_stable_decay,
)

__all__ = [
    "constant",
    "cosine_decay",
    "cosine_warm_restarts",
    "cyclic",
    "exponential_decay",
    "inverse_time_decay",
    "join",
    "linear",
    "multistep_decay",
    "one_cycle",
    "one_cycle_momentum",
    "piecewise_constant",
    "polynomial_decay",
    "step_decay",
    "warmup_cosine_decay",
    "warmup_linear_decay",
    "warmup_stable_decay",
]
