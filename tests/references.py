"""Plain NumPy references, written from the published update rules.

Nothing here imports jax or gradlab: these are the independent specifications
the tests hold gradlab to. Everything runs in float64.

Optimizers take ``p0`` (a flat float64 vector), ``grad_fn(p, k) -> g`` (the
gradient at the current params, 0-based step ``k``) and ``lrs`` (the learning
rate of every step, so schedules are checked too), and return the whole
trajectory, shape ``(len(lrs) + 1, *p0.shape)`` starting with ``p0``. Each is
a loop in the style of the ``torch.optim`` pseudo-code it reproduces.

Blocks take the sequence of incoming updates (shape ``(T, ...)``) and return
the sequence of outgoing updates; stateless blocks take one update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

GradFn = Callable[[np.ndarray, int], np.ndarray]

# --------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------


def _start(p0: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    p = np.array(p0, dtype=np.float64)
    return p, [p.copy()]


def sgd(
    p0: np.ndarray,
    grad_fn: GradFn,
    lrs: Sequence[float],
    momentum: float = 0.0,
    nesterov: bool = False,
) -> np.ndarray:
    """``torch.optim.SGD`` with ``dampening=0``, ``weight_decay=0``.

    ``b <- g`` at the first step, then ``b <- momentum*b + g``;
    ``d = g + momentum*b`` (Nesterov) or ``b``; ``p <- p - lr*d``.
    """
    p, traj = _start(p0)
    buf = None
    for k, lr in enumerate(lrs):
        g = grad_fn(p, k)
        if momentum != 0:
            buf = g.copy() if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        traj.append(p.copy())
    return np.stack(traj)


def adagrad(
    p0: np.ndarray,
    grad_fn: GradFn,
    lrs: Sequence[float],
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
) -> np.ndarray:
    """``torch.optim.Adagrad`` with ``lr_decay=0``: ``G += g²``; ``p -= lr*g/(sqrt(G)+eps)``."""
    p, traj = _start(p0)
    state_sum = np.full_like(p, initial_accumulator_value)
    for k, lr in enumerate(lrs):
        g = grad_fn(p, k)
        state_sum = state_sum + g * g
        std = np.sqrt(state_sum) + eps  # torch: eps outside the root
        p = p - lr * g / std
        traj.append(p.copy())
    return np.stack(traj)


def rmsprop(
    p0: np.ndarray,
    grad_fn: GradFn,
    lrs: Sequence[float],
    alpha: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    centered: bool = False,
    momentum: float = 0.0,
    nesterov: bool = False,
    eps_in_sqrt: bool = False,
) -> np.ndarray:
    """``torch.optim.RMSprop`` (``alpha`` = gradlab's ``decay``); ``eps_in_sqrt``:
    ``avg = sqrt(v + eps)`` (``sqrt(v - m² + eps)`` centered), Optax's default.

    ``v <- a*v + (1-a)*g²`` (``v`` starts at ``initial_scale``; torch: 0);
    centered: ``m <- a*m + (1-a)*g``, ``avg = sqrt(v - m²) + eps``, else
    ``avg = sqrt(v) + eps``. With momentum ``b <- mom*b + g/avg``,
    ``p <- p - lr*b``; gradlab's ``nesterov`` uses ``g/avg + mom*b`` instead of
    ``b`` (torch has no Nesterov RMSprop). Without momentum ``p <- p - lr*g/avg``.
    """
    p, traj = _start(p0)
    square_avg = np.full_like(p, initial_scale)
    grad_avg = np.zeros_like(p)
    buf = np.zeros_like(p)
    for k, lr in enumerate(lrs):
        g = grad_fn(p, k)
        square_avg = alpha * square_avg + (1 - alpha) * g * g
        if centered:
            grad_avg = alpha * grad_avg + (1 - alpha) * g
            var = square_avg - grad_avg * grad_avg
        else:
            var = square_avg
        avg = np.sqrt(var + eps) if eps_in_sqrt else np.sqrt(var) + eps
        direction = g / avg
        if momentum > 0:
            buf = momentum * buf + direction
            direction = direction + momentum * buf if nesterov else buf
        p = p - lr * direction
        traj.append(p.copy())
    return np.stack(traj)


def adam(
    p0: np.ndarray,
    grad_fn: GradFn,
    lrs: Sequence[float],
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    decay_mask: np.ndarray | bool = True,
) -> np.ndarray:
    """Adam (Kingma & Ba 2015, Alg. 1) = ``torch.optim.Adam``; AdamW with ``weight_decay``.

    ``m <- b1*m + (1-b1)*g``, ``v <- b2*v + (1-b2)*g²`` at 1-based step ``t``;
    ``m̂ = m/(1-b1^t)`` or, with ``nesterov`` (Dozat 2016, as Optax),
    ``m̂ = b1*m/(1-b1^(t+1)) + (1-b1)*g/(1-b1^t)``; ``v̂ = v/(1-b2^t)``;
    ``d = m̂/(sqrt(v̂ + eps_root) + eps)`` (``eps_root`` is Optax's; torch: 0).
    AdamW (``torch.optim.AdamW``, Loshchilov & Hutter 2019) decouples the decay:
    ``p <- p - lr*(d + weight_decay*p)`` where ``decay_mask`` is True.
    """
    p, traj = _start(p0)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    mask = np.broadcast_to(np.asarray(decay_mask, dtype=bool), p.shape)
    for k, lr in enumerate(lrs):
        t = k + 1
        g = grad_fn(p, k)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if nesterov:
            m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        else:
            m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        d = m_hat / (np.sqrt(v_hat + eps_root) + eps)
        # torch.optim.AdamW multiplies p by (1 - lr*wd) *before* the Adam step,
        # which is the same as decaying the old p inside the step.
        d = d + np.where(mask, weight_decay * p, 0.0)
        p = p - lr * d
        traj.append(p.copy())
    return np.stack(traj)


def adamw(
    p0: np.ndarray,
    grad_fn: GradFn,
    lrs: Sequence[float],
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    decay_mask: np.ndarray | bool = True,
) -> np.ndarray:
    """``torch.optim.AdamW``: ``p <- p - lr*(m̂/(sqrt(v̂)+eps) + weight_decay*p)``."""
    return adam(p0, grad_fn, lrs, b1, b2, eps, weight_decay=weight_decay, decay_mask=decay_mask)


# --------------------------------------------------------------------------
# Building blocks: sequences of updates in, sequences of updates out
# --------------------------------------------------------------------------


def trace(updates: np.ndarray, decay: float, nesterov: bool = False) -> np.ndarray:
    """Heavy-ball momentum ``v <- decay*v + g`` (v starts at 0); out ``v`` or ``g + decay*v``."""
    v = np.zeros_like(updates[0], dtype=np.float64)
    out = []
    for g in updates:
        v = decay * v + g
        out.append(g + decay * v if nesterov else v.copy())
    return np.stack(out)


def ema(updates: np.ndarray, decay: float, debias: bool = True) -> np.ndarray:
    """``v <- decay*v + (1-decay)*g``; out ``v/(1-decay^t)`` (debias) or ``v``."""
    v = np.zeros_like(updates[0], dtype=np.float64)
    out = []
    for t, g in enumerate(updates, start=1):
        v = decay * v + (1 - decay) * g
        out.append(v / (1 - decay**t) if debias else v.copy())
    return np.stack(out)


def scale_by_adam(
    updates: np.ndarray, b1: float, b2: float, eps: float, eps_root: float = 0.0
) -> np.ndarray:
    """Adam's direction ``m̂/(sqrt(v̂ + eps_root) + eps)`` for each step."""
    m = np.zeros_like(updates[0], dtype=np.float64)
    v = np.zeros_like(m)
    out = []
    for t, g in enumerate(updates, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        out.append((m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t) + eps_root) + eps))
    return np.stack(out)


def scale_by_rms(
    updates: np.ndarray,
    decay: float,
    eps: float,
    initial_scale: float = 0.0,
    centered: bool = False,
    eps_in_sqrt: bool = False,
) -> np.ndarray:
    """``g/(sqrt(v) + eps)`` or centered ``g/(sqrt(v - m²) + eps)`` (torch's RMSprop);
    ``eps_in_sqrt``: ``g/sqrt(v + eps)`` (Optax's ``scale_by_rms`` default)."""
    v = np.full_like(updates[0], initial_scale, dtype=np.float64)
    m = np.zeros_like(v)
    out = []
    for g in updates:
        v = decay * v + (1 - decay) * g * g
        m = decay * m + (1 - decay) * g
        var = v - m * m if centered else v
        out.append(g / (np.sqrt(var + eps) if eps_in_sqrt else np.sqrt(var) + eps))
    return np.stack(out)


def scale_by_rss(updates: np.ndarray, initial_accumulator_value: float, eps: float) -> np.ndarray:
    """AdaGrad's direction ``g/(sqrt(G) + eps)``, ``G = G0 + sum g²``."""
    s = np.full_like(updates[0], initial_accumulator_value, dtype=np.float64)
    out = []
    for g in updates:
        s = s + g * g
        out.append(g / (np.sqrt(s) + eps))
    return np.stack(out)


def clip(update: np.ndarray, max_delta: float) -> np.ndarray:
    """Each element limited to ``[-max_delta, max_delta]``."""
    return np.minimum(np.maximum(update, -max_delta), max_delta)


def clip_by_global_norm(leaves: Sequence[np.ndarray], max_norm: float) -> list[np.ndarray]:
    """``u * max_norm/||u||`` if the norm over all leaves exceeds ``max_norm``, else ``u``."""
    norm = np.sqrt(sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in leaves))
    factor = max_norm / norm if norm > max_norm else 1.0
    return [np.asarray(x, np.float64) * factor for x in leaves]


def add_decayed_weights(
    update: np.ndarray, param: np.ndarray, weight_decay: float, mask: bool = True
) -> np.ndarray:
    """``u + weight_decay*p`` where the mask is True, ``u`` elsewhere."""
    return np.where(mask, update + weight_decay * param, update)


def keep_params_nonnegative(update: np.ndarray, param: np.ndarray) -> np.ndarray:
    """``-p`` where ``p + u`` would go below zero, else ``u``."""
    return np.where(param + update < 0, -param, update)


def zero_nans(update: np.ndarray) -> np.ndarray:
    """NaN entries replaced by 0."""
    return np.where(np.isnan(update), 0.0, update)


def add_noise_variance(eta: float, gamma: float, step: int) -> float:
    """Variance of the noise added at 0-based ``step`` (Neelakantan et al. 2015)."""
    return eta / (1 + step) ** gamma
