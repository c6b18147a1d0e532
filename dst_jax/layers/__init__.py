"""Flax layers around the estimators: `dst_jax.layers.linen` and `dst_jax.layers.nnx`.

Each module has `CategoricalST` (logits `(..., K)` -> one-hot sample) and `BernoulliST`
(logits -> {0, 1} sample), parameter-free, drawing noise from the rng stream "sample".
"""

from dst_jax.layers import linen, nnx

__all__ = ["linen", "nnx"]
