"""Sweep your own model: a small Flax categorical VAE on MNIST, trained without labels.

The model is plain Flax; the only dst_jax-specific part is the `Task` below, which tells the
sweep engine how to initialise, train and evaluate ONE configuration. The engine then trains the
whole (estimator, tau_f, tau_b, seed) grid as one compiled program and writes results.json,
summary.md, the (tau_f, tau_b) heatmaps and the learning curves:

    python examples/own_model.py --smoke --out /tmp/own_model       # tiny: about a minute on CPU
    python examples/own_model.py --out /tmp/own_model                # the full grid (long on CPU)

`make_task()` builds the task with no arguments, so the command line can load it by name too.
Data: MNIST from `--data-dir` or $DST_DATA_DIR (downloaded and verified where missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dst_jax.runner import run_sweep
from dst_jax.sweep import SweepConfig
from dst_jax.tasks import Batch, Hparams, TaskBase, common

# --------------------------------------------------------------------------------------------
# The model, as one would write it without dst_jax: the sampler of the discrete latent code is
# an argument, so the same module runs with any estimator (or with an argmax at test time).


class CategoricalVAE(nn.Module):
    """x (B, D) in [0, 1] -> (pixel logits (B, D), code logits (B, L, C)); L latents of C
    classes, sampled by `sample(logits_BxLxC) -> one-hot (B, L, C)`."""

    latents: int = 8
    classes: int = 4
    hidden: int = 256

    @nn.compact
    def __call__(self, x_BxD, sample):
        h_BxH = nn.relu(nn.Dense(self.hidden)(x_BxD))
        logits_BxLxC = nn.Dense(self.latents * self.classes)(h_BxH).reshape(
            -1, self.latents, self.classes
        )
        z_BxLxC = sample(logits_BxLxC)
        h_BxH = nn.relu(nn.Dense(self.hidden)(z_BxLxC.reshape(z_BxLxC.shape[0], -1)))
        return nn.Dense(x_BxD.shape[-1])(h_BxH), logits_BxLxC


def negative_elbo(pixels_BxD, logits_BxLxC, x_BxD):
    """Per-image (BCE, KL(q || uniform)): the categorical VAE's loss is their sum."""
    bce_B = optax.sigmoid_binary_cross_entropy(pixels_BxD, x_BxD).sum(-1)
    logq = jax.nn.log_softmax(logits_BxLxC)
    kl_B = (jnp.exp(logq) * logq).sum((-2, -1)) + logits_BxLxC.shape[1] * math.log(
        logits_BxLxC.shape[2]
    )
    return bce_B, kl_B


# --------------------------------------------------------------------------------------------
# The task: what the sweep engine needs to train and evaluate one configuration.


@dataclasses.dataclass(frozen=True)
class Config(common.SplitConfig):
    """The model's and the data's settings (the split settings are `common.SplitConfig`'s:
    validation fraction, subsets)."""

    dataset: str = "mnist"
    latents: int = 8
    classes: int = 4
    hidden: int = 256
    batch_size: int = 100  # read by the engine


@dataclasses.dataclass(frozen=True)
class VAETask(TaskBase):
    """`loss` and `evaluate` receive (params, key, batch, hp): `batch.x` the images (`batch.y`
    is None: `reads_labels = False` loads no labels), `hp.sampler("categorical")` the swept
    estimator at this step's temperatures."""

    config: Config = Config()

    name = "own_vae"
    unit_form = "categorical"  # the kind of stochastic unit the estimators are offered for
    reads_labels = False
    headline_metric = "loss"  # selects the best config on validation, reported on test
    metric_directions = {"loss": "min", "bce": "min", "kl": "min"}
    heatmap_metrics = ("test_loss",)

    @property
    def model(self) -> CategoricalVAE:
        cfg = self.config
        return CategoricalVAE(cfg.latents, cfg.classes, cfg.hidden)

    def init_params(self, key, data):
        argmax = lambda l: jax.nn.one_hot(l.argmax(-1), l.shape[-1])  # noqa: E731
        return self.model.init(key, data["train_x"][:1], argmax)["params"]

    def _terms(self, params, key, batch: Batch, hp: Hparams):
        sample = hp.sampler("categorical")
        pixels, logits = self.model.apply(
            {"params": params}, batch.x, lambda logits: sample(key, logits)
        )
        return negative_elbo(pixels, logits, batch.x)

    def loss(self, params, key, batch: Batch, hp: Hparams):
        bce_B, kl_B = self._terms(params, key, batch, hp)
        # Reported as train_bce, train_kl beside the engine's train_loss.
        return jnp.mean(bce_B + kl_B), {"bce": bce_B.mean(), "kl": kl_B.mean()}

    def evaluate(self, params, key, batch: Batch, hp: Hparams):
        # The whole split in one pass: fine at MNIST's size (`common.sliced_sums` evaluates in
        # slices where memory is short).
        bce_B, kl_B = self._terms(params, key, batch, hp)
        return {"loss": jnp.mean(bce_B + kl_B), "bce": bce_B.mean(), "kl": kl_B.mean()}


def make_task(smoke: bool = False) -> VAETask:
    """The task (a tiny data subset with `smoke`)."""
    if smoke:
        return VAETask(Config(train_subset=1000, test_subset=200, hidden=64))
    return VAETask()


def sweep_config(smoke: bool = False) -> SweepConfig:
    # Any optax optimizer by name: here SGD with momentum 0.9 and gradient clipping,
    # recorded in results.json. The learning rate stays a grid axis (`lrs`).
    optimizer = dict(optimizer="sgd", momentum=0.9, clip_norm=5.0)
    if smoke:
        return SweepConfig(
            estimators=("decoupled_st", "st_gumbel_softmax"),
            tau_f=(0.5, 2.0),
            tau_b=(0.5, 2.0),
            seeds=1,
            lrs=(0.05,),
            max_steps=40,
            eval_every=20,
            **optimizer,
        )
    return SweepConfig(
        estimators=("decoupled_st", "softmax_ste", "st_gumbel_softmax", "reinmax"),
        seeds=3,
        lrs=(0.05,),
        epochs=20,
        eval_every=1000,
        **optimizer,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--data-dir", default=None, help="data folder (default: $DST_DATA_DIR)")
    parser.add_argument("--smoke", action="store_true", help="tiny data and grid")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    run_sweep(
        make_task(args.smoke),
        sweep_config(args.smoke),
        args.out,
        args.data_dir,
        progress=not args.no_progress,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
