"""The grid: which runs a sweep trains, and how they are cut into equal-sized chunks.

The estimator registry (`dst_jax.estimators.REGISTRY`) decides each estimator's axes: a 2-D
(tau_f, tau_b) grid for estimators that read both temperatures, one axis for single-temperature
estimators, a single point for untempered ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from typing import Any

import numpy as np

from dst_jax import estimators as estimator_lib
from dst_jax.sweep import schedules
from dst_jax.sweep.config import SweepConfig


def _hparam(default, flag: str, help: str, parse=float, choices: tuple[str, ...] = ()):
    """A hyperparameter of a run beyond the main axes: its default, command-line flag, help,
    how to read one value (`parse`) and, for a named choice, the choices (encoded as their
    index in the compiled program). Each becomes a grid axis (`SweepConfig.axes`)."""
    meta = {"flag": flag, "help": help, "parse": parse, "choices": choices}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Run:
    """One configuration: an estimator and its hyperparameters, declared here once.

    `tau_f`, `tau_b`, `seed` and `lr` come from the sweep's main axes (`SweepConfig`); every
    other field is a hyperparameter with its own grid axis and flag (see `_hparam`): the grid,
    the results' keys and the command line are derived from these fields.
    """

    estimator: str
    tau_f: float
    tau_b: float
    seed: int
    lr: float
    lr_schedule: str = _hparam(
        "constant", "--lr-schedule", "learning-rate schedule", str, schedules.LR_SCHEDULES
    )
    tau_schedule: str = _hparam(
        "constant",
        "--tau-schedule",
        "temperature schedule from the grid value to --tau-f-final / --tau-b-final",
        str,
        schedules.TAU_SCHEDULES,
    )
    tau_f_final: float | None = _hparam(
        None, "--tau-f-final", "final forward temperature of a schedule (default: tau_f)"
    )
    tau_b_final: float | None = _hparam(
        None, "--tau-b-final", "final backward temperature of a schedule (default: tau_b)"
    )


HPARAMS = tuple(f for f in dataclasses.fields(Run) if f.metadata)


def accepted_estimators(task) -> tuple[str, ...]:
    """Registered estimators `task` can train: every sampling one, relaxations if the task
    accepts them, and score-function ones (RLOO) if it accepts those (`accepts_score_function`,
    False when the task does not say)."""
    score = getattr(task, "accepts_score_function", False)
    return tuple(
        e.name
        for e in estimator_lib.REGISTRY
        if (e.discrete or task.accepts_relaxation) and (score or not e.score_function)
    )


def temperature_pairs(entry: estimator_lib.Estimator, sweep: SweepConfig) -> list[tuple]:
    """The (tau_f, tau_b) cells of one estimator, from its registry entry and the sweep's axes
    (its own axes where `sweep.estimator_taus` names it)."""
    tau_f, tau_b = sweep.estimator_taus.get(entry.name, (sweep.tau_f, sweep.tau_b))
    if entry.n_temperatures == 2:
        return list(itertools.product(tau_f, tau_b))
    if entry.n_temperatures == 1:
        return list(dict.fromkeys(entry.temperatures_of(t) for t in tau_f))
    return [(1.0, 1.0)]


def expand(sweep: SweepConfig, task) -> list[Run]:
    """All runs of a sweep, grouped by estimator, in a fixed order (resume relies on it)."""
    accepted = accepted_estimators(task)
    names = sweep.estimators if sweep.estimators is not None else accepted
    if not names:
        raise ValueError(
            "no estimator to train: name at least one (e.g. --estimators decoupled_st)"
        )
    names = _unique("--estimators", names)
    sweep = dataclasses.replace(
        sweep,
        tau_f=_unique("--tau-f", sweep.tau_f),
        tau_b=_unique("--tau-b", sweep.tau_b),
        lrs=_unique("--lr", sweep.lrs),
    )
    unknown = [e for e in names if e not in accepted]
    stray = sorted(set(sweep.estimator_taus) - set(names))
    if stray:
        raise ValueError(f"temperature axes given for {stray}, which the sweep does not train")
    for name, (f, b) in sweep.estimator_taus.items():
        if not f or (not b and estimator_lib.REGISTRY[name].n_temperatures == 2):
            raise ValueError(f"the temperature axes given for {name} are empty")
        given: dict[str, Any] = {f"temperatures of {name}": np.array([*f, *b])}
        estimator_lib.check_temperatures(**given)
    if unknown:
        raise ValueError(
            f"estimator(s) {', '.join(unknown)} not available for the {task.name} task; "
            f"choose from {', '.join(accepted)}"
        )
    for name, values in (("tau_f", sweep.tau_f), ("tau_b", sweep.tau_b), ("lr", sweep.lrs)):
        bad = [v for v in values if not (math.isfinite(v) and v > 0)]
        if bad or not values:
            raise ValueError(
                f"--{name.replace('_', '-')} needs positive finite values, got {values}"
            )
    # Values are used as float32 on the device: refuse what does not survive the conversion.
    lost = [v for v in sweep.lrs if not (np.isfinite(np.float32(v)) and np.float32(v) > 0)]
    if lost:
        raise ValueError(f"--lr {lost} becomes 0 or inf in float32; use a value in [1e-37, 1e38]")
    if sweep.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {sweep.seeds}")
    estimator_lib.check_temperatures(tau_f=np.array(sweep.tau_f), tau_b=np.array(sweep.tau_b))

    axes = hparam_axes(sweep)
    runs = []
    for name in names:
        entry = estimator_lib.REGISTRY[name]
        pairs = temperature_pairs(entry, sweep)
        for (tf, tb), lr, extra, seed in itertools.product(
            pairs, sweep.lrs, itertools.product(*axes.values()), range(sweep.seeds)
        ):
            hp = dict(zip(axes, extra, strict=True))
            hp["tau_f_final"], hp["tau_b_final"] = _finals(entry, hp)
            runs.append(Run(name, float(tf), float(tb), int(seed), float(lr), **hp))
    # An axis an estimator does not read (a backward final temperature for a single-temperature
    # estimator, any final for an untempered one) repeats its runs exactly; a repeat would be
    # counted as another seed, so each run is kept once, in order.
    return list(dict.fromkeys(runs))


def _unique(flag: str, values) -> tuple:
    """`values` without repeats; a repeat would train identical runs that summaries would count
    as independent seeds, so it is dropped with a warning."""
    unique = tuple(dict.fromkeys(values))
    if len(unique) < len(values):
        repeated = sorted({v for v in values if list(values).count(v) > 1}, key=str)
        warnings.warn(f"{flag} lists {repeated} more than once; each is trained once", stacklevel=3)
    return unique


def hparam_axes(sweep: SweepConfig) -> dict[str, tuple]:
    """The values of every hyperparameter beyond the main axes: `sweep.axes`, else its default.

    Raises:
      ValueError: for an unknown name, an unknown choice, an empty axis, or final temperatures
        without a schedule that uses them.
    """
    known = {f.name: f for f in HPARAMS}
    unknown = sorted(set(sweep.axes) - set(known))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; known: {sorted(known)}")
    axes = {}
    for name, f in known.items():
        values = tuple(sweep.axes.get(name, (f.default,)))
        if not values:
            raise ValueError(f"{f.metadata['flag']} needs at least one value")
        choices = f.metadata["choices"]
        bad = [v for v in values if choices and v not in choices]
        if bad:
            raise ValueError(f"{f.metadata['flag']} must be one of {choices}, got {bad}")
        axes[name] = _unique(f.metadata["flag"], values)
    finals = [v for k in ("tau_f_final", "tau_b_final") for v in axes[k] if v is not None]
    if finals:
        estimator_lib.check_temperatures(final_temperatures=np.array(finals))
        if "constant" in axes["tau_schedule"]:
            raise ValueError(
                "--tau-f-final / --tau-b-final need --tau-schedule linear or exp (a constant "
                "schedule never reaches them)"
            )
    return axes


def _finals(entry: estimator_lib.Estimator, hp: dict) -> tuple[float | None, float | None]:
    """Final temperatures recorded for a run: a single-temperature estimator anneals its tau to
    the forward axis' final value, written where its tau is written; an untempered one has
    none."""
    if entry.n_temperatures == 2:
        return hp["tau_f_final"], hp["tau_b_final"]
    if entry.n_temperatures == 0 or hp["tau_f_final"] is None:
        return None, None
    tf, tb = entry.temperatures_of(hp["tau_f_final"])
    return (tf if "tau_f" in entry.writes_tau_to else None), (
        tb if "tau_b" in entry.writes_tau_to else None
    )


def chunks(n_runs: int, chunk_size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive chunks; the last may be short (it gets padded)."""
    return [(s, min(s + chunk_size, n_runs)) for s in range(0, n_runs, chunk_size)]


