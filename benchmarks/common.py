"""What every comparison shares: the task set-up with synthetic data, the grid of configs, timers.

Throughput does not depend on pixel values, so the benchmarks train on synthetic data of the real
shapes (uniform pixels in [0, 1] for `sbn`/`cae`, random bits for `dlgn`, random labels) and need
no data files. The data set sizes are the real ones (60,000 / 50,000 training examples), because
the size sets how often a new epoch permutation is drawn; `--quick` shrinks them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from dst_jax import estimators, provenance, tasks
from dst_jax.sweep import grid
from dst_jax.sweep.config import DEFAULT_TAUS

TASKS = ("sbn", "cae", "dlgn")
ESTIMATOR = estimators.REFERENCE  # every comparison trains the paper's estimator
TASK_LR = {"sbn": 1e-3, "cae": 5e-4, "dlgn": 1e-2}  # DESIGN.md section 2

# The rows of the training table, in table order.
GRID = "grid: dst_jax engine, jit(vmap(scan))"
LOOP = "loop: jitted step per config"
TORCH = "torch: PyTorch eager, config after config"
METHODS = (GRID, LOOP, TORCH)


@dataclasses.dataclass(frozen=True)
class Setup:
    """One task as the benchmarks train it.

    Attributes:
      name: "sbn", "cae" or "dlgn".
      task: the dst_jax task (its `config` holds the model shapes).
      data: numpy arrays in the task's `data` layout: train_x (N, D), train_y (N,), test_x,
        test_y (one evaluation slice), and for dlgn the wiring tables.
      lr: Adam learning rate of every config.
      quick: whether the shapes were shrunk for a CPU smoke run.
    """

    name: str
    task: Any
    data: dict[str, np.ndarray]
    lr: float
    quick: bool

    @property
    def batch_size(self) -> int:
        return int(self.task.config.batch_size)

    @property
    def in_dim(self) -> int:
        return int(self.data["train_x"].shape[-1])


def _pixels(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return rng.random((n, d), dtype=np.float32)


def make_setup(name: str, quick: bool = False, seed: int = 0, n_train: int | None = None) -> Setup:
    """The task `name` at the project's protocol shapes (DESIGN.md section 2), synthetic data.

    Full size: sbn MLP 784-200-200-10 and cae 784-512-256-(4x8)-256-512-784 on 60,000 training
    images; dlgn 4 x 12,000 logic layers on 9,216 binary inputs, 50,000 training images.
    `quick=True` keeps the sbn/cae models and shrinks the data to 1,000 images, and shrinks dlgn
    to 2 x 1,000 neurons on 1,536 inputs: the same code paths, small enough for a CPU smoke run.
    `n_train` overrides the number of training images (tests build the full-size models on a
    few images). The test split is one evaluation slice of `batch_size` examples (and sbn
    evaluates one stochastic sample), so the evaluation at the end of each engine segment costs
    less than one training step.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    rng = np.random.default_rng(seed)
    mod = tasks.module(name)
    if n_train is None:
        n_train = 1000 if quick else (50_000 if name == "dlgn" else 60_000)
    if name == "dlgn":
        shape = {"layers": 2, "width": 1000} if quick else {}
        config = mod.Config(eval_batch_size=100, **shape)
        in_dim = 1536 if quick else 3 * (32 * 32 * 3)  # 3 thresholds x 32x32x3 pixels: 9,216
        bits = lambda n: rng.integers(0, 2, (n, in_dim), dtype=np.uint8)  # noqa: E731
        labels = lambda n: rng.integers(0, config.n_classes, n, dtype=np.int32)  # noqa: E731
        n_test = config.batch_size
        data = mod.build_data(config, bits(n_train), labels(n_train), bits(n_test), labels(n_test))
    else:
        # sbn averages n_eval_samples stochastic passes at evaluation; one keeps the evaluation
        # at the end of each engine segment below the cost of one training step.
        extra = {"n_eval_samples": 1} if name == "sbn" else {}
        config = mod.Config(eval_batch_size=100, **extra)
        n_test = config.batch_size
        data = {
            "train_x": _pixels(rng, n_train, 784),
            "train_y": rng.integers(0, 10, n_train, dtype=np.int32),
            "test_x": _pixels(rng, n_test, 784),
            "test_y": rng.integers(0, 10, n_test, dtype=np.int32),
        }
    task = tasks.make(name, config)
    return Setup(name=name, task=task, data=data, lr=TASK_LR[name], quick=quick)


