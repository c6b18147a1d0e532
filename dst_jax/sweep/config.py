"""What a sweep trains: the grid axes and the training length, as plain data."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dst_jax.estimators import DEFAULT_TAUS

if TYPE_CHECKING:
    import jax

PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
TEST_AT = ("end", "every")  # the first is the default everywhere (config, engine, halving)
# `optimizer="task"`: the task's own `make_optimizer(learning_rate)` builds it.
TASK_OPTIMIZER = "task"
# The optimizer fields of `SweepConfig`, with their defaults (Adam, nothing added).
OPTIMIZER_FIELDS = ("optimizer", "momentum", "weight_decay", "clip_norm")


def _optax_optimizer(name: str) -> Callable[..., Any]:
    """optax's optimizer `name` (any optax function taking a `learning_rate`), or ValueError."""
    import optax

    fn = getattr(optax, name, None) if name.isidentifier() and not name.startswith("_") else None
    if not callable(fn) or "learning_rate" not in _params(fn):
        raise ValueError(
            f"optimizer {name!r} is not an optax optimizer taking a learning_rate; give one of "
            f"optax's names, e.g. adam, adamw, sgd, radam, lion, or {TASK_OPTIMIZER!r} for the "
            "task's make_optimizer"
        )
    return fn


def _params(fn: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def build_optimizer(
    name: str,
    learning_rate: Any,
    *,
    momentum: float | None = None,
    weight_decay: float | None = None,
    clip_norm: float | None = None,
    task_factory: Callable[[Any], Any] | None = None,
):
    """The optax.GradientTransformation of a sweep's optimizer fields.

    `name` is an optax optimizer called with `learning_rate` (a schedule or an array: the
    learning rate is a vmapped grid axis), and `momentum` where given (sgd's, e.g.);
    `weight_decay` goes to the optimizer's own `weight_decay` argument (adamw, lion, ...) or,
    for one without it, is added to the gradient before it (`optax.add_decayed_weights`, an L2
    penalty); `clip_norm` chains `optax.clip_by_global_norm` before everything. Unset fields
    keep optax's defaults, so the defaults give exactly `optax.adam(learning_rate)`.
    `name == "task"` calls `task_factory(learning_rate)` instead.
    """
    import optax

    if name == TASK_OPTIMIZER:
        if task_factory is None:
            raise ValueError(
                "optimizer 'task' needs a task with make_optimizer(learning_rate); this task "
                "has none: give an optax name (--optimizer adam)"
            )
        opt = task_factory(learning_rate)
    else:
        fn = _optax_optimizer(name)
        kwargs: dict[str, Any] = {}
        if momentum is not None:
            kwargs["momentum"] = momentum
        own_decay = weight_decay is not None and "weight_decay" in _params(fn)
        if own_decay:
            kwargs["weight_decay"] = weight_decay
        opt = fn(learning_rate=learning_rate, **kwargs)
        if weight_decay is not None and not own_decay:
            opt = optax.chain(optax.add_decayed_weights(weight_decay), opt)
    if clip_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
    return opt


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
    test_at: str = TEST_AT[0]
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
    # The optimizer (`build_optimizer`): an optax optimizer's name ("adam", "adamw", "sgd",
    # "radam", "lion", ...; or "task": the task's `make_optimizer(learning_rate)`), with
    # sgd-style `momentum`, `weight_decay` and gradient clipping at `clip_norm` (global norm);
    # None keeps optax's default. The learning rate is the `lrs` grid axis.
    optimizer: str = "adam"
    momentum: float | None = None
    weight_decay: float | None = None
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        if self.select_on not in ("val", "test"):
            raise ValueError(f"select_on must be 'val' or 'test', got {self.select_on!r}")
        if self.test_at not in TEST_AT:
            raise ValueError(f"test_at must be 'every' or 'end', got {self.test_at!r}")
        if self.optimizer != TASK_OPTIMIZER:
            fn = _optax_optimizer(self.optimizer)
            if self.momentum is not None and "momentum" not in _params(fn):
                raise ValueError(
                    f"optimizer {self.optimizer!r} takes no momentum; leave momentum unset or "
                    "choose one that does (sgd)"
                )
        for name in ("momentum", "weight_decay", "clip_norm"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and v >= 0):
                raise ValueError(f"{name} must be a number >= 0 (or unset), got {v!r}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be positive, got {self.clip_norm!r}")
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

    @property
    def optimizer_options(self) -> dict[str, Any]:
        """The optimizer fields as `build_optimizer`'s arguments (hashable values)."""
        return {name: getattr(self, name) for name in OPTIMIZER_FIELDS}

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


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """How the engine trains a list of runs: length, evaluation, chunking, checkpoint, progress
    and the program's options (one record for `train_runs`, `halving.train_halving` and
    `run_chunk`).

    `checkpoint` saves finished chunks and mid-chunk state (at most every
    `checkpoint_every_s`), so a rerun with the same options continues where the last stopped;
    `tag` keeps the chunk files of separate calls of one sweep apart; `test_at` ("end": the test
    split only after the last step; "every") and `prng` are `make_fns`'s; `optimizer` is
    `SweepConfig.optimizer_options` as sorted items (default: Adam). `callback(estimator,
    chunk_index, segment_index)` runs after every segment (and its checkpoint); an exception
    raised there interrupts the sweep cleanly.
    """

    steps: int
    eval_every: int
    chunk_size: int | None = None
    checkpoint: Any = None  # a `dst_jax.sweep.checkpoint.Checkpoint` (it imports this module)
    checkpoint_every_s: float = 60.0
    devices: Sequence[jax.Device] | None = None
    progress: bool = False
    callback: Callable[[str, int, int], None] | None = None
    tag: str = "grid"
    test_at: str = TEST_AT[0]
    prng: str = "threefry2x32"
    optimizer: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.steps < 1 or self.eval_every < 1:
            raise ValueError(
                f"steps ({self.steps}) and eval_every ({self.eval_every}) must be positive"
            )
        object.__setattr__(self, "optimizer", tuple(sorted(dict(self.optimizer).items())))

    @classmethod
    def of_sweep(cls, sweep: SweepConfig, **fields: Any) -> EngineOptions:
        """The options a `SweepConfig` sets (chunking, checkpoint interval, test split, PRNG,
        optimizer); `fields` add the rest (steps, eval_every, checkpoint, ...)."""
        own = {
            "chunk_size": sweep.chunk_size,
            "checkpoint_every_s": sweep.checkpoint_every_s,
            "test_at": sweep.test_at,
            "prng": sweep.prng,
            "optimizer": tuple(sweep.optimizer_options.items()),
        }
        return cls(**{**own, **fields})

    def program_options(self) -> dict[str, Any]:
        """`make_fns`'s keyword arguments."""
        return {
            "total_steps": self.steps,
            "test_at": self.test_at,
            "prng": self.prng,
            "optimizer_options": self.optimizer,
        }


def engine_options(options: EngineOptions | None, fields: dict[str, Any]) -> EngineOptions:
    """`options`, or one built from keyword arguments (the engine's earlier signature)."""
    if options is None:
        return EngineOptions(**fields)
    return dataclasses.replace(options, **fields) if fields else options
