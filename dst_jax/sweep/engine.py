"""Train a list of runs as vmapped, sharded, checkpointed chunks.

For each estimator (one compiled program each: the estimator is a static choice, and putting all
four in one program would make `vmap` evaluate every branch), the estimator's runs are cut into
chunks of equal size. A chunk is one `jit(vmap(segment))` call per evaluation interval, with the
config axis sharded over all devices of a 1-D mesh and the data replicated. Under
`jax.distributed` the same code runs multi-host: every process expands the same grid, builds
its shards with `jax.make_array_from_callback`, and results are gathered with
`multihost_utils.process_allgather`; only process 0 writes files.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from dst_jax.sweep import grid
from dst_jax.sweep.checkpoint import Checkpoint
from dst_jax.sweep.train import make_fns
from dst_jax.tasks.base import Task

# Above this many configs per chunk a bigger vmap no longer buys throughput on one device but
# makes each checkpoint and each lost chunk more expensive.
MAX_AUTO_CHUNK = 1024
# Fraction of free device memory the auto chunk size may plan to use.
MEMORY_FRACTION = 0.6


@dataclasses.dataclass
class SweepOutput:
    runs: list[dict[str, Any]]  # one dict per run, in the order of the input list
    best_params: dict[str, Any]  # estimator -> params of its best single run
    best_runs: dict[str, dict[str, Any]]  # estimator -> that run's dict
    timing: dict[str, Any]  # per estimator: compile_s, train_s, chunk_size, n_chunks


# -- arrays across devices and hosts ----------------------------------------------------------
def _mesh(devices: Sequence[jax.Device] | None) -> Mesh:
    devices = list(devices) if devices is not None else jax.devices()
    return Mesh(np.array(devices), ("configs",))


def _to_global(x, sharding: NamedSharding) -> jax.Array:
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)  # a device array stays on device, no host copy
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _to_host(tree):
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def _local_device(mesh: Mesh) -> jax.Device:
    """A device of the mesh that this process can address (only those report memory)."""
    me = jax.process_index()
    return next(d for d in mesh.devices.flat if d.process_index == me)


def _agreed_min(x: int) -> int:
    """The smallest of every process's `x`: processes must agree on shapes (chunk sizes), and
    the most constrained host decides."""
    if jax.process_count() == 1:
        return int(x)
    return int(np.min(multihost_utils.process_allgather(np.int64(x))))


def _json_number(x) -> float | int | bool | None:
    x = x.item() if hasattr(x, "item") else x
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    return float(x) if math.isfinite(x) else None


def _json_value(a: np.ndarray):
    a = np.asarray(a)
    if a.ndim == 0:
        return _json_number(a)
    return [_json_value(v) for v in a]


# -- chunk size --------------------------------------------------------------------------------
def _free_device_bytes(device: jax.Device) -> int:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    # CPU: no allocator statistics; plan against a quarter of physical memory.
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def _per_config_bytes(compiled, configs_per_device: int, data_bytes: int) -> float:
    """Device bytes one config costs, from the memory analysis of a compiled SPMD program
    (which describes one device's share: `configs_per_device` configs and the replicated data)."""
    mem = compiled.memory_analysis()
    if mem is None:
        return 0.0
    total = (
        mem.temp_size_in_bytes
        + mem.output_size_in_bytes
        + max(mem.argument_size_in_bytes - data_bytes, 0)
    )
    return total / configs_per_device


def _fitting_chunk_size(
    program, est_runs, size, n_dev, data_g, data_bytes, n_steps, mesh, cfg_sh, compile_for
) -> int:
    """`size`, or less if the segment compiled for `size` configs would not fit device memory.

    The compiled program's memory analysis gives bytes per config (temporaries, outputs and
    non-data arguments scale with the configs; the replicated data does not).
    """
    hp = {
        k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=cfg_sh)
        for k, v in grid.hparams_array(est_runs[:1], size).items()
    }
    state = jax.eval_shape(program.init, hp, data_g)
    compiled = compile_for(state, hp, n_steps)
    per_config = _per_config_bytes(compiled, size // n_dev, data_bytes)
    budget = MEMORY_FRACTION * _agreed_min(_free_device_bytes(_local_device(mesh)))  # per device
    if per_config <= 0 or per_config * (size // n_dev) <= budget:
        return size
    return min(max(1, int(budget // per_config)) * n_dev, size)


class _Program:
    """The compiled functions of one (task, estimator, mesh), shared by every chunk and call."""

    def __init__(self, task: Task, estimator: str, mesh: Mesh):
        init, segment = make_fns(task, estimator)
        cfg_sh = NamedSharding(mesh, PartitionSpec("configs"))
        self.init_one = init
        self.init = jax.jit(jax.vmap(init, in_axes=(0, None)), out_shardings=cfg_sh)
        self.segment = jax.jit(
            jax.vmap(segment, in_axes=(0, 0, None, None, None)),
            static_argnums=4,
            donate_argnums=0,
            out_shardings=(cfg_sh, cfg_sh),
        )
        self._compiled: dict[tuple, Any] = {}

    def compiled(self, state, hp, data, n_steps: int):
        key = (
            jax.tree.leaves(hp)[0].shape,
            n_steps,
            tuple((k, v.shape, str(v.dtype)) for k, v in sorted(data.items())),
        )
        if key not in self._compiled:
            self._compiled[key] = self.segment.lower(
                state, hp, data, jnp.int32(0), n_steps
            ).compile()
        return self._compiled[key]


_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _program(task: Task, estimator: str, mesh: Mesh) -> _Program:
    per_task = _PROGRAMS.setdefault(task, {})
    key = (estimator, tuple(d.id for d in mesh.devices.flat))
    if key not in per_task:
        per_task[key] = _Program(task, estimator, mesh)
    return per_task[key]


# -- the chunk loop ----------------------------------------------------------------------------
def train_runs(
    task: Task,
    data: dict[str, Any],
    runs: Sequence[grid.Run],
    *,
    steps: int,
    eval_every: int,
    chunk_size: int | None = None,
    checkpoint: Checkpoint | None = None,
    checkpoint_every_s: float = 60.0,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = False,
    callback: Callable[[str, int, int], None] | None = None,
) -> SweepOutput:
    """Train `runs` for `steps` steps each, evaluating every `eval_every` steps.

    Returns each run's final metrics and curves (JSON-ready), and the parameters of the best
    single run per estimator. With `checkpoint`, finished chunks and mid-chunk state are saved,
    and a rerun with the same arguments continues where the last one stopped.
    `callback(estimator, chunk_index, segment_index)` is called after every segment (and after
    its checkpoint); an exception raised there interrupts the sweep cleanly.
    """
    if steps < 1 or eval_every < 1:
        raise ValueError(f"steps ({steps}) and eval_every ({eval_every}) must be positive")
    mesh = _mesh(devices)
    n_dev = mesh.devices.size
    cfg_sh = NamedSharding(mesh, PartitionSpec("configs"))
    rep_sh = NamedSharding(mesh, PartitionSpec())
    data_g = {k: _to_global(v, rep_sh) for k, v in data.items()}
    data_bytes = sum(v.nbytes for v in data_g.values())

    bounds = [(s, min(s + eval_every, steps)) for s in range(0, steps, eval_every)]
    direction = task.metric_directions.get(task.headline_metric, "max")
    better = (lambda a, b: a > b) if direction == "max" else (lambda a, b: a < b)

    by_estimator: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        by_estimator.setdefault(r.estimator, []).append(i)

    results: list[dict | None] = [None] * len(runs)
    best_params: dict[str, Any] = {}
    best_runs: dict[str, dict] = {}
    best_score: dict[str, float] = {}
    timing: dict[str, Any] = {}
    bar = tqdm(
        total=len(runs) * steps,
        unit="model-step",
        unit_scale=True,
        disable=not progress or jax.process_index() != 0,
        dynamic_ncols=True,
    )

    for est, idxs in by_estimator.items():
        est_runs = [runs[i] for i in idxs]
        program = _program(task, est, mesh)
        t_compile = 0.0

        def compile_for(state, hp, n_steps, _program=program):
            nonlocal t_compile
            t0 = time.perf_counter()
            compiled = _program.compiled(state, hp, data_g, n_steps)
            t_compile += time.perf_counter() - t0
            return compiled

        size = min(chunk_size or MAX_AUTO_CHUNK, len(est_runs))
        size = max(n_dev, math.ceil(size / n_dev) * n_dev)  # equal shards per device
        if checkpoint is not None:
            size = checkpoint.chunk_size(est, size, fixed=chunk_size is not None)
        if chunk_size is None and not (checkpoint and checkpoint.has_chunk_size(est)):
            # Compile the largest useful chunk; shrink it only if it would not fit in memory.
            fits = _fitting_chunk_size(
                program,
                est_runs,
                size,
                n_dev,
                data_g,
                data_bytes,
                bounds[0][1],
                mesh,
                cfg_sh,
                compile_for,
            )
            if fits != size:
                size = fits
            if checkpoint is not None:
                checkpoint.set_chunk_size(est, size)

        t_train = 0.0
        chunk_ranges = grid.chunks(len(est_runs), size)
        for k, (a, b) in enumerate(chunk_ranges):
            chunk = est_runs[a:b]
            done = checkpoint.load_chunk(est, k) if checkpoint is not None else None
            if done is None:
                t0, c0 = time.perf_counter(), t_compile
                done, chunk_best = _train_chunk(
                    est,
                    k,
                    chunk,
                    size,
                    program.init,
                    compile_for,
                    data_g,
                    cfg_sh,
                    bounds,
                    task.headline_metric,
                    better,
                    checkpoint,
                    checkpoint_every_s,
                    bar,
                    callback,
                )
                t_train += time.perf_counter() - t0 - (t_compile - c0)
                if chunk_best is not None:
                    score, j, params = chunk_best
                    if est not in best_score or better(score, best_score[est]):
                        best_score[est], best_params[est], best_runs[est] = score, params, done[j]
                        if checkpoint is not None:
                            checkpoint.save_best(est, params, score, done[j])
                if checkpoint is not None:
                    checkpoint.save_chunk(est, k, done)
            else:
                bar.update(len(chunk) * steps)
            for i, run_dict in zip(idxs[a:b], done, strict=True):
                results[i] = run_dict
        if checkpoint is not None and est not in best_params:
            one = {k: v[0] for k, v in grid.hparams_array(est_runs[:1], 1).items()}
            like = jax.eval_shape(program.init_one, one, data_g).params
            loaded = checkpoint.load_best(est, like)
            if loaded is not None:
                best_params[est], best_score[est], best_runs[est] = loaded
        timing[est] = {
            "chunk_size": size,
            "n_chunks": len(chunk_ranges),
            "compile_s": round(t_compile, 3),
            "train_s": round(t_train, 3),
        }
    bar.close()
    return SweepOutput(list(results), best_params, best_runs, timing)


def _train_chunk(
    est,
    k,
    chunk,
    size,
    init_j,
    compile_for,
    data_g,
    cfg_sh,
    bounds,
    headline,
    better,
    checkpoint,
    checkpoint_every_s,
    bar,
    callback,
):
    hp = {key: _to_global(v, cfg_sh) for key, v in grid.hparams_array(chunk, size).items()}
    state = init_j(hp, data_g)
    curves: list[dict[str, Any]] = []
    first = 0
    if checkpoint is not None:
        leaves, treedef = jax.tree.flatten(state)
        loaded = checkpoint.load_state(est, k, leaves)
        if loaded is not None:
            saved, meta = loaded
            state = jax.tree.unflatten(treedef, [_to_global(x, cfg_sh) for x in saved])
            curves, first = meta["curves"], meta["next_segment"]
            bar.update(len(chunk) * bounds[first - 1][1])
    last_save = time.monotonic()
    for j in range(first, len(bounds)):
        s, e = bounds[j]
        state, metrics = compile_for(state, hp, e - s)(state, hp, data_g, jnp.int32(s))
        host = _to_host(metrics)
        curves.append({"step": e, **{name: _json_value(v) for name, v in host.items()}})
        bar.update(len(chunk) * (e - s))
        bar.set_postfix_str(f"{est} chunk {k}", refresh=False)
        if (
            checkpoint is not None
            and j + 1 < len(bounds)
            and time.monotonic() - last_save >= checkpoint_every_s
        ):
            checkpoint.save_state(
                est, k, _to_host(jax.tree.leaves(state)), {"curves": curves, "next_segment": j + 1}
            )
            last_save = time.monotonic()
        if callback is not None:
            callback(est, k, j)

    final_state = _to_host(state)
    run_dicts = []
    for i, run in enumerate(chunk):
        last = curves[-1]
        final = {name: v[i] for name, v in last.items() if name != "step"}
        scalar_names = [n for n, v in final.items() if not isinstance(v, list)]
        curve = {"step": [c["step"] for c in curves]}
        curve.update({n: [c[n][i] for c in curves] for n in scalar_names})
        run_dicts.append(
            {
                **dataclasses.asdict(run),
                "diverged": bool(final_state.diverged[i]),
                "diverged_step": int(final_state.diverged_step[i])
                if final_state.diverged[i]
                else None,
                "final": final,
                "curve": curve,
            }
        )
    best = None
    for i, rd in enumerate(run_dicts):
        score = rd["final"].get(headline)
        if rd["diverged"] or score is None:
            continue
        if best is None or better(score, best[0]):
            best = (score, i, jax.tree.map(lambda x, i=i: np.asarray(x[i]), final_state.params))
    return run_dicts, best
