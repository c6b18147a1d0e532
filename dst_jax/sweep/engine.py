"""Train a list of runs as vmapped, sharded, checkpointed chunks.

For each estimator (one compiled program each: the estimator is a static choice, and putting
several in one program would make `vmap` evaluate every branch), the estimator's runs are cut
into chunks of equal size (`plan_chunks`). A chunk is one `jit(vmap(segment))` call per
evaluation interval, with the config axis sharded over all devices of a 1-D mesh and the data
replicated (`run_chunk`). Under `jax.distributed` the same code runs multi-host: every process
expands the same grid and builds its own shards, results are gathered to every process, and
only process 0 writes JSON files.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dst_jax import estimators as estimator_lib
from dst_jax.sweep import devices as dev
from dst_jax.sweep import grid, results
from dst_jax.sweep.checkpoint import Checkpoint
from dst_jax.sweep.config import EngineOptions, engine_options
from dst_jax.sweep.train import make_fns
from dst_jax.tasks.base import Task

# Above this many configs per chunk a bigger vmap no longer buys throughput on one device but
# makes each checkpoint and each lost chunk more expensive. On a CPU the vmap buys nothing even
# for a few configs and large chunks fall out of cache (sbn on the 2-core development CPU: 395
# model-steps/s for 16 configs, 353 for 64, 302 for 256; docs/PERFORMANCE.md).
MAX_AUTO_CHUNK = {"cpu": 32}
MAX_AUTO_CHUNK_ACCELERATOR = 1024
# Fraction of free device memory the auto chunk size may plan to use.
MEMORY_FRACTION = 0.6


@dataclasses.dataclass
class SweepOutput:
    runs: list[dict[str, Any]]  # one record per run, in the order of the input list
    figures: list[dict[str, np.ndarray]]  # each run's figure arrays (`Task.figure_arrays`)
    timing: dict[str, Any]  # per estimator: compile_s, train_s, chunk_size, n_chunks


class Program:
    """The compiled functions of one (task, estimator, mesh), shared by every chunk and call."""

    def __init__(self, task: Task, estimator: estimator_lib.Estimator, mesh, options: dict):
        init, segment = make_fns(task, estimator, **options)
        cfg_sh = dev.config_sharding(mesh)
        self.init_one = init
        self.init = jax.jit(jax.vmap(init, in_axes=(0, None)), out_shardings=cfg_sh)
        self.segment = jax.jit(
            jax.vmap(segment, in_axes=(0, 0, None, None, None)),
            static_argnums=4,
            donate_argnums=0,
            out_shardings=(cfg_sh, cfg_sh),
        )
        self.figures = jax.jit(jax.vmap(task.figure_arrays, in_axes=(0, None)))
        self._compiled: dict[tuple, Any] = {}
        self.compile_s = 0.0
        # Called with True before and False after each compile (the progress bar says so).
        self.on_compile: Callable[[bool], None] | None = None

    def compiled(self, state, hp, data, n_steps: int):
        key = (
            jax.tree.leaves(hp)[0].shape,
            n_steps,
            tuple((k, v.shape, str(v.dtype)) for k, v in sorted(data.items())),
        )
        if key not in self._compiled:
            if self.on_compile is not None:
                self.on_compile(True)
            t0 = time.perf_counter()
            self._compiled[key] = self.segment.lower(
                state, hp, data, jnp.int32(0), n_steps
            ).compile()
            self.compile_s += time.perf_counter() - t0
            if self.on_compile is not None:
                self.on_compile(False)
        return self._compiled[key]


_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _program(task: Task, estimator: str, mesh, **options) -> Program:
    """The cached `Program`; `options` are `make_fns`'s (total_steps, test_at, prng,
    optimizer_options: hashable values)."""
    per_task = _PROGRAMS.setdefault(task, {})
    entry = estimator_lib.REGISTRY[estimator]
    key = (entry, tuple(d.id for d in mesh.devices.flat), tuple(sorted(options.items())))
    if key not in per_task:
        per_task[key] = Program(task, entry, mesh, options)
    return per_task[key]


# -- chunk size --------------------------------------------------------------------------------
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


def _fitting_chunk_size(program: Program, run: grid.Run, size: int, mesh, data, n_steps) -> int:
    """`size`, or less if the segment compiled for `size` configs would not fit device memory.

    The compiled program's memory analysis gives bytes per config (temporaries, outputs and
    non-data arguments scale with the configs; the replicated data does not).
    """
    n_dev = mesh.devices.size
    cfg_sh = dev.config_sharding(mesh)
    hp = {
        k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=cfg_sh)
        for k, v in grid.hparams_array([run], size).items()
    }
    state = jax.eval_shape(program.init, hp, data)
    compiled = program.compiled(state, hp, data, n_steps)
    data_bytes = sum(v.nbytes for v in data.values())
    per_config = _per_config_bytes(compiled, size // n_dev, data_bytes)
    budget = MEMORY_FRACTION * dev.agreed_min(dev.free_bytes(dev.local_device(mesh)))
    if per_config <= 0 or per_config * (size // n_dev) <= budget:
        return size
    return min(max(1, int(budget // per_config)) * n_dev, size)


def plan_chunks(
    program: Program,
    est_runs: list[grid.Run],
    mesh,
    data,
    first_segment_steps: int,
    chunk_size: int | None,
    checkpoint: Checkpoint | None,
    tag: str,
) -> int:
    """Configs per chunk for one estimator and `tag`: `chunk_size` if given, else the largest
    useful size that fits device memory; a resumed sweep reuses the size its first invocation
    recorded."""
    n_dev = mesh.devices.size
    est = f"{tag}-{est_runs[0].estimator}"
    largest = MAX_AUTO_CHUNK.get(mesh.devices.flat[0].platform, MAX_AUTO_CHUNK_ACCELERATOR)
    size = min(chunk_size or largest * n_dev, len(est_runs))
    size = max(n_dev, math.ceil(size / n_dev) * n_dev)  # equal shards per device
    if checkpoint is not None:
        if checkpoint.has_chunk_size(est):
            return checkpoint.chunk_size(est, size)
        if chunk_size is not None:
            return checkpoint.chunk_size(est, size, fixed=True)
    if chunk_size is None:
        size = _fitting_chunk_size(program, est_runs[0], size, mesh, data, first_segment_steps)
        size = balanced(len(est_runs), size, n_dev)
        if checkpoint is not None:
            checkpoint.set_chunk_size(est, size)
    return size


def balanced(n_runs: int, max_size: int, n_dev: int) -> int:
    """The smallest chunk size (a multiple of `n_dev`) that cuts `n_runs` into as few chunks as
    `max_size` allows: the last chunk is padded with repeats of a real config, so 300 runs in
    chunks of 150 waste nothing where chunks of 246 would train 192 padding configs."""
    n_chunks = math.ceil(n_runs / max_size)
    size = math.ceil(n_runs / n_chunks)
    return min(max_size, math.ceil(size / n_dev) * n_dev)


# -- one chunk ---------------------------------------------------------------------------------
@dataclasses.dataclass
class _Where:
    """Which chunk is training, for checkpoints, the progress bar and the callback."""

    tag: str
    estimator: str
    k: int


class Trainer:
    """What one call of `train_runs` (or `halving.train_halving`) shares between its chunks:
    the options, the device mesh, the replicated data, the evaluation intervals, the progress
    bar and each estimator's seconds. Both loops train every chunk through `chunk`."""

    def __init__(self, task: Task, data: dict[str, Any], n_runs: int, options: EngineOptions):
        self.task, self.options = task, options
        self.mesh = dev.mesh(options.devices)
        self.data = {k: dev.to_global(v, dev.replicated(self.mesh)) for k, v in data.items()}
        self.bounds = self.intervals(options.steps, options.eval_every)
        self.bar = tqdm(
            total=n_runs * options.steps,  # with halving an upper bound: stopped runs end early
            unit="model-step",
            unit_scale=True,
            disable=not options.progress or jax.process_index() != 0,
            dynamic_ncols=True,
        )
        self.seconds: dict[str, dict[str, float]] = {}

    @staticmethod
    def intervals(steps: int, eval_every: int) -> list[tuple[int, int]]:
        """The evaluation intervals [start, end) of a run of `steps` steps."""
        return [(s, min(s + eval_every, steps)) for s in range(0, steps, eval_every)]

    def program(self, estimator: str, est_runs: list[grid.Run]) -> tuple[Program, int]:
        """The estimator's compiled program and its chunk size (`plan_chunks`)."""
        o = self.options
        program = _program(self.task, estimator, self.mesh, **o.program_options())
        program.on_compile = functools.partial(_compile_status, self.bar, estimator)
        c0 = program.compile_s
        size = plan_chunks(
            program, est_runs, self.mesh, self.data, self.bounds[0][1], o.chunk_size,
            o.checkpoint, o.tag,
        )  # fmt: skip
        self.seconds[estimator] = {"compile_s": program.compile_s - c0, "train_s": 0.0}
        return program, size

    def chunk(
        self,
        program: Program,
        where: _Where,
        chunk: list[grid.Run],
        size: int,
        segments: range | None = None,
        state0=None,
        keep_state: bool = False,
    ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], Any]:
        """Train one chunk through `segments` (default: all), or read it from the checkpoint if
        an earlier invocation finished it; returns its records, figure arrays and, with
        `keep_state`, its final state on the host (saved beside the records)."""
        ckpt, tag, est, k = self.options.checkpoint, where.tag, where.estimator, where.k
        segments = range(len(self.bounds)) if segments is None else segments
        name = f"{tag}-{est}-{k:04d}"
        done = None if ckpt is None else ckpt.load_chunk(tag, est, k, chunk)
        end_state = None
        if done is None:
            c0 = program.compile_s
            records, figures, train_s, state = run_chunk(
                self, program, chunk, size, where, segments, state0
            )
            end_state = dev.to_host(state) if keep_state else None
            seconds = {"compile_s": program.compile_s - c0, "train_s": train_s}
            if ckpt is not None:
                if end_state is not None:  # before the records: they mark the chunk complete
                    ckpt.save_rung_state(tag, est, k, end_state)
                ckpt.save_chunk(tag, est, k, records, figures)
                ckpt.add_timing(name, seconds)
        else:
            assert ckpt is not None  # `done` was read from it
            records, figures = done
            if keep_state:
                hp = grid.hparams_array(chunk, size)
                like = jax.eval_shape(program.init, hp, self.data)
                end_state = ckpt.load_rung_state(tag, est, k, like)
            # Seconds an earlier invocation spent on this chunk, so totals stay true.
            seconds = ckpt.timing()["chunks"].get(name, {})
            b = self.bounds
            self.bar.update(len(chunk) * (b[segments.stop - 1][1] - b[segments.start][0]))
        for key in ("compile_s", "train_s"):
            self.seconds[est][key] += seconds.get(key, 0.0)
        return records, figures, end_state

    def timing(self, estimator: str, size: int, n_chunks: int) -> dict[str, Any]:
        t = self.seconds[estimator]
        return {
            "chunk_size": size,
            "n_chunks": n_chunks,
            "compile_s": round(t["compile_s"], 3),
            "train_s": round(t["train_s"], 3),
        }


