"""Stochastic binary network on Fashion-MNIST: the paper's first task (DESIGN.md section 2).

Paper-scale protocol (every registered estimator: decoupled_st and decoupled_reinmax over the
10 x 10 (tau_f, tau_b) grid, the eight single-temperature estimators over the 10 temperatures,
zgr once; 3 seeds; Adam lr 1e-3; batch 100; 100 epochs = 54,000 steps per run on the training
set less its validation split; 843 runs; the paper's four estimators alone, 390 runs, with
`--estimators decoupled_st,softmax_ste,st_gumbel_softmax,identity_ste`):

    python -m experiments.run sbn --out runs/sbn

Smoke run (2 x 2 grids, 2 temperatures, 1 seed, 25 runs; 180 steps on a 2,000-image subset less
its validation split; the README's main job):

    python -m experiments.run sbn --out runs/sbn-smoke --smoke

Cost, measured on the 2-core development CPU (jax 0.10.2, shared with other jobs): the smoke run
82 s wall with the paper's four estimators (mostly their four compiles), 184 s with all
seven under load; a 6 x 6 grid + 3 x 6 temperatures x 2 seeds x 800 steps
953 s (docs/RESULTS.md). The paper-scale protocol has not been timed: it is meant for a GPU.
"""

from __future__ import annotations

from dst_jax.sweep.config import SweepConfig
from dst_jax.tasks.sbn import Config


def get_config(smoke: bool = False) -> tuple[Config, SweepConfig]:
    if smoke:
        return (
            Config(train_subset=2000, test_subset=1000, n_eval_samples=4),
            SweepConfig(
                tau_f=(0.5, 2.0),
                tau_b=(0.5, 2.0),
                seeds=1,
                lrs=(1e-3,),
                epochs=10,
                max_steps=200,
                eval_every=100,
            ),
        )
    return Config(), SweepConfig(seeds=3, lrs=(1e-3,), epochs=100, eval_every=3000)
