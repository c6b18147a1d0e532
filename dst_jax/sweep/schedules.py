"""Schedules of a run's temperatures and learning rate, as functions of the step.

A schedule is per-config data (an index into the tuples below, and its parameters), so runs
with different schedules share one compiled program; every schedule is computed and the
config's own is selected.

Temperatures anneal from their grid value `tau0` to a final value `tau1` over the T steps of the
run, at the fraction `s = t / T` of it:
    constant: tau0;   linear: tau0 (1 - s) + tau1 s;   exp: tau0 (tau1 / tau0)^s
Each ends at exactly tau1 (s = 1), whatever the two values' magnitudes.
Learning rate: constant, or optax's cosine decay from `lr` to 0 over T steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

TAU_SCHEDULES = ("constant", "linear", "exp")
LR_SCHEDULES = ("constant", "cosine")


def temperature(kind: jax.Array, tau0: jax.Array, tau1: jax.Array, frac: jax.Array) -> jax.Array:
    """The temperature at the fraction `frac` in [0, 1] of the run (module docstring)."""
    frac = jnp.asarray(frac, jnp.float32)
    # Weighted, not `tau0 + (tau1 - tau0) * frac`: in float32 that ends at exactly 0 for
    # 100 -> 1e-6 (`1e-6 - 100` rounds to -100), and at 1 these weights give tau1 itself.
    linear = tau0 * (1 - frac) + tau1 * frac
    exp = jnp.where(frac >= 1, tau1, tau0 * (tau1 / tau0) ** frac)
    return jnp.select([kind == 1, kind == 2], [linear, exp], tau0)


def learning_rate(kind: jax.Array, lr: jax.Array, total_steps: int) -> optax.Schedule:
    """The learning rate as an optax schedule of Adam's update count."""
    cosine = optax.cosine_decay_schedule(lr, decay_steps=max(int(total_steps), 1))
    return lambda count: jnp.where(kind == 1, cosine(count), lr)
