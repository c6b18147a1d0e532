"""Stochastic binary network on Fashion-MNIST (DESIGN.md section 2, task `sbn`).

An MLP 784-200-200-10 whose two hidden layers are Bernoulli units: the pre-activation `a` is the
logit of the unit, and the estimator returns its {0, 1} sample (forward temperature tau_f) with a
surrogate gradient (backward temperature tau_b). The output layer is a softmax over 10 classes.

Evaluation on the test split:
- `test_acc_stoch`: accuracy of the predictive distribution averaged over `n_eval_samples`
  stochastic forward passes (the network as trained);
- `test_acc_det`: accuracy of the deterministic forward, each unit set to 1[a > 0];
- `test_loss`: cross-entropy of the stochastic forward, averaged over samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from dst_jax import estimators
from dst_jax.tasks.base import ESTIMATOR_FAMILIES, Metrics, PyTree


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str = "fashion_mnist"
    hidden: tuple[int, ...] = (200, 200)
    n_classes: int = 10
    batch_size: int = 100
    n_eval_samples: int = 10  # stochastic forward passes averaged at evaluation
    eval_batch_size: int = 500  # test examples per evaluation slice (bounds grid memory)
    train_subset: int | None = None  # first k training examples only (smoke runs, tests)
    test_subset: int | None = None


def _bernoulli_estimator(family: str):
    return estimators.get(estimators.bernoulli_name(family))


class SBNTask:
    name = "sbn"
    headline_metric = "test_acc_stoch"
    metric_directions = {
        "test_acc_stoch": "max",
        "test_acc_det": "max",
        "test_loss": "min",
        "train_loss": "min",
    }
    heatmap_metrics = ("test_acc_stoch", "test_acc_det")
    estimators = ESTIMATOR_FAMILIES
    untempered_estimators = ()

    def __init__(self, config: Config):
        self.config = config

    # -- data --------------------------------------------------------------------------------
    def load_data(self, data_dir: str | None) -> tuple[dict[str, jax.Array], dict[str, Any]]:
        from dst_jax.data import pipeline

        cfg = self.config
        train_x, train_y, info = pipeline.device_split(cfg.dataset, "train", data_dir, "unit")
        test_x, test_y, _ = pipeline.device_split(cfg.dataset, "test", data_dir, "unit")
        if cfg.train_subset is not None:
            train_x, train_y = train_x[: cfg.train_subset], train_y[: cfg.train_subset]
        if cfg.test_subset is not None:
            test_x, test_y = test_x[: cfg.test_subset], test_y[: cfg.test_subset]
        data = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
        return data, dict(info)

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
        self,
        params: PyTree,
        key: jax.Array | None,
        x_BxD: jax.Array,
        estimator: str,
        tau_f: jax.Array,
        tau_b: jax.Array,
    ) -> jax.Array:
        """Class logits (B, 10). `key=None` gives the deterministic forward, h = 1[a > 0]."""
        h_BxH = x_BxD
        for i, layer in enumerate(params[:-1]):
            a_BxH = h_BxH @ layer["w"] + layer["b"]
            if key is None:
                h_BxH = estimators.bernoulli_mode(a_BxH)
            else:
                sample = _bernoulli_estimator(estimator)
                h_BxH = sample(jax.random.fold_in(key, i), a_BxH, tau_f, tau_b)
        return h_BxH @ params[-1]["w"] + params[-1]["b"]

    def loss(self, params, key, x, y, data, estimator, tau_f, tau_b) -> tuple[jax.Array, Metrics]:
        logits_BxC = self.forward(params, key, x, estimator, tau_f, tau_b)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, y).mean()
        acc = (logits_BxC.argmax(-1) == y).mean()
        return loss, {"acc": acc}

    def evaluate(self, params, key, data, estimator, tau_f, tau_b) -> Metrics:
        cfg = self.config
        x_NxD, y_N = data["test_x"], data["test_y"]
        n = x_NxD.shape[0]
        eb = min(cfg.eval_batch_size, n)
        if n % eb:
            raise ValueError(
                f"the test split ({n} examples) must be a multiple of eval_batch_size ({eb})"
            )
        xs = x_NxD.reshape(n // eb, eb, -1)
        ys = y_N.reshape(n // eb, eb)
        keys = jax.random.split(key, n // eb)

        def one_slice(args):
            x, y, k = args

            # Samples one after another (a scan, not a vmap): the evaluation's memory is then
            # that of a single forward pass, which matters once a whole grid is vmapped over it.
            def one_sample(carry, sk):
                probs_BxC, ce_B = carry
                logits_BxC = self.forward(params, sk, x, estimator, tau_f, tau_b)
                probs_BxC = probs_BxC + jax.nn.softmax(logits_BxC, -1)
                ce_B = ce_B + optax.softmax_cross_entropy_with_integer_labels(logits_BxC, y)
                return (probs_BxC, ce_B), None

            zeros = (jnp.zeros((x.shape[0], cfg.n_classes)), jnp.zeros((x.shape[0],)))
            sample_keys = jax.random.split(k, cfg.n_eval_samples)
            (probs_BxC, ce_B), _ = jax.lax.scan(one_sample, zeros, sample_keys)
            det = self.forward(params, None, x, estimator, tau_f, tau_b)
            return (
                (probs_BxC.argmax(-1) == y).sum(),
                (det.argmax(-1) == y).sum(),
                ce_B.sum() / cfg.n_eval_samples,
            )

        correct_stoch, correct_det, ce_sum = jax.lax.map(one_slice, (xs, ys, keys))
        return {
            "test_acc_stoch": correct_stoch.sum() / n,
            "test_acc_det": correct_det.sum() / n,
            "test_loss": ce_sum.sum() / n,
        }

    def figures(self, out_dir, results, best_params, data) -> list[str]:
        return []


def make_task(config: Config) -> SBNTask:
    return SBNTask(config)
