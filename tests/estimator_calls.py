"""Calling every estimator through its uniform form with one (tau_f, tau_b) pair.

The uniform form `fn(key, logits, tau_f, tau_b)` refuses a concrete temperature that the
estimator would not read (unless it is the value results record for it). Tests that sweep every
estimator over the same pairs feed each one the pair it accepts: `recorded` keeps the value of
the field it reads and records the other as results do.
"""

from __future__ import annotations

from dst_jax import estimators as E


def recorded(entry: E.Estimator, tau_f, tau_b):
    """(tau_f, tau_b) as results record them for `entry`, reading the fields it reads."""
    if entry.n_temperatures == 2:
        return tau_f, tau_b
    if entry.n_temperatures == 0:
        return 1.0, 1.0
    return entry.temperatures_of({"tau_f": tau_f, "tau_b": tau_b}[entry.reads[0]])


def get(name: str, form: str | None = None, **options):
    """`E.get(name, form, **options)`, its temperatures passed through `recorded`."""
    fn = E.get(name, form, **options)
    entry = E.lookup(name)[0]
    return lambda key, logits, tau_f, tau_b: fn(key, logits, *recorded(entry, tau_f, tau_b))


def sampled(entry: E.Estimator, sampler: str, form: str = "categorical", **options):
    """`entry.sampled(sampler, form, **options)`, its temperatures passed through `recorded`."""
    fn = entry.sampled(sampler, form, **options)
    return lambda key, logits, tau_f, tau_b: fn(key, logits, *recorded(entry, tau_f, tau_b))
