"""`flax.linen` layers that turn logits into discrete samples with a straight-through estimator.

The layers own no parameters: they take logits from any model and return the estimator's sample,
so they drop in after a `nn.Dense`. Randomness comes from the rng stream `"sample"` (the
`rng_collection` field): `model.apply(variables, x, rngs={"sample": key})`, or `rng=key` at call
time. With `deterministic=True` they return the mode (`argmax` one-hot, or `logit > 0`), which
needs no rng and has zero gradient: it is for evaluation.

Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> from dst_jax.layers.linen import CategoricalST
    >>> class Model(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x):
    ...         logits = nn.Dense(4 * 8)(x).reshape(x.shape[:-1] + (4, 8))
    ...         z = CategoricalST("decoupled_st", tau_f=1.0, tau_b=0.5)(logits)
    ...         return nn.Dense(10)(z.reshape(x.shape[:-1] + (32,)))
    >>> model, x = Model(), jnp.ones((2, 16))
    >>> variables = model.init({"params": jax.random.key(0), "sample": jax.random.key(1)}, x)
    >>> model.apply(variables, x, rngs={"sample": jax.random.key(2)}).shape
    (2, 10)
"""

from __future__ import annotations

import flax.linen as nn
import jax
from jax.typing import ArrayLike

from dst_jax import estimators


class _DiscreteST(nn.Module):
    estimator: str = "decoupled_st"
    tau_f: float | jax.Array = 1.0
    tau_b: float | jax.Array = 1.0
    backward_noise: bool = False
    deterministic: bool = False
    rng_collection: str = "sample"

    def __post_init__(self) -> None:
        # Fail at construction on a bad estimator name or backward_noise combination.
        estimators.get(self._resolved_name(), **self._options())
        super().__post_init__()

    def _resolved_name(self) -> str:
        raise NotImplementedError

    def _options(self) -> dict:
        # Options go to the estimator only when set, so estimators without them stay valid.
        return {"backward_noise": True} if self.backward_noise else {}

    def _mode(self, logits: ArrayLike) -> jax.Array:
        raise NotImplementedError

    def __call__(
        self,
        logits: ArrayLike,
        deterministic: bool | None = None,
        rng: jax.Array | None = None,
        *,
        tau_f: ArrayLike | None = None,
        tau_b: ArrayLike | None = None,
    ) -> jax.Array:
        """Samples from `logits` (or returns their mode when deterministic).

        Args:
          logits: float array; `(..., K)` for `CategoricalST`, any shape for `BernoulliST`.
          deterministic: overrides the field when given.
          rng: a PRNG key that replaces `self.make_rng(self.rng_collection)`.
          tau_f, tau_b: override the fields, e.g. with traced temperatures in a sweep.

        Returns:
          The sample (or mode), with the shape and dtype of `logits`.
        """
        if self.deterministic if deterministic is None else deterministic:
            return self._mode(logits)
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        fn = estimators.get(self._resolved_name(), **self._options())
        return fn(
            rng,
            logits,
            self.tau_f if tau_f is None else tau_f,
            self.tau_b if tau_b is None else tau_b,
        )


class CategoricalST(_DiscreteST):
    """Categorical straight-through layer: logits `(..., K)` -> one-hot sample `(..., K)`.

    Attributes:
      estimator: a name of `dst_jax.estimators.REGISTRY` ("decoupled_st", "softmax_ste",
        "st_gumbel_softmax", "identity_ste", "reinmax", "decoupled_reinmax", "gumbel_rao", ...).
      tau_f, tau_b: forward and backward temperatures (a single-temperature estimator reads the
        field its registry entry names: tau_f for Softmax STE, tau_b for ReinMax).
      backward_noise: for "decoupled_st": the backward surrogate sees the forward's noise.
      deterministic: return `one_hot(argmax(logits))` instead of a sample.
      rng_collection: the rng stream the noise comes from, "sample" by default.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.layers.linen import CategoricalST
        >>> layer = CategoricalST("decoupled_st", tau_f=1.0, tau_b=0.5)
        >>> z = layer.apply({}, jnp.zeros((3, 4)), rngs={"sample": jax.random.key(0)})
        >>> z.shape, z.sum(axis=-1).tolist()
        ((3, 4), [1.0, 1.0, 1.0])
        >>> layer.apply({}, jnp.array([0.1, 2.0, -1.0, 0.0]), deterministic=True).tolist()
        [0.0, 1.0, 0.0, 0.0]
    """

    def _resolved_name(self) -> str:
        _, form = estimators.lookup(self.estimator)
        if form != "categorical":
            raise ValueError(
                f"CategoricalST got estimator {self.estimator!r} (a Bernoulli estimator: use "
                f"BernoulliST); expected one of {estimators.REGISTRY.names()}."
            )
        return self.estimator

    def _mode(self, logits: ArrayLike) -> jax.Array:
        return estimators.argmax_one_hot(logits)


class BernoulliST(_DiscreteST):
    """Bernoulli straight-through layer: logits of any shape -> {0, 1} sample of that shape.

    Attributes:
      estimator: a name of `dst_jax.estimators.REGISTRY` ("decoupled_st", "reinmax", ...),
        whose Bernoulli form is used, or a Bernoulli function's name ("decoupled_st_bernoulli",
        "sigmoid_ste", ...).
      tau_f, tau_b: forward and backward temperatures (a single-temperature estimator reads the
        field its registry entry names: tau_f for Sigmoid STE, tau_b for ReinMax).
      backward_noise: for the decoupled estimator: the backward surrogate sees the forward's noise.
      deterministic: return `1[logits > 0]` instead of a sample.
      rng_collection: the rng stream the noise comes from, "sample" by default.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.layers.linen import BernoulliST
        >>> layer = BernoulliST("decoupled_st", tau_f=1.0, tau_b=0.5)  # decoupled_st_bernoulli
        >>> logits = jnp.array([-30.0, 30.0, 0.4])
        >>> layer.apply({}, logits, rngs={"sample": jax.random.key(0)})[:2].tolist()
        [0.0, 1.0]
        >>> layer.apply({}, logits, deterministic=True).tolist()
        [0.0, 1.0, 1.0]
    """

    def _resolved_name(self) -> str:
        return estimators.bernoulli_name(self.estimator)

    def _mode(self, logits: ArrayLike) -> jax.Array:
        return estimators.bernoulli_mode(logits)
