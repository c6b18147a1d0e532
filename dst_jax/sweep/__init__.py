"""The sweep engine: one compiled, vmapped program trains a whole grid of configurations."""

from dst_jax.sweep.config import DEFAULT_TAUS, SweepConfig

__all__ = ["DEFAULT_TAUS", "SweepConfig"]