def hparams_array(runs: list[Run], size: int) -> dict[str, np.ndarray]:
    """Per-config hyperparameters as arrays of length `size`, padded by repeating the last run.

    Choices become their index (int32), a missing final temperature its start value; padding
    configs are real computations whose results are dropped, and repeating a real config keeps
    them numerically harmless.
    """
    if not runs:
        raise ValueError("a chunk needs at least one run")
    padded = list(runs) + [runs[-1]] * (size - len(runs))
    arrays = {
        "tau_f": np.array([r.tau_f for r in padded], np.float32),
        "tau_b": np.array([r.tau_b for r in padded], np.float32),
        "lr": np.array([r.lr for r in padded], np.float32),
        "seed": np.array([r.seed for r in padded], np.int32),
    }
    for f in HPARAMS:
        values = [getattr(r, f.name) for r in padded]
        if f.metadata["choices"]:
            arrays[f.name] = np.array([f.metadata["choices"].index(v) for v in values], np.int32)
        elif f.name.endswith("_final"):
            start = f.name[: -len("_final")]
            arrays[f.name] = np.array(
                [
                    getattr(r, start) if v is None else v
                    for r, v in zip(padded, values, strict=True)
                ],
                np.float32,
            )
        else:
            arrays[f.name] = np.array(values, np.float32)
    return arrays
