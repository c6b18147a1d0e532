"""Task registry: `make(name, config)` builds a task for the sweep engine.

Each task module defines a frozen `Config` dataclass and a task class implementing
`dst_jax.tasks.base.Task` (a frozen dataclass over `TaskBase` with one field, `config`).
Modules are imported lazily so that importing one task never pays for the others.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any

from dst_jax.tasks.base import Batch, Hparams, Task, TaskBase, direction

_MODULES = {"sbn": "dst_jax.tasks.sbn", "cae": "dst_jax.tasks.cae", "dlgn": "dst_jax.tasks.dlgn"}
TASK_NAMES = tuple(_MODULES)


def module(name: str):
    if name not in _MODULES:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
    return importlib.import_module(_MODULES[name])


def make(name: str, config: Any | None = None) -> Task:
    """Build task `name` from its `Config` (defaults when `config` is None)."""
    mod = module(name)
    return mod.make_task(config if config is not None else mod.Config())


def config_as_json(config: Any) -> dict[str, Any]:
    """A task config dataclass as results.json holds it (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_with_defaults(name: str, recorded: dict[str, Any]) -> dict[str, Any]:
    """A results file's task config (as JSON) with every field it predates at its default.

    Results written before a task config field existed compare equal to results that leave it
    at its default, the value that keeps the old behaviour. A task this installation does not
    know (a user's own model) is returned as recorded."""
    if name not in _MODULES:
        return dict(recorded)
    return {**config_as_json(module(name).Config()), **recorded}


__all__ = [
    "TASK_NAMES",
    "Batch",
    "Hparams",
    "Task",
    "TaskBase",
    "config_as_json",
    "config_with_defaults",
    "direction",
    "make",
    "module",
]
