"""What both Flax layer APIs share: which estimator a layer runs, and its temperatures.

Why a module of its own: `linen` and `nnx` must accept the same estimators, refuse the same
ones and read temperatures by the same rule (`Estimator.resolve_temperatures`), so the rule is
written once.
"""

from __future__ import annotations

from collections.abc import Mapping

from jax.typing import ArrayLike

from dst_jax import estimators
from dst_jax.estimators import Estimator

Temperatures = tuple[ArrayLike, ArrayLike]


def resolve_estimator(layer: str, estimator: str | Estimator, form: str) -> tuple[Estimator, str]:
    """(registry entry, function name) of a layer's `estimator`: a registry name, a Bernoulli
    function's name (`BernoulliST` only), or the `Estimator` entry a task method receives.

    Raises:
      ValueError: an unknown name, a Bernoulli name given to `CategoricalST`, or an estimator
        a layer cannot run (a score-function estimator such as RLOO).
    """
    if isinstance(estimator, Estimator):
        entry = estimator
    else:
        entry, implied = estimators.lookup(estimator)
        if form == "categorical" and implied != "categorical":
            raise ValueError(
                f"{layer} got estimator {estimator!r} (a Bernoulli estimator: use "
                f"BernoulliST); expected one of {estimators.REGISTRY.names()}."
            )
    if entry.score_function:
        raise ValueError(
            f"{layer} cannot run {entry.name!r}: a score-function estimator's gradient is a "
            "surrogate over several samples that the loss builds (see rloo_surrogate), not a "
            "layer's backward pass; pick a straight-through estimator, or draw the samples "
            "with dst_jax.estimators.get(name) and build the surrogate in the loss."
        )
    return entry, entry.function(form).__name__


def options(backward_noise: bool) -> dict:
    # Options go to the estimator only when set, so estimators without them stay valid.
    return {"backward_noise": True} if backward_noise else {}


def temperatures(
    entry: Estimator,
    stored: Mapping[str, ArrayLike | None],
    call: Mapping[str, ArrayLike | None],
) -> Temperatures:
    """The `(tau_f, tau_b)` an estimator is called with: the layer's stored `tau`, `tau_f`,
    `tau_b`, then those given at call time in their place (see `Estimator.resolve_temperatures`:
    a temperature the estimator does not read is a ValueError naming the one it reads)."""
    base = entry.resolve_temperatures(
        tau=stored.get("tau"), tau_f=stored.get("tau_f"), tau_b=stored.get("tau_b")
    )
    if all(v is None for v in call.values()):
        return base
    return entry.resolve_temperatures(
        tau=call.get("tau"), tau_f=call.get("tau_f"), tau_b=call.get("tau_b"), base=base
    )
