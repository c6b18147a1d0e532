"""Differentiable logic gate network on CIFAR-10: the paper's third task (DESIGN.md section 2).

Inputs: CIFAR-10 (the JPEG q75 copy of ../shared/data unless --data-dir points elsewhere), every
channel thresholded at 1/4, 2/4, 3/4 -> 9,216 binary inputs.

Paper-scale protocol (difflogic "small": 4 logic layers x 12,000 neurons, GroupSum tau = 100;
Adam lr 0.01, batch 100; decoupled_st and decoupled_reinmax over the 10 x 10 (tau_f, tau_b)
grid, the eight single-temperature estimators over the 10 temperatures, zgr once, plus
difflogic's softmax relaxation as a reference row; 1 seed; 100 epochs = 45,000 steps per run on
the training set less its validation split; 282 runs; the paper's four estimators and the
relaxation: 131 runs):

    python -m experiments.run dlgn --out runs/dlgn

Smoke run (2 layers x 4,800 neurons on a 2,000-image subset, 2 x 2 grids, 100 steps; 26 runs):

    python -m experiments.run dlgn --out runs/dlgn-smoke --smoke

Cost, measured on the 2-core development CPU (shared, load ~3): the smoke run with the paper's
four estimators and the relaxation took 47 s wall (19 s compiling, 23 s training 11 runs x 100
steps). One paper-scale model trains at about
10 steps/s there (decoupled_st, batch 100), so the paper-scale grid needs a GPU; see
docs/RESULTS.md for measured wall times (machine named there).
"""

from __future__ import annotations

from dst_jax.sweep.config import SweepConfig
from dst_jax.tasks.dlgn import Config


def get_config(smoke: bool = False) -> tuple[Config, SweepConfig]:
    if smoke:
        return (
            Config(layers=2, width=4800, train_subset=2000, test_subset=1000),
            SweepConfig(
                tau_f=(0.5, 2.0),
                tau_b=(0.5, 2.0),
                seeds=1,
                lrs=(0.01,),
                epochs=10,
                max_steps=100,
                eval_every=50,
            ),
        )
    return Config(), SweepConfig(seeds=1, lrs=(0.01,), epochs=100, eval_every=2500)
