"""What a sweep trains: the grid axes and the training length, as plain data."""

from __future__ import annotations

import dataclasses

from dst_jax.tasks.base import ESTIMATOR_FAMILIES

# DESIGN.md section 2: the default temperature axis, used for both tau_f and tau_b.
DEFAULT_TAUS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)

# The estimator that gets the full (tau_f, tau_b) grid; every other tempered estimator sweeps one
# temperature over the `tau_f` axis.
PAIRED_ESTIMATOR = "decoupled_st"


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Grid axes and training length of one sweep.

    The grid for `decoupled_st` is tau_f x tau_b x lrs x seeds; a single-temperature estimator
    (softmax_ste, st_gumbel_softmax, identity_ste) sweeps `tau_f` x lrs x seeds and writes its tau
    into both tau_f and tau_b of the results; a task's untempered estimators (e.g. DLGN's plain
    softmax relaxation) run once per lr x seed with tau = 1.
    """

    estimators: tuple[str, ...] = ESTIMATOR_FAMILIES
    tau_f: tuple[float, ...] = DEFAULT_TAUS
    tau_b: tuple[float, ...] = DEFAULT_TAUS
    seeds: int = 3
    lrs: tuple[float, ...] = (1e-3,)
    epochs: float = 100.0
    max_steps: int | None = None  # cap on training steps (None: epochs decide)
    eval_every: int = 600  # steps between test-split evaluations (and curve points)
    chunk_size: int | None = None  # configs per compiled chunk (None: estimated from memory)
    checkpoint_every_s: float = 60.0  # mid-chunk state is saved at most this often

    def total_steps(self, n_train: int, batch_size: int) -> int:
        steps = int(round(self.epochs * (n_train // batch_size)))
        if self.max_steps is not None:
            steps = min(steps, self.max_steps)
        if steps < 1:
            raise ValueError(
                f"the sweep would train for {steps} steps (epochs={self.epochs}, "
                f"max_steps={self.max_steps}); give a positive --epochs or --max-steps"
            )
        return steps