def run_chunk(
    trainer: Trainer,
    program: Program,
    chunk: list[grid.Run],
    size: int,
    where: _Where,
    segments: range | None = None,
    state0=None,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], float, Any]:
    """Trains one chunk through the evaluation intervals `trainer.bounds[segments]` (default:
    all of them), from `state0` (stacked per-config states on the host, padded to `size`;
    default: a fresh init); returns its real runs' records (curves of these intervals only),
    their figure arrays (stacked along the first axis), the seconds spent, compiles excluded
    (an interrupted chunk's earlier seconds included), and the final vmapped state."""
    o, mesh, data, bounds, bar = (
        trainer.options,
        trainer.mesh,
        trainer.data,
        trainer.bounds,
        trainer.bar,
    )
    checkpoint = o.checkpoint
    t0, c0, before = time.perf_counter(), program.compile_s, 0.0
    segments = range(len(bounds)) if segments is None else segments
    cfg_sh = dev.config_sharding(mesh)
    # A chunk size recorded on another device count may not split evenly over this mesh: the
    # chunk keeps its runs, and more padding configs even out the shards.
    size = math.ceil(size / mesh.devices.size) * mesh.devices.size
    hp = {k: dev.to_global(v, cfg_sh) for k, v in grid.hparams_array(chunk, size).items()}
    if state0 is None:
        state = program.init(hp, data)
    else:
        state = jax.tree.map(lambda x: dev.to_global(x, cfg_sh), state0)
    curves: list[dict[str, Any]] = []
    first = segments.start
    if checkpoint is not None:
        loaded = checkpoint.load_state(where.tag, where.estimator, where.k, state, chunk)
        if loaded is not None:
            state, meta = loaded
            curves, first, before = meta["curves"], meta["next_segment"], meta["train_s"]
            bar.update(len(chunk) * (bounds[first - 1][1] - bounds[segments.start][0]))
    last_save = time.monotonic()
    for j in range(first, segments.stop):
        s, e = bounds[j]
        state, metrics = program.compiled(state, hp, data, e - s)(state, hp, data, jnp.int32(s))
        host = dev.to_host(metrics)
        curves.append({"step": e, **{name: results.json_value(v) for name, v in host.items()}})
        bar.update(len(chunk) * (e - s))
        bar.set_postfix_str(f"{where.estimator} chunk {where.k}", refresh=False)
        if (
            checkpoint is not None
            and j + 1 < segments.stop
            and time.monotonic() - last_save >= o.checkpoint_every_s
        ):
            spent = before + time.perf_counter() - t0 - (program.compile_s - c0)
            meta = {"curves": curves, "next_segment": j + 1, "train_s": spent}
            # An invocation stopped before finishing any chunk still counts up to this save (a
            # save skipped for lack of disk space writes nothing).
            if checkpoint.save_state(where.tag, where.estimator, where.k, state, meta, chunk):
                checkpoint.add_timing()
            last_save = time.monotonic()
        if o.callback is not None:
            o.callback(where.estimator, where.k, j)

    diverged, diverged_step = dev.to_host((state.diverged, state.diverged_step))
    records = results.run_records(chunk, curves, diverged, diverged_step)
    figures = dev.to_host(program.figures(state.params, data))
    spent = before + time.perf_counter() - t0 - (program.compile_s - c0)
    return records, {name: v[: len(chunk)] for name, v in figures.items()}, spent, state


