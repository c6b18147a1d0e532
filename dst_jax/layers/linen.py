"""`flax.linen` layers that turn logits into discrete samples with a straight-through estimator.

The layers own no parameters: they take logits from any model and return the estimator's sample,
so they drop in after a `nn.Dense`. Randomness comes from the rng stream `"sample"` (the
`rng_collection` field): `model.apply(variables, x, rngs={"sample": key})`, or `rng=key` at call
time. With `deterministic=True` they return the mode (`argmax` one-hot, or `logit > 0`), which
needs no rng and has zero gradient: it is for evaluation.

Temperatures. A two-temperature estimator ("decoupled_st", "decoupled_reinmax") takes `tau_f`
and `tau_b`; a single-temperature one takes `tau` (or the field it reads, `Estimator.reads`:
`tau_f` for Softmax STE, `tau_b` for ReinMax); each defaults to 1.0. A temperature the estimator
would not read is a ValueError that names the one it reads: `CategoricalST("reinmax",
tau_f=1.3)` is refused. Score-function estimators ("rloo") are refused: their gradient is built
by the loss, not by a layer.

Inside a sweep. A task's methods receive the estimator as a registry entry
(`dst_jax.estimators.Estimator`) and `tau_f`, `tau_b` as traced arrays. Give the entry (or its
`name`) to the layer through a field of your model, and the temperatures at call time: for a
model with a field `estimator` that it passes to its layer, `model.clone(estimator=estimator)`
is that model with the task's estimator (linen modules are frozen dataclasses; `clone` copies one
with fields replaced), and `layer(logits, tau_f=tau_f, tau_b=tau_b)` inside it takes the traced
temperatures (both fields: the estimator reads those it uses, as `Estimator.uniform` does).

Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> from dst_jax.layers.linen import CategoricalST
    >>> class Model(nn.Module):
    ...     estimator: str = "decoupled_st"
    ...     @nn.compact
    ...     def __call__(self, x, tau_f=1.0, tau_b=0.5):
    ...         logits = nn.Dense(4 * 8)(x).reshape(x.shape[:-1] + (4, 8))
    ...         z = CategoricalST(self.estimator)(logits, tau_f=tau_f, tau_b=tau_b)
    ...         return nn.Dense(10)(z.reshape(x.shape[:-1] + (32,)))
    >>> model, x = Model(), jnp.ones((2, 16))
    >>> variables = model.init({"params": jax.random.key(0), "sample": jax.random.key(1)}, x)
    >>> model.apply(variables, x, rngs={"sample": jax.random.key(2)}).shape
    (2, 10)
    >>> from dst_jax.estimators import REGISTRY  # what a task method receives
    >>> reinmax = model.clone(estimator=REGISTRY["reinmax"])
    >>> reinmax.apply(variables, x, 1.0, 0.5, rngs={"sample": jax.random.key(2)}).shape
    (2, 10)
"""

from __future__ import annotations

import flax.linen as nn
import jax
from jax.typing import ArrayLike

from dst_jax import estimators
from dst_jax.estimators import Estimator
from dst_jax.layers import common


