"""`flax.nnx` layers that turn logits into discrete samples with a straight-through estimator.

The layers own no parameters: they take logits from any model and return the estimator's sample.
Randomness comes from the `nnx.Rngs` stream `"sample"` (the `rng_collection` argument), forked at
construction as `nnx.Dropout` does; a key, `RngStream` or `Rngs` passed as `rngs=` at call time
takes precedence. `deterministic` is an attribute, so `model.eval()` / `model.train()` and
`nnx.view(model, deterministic=True)` switch between sampling and the mode (`argmax` one-hot, or
`logit > 0`, zero gradient, for evaluation).

Temperatures. A two-temperature estimator ("decoupled_st", "decoupled_reinmax") takes `tau_f`
and `tau_b`; a single-temperature one takes `tau` (or the field it reads, `Estimator.reads`:
`tau_f` for Softmax STE, `tau_b` for ReinMax); each defaults to 1.0. A temperature the estimator
would not read is a ValueError that names the one it reads: `CategoricalST("reinmax",
tau_f=1.3)` is refused. Score-function estimators ("rloo") are refused: their gradient is built
by the loss, not by a layer. Temperatures given to the constructor are Python numbers (static: a
new value means a new trace under `nnx.jit`), kept as the attributes `tau_f`, `tau_b` (the pair
the estimator is called with); pass arrays as `tau_f=` / `tau_b=` (or `tau=`) at call time to
trace them, e.g. in a sweep.

Inside a sweep. A task's methods receive the estimator as a registry entry
(`dst_jax.estimators.Estimator`) and `tau_f`, `tau_b` as traced arrays. Build the layer with the
entry (or its `name`): `CategoricalST(estimator, rngs=rngs)`, and pass the temperatures at call
time, `layer(logits, tau_f=tau_f, tau_b=tau_b)` (both fields: the estimator reads those it
uses, as `Estimator.uniform` does). An nnx model is an ordinary object made by its
constructor (there is no linen-style `model.clone(estimator=...)`): build the model with the
task's estimator, its `__init__` handing the entry on to the layer, e.g. in the task's
`init_params`; the layer keeps the entry as `layer.entry` and its function's name as
`layer.estimator`.

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from dst_jax.layers.nnx import CategoricalST
    >>> class Model(nnx.Module):
    ...     def __init__(self, rngs: nnx.Rngs):
    ...         self.encode = nnx.Linear(784, 4 * 8, rngs=rngs)
    ...         self.sample = CategoricalST("decoupled_st", tau_f=1.0, tau_b=0.5, rngs=rngs)
    ...         self.decode = nnx.Linear(4 * 8, 10, rngs=rngs)
    ...
    ...     def __call__(self, x):
    ...         z = self.sample(self.encode(x).reshape(x.shape[:-1] + (4, 8)))
    ...         return self.decode(z.reshape(x.shape[:-1] + (32,)))
    >>> model = Model(nnx.Rngs(params=0, sample=1))
    >>> model(jnp.ones((2, 784))).shape
    (2, 10)
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.typing import ArrayLike

from dst_jax import estimators
from dst_jax.estimators import Estimator
from dst_jax.layers import common


class _DiscreteST(nnx.Module):
    _form = "categorical"

    def __init__(
        self,
        estimator: str | Estimator = "decoupled_st",
        *,
        tau_f: float | None = None,
        tau_b: float | None = None,
        tau: float | None = None,
        backward_noise: bool = False,
        deterministic: bool = False,
        rng_collection: str = "sample",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ):
        # The resolved name: BernoulliST("decoupled_st").estimator == "decoupled_st_bernoulli".
        self.entry, self.estimator = common.resolve_estimator(
            type(self).__name__, estimator, self._form
        )
        self.backward_noise = bool(backward_noise)
        self.entry.uniform(self._form, **self._options())  # validates the pair
        given: dict[str, Any] = {"tau": tau, "tau_f": tau_f, "tau_b": tau_b}
        given = {name: float(value) for name, value in given.items() if value is not None}
        estimators.check_temperatures(**given)
        pair = self.entry.resolve_temperatures(**given)
        self.tau_f, self.tau_b = (float(np.asarray(t)) for t in pair)
        self.deterministic = bool(deterministic)
        self.rng_collection = rng_collection
        if isinstance(rngs, nnx.Rngs):
            self.rngs = rngs[rng_collection].fork()
        elif isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork()
        elif rngs is None:
            self.rngs = nnx.data(None)
        else:
            raise ValueError(f"rngs must be an nnx.Rngs, an nnx.RngStream or None, got {rngs!r}.")

    def _options(self) -> dict:
        return common.options(self.backward_noise)

    @staticmethod
    def _mode(logits: ArrayLike) -> jax.Array:
        raise NotImplementedError

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by `nnx.view(model, deterministic=...)`."""
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(
        self,
        logits: ArrayLike,
        *,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
        tau_f: ArrayLike | None = None,
        tau_b: ArrayLike | None = None,
        tau: ArrayLike | None = None,
    ) -> jax.Array:
        """Samples from `logits` (or returns their mode when deterministic).

        Args:
          logits: float array; `(..., K)` for `CategoricalST`, any shape for `BernoulliST`.
          deterministic: overrides the attribute when given.
          rngs: a PRNG key, `RngStream` or `Rngs` that replaces the stored stream.
          tau_f, tau_b, tau: override the attributes, e.g. with traced temperatures in a sweep
            (same rule as the constructor's).

        Returns:
          The sample (or mode), with the shape and dtype of `logits`.
        """
        if self.deterministic if deterministic is None else deterministic:
            return self._mode(logits)
        if rngs is None:
            rngs = self.rngs
        if isinstance(rngs, nnx.Rngs):
            key = rngs[self.rng_collection]()
        elif isinstance(rngs, nnx.RngStream):
            key = rngs()
        elif isinstance(rngs, jax.Array):
            key = rngs
        else:
            raise ValueError(
                f"{type(self).__name__} needs randomness when not deterministic: pass "
                "rngs=nnx.Rngs(sample=...) to the constructor, or rngs=<key> to the call."
            )
        fn = self.entry.uniform(self._form, **self._options())
        stored = {"tau_f": self.tau_f, "tau_b": self.tau_b}
        pair = common.temperatures(self.entry, stored, {"tau": tau, "tau_f": tau_f, "tau_b": tau_b})
        return fn(key, logits, *pair)


