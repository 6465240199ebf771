"""Optimizers: short chains of building blocks."""

from gradlab.optimizers._classic import adagrad, adam, adamw, rmsprop, sgd

__all__ = ["adagrad", "adam", "adamw", "rmsprop", "sgd"]
