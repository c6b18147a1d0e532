"""Categorical autoencoder on MNIST: the paper's second task (DESIGN.md section 2).

Model: encoder 784-512-256-(4 x 8 logits), ReLU; 4 categorical latents of 8 classes through the
estimator; decoder (4 x 8 one-hot)-256-512-784; loss per image = summed pixel BCE + beta *
sum over latents of KL(softmax(logits) || uniform(8)), beta = 1 (`--set beta=0` for a plain
autoencoder). Headline: loss (min; selected on validation, reported on test); heatmaps of
test loss and code perplexity.

Paper-scale protocol (every registered estimator: decoupled_st and decoupled_reinmax over the
10 x 10 (tau_f, tau_b) grid, the eight single-temperature estimators over the 10 temperatures,
zgr and rloo (no temperature) once; 3 seeds; Adam lr 5e-4; batch 100; 100 epochs = 54,000 steps
per run (the training set less its validation split); validation every 2 epochs, the 10,000
test images at the end; 846 runs;
the paper's four estimators alone: 390 runs):

    python -m experiments.run cae --out runs/cae

Smoke run (2 x 2 grids, 2 temperatures, 1 seed, 100 steps on a 2,000-image subset, 500 test
images; 26 runs):

    python -m experiments.run cae --out runs/cae-smoke --smoke

Cost: smoke, measured on the 2-core development CPU (shared, load average about 8) with the
paper's four estimators: 118 s wall, 68 s CPU, most of it the four XLA compiles (one per
estimator); each further estimator adds its compile. Paper scale: not yet measured;
see docs/RESULTS.md for measured wall times (machine named there).
"""

from __future__ import annotations

from dst_jax.sweep.config import SweepConfig
from dst_jax.tasks.cae import Config

LR = 5e-4


def get_config(smoke: bool = False) -> tuple[Config, SweepConfig]:
    if smoke:
        return (
            Config(train_subset=2000, test_subset=500),
            SweepConfig(
                tau_f=(0.5, 2.0),
                tau_b=(0.5, 2.0),
                seeds=1,
                lrs=(LR,),
                epochs=10,
                max_steps=100,
                eval_every=50,
            ),
        )
    return Config(), SweepConfig(seeds=3, lrs=(LR,), epochs=100, eval_every=1200)
