"""Muon: orthogonalised momentum for the matrices, AdamW for everything else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradlab import _masks
from gradlab._checks import (
    check_in_range,
    check_learning_rate,
    check_nonnegative,
    check_scalars,
)
from gradlab._core import GradientTransformation, chain, structural
from gradlab.blocks import (
    add_decayed_weights,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_muon,
)
from gradlab.blocks._orthogonal import DEFAULT_NS_COEFFS
from gradlab.combinators import PartitionState, partition

ScalarOrSchedule = Any
Mask = Any | Callable[[Any], Any]


def _present_groups(
    transforms: dict[str, GradientTransformation], label_fn: Callable[[Any], Any]
) -> GradientTransformation:
    """``partition(transforms, label_fn)`` over the groups that label a leaf of
    the params at hand: a model without matrices (or with nothing but) has one
    group, which ``partition`` would refuse as an unused transformation. A tree
    with no leaves (``optax.tree_utils.tree_map_params``' placeholder) gets
    every group, as a model with both kinds of leaves does."""

    def build(tree):
        if not jax.tree.leaves(tree):
            return partition(transforms, label_fn)
        used = set(_masks.resolve_labels(label_fn, tree))
        present = {k: t for k, t in transforms.items() if k in used}
        return partition(present, label_fn) if present else None

    def init(params):
        tx = build(params)
        return PartitionState({}) if tx is None else tx.init(params)

    def update(updates, state, params=None, **extra):
        tx = build(updates if params is None else params)
        if tx is None:
            return updates, state
        return tx.update(updates, state, params, **extra)

    def packing(ctx):
        tx = build(ctx.tree)
        return (
            GradientTransformation(init, update, packing=None)
            if tx is None
            else ctx.form(tx, "muon partition")
        )

    return GradientTransformation(init, update, packing=packing)


@structural("ns_steps")
def muon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs: Any = DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    beta: Any = 0.95,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    weight_decay_mask: Mask = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adam_b1: Any = 0.9,
    adam_b2: Any = 0.999,
    adam_eps_root: Any = 0.0,
    adam_weight_decay: Any = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_mask: Mask = None,
) -> GradientTransformation:
    """Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers").

    For the matrices (rank-2 leaves, or where ``muon_mask`` is True):
    ``m <- beta m + (1-beta) g``; ``p <- p - lr * (NS5(m̂) sqrt(max(1,
    fan_out/fan_in)) + weight_decay p)``, ``NS5`` the Newton-Schulz
    orthogonalisation (``gl.orthogonalize``: every singular value of the step
    about 1) and ``m̂`` the bias-corrected momentum (Nesterov look-ahead by
    default). Every other leaf (biases, norm scales; put embeddings and the
    output layer there too with ``muon_mask``) gets AdamW with the ``adam_*``
    hyperparameters (Nesterov's NAdamW when ``nesterov``, as Optax), at
    ``adam_learning_rate`` (default: ``learning_rate``).
    ``NS5``: ``ns_steps`` (default 5) Newton-Schulz steps with coefficients ``ns_coeffs``.
    ``weight_decay_mask`` (tree of bools over all the params, or ``params -> tree``) selects
    the decayed matrices. ``adam_b1``, ``adam_b2``, ``adam_eps_root``,
    ``adam_weight_decay``: AdamW's ``b1``, ``b2``, ``eps_root`` and (unmasked)
    ``weight_decay``. ``eps`` serves both groups; ``mu_dtype`` is the storage dtype of both
    groups' ``m`` (default: the param's).

    A :func:`gradlab.partition` of ``{"muon": ..., "adam": ...}`` (the state is
    its ``PartitionState``); the orthogonalisation runs per leaf under
    ``gl.packed``, the AdamW group packed. State: the momentum (1x) for the
    matrices, Adam's two moments for the rest. ``optax.contrib.muon``
    (same defaults and chain); Keller Jordan's reference keeps the momentum
    as ``b <- beta b + g`` without bias correction, which the orthogonalisation
    makes the same direction up to ``eps``, except the look-ahead's weighting
    of ``m`` against ``g``, off by ``(1-beta^t)/(1-beta^(t+1))``: at
    ``beta=0.95``, 1.4% at step 30, under 1% after ~50 steps (``1/(1-beta)``
    steps' scale).

    >>> tx = muon(0.02, adam_learning_rate=3e-4, weight_decay=0.01)
    """
    # The Adam group's values, checked under the names they were given here
    # (its blocks would name them b1, b2, ...).
    check_scalars(
        adam_b1=adam_b1,
        adam_b2=adam_b2,
        adam_eps_root=adam_eps_root,
        adam_weight_decay=adam_weight_decay,
    )
    check_in_range("adam_b1", adam_b1, 0.0, 1.0, hi_open=True)
    check_in_range("adam_b2", adam_b2, 0.0, 1.0, hi_open=True)
    check_nonnegative("adam_eps_root", adam_eps_root)
    check_nonnegative("adam_weight_decay", adam_weight_decay)
    if adam_learning_rate is not None:
        check_learning_rate("adam_learning_rate", adam_learning_rate)
    adam_lr = learning_rate if adam_learning_rate is None else adam_learning_rate
    groups = {
        "muon": chain(
            scale_by_muon(ns_coeffs, ns_steps, beta, eps, mu_dtype, nesterov=nesterov),
            add_decayed_weights(weight_decay, weight_decay_mask),
            scale_by_learning_rate(learning_rate),
        ),
        "adam": chain(
            scale_by_adam(adam_b1, adam_b2, eps, adam_eps_root, mu_dtype, nesterov=nesterov),
            add_decayed_weights(adam_weight_decay),
            scale_by_learning_rate(adam_lr),
        ),
    }

    def labels(params):
        if muon_mask is None:
            return jax.tree.map(lambda p: "muon" if jnp.ndim(p) == 2 else "adam", params)
        chosen = [_masks.static_bool(m) for m in jax.tree.leaves(_masks.resolve(muon_mask, params))]
        if any(c is None for c in chosen):
            raise TypeError("muon_mask leaves must be Python bools (one per param leaf)")
        treedef = jax.tree.structure(params)
        return treedef.unflatten(["muon" if c else "adam" for c in chosen])

    return _present_groups(groups, labels)
