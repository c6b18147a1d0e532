"""Stochastic binary network on Fashion-MNIST (DESIGN.md section 2, task `sbn`).

An MLP 784-200-200-10 whose two hidden layers are Bernoulli units: the pre-activation `a` is the
logit of the unit, and the estimator returns its {0, 1} sample (forward temperature tau_f) with a
surrogate gradient (backward temperature tau_b). The output layer is a softmax over 10 classes.

Metrics of an evaluation split:
- `acc_stoch`: accuracy of the predictive distribution averaged over `n_eval_samples`
  stochastic forward passes (the network as trained);
- `acc_det`: accuracy of the deterministic forward, each unit set to 1[a > 0];
- `loss`: cross-entropy of the stochastic forward, averaged over samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from dst_jax import estimators
from dst_jax.tasks import common
from dst_jax.tasks.base import Batch, Hparams, Metrics, PyTree, TaskBase


@dataclasses.dataclass(frozen=True)
class Config(common.SplitConfig):
    """Hyperparameters of the stochastic binary network (defaults: the project's protocol);
    the data split options are `common.SplitConfig`'s."""

    dataset: str = "fashion_mnist"
    hidden: tuple[int, ...] = (200, 200)
    n_classes: int = 10
    batch_size: int = 100
    n_eval_samples: int = 10  # stochastic forward passes averaged at evaluation

    def __post_init__(self) -> None:
        super().__post_init__()
        hidden = self.hidden
        if (
            not isinstance(hidden, tuple | list)
            or not hidden
            or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in hidden)
        ):
            raise ValueError(
                f"Config.hidden must be a non-empty tuple of positive ints (the widths of the "
                f"Bernoulli layers; without them estimators and temperatures have no effect), "
                f"got {hidden!r}; e.g. hidden=(200, 200)"
            )
        object.__setattr__(self, "hidden", tuple(hidden))
        if not (isinstance(self.n_classes, int) and self.n_classes >= 2):
            raise ValueError(f"Config.n_classes must be an int >= 2, got {self.n_classes!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"Config.batch_size must be an int >= 1, got {self.batch_size!r}")
        if not (isinstance(self.n_eval_samples, int) and self.n_eval_samples >= 1):
            raise ValueError(
                f"Config.n_eval_samples must be an int >= 1 (stochastic forward passes averaged "
                f"at evaluation), got {self.n_eval_samples!r}"
            )


@dataclasses.dataclass(frozen=True)
class SBNTask(TaskBase):
    """The `sbn` task: implements `dst_jax.tasks.base.Task` (see that module's conventions)."""

    config: Config = Config()

    name = "sbn"
    unit_form = "bernoulli"
    headline_metric = "acc_stoch"
    metric_directions = {"acc_stoch": "max", "acc_det": "max", "loss": "min", "acc": "max"}
    heatmap_metrics = ("test_acc_stoch", "test_acc_det")

    # -- model -------------------------------------------------------------------------------
    def init_params(self, key: jax.Array, data: Mapping[str, jax.Array]) -> PyTree:
        sizes = (data["train_x"].shape[-1], *self.config.hidden, self.config.n_classes)
        init = jax.nn.initializers.lecun_normal()
        keys = jax.random.split(key, len(sizes) - 1)
        return [
            {"w": init(k, (d_in, d_out), jnp.float32), "b": jnp.zeros((d_out,), jnp.float32)}
            for k, d_in, d_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
        ]

    def forward(
        self, params: PyTree, key: jax.Array | None, x_BxD: jax.Array, hp: Hparams
    ) -> jax.Array:
        """Class logits (B, 10). `key=None` gives the deterministic forward, h = 1[a > 0]."""
        sample = hp.sampler(self.unit_form)
        h_BxH = x_BxD
        for i, layer in enumerate(params[:-1]):
            a_BxH = h_BxH @ layer["w"] + layer["b"]
            if key is None:
                h_BxH = estimators.bernoulli_mode(a_BxH)
            else:
                h_BxH = sample(jax.random.fold_in(key, i), a_BxH)
        return h_BxH @ params[-1]["w"] + params[-1]["b"]

    def loss(
        self, params: PyTree, key: jax.Array, batch: Batch, hp: Hparams
    ) -> tuple[jax.Array, Metrics]:
        logits_BxC = self.forward(params, key, batch.x, hp)
        y = _labels(batch)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, y).mean()
        acc = (logits_BxC.argmax(-1) == y).mean()
        return loss, {"acc": acc}

    def evaluate(self, params: PyTree, key: jax.Array, batch: Batch, hp: Hparams) -> Metrics:
        cfg = self.config

        def slice_sums(k, x_ExD, y_E, w_E):
            # Samples one after another (a scan, not a vmap): the evaluation's memory is then
            # that of a single forward pass, which matters once a whole grid is vmapped over it.
            def one_sample(carry, sk):
                probs_ExC, ce_E = carry
                logits_ExC = self.forward(params, sk, x_ExD, hp)
                probs_ExC = probs_ExC + jax.nn.softmax(logits_ExC, -1)
                ce_E = ce_E + optax.softmax_cross_entropy_with_integer_labels(logits_ExC, y_E)
                return (probs_ExC, ce_E), None

            zeros = (jnp.zeros((x_ExD.shape[0], cfg.n_classes)), jnp.zeros((x_ExD.shape[0],)))
            sample_keys = jax.random.split(k, cfg.n_eval_samples)
            (probs_ExC, ce_E), _ = jax.lax.scan(one_sample, zeros, sample_keys)
            det_ExC = self.forward(params, None, x_ExD, hp)
            return {
                "stoch": jnp.sum(w_E * (probs_ExC.argmax(-1) == y_E)),
                "det": jnp.sum(w_E * (det_ExC.argmax(-1) == y_E)),
                "ce": jnp.sum(w_E * ce_E) / cfg.n_eval_samples,
            }

        n = batch.x.shape[0]
        sums = common.sliced_sums(slice_sums, key, batch.x, _labels(batch), cfg.eval_batch_size)
        return {
            "acc_stoch": sums["stoch"] / n,
            "acc_det": sums["det"] / n,
            "loss": sums["ce"] / n,
        }


def _labels(batch: Batch) -> jax.Array:
    if batch.y is None:
        raise ValueError("the sbn task is a classifier: its data need labels (<split>_y)")
    return batch.y


def make_task(config: Config | None = None) -> SBNTask:
    """Build the `sbn` task from its `Config` (defaults when None)."""
    return SBNTask(config if config is not None else Config())
