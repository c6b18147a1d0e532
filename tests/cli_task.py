"""A task defined outside the package, as a user writes one, for the tests of
`python -m experiments.run MODULE:FACTORY` and `dst_jax.run_sweep`: the stochastic binary
network on a small synthetic problem (labels from a fixed linear teacher)."""

from __future__ import annotations

import numpy as np
import optax

from dst_jax.tasks.sbn import Config, SBNTask


def teacher_data() -> dict[str, np.ndarray]:
    """600 uniform inputs of 24 features labelled by a fixed linear teacher, split
    400 / 100 / 100 into train / val / test."""
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(24, 4))
    x = rng.uniform(size=(600, 24)).astype(np.float32)
    y = (x @ teacher).argmax(-1).astype(np.int32)
    return {
        "train_x": x[:400],
        "train_y": y[:400],
        "val_x": x[400:500],
        "val_y": y[400:500],
        "test_x": x[500:],
        "test_y": y[500:],
    }


class TeacherTask(SBNTask):
    name = "teacher"

    def load_data(self, data_dir):
        return teacher_data(), {"dataset": "synthetic-teacher"}


class AdamTask(TeacherTask):
    """The same task with its own optimizer (`--optimizer task`): plain Adam."""

    def make_optimizer(self, learning_rate):
        return optax.adam(learning_rate)


CONFIG = Config(hidden=(16, 16), n_classes=4, batch_size=20, n_eval_samples=2, eval_batch_size=100)


def make_task() -> TeacherTask:
    """The zero-argument factory: `python -m experiments.run tests/cli_task.py:make_task`."""
    return TeacherTask(CONFIG)


def make_adam_task() -> AdamTask:
    return AdamTask(CONFIG)