def _compile_status(bar, estimator: str, compiling: bool) -> None:
    """The progress bar while a program compiles: says so, and afterwards leaves the compile's
    seconds out of its rate (tqdm's unpause), so that its ETA counts training only."""
    if compiling:
        bar.set_description_str(f"compiling {estimator}", refresh=True)
    else:
        bar.unpause()
        bar.set_description_str(estimator, refresh=True)


def by_estimator(runs: Sequence[grid.Run]) -> dict[str, list[int]]:
    """{estimator: positions of its runs}, estimators in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(r.estimator, []).append(i)
    return groups


# -- the sweep ---------------------------------------------------------------------------------
def train_runs(
    task: Task,
    data: dict[str, Any],
    runs: Sequence[grid.Run],
    options: EngineOptions | None = None,
    **fields: Any,
) -> SweepOutput:
    """Train `runs` for `options.steps` steps each, evaluating every `options.eval_every`.

    Returns each run's record (final metrics and curves, JSON-ready) and figure arrays.
    `options` (`EngineOptions`) may also be given as its fields, as keywords
    (`train_runs(task, data, runs, steps=30, eval_every=15)`); keywords given with `options`
    replace its fields.
    """
    trainer = Trainer(task, data, len(runs), engine_options(options, fields))
    records: list[dict | None] = [None] * len(runs)
    figures: list[dict | None] = [None] * len(runs)
    timing: dict[str, Any] = {}
    for est, idxs in by_estimator(runs).items():
        est_runs = [runs[i] for i in idxs]
        program, size = trainer.program(est, est_runs)
        chunk_ranges = grid.chunks(len(est_runs), size)
        for k, (a, b) in enumerate(chunk_ranges):
            where = _Where(trainer.options.tag, est, k)
            chunk_records, chunk_figures, _ = trainer.chunk(program, where, est_runs[a:b], size)
            for j, i in enumerate(idxs[a:b]):
                records[i] = chunk_records[j]
                figures[i] = {name: v[j] for name, v in chunk_figures.items()}
        timing[est] = trainer.timing(est, size, len(chunk_ranges))
    trainer.bar.close()
    # Every run belongs to one estimator's chunks, so no slot is left None.
    return SweepOutput(cast(list, records), cast(list, figures), timing)