def make_runs(setup: Setup, n_configs: int) -> list[grid.Run]:
    """`n_configs` decoupled-ST configs: the 10 x 10 (tau_f, tau_b) default grid, then seeds.

    Config i has tau_f = T[i % 10], tau_b = T[(i // 10) % 10], seed = i // 100 (T the default
    temperature axis), so 1,024 configs are the full grid over 10 seeds and a bit.
    """
    if n_configs < 1:
        raise ValueError(f"a grid needs at least 1 config, got {n_configs}")
    taus = DEFAULT_TAUS
    return [
        grid.Run(
            ESTIMATOR,
            taus[i % len(taus)],
            taus[(i // len(taus)) % len(taus)],
            i // len(taus) ** 2,
            setup.lr,
        )
        for i in range(n_configs)
    ]


# -- timing and rows ---------------------------------------------------------------------------
def clock() -> float:
    return time.perf_counter()


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), seconds). `fn` must block until its device work is done."""
    t0 = clock()
    out = fn()
    return out, clock() - t0


def training_row(
    method: str,
    n_configs: int,
    steps: int,
    batch_size: int,
    wall_s: float,
    compile_s: float | None,
    measured_configs: int | None = None,
    note: str = "",
) -> dict[str, Any]:
    """A row of the training table: `n_configs` configs x `steps` steps took `wall_s` seconds.

    model-steps/s = n_configs * steps / wall_s; examples/s = model-steps/s * batch_size.
    `measured_configs` < n_configs marks a sequential baseline measured on fewer configs and
    extrapolated linearly (a loop over configs costs the same per config).
    """
    measured = n_configs if measured_configs is None else measured_configs
    model_steps = n_configs * steps
    rate = model_steps / wall_s
    return {
        "method": method,
        "configs": n_configs,
        "measured_configs": measured,
        "extrapolated": measured < n_configs,
        "steps": steps,
        "batch_size": batch_size,
        "compile_s": None if compile_s is None else round(compile_s, 3),
        "wall_s": wall_s,
        "model_steps_per_s": rate,
        "examples_per_s": rate * batch_size,
        "us_per_model_step": 1e6 / rate,
        "status": "ok",
        "note": note,
    }


def failed_row(method: str, n_configs: int, status: str) -> dict[str, Any]:
    """A row for a comparison that could not run (not installed, out of memory, ...)."""
    return {"method": method, "configs": n_configs, "status": status}


def is_out_of_memory(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}"
    return any(
        s in text
        for s in (
            "RESOURCE_EXHAUSTED",
            "Out of memory",
            "out of memory",
            "OutOfMemory",
            "Resource exhausted",
        )
    )


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats by None (strict JSON) and numpy scalars by Python numbers: the
    project's one JSON rule, `dst_jax.provenance.json_safe`."""
    return provenance.json_safe(obj)


def json_document(result: dict[str, Any]) -> Any:
    """`result` with the provenance record (`dst_jax.provenance.record`: machine, versions, git
    commit, time) at its top level, JSON-safe: what a benchmark writes to --json."""
    return provenance.json_safe({**provenance.record(), **result})


def environment() -> dict[str, Any]:
    """Versions and the device, for the JSON file and the table header."""
    import jax

    machine = provenance.machine_info()
    env = {
        "jax": machine["jax"],
        "backend": jax.default_backend(),
        "device": machine["device"],
        "n_devices": jax.device_count(),
        "python": machine["python"],
        "cpu_count": machine["host_cpus"],
        "machine": machine["arch"],
        # XLA_FLAGS can pin the CPU backend's threads (e.g. intra_op_parallelism_threads=1).
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # Other processes compete for a shared CPU; the 1-minute load says how much.
        "load_average_1min": os.getloadavg()[0],
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        env["torch"] = None
    return env
