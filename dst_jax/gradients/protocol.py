"""What the gradient-quality protocol measures, on which model, at which checkpoints: the `cae`
task trained by the sweep engine, measured before and after training.

The categorical autoencoder (4 latents x 8 classes), at its initial parameters ("init") and after
`train_steps` steps of the sweep engine's trainer (`dst_jax.sweep.train.make_fns`, the task's own
loss: Adam, lr 5e-4, batch 100, beta = 1, with decoupled_st at tau_f = 0.5, tau_b = 1.0 by
default; on the whole training split) ("trained"), on the first S MNIST test images. For each
image x with encoder logits l (4, 8) the objective is f(z) = sum_pixels BCE(decoder(z), x)
(`objective`); `measure.gradient_quality` measures every selected estimator's grid against the
exact gradients, and `claims` reads the grids. `measure_checkpoints` returns the document that
`report` writes (gradients.json, summary.md, figures).

Keys: the engine derives the initial parameters, the minibatch order and the training noise from
`jax.random.key(seed, impl=prng)` (`dst_jax.sweep.train`); the draws use the third of
`split(key(seed), 3)`, the same for both checkpoints.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dst_jax import estimators as estimator_lib
from dst_jax import provenance, tasks
from dst_jax.gradients import claims
from dst_jax.gradients.measure import REFERENCES, gradient_quality
from dst_jax.sweep import grid
from dst_jax.sweep.train import make_fns
from dst_jax.tasks import cae
from dst_jax.tasks.base import Task

__all__ = [
    "CHECKPOINTS",
    "Settings",
    "checkpoint_stats",
    "make_task",
    "measure_checkpoints",
    "objective",
    "select_entries",
    "train",
]

CHECKPOINTS = ("init", "trained")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a run measures. The defaults are the full protocol; `smoke()` the quick check."""

    images: int = 1000
    draws: int = 1024
    taus: tuple[float, ...] = estimator_lib.DEFAULT_TAUS
    train_steps: int = 2000
    train_estimator: str = estimator_lib.REFERENCE
    train_tau_f: float = 0.5
    train_tau_b: float = 1.0
    lr: float = 5e-4
    batch_size: int = 100
    beta: float = 1.0
    seed: int = 0
    # Configurations per vmapped chunk: bounds memory to chunk x draws gradients at a time.
    chunk_size: int = 50
    # rbg compiles the estimators' Gumbel draws about 4x faster than threefry on a CPU, and
    # compilation is most of a smoke run.
    prng: str = "rbg"
    # The references and the draws in float64: for a nearly deterministic q (a trained encoder)
    # the exact gradient is many orders of magnitude below f, and float32's 1 - p rounds to 0.
    # Training and the decoder's tables stay float32.
    dtype: str = "float64"
    estimators: tuple[str, ...] | None = None
    # Samples behind each draw of a score-function estimator (RLOO).
    score_samples: int = 4

    @staticmethod
    def smoke() -> Settings:
        return Settings(images=4, draws=64, taus=(0.5, 1.0, 2.0), train_steps=20)

    def __post_init__(self) -> None:
        if self.train_steps < 0:
            raise ValueError(f"--train-steps must be >= 0, got {self.train_steps}")
        if self.score_samples < 2:
            raise ValueError(
                f"--score-samples must be >= 2 (a leave-one-out baseline), got {self.score_samples}"
            )
        try:
            estimator_lib.check_temperatures(taus=np.asarray(self.taus))
        except ValueError as e:
            raise ValueError(f"--taus: {e}") from None


def select_entries(settings: Settings) -> tuple[list[estimator_lib.Estimator], dict[str, str]]:
    """The estimators to measure, and those skipped with the reason."""
    skipped = {
        e.name: "a relaxation: its output is not a one-hot code, so the enumerated objective "
        "E_q f(z) is not what its gradient estimates"
        for e in estimator_lib.REGISTRY
        if not e.discrete
    }
    wanted = settings.estimators or estimator_lib.REGISTRY.names(discrete=True)
    entries = [estimator_lib.REGISTRY[n] for n in wanted]  # unknown names raise ValueError
    for e in entries:
        if not e.discrete:
            raise ValueError(f"--estimators: {e.name} is {skipped[e.name]}")
    return entries, skipped