class CategoricalST(_DiscreteST):
    """Categorical straight-through layer: logits `(..., K)` -> one-hot sample `(..., K)`.

    Args:
      estimator: a name of `dst_jax.estimators.REGISTRY` ("decoupled_st", "softmax_ste",
        "st_gumbel_softmax", "identity_ste", "reinmax", "decoupled_reinmax", "gumbel_rao", ...)
        or the registry entry itself (as task methods receive it); not "rloo".
      tau_f, tau_b: forward and backward temperatures of a two-temperature estimator (default
        1.0 each); a single-temperature one accepts the field it reads in place of `tau`.
      tau: the temperature of a single-temperature estimator (default 1.0).
      backward_noise: for "decoupled_st": the backward surrogate sees the forward's noise.
      deterministic: return `one_hot(argmax(logits))` instead of a sample.
      rng_collection: the `Rngs` stream the noise comes from, "sample" by default.
      rngs: `nnx.Rngs` (or an `RngStream`); may be omitted if keys are passed at call time.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from dst_jax.layers.nnx import CategoricalST
        >>> layer = CategoricalST("decoupled_st", tau_f=1.0, tau_b=0.5, rngs=nnx.Rngs(sample=0))
        >>> z = layer(jnp.zeros((3, 4)))
        >>> z.shape, z.sum(axis=-1).tolist()
        ((3, 4), [1.0, 1.0, 1.0])
        >>> layer(jnp.array([0.1, 2.0, -1.0, 0.0]), deterministic=True).tolist()
        [0.0, 1.0, 0.0, 0.0]
    """

    _form = "categorical"

    @staticmethod
    def _mode(logits: ArrayLike) -> jax.Array:
        return estimators.argmax_one_hot(logits)


class BernoulliST(_DiscreteST):
    """Bernoulli straight-through layer: logits of any shape -> {0, 1} sample of that shape.

    Args:
      estimator: a name of `dst_jax.estimators.REGISTRY` ("decoupled_st", "reinmax", ...),
        whose Bernoulli form is used, a Bernoulli function's name ("decoupled_st_bernoulli",
        "sigmoid_ste", ...), or the registry entry itself; not "rloo".
      tau_f, tau_b: forward and backward temperatures of a two-temperature estimator (default
        1.0 each); a single-temperature one accepts the field it reads in place of `tau`.
      tau: the temperature of a single-temperature estimator (default 1.0).
      backward_noise: for the decoupled estimator: the backward surrogate sees the forward's noise.
      deterministic: return `1[logits > 0]` instead of a sample.
      rng_collection: the `Rngs` stream the noise comes from, "sample" by default.
      rngs: `nnx.Rngs` (or an `RngStream`); may be omitted if keys are passed at call time.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.layers.nnx import BernoulliST
        >>> layer = BernoulliST("sigmoid_ste", tau=0.5)  # no stored stream: keys per call
        >>> logits = jnp.array([-30.0, 30.0, 0.4])
        >>> layer(logits, rngs=jax.random.key(0))[:2].tolist()
        [0.0, 1.0]
        >>> layer(logits, deterministic=True).tolist()
        [0.0, 1.0, 1.0]
    """

    _form = "bernoulli"

    @staticmethod
    def _mode(logits: ArrayLike) -> jax.Array:
        return estimators.bernoulli_mode(logits)
