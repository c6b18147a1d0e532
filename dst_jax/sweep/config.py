"""What a sweep trains: the grid axes and the training length, as plain data."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from dst_jax.estimators import DEFAULT_TAUS

PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Grid axes and training length of one sweep.

    Every estimator that reads two temperatures (its registry entry says so) gets the grid
    tau_f x tau_b x lrs x seeds; a single-temperature estimator sweeps the `tau_f` values
    x lrs x seeds and writes each value into the fields its entry names (both for Softmax STE,
    tau_b with tau_f = 1 for ReinMax); an untempered one (e.g. DLGN's softmax relaxation) runs
    once per lr x seed with both fields 1.0. `estimators=None` trains every estimator the task
    accepts. `axes` gives the values of the other hyperparameters of a run (`grid.Run`: the
    schedules), each a grid axis; a hyperparameter not named keeps its default.
    """

    estimators: tuple[str, ...] | None = None
    tau_f: tuple[float, ...] = DEFAULT_TAUS
    tau_b: tuple[float, ...] = DEFAULT_TAUS
    seeds: int = 3
    lrs: tuple[float, ...] = (1e-3,)
    axes: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    # Temperature axes of specific estimators, replacing (tau_f, tau_b) for them: e.g. a smaller
    # grid for a costly estimator, {"decoupled_reinmax": ((0.1, 0.5, 2.0), (0.3, 1.0, 3.0))}
    # (a single-temperature estimator reads the first axis).
    estimator_taus: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = dataclasses.field(
        default_factory=dict
    )
    epochs: float = 100.0
    max_steps: int | None = None  # cap on training steps (None: epochs decide)
    eval_every: int = 600  # steps between evaluations (and curve points)
    chunk_size: int | None = None  # configs per compiled chunk (None: estimated from memory)
    checkpoint_every_s: float = 60.0  # mid-chunk state is saved at most this often
    # Model selection: the split whose headline metric picks the best config ("val", or "test"
    # to compare with papers that select on test); the test split is evaluated at every
    # evaluation ("every") or only after the last step ("end").
    select_on: str = "val"
    test_at: str = "end"
    # Rounds of adaptive refinement: where an estimator's best cell lies on the edge of a
    # temperature axis, the axis is extended beyond it and the new cells trained.
    refine: int = 0
    # Successive halving (`dst_jax.sweep.halving`): with `halving` = ETA >= 2 every cell trains
    # to the first rung, and at each rung only the best ceil(n / ETA) cells of each estimator
    # continue; `rungs` is their number (None: as many as keep the first rung at least one
    # evaluation interval long). 0 trains every cell to the end.
    halving: int = 0
    rungs: int | None = None
    # JAX's PRNG implementation for every random stream of a run (a different one changes the
    # streams): "threefry2x32" (JAX's default), "rbg" or "unsafe_rbg" (cheaper on some
    # platforms).
    prng: str = "threefry2x32"

    def __post_init__(self) -> None:
        if self.select_on not in ("val", "test"):
            raise ValueError(f"select_on must be 'val' or 'test', got {self.select_on!r}")
        if self.test_at not in ("every", "end"):
            raise ValueError(f"test_at must be 'every' or 'end', got {self.test_at!r}")
        if self.prng not in PRNG_IMPLS:
            raise ValueError(f"prng must be one of {PRNG_IMPLS}, got {self.prng!r}")
        if not (isinstance(self.refine, int) and self.refine >= 0):
            raise ValueError(f"refine must be an int >= 0 (rounds), got {self.refine!r}")
        if not (isinstance(self.halving, int) and (self.halving == 0 or self.halving >= 2)):
            raise ValueError(f"halving must be 0 (off) or an int ETA >= 2, got {self.halving!r}")
        if self.rungs is not None and not (isinstance(self.rungs, int) and self.rungs >= 2):
            raise ValueError(f"rungs must be an int >= 2, got {self.rungs!r}")
        if self.rungs is not None and not self.halving:
            raise ValueError("rungs needs halving: give --halving ETA too")
        object.__setattr__(self, "axes", {k: tuple(v) for k, v in dict(self.axes).items()})
        taus = {k: (tuple(f), tuple(b)) for k, (f, b) in dict(self.estimator_taus).items()}
        object.__setattr__(self, "estimator_taus", taus)

    def total_steps(self, n_train: int, batch_size: int) -> int:
        if n_train < batch_size:
            raise ValueError(
                f"batch_size {batch_size:,} is larger than the training split ({n_train:,} "
                "examples, after the validation split): lower batch_size (--set batch_size=N) "
                "or train on more examples (train_subset)"
            )
        steps = int(round(self.epochs * (n_train // batch_size)))
        if self.max_steps is not None:
            steps = min(steps, self.max_steps)
        if steps < 1:
            raise ValueError(
                f"the sweep would train for {steps} steps (epochs={self.epochs}, "
                f"max_steps={self.max_steps}); give a positive --epochs or --max-steps"
            )
        return steps