def make_task(settings: Settings) -> Task:
    """The `cae` task the protocol trains: the whole training split (no validation split is
    held out: nothing is selected on it)."""
    config = cae.Config(beta=settings.beta, batch_size=settings.batch_size, val_fraction=0.0)
    return tasks.make("cae", config)


def objective(params: cae.Params, z_LxC: jax.Array, x_D: jax.Array) -> jax.Array:
    """f(z) = sum_pixels BCE(sigmoid(Dec(z)), x): the reconstruction term of one image."""
    return jnp.sum(cae.bce_with_logits(cae.decode(params, z_LxC[None])[0], x_D))


def train(
    task: Task, data: dict[str, jax.Array], settings: Settings
) -> tuple[Any, Any, dict[str, Any]]:
    """(initial parameters, trained parameters, the training record) of `settings.train_steps`
    steps of the sweep engine's trainer with the training estimator at (train_tau_f,
    train_tau_b).

    The steps run as the engine's segments of `loss_window` steps (one compiled program), so
    the record holds the mean training loss of the first and the last window; the test split is
    evaluated once, after the last step. Raises FloatingPointError if training diverged.
    """
    steps = settings.train_steps
    run = grid.Run(
        estimator=settings.train_estimator,
        tau_f=settings.train_tau_f,
        tau_b=settings.train_tau_b,
        seed=settings.seed,
        lr=settings.lr,
    )
    hp = {k: jnp.asarray(v[0]) for k, v in grid.hparams_array([run], 1).items()}
    entry = estimator_lib.REGISTRY[settings.train_estimator]
    # The window losses are means over each segment's steps, not the last step's loss.
    init, segment = make_fns(
        task, entry, max(steps, 1), test_at="end", prng=settings.prng, train_metrics="mean"
    )
    state = jax.jit(init)(hp, data)
    params_init = state.params
    window = max(1, min(100, steps // 10))
    record: dict[str, Any] = {
        "estimator": settings.train_estimator,
        "tau_f": settings.train_tau_f,
        "tau_b": settings.train_tau_b,
        "steps": steps,
        "trainer": "dst_jax.sweep.train.make_fns",
        "loss_first": None,
        "loss_last": None,
        "loss_window": window,
    }
    if steps == 0:
        return params_init, params_init, record
    run_segment = jax.jit(segment, static_argnums=4)
    # Segments of `window` steps (one compiled program), the remainder of the division second,
    # so the first and the last segment are the two windows.
    lengths = [window] * (steps // window)
    if steps % window:
        lengths.insert(1, steps % window)
    bounds = [0, *itertools.accumulate(lengths)]
    losses = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        state, metrics = run_segment(state, hp, data, jnp.int32(start), end - start)
        losses.append(float(metrics["train_loss"]))
    if bool(state.diverged):
        raise FloatingPointError(
            f"training diverged: the loss or gradient is not finite at step "
            f"{int(state.diverged_step)}"
        )
    record.update(loss_first=losses[0], loss_last=losses[-1])
    # The trained model on the whole test split (the task's evaluation, scalars only).
    record["test"] = {
        k: float(v) for k, v in metrics.items() if k.startswith("test_") and np.ndim(v) == 0
    }
    return params_init, state.params, record


def checkpoint_stats(params: cae.Params, x_SxD: jax.Array, expected_S: np.ndarray) -> dict:
    """Context for a checkpoint's numbers: how peaked the encoder's distributions are."""
    l_SxLxC = cae.encode(params, x_SxD)
    logp = jax.nn.log_softmax(l_SxLxC, axis=-1)
    entropy_SxL = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return {
        "expected_bce": float(np.mean(expected_S)),
        "entropy_per_latent": float(jnp.mean(entropy_SxL)),
        "max_probability": float(jnp.mean(jnp.max(jnp.exp(logp), axis=-1))),
        "kl_to_uniform": float(jnp.mean(cae.kl_to_uniform(l_SxLxC))),
    }


def measure_checkpoints(
    settings: Settings, data_dir: str | None, command: str, log: Callable[[str], object] = print
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The whole protocol: load the data, train, measure both checkpoints, read the grids.

    Returns (doc, raw): doc is gradients.json's content (settings, provenance, training,
    checkpoint statistics, the reduced grids under "estimators", best cells, the claim, the
    bias against sampling error) and raw the per-image metrics per checkpoint (per_image.npz).
    """
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    origin = provenance.record()  # before the run loads the machine
    # The load average of the machine as the run began (a shared CPU slows it down).
    origin["machine"]["load_average_at_start"] = origin["machine"].get("load_average")
    entries, skipped = select_entries(settings)
    task = make_task(settings)

    t = time.perf_counter()
    data, info = task.load_data(data_dir)
    if settings.images > data["test_x"].shape[0]:
        raise ValueError(
            f"--images {settings.images} exceeds the {data['test_x'].shape[0]} test images"
        )
    x_SxD = data["test_x"][: settings.images]
    timing["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    log(f"training {settings.train_steps} steps with {settings.train_estimator}")
    params: dict[str, Any] = {}
    params["init"], params["trained"], training = train(task, data, settings)
    timing["train_s"] = time.perf_counter() - t
    k_draws = jax.random.split(jax.random.key(settings.seed, impl=settings.prng), 3)[2]

    raw, stats = {}, {}
    for ckpt in CHECKPOINTS:
        t = time.perf_counter()
        l_SxLxC = cae.encode(params[ckpt], x_SxD).astype(settings.dtype)

        def progress(name: str, sec: float, ckpt: str = ckpt) -> None:
            log(f"  {ckpt} {name}: {sec:.1f} s")

        result = gradient_quality(
            objective,
            params[ckpt],
            x_SxD,
            l_SxLxC,
            k_draws,
            entries=entries,
            taus=settings.taus,
            n_draws=settings.draws,
            chunk_size=settings.chunk_size,
            score_samples=settings.score_samples,
            progress=progress,
        )
        raw[ckpt] = result["estimators"]
        stats[ckpt] = checkpoint_stats(params[ckpt], x_SxD, result["expected_f"])
        timing[f"{ckpt}_s"] = time.perf_counter() - t
        log(f"{ckpt}: {len(entries)} estimators measured in {timing[f'{ckpt}_s']:.1f} s")

    measured = {e.name: _measured(e, raw) for e in entries}
    doc = {
        "task": "cae",
        "dataset": info.get("dataset"),
        "command": command,
        "settings": {**dataclasses.asdict(settings), "model": dataclasses.asdict(task.config)},
        "objective": "f(z) = sum over 784 pixels of BCE(sigmoid(decoder(z)), x); exact "
        "gradients by enumerating the 8^4 codes; draws use f and grad_z f tabulated at "
        "every code (exact for one-hot codes)",
        **origin,
        "training": training,
        "checkpoints": stats,
        "skipped": skipped,
        "estimators": measured,
        "best": claims.best_temperatures(measured),
        "claim": claims.claim_check(measured, "mean", raw) + claims.claim_check(measured, "median"),
        "bias_vs_noise": claims.bias_vs_noise(measured, raw, settings.draws),
        "fewest_images": claims.fewest_images(measured),
        "timing": timing,
        "wall_s": time.perf_counter() - t0,
    }
    return doc, raw


def _measured(entry: estimator_lib.Estimator, raw: dict[str, Any]) -> dict[str, Any]:
    """One estimator's entry of gradients.json: its grid and, per checkpoint and reference, the
    metric grids reduced over images (`claims.reduce_images`)."""
    grid_ = raw[CHECKPOINTS[0]][entry.name]
    return {
        "n_temperatures": entry.n_temperatures,
        "writes_tau_to": list(entry.writes_tau_to) if entry.n_temperatures == 1 else None,
        "shape": tuple(grid_["shape"]),
        "tau": grid_["tau"] if entry.n_temperatures == 1 else None,
        "tau_f": grid_["tau_f"],
        "tau_b": grid_["tau_b"],
        "tau_sampled": grid_["tau_q"],
        "results": {
            ckpt: {
                ref: claims.reduce_images(raw[ckpt][entry.name]["per_image"][ref], grid_["shape"])
                for ref in REFERENCES
            }
            for ckpt in raw
        },
    }
