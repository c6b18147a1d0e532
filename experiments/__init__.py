"""Aliases kept for checkouts: `python -m experiments.<command>` runs `dst_jax.experiments`."""
