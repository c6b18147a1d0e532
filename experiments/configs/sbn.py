"""Stochastic binary network on Fashion-MNIST: the paper's first task (DESIGN.md section 2).

Paper-scale protocol (4 estimators; decoupled_st over the 10 x 10 (tau_f, tau_b) grid, the
single-temperature estimators over the 10 temperatures; 3 seeds; Adam lr 1e-3; batch 100;
100 epochs = 60,000 steps per run; 390 runs):

    python -m experiments.run sbn --out runs/sbn

Smoke run (tiny grid, 180 steps on a 2,000-image subset less its validation split; the
README's main job):

    python -m experiments.run sbn --out runs/sbn-smoke --smoke

Cost, measured on the 2-core development CPU (jax 0.10.2, shared with other jobs): the smoke run
82 s wall (mostly the four compiles); a 6 x 6 grid + 3 x 6 temperatures x 2 seeds x 800 steps
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
