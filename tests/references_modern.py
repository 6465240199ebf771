"""Plain NumPy float64 references for the modern optimizers, from the papers' formulas.

Nothing here imports jax, gradlab, optax or torch. Each reference is a
:class:`Rule`: ``init(p, name) -> state`` and ``step(state, p, g, lr, t, name)
-> new p`` for ONE leaf (``t`` is the 1-based step, ``name`` the leaf's key,
for masks and per-leaf choices). Elementwise rules are written for arrays of
any shape; per-leaf rules (trust ratios, factored moments, SM3, NovoGrad,
Newton-Schulz) use the leaf's shape and norms, as their papers define them.
:func:`trajectory` runs a rule over a dict of leaves.

Where a paper leaves a convention open, or the gradlab reference (Optax) fixes
one differently from the paper, the docstring says which one is written.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

State = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Rule:
    init: Callable[[np.ndarray, str], State]
    step: Callable[[State, np.ndarray, np.ndarray, float, int, str], np.ndarray]


def trajectory(
    rule: Rule,
    p0: dict[str, np.ndarray],
    grad_fn: Callable[[dict[str, np.ndarray], int], dict[str, np.ndarray]],
    lrs: Sequence[float],
) -> np.ndarray:
    """Params (flattened, keys sorted) after each step, starting with ``p0``:
    shape ``(len(lrs) + 1, n)``. ``grad_fn(params, k)`` gets 0-based ``k``."""
    return run(rule, p0, grad_fn, lrs)[0]


def run(rule, p0, grad_fn, lrs) -> tuple[np.ndarray, dict[str, State]]:
    """:func:`trajectory` and the final state of every leaf."""
    keys = sorted(p0)
    p = {k: np.array(p0[k], np.float64) for k in keys}
    states = {k: rule.init(p[k], k) for k in keys}
    flat = [np.concatenate([p[k].ravel() for k in keys])]
    for k, lr in enumerate(lrs):
        g = grad_fn(p, k)
        p = {n: np.asarray(rule.step(states[n], p[n], g[n], lr, k + 1, n)) for n in keys}
        flat.append(np.concatenate([p[n].ravel() for n in keys]))
    return np.stack(flat), states


def _zeros(p: np.ndarray, *names: str) -> State:
    return {n: np.zeros_like(p) for n in names}


def _norm(x: np.ndarray) -> float:
    return float(np.sqrt(np.sum(np.square(x))))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def _decayed(mask: dict[str, bool] | None, name: str) -> bool:
    return True if mask is None else bool(mask[name])


# ------------------------------------------------------------------ Adam family


def adam_like(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    nesterov: bool = False,
    amsgrad: bool = False,
    weight_decay: float = 0.0,
    mask: dict[str, bool] | None = None,
) -> Rule:
    """Adam (Kingma & Ba 2015, Alg. 1) and the variants that only change m̂ or v̂.

    ``nesterov``: NAdam's look-ahead (Dozat 2016, as Optax):
    ``m̂ = b1 m/(1-b1^(t+1)) + (1-b1) g/(1-b1^t)``. ``amsgrad`` (Reddi et al.
    2018, Optax's convention): ``v̂max = max(v̂max, v/(1-b2^t))`` replaces v̂.
    ``weight_decay``: decoupled (AdamW), on the leaves where ``mask`` is True.
    """

    def step(s, p, g, lr, t, name):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        if nesterov:
            m_hat = b1 * s["m"] / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        else:
            m_hat = s["m"] / (1 - b1**t)
        v_hat = s["v"] / (1 - b2**t)
        if amsgrad:
            s["v_max"] = np.maximum(s["v_max"], v_hat)
            v_hat = s["v_max"]
        d = m_hat / (np.sqrt(v_hat + eps_root) + eps)
        if _decayed(mask, name):
            d = d + weight_decay * p
        return p - lr * d

    return Rule(lambda p, n: _zeros(p, "m", "v", "v_max"), step)


def adamax(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    mask: dict[str, bool] | None = None,
) -> Rule:
    """Adamax (Kingma & Ba 2015, Alg. 2): ``u = max(b2 u, |g| + eps)`` (eps as torch),
    ``p -= lr/(1-b1^t) m/u`` (+ decoupled ``weight_decay p`` for adamaxw)."""

    def step(s, p, g, lr, t, name):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["u"] = np.maximum(b2 * s["u"], np.abs(g) + eps)
        d = s["m"] / ((1 - b1**t) * s["u"])
        if _decayed(mask, name):
            d = d + weight_decay * p
        return p - lr * d

    return Rule(lambda p, n: _zeros(p, "m", "u"), step)


def radam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
) -> Rule:
    """RAdam (Liu et al. 2020, Alg. 2): ``rho_t = rho_inf - 2 t b2^t/(1-b2^t)``;
    rectified adaptive step where ``rho_t >= threshold`` (Optax's ``>=``), plain
    momentum ``m̂`` before."""
    rho_inf = 2 / (1 - b2) - 1

    def step(s, p, g, lr, t, name):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        m_hat = s["m"] / (1 - b1**t)
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho >= threshold:
            r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            v_hat = s["v"] / (1 - b2**t)
            return p - lr * r * m_hat / (np.sqrt(v_hat + eps_root) + eps)
        return p - lr * m_hat

    return Rule(lambda p, n: _zeros(p, "m", "v"), step)


def adadelta(
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    mask: dict[str, bool] | None = None,
) -> Rule:
    """Adadelta (Zeiler 2012, Alg. 1) with torch's coupled weight decay
    (``g += weight_decay p``) and learning rate (``p -= lr d``)."""

    def step(s, p, g, lr, t, name):
        if _decayed(mask, name):
            g = g + weight_decay * p
        s["eg"] = rho * s["eg"] + (1 - rho) * g * g
        d = np.sqrt(s["ex"] + eps) / np.sqrt(s["eg"] + eps) * g
        s["ex"] = rho * s["ex"] + (1 - rho) * d * d
        return p - lr * d

    return Rule(lambda p, n: _zeros(p, "eg", "ex"), step)


def adabelief(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16, eps_root: float = 1e-16
) -> Rule:
    """AdaBelief (Zhuang et al. 2020, Alg. 2): ``s = b2 s + (1-b2)(g - m)² + eps``
    (the paper's ε inside, Optax's ``eps_root``), ``p -= lr m̂/(sqrt(ŝ) + eps)``."""

    def step(s, p, g, lr, t, name):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["s"] = b2 * s["s"] + (1 - b2) * (g - s["m"]) ** 2 + eps_root
        m_hat = s["m"] / (1 - b1**t)
        s_hat = s["s"] / (1 - b2**t)
        return p - lr * m_hat / (np.sqrt(s_hat) + eps)

    return Rule(lambda p, n: _zeros(p, "m", "s"), step)


def yogi(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3, initial: float = 1e-6) -> Rule:
    """Yogi (Zaheer et al. 2018, Alg. 2): ``v = v - (1-b2) sign(v - g²) g²``; with
    Optax's conventions: m, v start at ``initial`` and are bias-corrected."""

    def step(s, p, g, lr, t, name):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = s["v"] - (1 - b2) * np.sign(s["v"] - g * g) * g * g
        m_hat = s["m"] / (1 - b1**t)
        v_hat = s["v"] / (1 - b2**t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)

    return Rule(lambda p, n: {"m": np.full_like(p, initial), "v": np.full_like(p, initial)}, step)


def adan(
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    weight_decay: float = 0.0,
    mask: dict[str, bool] | None = None,
) -> Rule:
    """Adan (Xie et al. 2022, Alg. 1) in decay-rate form (paper's β = 1 - b, so
    its ``1 - β2`` on the differences is ``b2``): ``Δ = g - g_prev`` (0 at step
    1); ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) Δ``,
    ``n = b3 n + (1-b3)(g + b2 Δ)²``, bias-corrected (as the authors' code,
    sail-sg/Adan: ``update = grad + beta2 * diff``);
    ``p -= lr ((m̂ + b2 v̂)/(sqrt(n̂ + eps_root) + eps) + weight_decay p)``
    (Optax's decoupled decay; the paper divides by ``1 + lr weight_decay``)."""

    def step(s, p, g, lr, t, name):
        diff = np.zeros_like(g) if t == 1 else g - s["g_prev"]
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * diff
        s["n"] = b3 * s["n"] + (1 - b3) * (g + b2 * diff) ** 2
        s["g_prev"] = g
        m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
        n_hat = s["n"] / (1 - b3**t)
        d = (m_hat + b2 * v_hat) / (np.sqrt(n_hat + eps_root) + eps)
        if _decayed(mask, name):
            d = d + weight_decay * p
        return p - lr * d

    return Rule(lambda p, n: _zeros(p, "m", "v", "n", "g_prev"), step)


def novograd(
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
) -> Rule:
    """NovoGrad (Ginsburg et al. 2019, Alg. 1), per layer (leaf):
    ``v = ||g||²`` at step 1, then ``v = b2 v + (1-b2) ||g||²``;
    ``m = b1 m + g/(sqrt(v) + eps) + weight_decay p`` (``m = ...`` without
    ``b1 m`` at step 1; eps as Optax, also at step 1); ``p -= lr m``."""

    def step(s, p, g, lr, t, name):
        g2 = float(np.sum(g * g))
        s["v"] = g2 if t == 1 else b2 * s["v"] + (1 - b2) * g2
        d = g / (np.sqrt(s["v"]) + eps) + weight_decay * p
        s["m"] = d if t == 1 else b1 * s["m"] + d
        return p - lr * s["m"]

    return Rule(lambda p, n: {"v": 0.0, "m": np.zeros_like(p)}, step)


# ------------------------------------------------------------ layer-wise, sign


def lamb(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    mask: dict[str, bool] | None = None,
) -> Rule:
    """LAMB (You et al. 2020, Alg. 2, φ = identity as Optax): ``r = m̂/(sqrt(v̂) + eps)
    + weight_decay p``; ``p -= lr ||p||/||r|| r`` per layer (ratio 1 if a norm is 0)."""

    def step(s, p, g, lr, t, name):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        r = (s["m"] / (1 - b1**t)) / (np.sqrt(s["v"] / (1 - b2**t)) + eps)
        if _decayed(mask, name):
            r = r + weight_decay * p
        pn, rn = _norm(p), _norm(r)
        ratio = 1.0 if pn == 0 or rn == 0 else pn / rn
        return p - lr * ratio * r

    return Rule(lambda p, n: _zeros(p, "m", "v"), step)


def lars(
    weight_decay: float = 0.0,
    trust_coefficient: float = 0.001,
    momentum: float = 0.9,
    nesterov: bool = False,
    eps: float = 0.0,
    trust_mask: dict[str, bool] | None = None,
) -> Rule:
    """LARS (You et al. 2017, Alg. 1) with Optax's trust ratio
    ``η ||p|| / (||g + wd p|| + eps)`` (the paper: ``||g|| + wd ||p||``) on the
    leaves where ``trust_mask`` is True: ``d = lr ratio (g + wd p)``;
    ``b = momentum b + d``; ``p -= b`` (Nesterov: ``p -= d + momentum b``)."""

    def step(s, p, g, lr, t, name):
        d = g + weight_decay * p
        if _decayed(trust_mask, name):
            pn, dn = _norm(p), _norm(d)
            ratio = 1.0 if pn == 0 or dn == 0 else trust_coefficient * pn / (dn + eps)
            d = ratio * d
        d = lr * d
        s["b"] = momentum * s["b"] + d
        return p - (d + momentum * s["b"] if nesterov else s["b"])

    return Rule(lambda p, n: _zeros(p, "b"), step)


def lion(
    b1: float = 0.9,
    b2: float = 0.99,
    weight_decay: float = 1e-3,
    mask: dict[str, bool] | None = None,
) -> Rule:
    """Lion (Chen et al. 2023, Alg. 2): ``p -= lr (sign(b1 m + (1-b1) g) + wd p)``;
    ``m = b2 m + (1-b2) g``."""

    def step(s, p, g, lr, t, name):
        d = np.sign(b1 * s["m"] + (1 - b1) * g)
        if _decayed(mask, name):
            d = d + weight_decay * p
        s["m"] = b2 * s["m"] + (1 - b2) * g
        return p - lr * d

    return Rule(lambda p, n: _zeros(p, "m"), step)


def sgd() -> Rule:
    """Plain gradient descent: ``p -= lr g``."""
    return Rule(lambda p, n: {}, lambda s, p, g, lr, t, name: p - lr * g)


def sign_sgd() -> Rule:
    """signSGD (Bernstein et al. 2018, Alg. 1): ``p -= lr sign(g)``."""
    return Rule(lambda p, n: {}, lambda s, p, g, lr, t, name: p - lr * np.sign(g))


def signum(beta: float = 0.9) -> Rule:
    """Signum (Bernstein et al. 2018, Alg. 3): ``m = beta m + (1-beta) g``; ``p -= lr sign(m)``."""

    def step(s, p, g, lr, t, name):
        s["m"] = beta * s["m"] + (1 - beta) * g
        return p - lr * np.sign(s["m"])

    return Rule(lambda p, n: _zeros(p, "m"), step)


# ------------------------------------------------------ memory-saving, others


def _factored_axes(shape: tuple[int, ...], min_dim: int) -> tuple[int, int] | None:
    """Adafactor factors the two largest axes (ties: the later axis is "larger")
    when the smaller of them has at least ``min_dim`` entries."""
    if len(shape) < 2:
        return None
    order = sorted(range(len(shape)), key=lambda i: (shape[i], i))
    col_axis, row_axis = order[-2], order[-1]  # row statistics average over the largest
    return None if shape[col_axis] < min_dim else (col_axis, row_axis)


def adafactor(
    relative_step: bool = True,
    min_dim: int = 128,
    decay_rate: float = 0.8,
    clip_threshold: float | None = 1.0,
    param_scale: bool = True,
    momentum: float | None = None,
    weight_decay_rate: float | None = None,
    eps1: float = 1e-30,
    eps2: float = 1e-3,
    mask: dict[str, bool] | None = None,
    decay_offset: int = 0,
) -> Rule:
    """Adafactor (Shazeer & Stern 2018, Alg. 4/5 and §§6-8).

    ``b_t = 1 - t^-decay_rate``, with ``t`` counted from ``decay_offset``
    (``max(t - decay_offset, 1)``: the steps before it count as the first).
    For a factored leaf, viewed as a batch of ``(n, m)`` matrices (axes moved so
    the factored ones are last, the larger last): ``R = b R + (1-b) mean_j(G² + eps1)``,
    ``C = b C + (1-b) mean_i(G² + eps1)``,
    ``V̂_ij = R_i C_j / mean_i R_i``; else ``V = b V + (1-b)(G² + eps1)``.
    ``U = G/sqrt(V̂)``; ``U /= max(1, RMS(U)/clip_threshold)``;
    ``α = rho_t max(eps2, RMS(p))`` (``param_scale``) or ``rho_t``, with
    ``rho_t = min(1e-2, 1/sqrt(t))`` (``relative_step``) or the given lr;
    optional momentum ``m = momentum m + (1-momentum) α U`` (Optax's
    ``ema(debias=False)`` on the scaled step); ``p -= step + wd_rate p``.
    """

    def init(p, name):
        return {"R": None, "C": None, "V": np.zeros_like(p), "m": np.zeros_like(p)}

    def step(s, p, g, lr, t, name):
        b = 1 - max(t - decay_offset, 1) ** (-decay_rate)
        g2 = g * g + eps1
        axes = _factored_axes(p.shape, min_dim)
        if axes is None:
            s["V"] = b * s["V"] + (1 - b) * g2
            u = g / np.sqrt(s["V"])
        else:
            col_axis, row_axis = axes
            gm = np.moveaxis(g2, (col_axis, row_axis), (-2, -1))  # (..., n, m)
            r_new, c_new = gm.mean(axis=-1), gm.mean(axis=-2)  # (..., n), (..., m)
            s["R"] = (1 - b) * r_new if s["R"] is None else b * s["R"] + (1 - b) * r_new
            s["C"] = (1 - b) * c_new if s["C"] is None else b * s["C"] + (1 - b) * c_new
            v_hat = s["R"][..., :, None] * s["C"][..., None, :]
            v_hat = v_hat / s["R"].mean(axis=-1)[..., None, None]
            u = g / np.sqrt(np.moveaxis(v_hat, (-2, -1), (col_axis, row_axis)))
        if clip_threshold is not None:
            u = u / max(1.0, _rms(u) / clip_threshold)
        rho = min(1e-2, 1 / np.sqrt(t)) if relative_step else lr
        alpha = rho * max(eps2, _rms(p)) if param_scale else rho
        d = alpha * u
        if momentum is not None:
            s["m"] = momentum * s["m"] + (1 - momentum) * d
            d = s["m"]
        if weight_decay_rate is not None and _decayed(mask, name):
            d = d + weight_decay_rate * p
        return p - d

    return Rule(init, step)


def sm3(momentum: float = 0.9, eps: float = 1e-8) -> Rule:
    """SM3-II (Anil et al. 2019, Alg. 2), one accumulator per index of each axis
    (a full AdaGrad sum for vectors and scalars):
    ``nu(i) = min_{axes a} acc_a[i_a] + g(i)²``, ``acc_a[j] = max_{i: i_a = j} nu(i)``;
    ``m = momentum m + (1-momentum) g/sqrt(nu + eps)`` (0 where ``nu = 0``); ``p -= lr m``."""

    def init(p, name):
        accs = [np.zeros(p.shape)] if p.ndim <= 1 else [np.zeros(n) for n in p.shape]
        return {"accs": accs, "m": np.zeros_like(p)}

    def step(s, p, g, lr, t, name):
        if p.ndim <= 1:
            nu = s["accs"][0] + g * g
            s["accs"] = [nu]
        else:
            nu = np.full(p.shape, np.inf)
            for idx in np.ndindex(*p.shape):
                nu[idx] = min(s["accs"][a][i] for a, i in enumerate(idx)) + g[idx] ** 2
            s["accs"] = [
                np.array([nu.take(j, axis=a).max() for j in range(p.shape[a])])
                for a in range(p.ndim)
            ]
        direction = np.where(nu > 0, g / np.sqrt(nu + eps), 0.0)
        s["m"] = momentum * s["m"] + (1 - momentum) * direction
        return p - lr * s["m"]

    return Rule(init, step)


def rprop(
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step: float = 1e-6,
    max_step: float = 50.0,
) -> Rule:
    """Rprop as ``torch.optim.Rprop`` (iRprop-, Igel & Hüsken 2000): the step
    (starting at the learning rate of step 1) grows by ``eta_plus`` where
    ``g g_prev > 0``, shrinks by ``eta_minus`` where ``< 0`` (and ``g`` is taken
    as 0 there), is clipped to ``[min_step, max_step]``; ``p -= sign(g) step``."""

    def step(s, p, g, lr, t, name):
        if s["step"] is None:
            s["step"] = np.full_like(p, lr)
        sgn = g * s["g_prev"]
        factor = np.where(sgn > 0, eta_plus, np.where(sgn < 0, eta_minus, 1.0))
        s["step"] = np.clip(s["step"] * factor, min_step, max_step)
        g = np.where(sgn < 0, 0.0, g)
        s["g_prev"] = g
        return p - np.sign(g) * s["step"]

    return Rule(lambda p, n: {"step": None, "g_prev": np.zeros_like(p)}, step)


def schedule_free(
    base: str = "sgd",
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_lr_power: float = 2.0,
    warmup_steps: int | None = None,
) -> Rule:
    """Schedule-free SGD / AdamW (Defazio et al. 2024, Alg. 1 and eq. 1-3), with
    Optax's conventions (the state is per leaf; the scalars are shared and
    recomputed identically for every leaf):

    ``lr_k`` (times ``min(1, (k+1)/warmup_steps)``, 0-based ``k``: the paper's
    ``t / T_warmup`` and the authors' code, facebookresearch/schedule_free); ``z -= lr_k d``
    with ``d = g(y) + wd y`` (SGD) or ``g/(sqrt(v/(1-b2^t)) + eps) + wd y`` (AdamW,
    ``v = b2 v + (1-b2) g²``); ``w = (max_{i<=k} lr_i)^weight_lr_power``,
    ``c = w / Σw`` (0 while ``Σw = 0``); ``x = (1-c) x + c z``;
    ``y = (1-b1) z + b1 x``. Returns ``y`` (the params)."""

    def init(p, name):
        return {"z": p.copy(), "x": p.copy(), "v": np.zeros_like(p), "max_lr": 0.0, "wsum": 0.0}

    def step(s, p, g, lr, t, name):
        k = t - 1
        if warmup_steps is not None:
            lr = lr * (min(1.0, (k + 1) / warmup_steps) if warmup_steps > 0 else 1.0)
        if base == "sgd":
            d = g
        else:
            s["v"] = b2 * s["v"] + (1 - b2) * g * g
            d = g / (np.sqrt(s["v"] / (1 - b2**t)) + eps)
        d = d + weight_decay * p
        s["z"] = s["z"] - lr * d
        s["max_lr"] = max(s["max_lr"], lr)
        w = s["max_lr"] ** weight_lr_power
        s["wsum"] += w
        c = w / s["wsum"] if s["wsum"] > 0 else 0.0
        s["x"] = (1 - c) * s["x"] + c * s["z"]
        return (1 - b1) * s["z"] + b1 * s["x"]

    return Rule(init, step)


# ------------------------------------------------------------------------ Muon

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz(x: np.ndarray, steps: int = 5, coeffs=NS_COEFFS, eps: float = 1e-8):
    """Jordan et al. 2024: ``X = x/(||x||_F + eps)``, transposed if tall;
    ``steps`` times ``A = X Xᵀ``, ``X = a X + (b A + c A²) X``."""
    a, b, c = coeffs
    tall = x.shape[0] > x.shape[1]
    X = x.T if tall else x
    X = X / (np.sqrt(np.sum(X * X)) + eps)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


def muon(
    beta: float = 0.95,
    ns_steps: int = 5,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_weight_decay: float = 0.0,
    nesterov: bool = True,
) -> Rule:
    """Muon (Jordan et al. 2024) for 2-D leaves, Optax's conventions: ``m = beta m
    + (1-beta) g``, ``m̂`` bias-corrected (Nesterov look-ahead by default),
    ``p -= lr (NS(m̂) sqrt(max(1, fan_out/fan_in)) + wd p)``; every other leaf
    AdamW (NAdamW when ``nesterov``, as Optax's muon) with ``adam_*``."""
    adam = adam_like(adam_b1, adam_b2, eps, nesterov=nesterov, weight_decay=adam_weight_decay).step

    def step(s, p, g, lr, t, name):
        if p.ndim != 2:
            return adam(s, p, g, lr, t, name)
        s["mu"] = beta * s["mu"] + (1 - beta) * g
        if nesterov:
            m_hat = beta * s["mu"] / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta**t)
        else:
            m_hat = s["mu"] / (1 - beta**t)
        scale = np.sqrt(max(1.0, p.shape[1] / p.shape[0]))
        d = newton_schulz(m_hat, ns_steps, eps=eps) * scale + weight_decay * p
        return p - lr * d

    return Rule(lambda p, n: _zeros(p, "m", "v", "v_max", "mu"), step)


Partial = functools.partial
