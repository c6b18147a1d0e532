"""The task a command line names: a built-in task's protocol, or a user's `MODULE:FACTORY`.

MODULE is a dotted module name or a path to a .py file, FACTORY a callable in it returning the
task (any object with the Task protocol of `dst_jax.tasks.base`) or (task, SweepConfig). It is
called with `smoke=True` under --smoke if it takes that argument; otherwise --smoke trains
`SMOKE_SWEEP`. The factory runs before `jax.distributed.initialize` (with --distributed): it
must not touch a device.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dst_jax import tasks
from dst_jax.sweep.config import SweepConfig

# The sweep of a user's task under --smoke (a built-in task's is its config's).
SMOKE_SWEEP = SweepConfig(
    tau_f=(0.5, 2.0), tau_b=(0.5, 2.0), seeds=1, epochs=1, max_steps=100, eval_every=50
)


@dataclasses.dataclass
class TaskSource:
    """The task named on the command line: its config (the protocol's values), the sweep's
    defaults, and how to build the task from a changed config."""

    name: str
    config: Any
    sweep: SweepConfig
    build: Callable[[Any], Any]


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable `FACTORY` of `MODULE:FACTORY` (a dotted module, or a path to a .py file)."""
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise SystemExit(
            f"task {spec!r}: expected MODULE:FACTORY, e.g. examples/own_model.py:make_task"
        )
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        path = Path(module_name).expanduser()
        if not path.is_file():
            raise SystemExit(f"task {spec!r}: {path} is not a file; give a .py file or a module")
        name = "dst_jax_user_task_" + "".join(c if c.isalnum() else "_" for c in path.stem)
        mod_spec = importlib.util.spec_from_file_location(name, path)
        assert mod_spec is not None and mod_spec.loader is not None
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up here
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            raise SystemExit(f"task {spec!r}: cannot import {module_name} ({e})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise SystemExit(f"task {spec!r}: {module_name} has no callable {attr!r}")
    return factory


def task_source(name: str, smoke: bool) -> TaskSource:
    """A built-in task's protocol, or the task a `MODULE:FACTORY` returns."""
    if name in tasks.TASK_NAMES:
        module = importlib.import_module(f"dst_jax.experiments.configs.{name}")
        config, sweep = module.get_config(smoke=smoke)
        return TaskSource(name, config, sweep, lambda c: tasks.make(name, c))
    if ":" not in name:
        raise SystemExit(
            f"unknown task {name!r}: choose one of {', '.join(tasks.TASK_NAMES)}, or give "
            "MODULE:FACTORY for a task of your own"
        )
    factory = load_factory(name)
    try:
        takes_smoke = "smoke" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_smoke = False
    made = factory(smoke=smoke) if takes_smoke else factory()
    task, sweep = made if isinstance(made, tuple) else (made, None)
    if sweep is None:
        sweep = SMOKE_SWEEP if smoke else SweepConfig()
    missing = [a for a in ("name", "config", "load_data") if not hasattr(task, a)]
    if missing or not isinstance(sweep, SweepConfig):
        raise SystemExit(
            f"task {name!r}: the factory must return a task (with name, config, load_data, "
            f"...; this lacks {', '.join(missing) or 'nothing'}) or (task, SweepConfig)"
        )

    def build(config):
        if config is task.config:
            return task
        if dataclasses.is_dataclass(task) and "config" in {
            f.name for f in dataclasses.fields(task)
        }:
            return dataclasses.replace(task, config=config)
        changed = copy.copy(task)  # a plain class holding its config in `.config`
        try:
            changed.config = config
        except AttributeError:
            raise SystemExit(
                f"task {name!r}: its config cannot be set (a read-only attribute)"
            ) from None
        return changed

    return TaskSource(name, task.config, sweep, build)