class _DiscreteST(nn.Module):
    estimator: str | Estimator = "decoupled_st"
    tau_f: float | jax.Array | None = None
    tau_b: float | jax.Array | None = None
    backward_noise: bool = False
    deterministic: bool = False
    rng_collection: str = "sample"
    tau: float | jax.Array | None = None

    _form = "categorical"

    def __post_init__(self) -> None:
        # Fail at construction on a bad estimator, option or temperature.
        entry, _ = common.resolve_estimator(type(self).__name__, self.estimator, self._form)
        entry.uniform(self._form, **common.options(self.backward_noise))
        entry.resolve_temperatures(tau=self.tau, tau_f=self.tau_f, tau_b=self.tau_b)
        super().__post_init__()

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
        tau: ArrayLike | None = None,
    ) -> jax.Array:
        """Samples from `logits` (or returns their mode when deterministic).

        Args:
          logits: float array; `(..., K)` for `CategoricalST`, any shape for `BernoulliST`.
          deterministic: overrides the field when given.
          rng: a PRNG key that replaces `self.make_rng(self.rng_collection)`.
          tau_f, tau_b, tau: override the fields, e.g. with traced temperatures in a sweep
            (same rule as the fields).

        Returns:
          The sample (or mode), with the shape and dtype of `logits`.
        """
        if self.deterministic if deterministic is None else deterministic:
            return self._mode(logits)
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        entry, _ = common.resolve_estimator(type(self).__name__, self.estimator, self._form)
        fn = entry.uniform(self._form, **common.options(self.backward_noise))
        stored: dict[str, ArrayLike | None] = {
            "tau": self.tau,
            "tau_f": self.tau_f,
            "tau_b": self.tau_b,
        }
        pair = common.temperatures(entry, stored, {"tau": tau, "tau_f": tau_f, "tau_b": tau_b})
        return fn(rng, logits, *pair)


class CategoricalST(_DiscreteST):
    """Categorical straight-through layer: logits `(..., K)` -> one-hot sample `(..., K)`.

    Attributes:
      estimator: a name of `dst_jax.estimators.REGISTRY` ("decoupled_st", "softmax_ste",
        "st_gumbel_softmax", "identity_ste", "reinmax", "decoupled_reinmax", "gumbel_rao", ...)
        or the registry entry itself (`dst_jax.estimators.Estimator`, as task methods receive
        it). Not a score-function estimator ("rloo").
      tau_f, tau_b: forward and backward temperatures of a two-temperature estimator (default
        1.0 each); a single-temperature one accepts the field it reads in place of `tau`.
      backward_noise: for "decoupled_st": the backward surrogate sees the forward's noise.
      deterministic: return `one_hot(argmax(logits))` instead of a sample.
      rng_collection: the rng stream the noise comes from, "sample" by default.
      tau: the temperature of a single-temperature estimator (default 1.0); an error for the
        others.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.layers.linen import CategoricalST
        >>> layer = CategoricalST("decoupled_st", tau_f=1.0, tau_b=0.5)
        >>> z = layer.apply({}, jnp.zeros((3, 4)), rngs={"sample": jax.random.key(0)})
        >>> z.shape, z.sum(axis=-1).tolist()
        ((3, 4), [1.0, 1.0, 1.0])
        >>> layer.apply({}, jnp.array([0.1, 2.0, -1.0, 0.0]), deterministic=True).tolist()
        [0.0, 1.0, 0.0, 0.0]
        >>> CategoricalST("reinmax", tau=0.5).tau  # ReinMax reads one temperature
        0.5
    """

    _form = "categorical"

    def _mode(self, logits: ArrayLike) -> jax.Array:
        return estimators.argmax_one_hot(logits)


class BernoulliST(_DiscreteST):
    """Bernoulli straight-through layer: logits of any shape -> {0, 1} sample of that shape.

    Attributes:
      estimator: a name of `dst_jax.estimators.REGISTRY` ("decoupled_st", "reinmax", ...),
        whose Bernoulli form is used, a Bernoulli function's name ("decoupled_st_bernoulli",
        "sigmoid_ste", ...), or the registry entry itself. Not a score-function estimator.
      tau_f, tau_b: forward and backward temperatures of a two-temperature estimator (default
        1.0 each); a single-temperature one accepts the field it reads in place of `tau`.
      backward_noise: for the decoupled estimator: the backward surrogate sees the forward's noise.
      deterministic: return `1[logits > 0]` instead of a sample.
      rng_collection: the rng stream the noise comes from, "sample" by default.
      tau: the temperature of a single-temperature estimator (default 1.0).

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

    _form = "bernoulli"

    def _mode(self, logits: ArrayLike) -> jax.Array:
        return estimators.bernoulli_mode(logits)
