"""Resumable sweep state on disk: every file written atomically, every file tied to one sweep.

Layout of `<out>/checkpoint/<fingerprint>/`, the fingerprint being a hash of the sweep's
manifest (task, config, runs, steps), so that no file of another sweep is ever read:
- `manifest.json`: the manifest itself.
- `chunk_sizes.json`: configs per chunk for each estimator, fixed by the first run.
- `timing.json`: compile and train seconds of each finished chunk, and wall seconds of each
  invocation, so records stay true across interruptions.
- `chunk-<tag>-<estimator>-<k>.json` and `.npz`: results of a finished chunk (its real runs
  only) and its runs' figure arrays. A resume reads a file only if its records are the chunk's
  runs, field by field (`mismatched_runs`); chunks cut another way are trained again.
- `state-<tag>-<estimator>-<k>/`: mid-chunk training state, written by orbax (each process
  writes its own shards), and `state-<...>.json` beside it: the next segment to run, the curves
  so far, the chunk's runs and its number of configs, written after the arrays. Both are
  deleted when the chunk finishes.
- `rungstate-<tag>-<estimator>-<k>.npz`: with successive halving, a chunk's state at the end of
  its rung (host arrays, one per leaf of the train state), from which the survivors continue;
  written before the chunk's results.

`tag` names a group of runs trained together (the grid, or a refinement round).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from dst_jax.io import DISK_FULL, atomic_open, atomic_write_json, free_bytes
from dst_jax.sweep import devices as dev
from dst_jax.sweep.grid import Run


class CheckpointError(ValueError):
    """A checkpoint file is damaged or belongs to something else; the message says what to do."""


def fingerprint(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


# The fields that identify a run, with their defaults (a record written before a field existed
# holds its default).
_RUN_FIELDS = {f.name: f.default for f in dataclasses.fields(Run)}


def run_keys(run: Run | dict[str, Any]) -> dict[str, Any]:
    """The fields that identify a run (`grid.Run`'s), from a `Run` or a results record."""
    if isinstance(run, Run):
        return dataclasses.asdict(run)
    return {name: run.get(name, default) for name, default in _RUN_FIELDS.items()}


def mismatched_runs(records: list, runs: Sequence) -> str | None:
    """None if `records` are exactly the records of `runs`, in order (every field of `grid.Run`
    equal: estimator, temperatures, seed, lr, schedules); else what differs, in words."""
    if len(records) != len(runs):
        return f"holds {len(records)} runs where the chunk has {len(runs)}"
    for i, (record, run) in enumerate(zip(records, runs, strict=True)):
        want = run_keys(run)
        got = run_keys(record)
        if got != want:
            diff = ", ".join(f"{k} {got[k]!r} (not {want[k]!r})" for k in want if got[k] != want[k])
            return f"its run {i} has {diff}"
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path} is damaged ({e}); delete it and rerun the same command to redo its part "
            "of the sweep"
        ) from None


class Checkpoint:
    """Multi-host: every process reads the same folder (a shared file system), so all of them
    skip the same finished chunks; process 0 writes the JSON files, every process its shards
    of the array state."""

    def __init__(self, out_dir: str | os.PathLike):
        self.root = Path(out_dir) / "checkpoint"
        self.dir = self.root  # set by `open`
        self.writer = jax.process_index() == 0
        self._started = time.perf_counter()
        self._slot: int | None = None  # this invocation's entry in invocations_wall_s

    # -- manifest ----------------------------------------------------------------------------
    def open(self, manifest: dict[str, Any]) -> None:
        """Start or resume the sweep described by `manifest` (JSON-able).

        Raises:
          CheckpointError: if the folder holds the checkpoint of a different sweep.
        """
        fp = fingerprint(manifest)
        self.dir = self.root / fp
        others = [
            p.name for p in self.root.glob("*") if p.is_dir() and p.name != fp and p.name[:1] != "."
        ]
        if others:
            raise CheckpointError(
                f"{self.root} holds the checkpoint of a different sweep (other task, grid, steps "
                "or data). Use a new --out folder, or delete that folder to start over."
            )
        if self.writer:
            atomic_write_json(self.dir / "manifest.json", manifest)

    def _json(self, name: str, default: Any) -> Any:
        path = self.dir / name
        return _read_json(path) if path.exists() else default

    # -- chunk sizes -------------------------------------------------------------------------
    def _sizes(self) -> dict[str, int]:
        sizes = self._json("chunk_sizes.json", {})
        bad = {k: v for k, v in sizes.items() if not (isinstance(v, int) and v >= 1)}
        if not isinstance(sizes, dict) or bad:
            raise CheckpointError(
                f"{self.dir / 'chunk_sizes.json'} holds invalid chunk sizes {bad or sizes}; "
                "delete the file (the sweep then sizes its remaining chunks again)"
            )
        return sizes

    def has_chunk_size(self, estimator: str) -> bool:
        return estimator in self._sizes()

    def chunk_size(self, estimator: str, proposed: int, fixed: bool = False) -> int:
        """The chunk size for `estimator`: the one recorded by the first run of this sweep if
        any, so a resumed sweep cuts its runs exactly as the interrupted one did; else
        `proposed` (recorded now when `fixed`, i.e. given by the user)."""
        sizes = self._sizes()
        if estimator in sizes:
            return int(sizes[estimator])
        if fixed:
            self.set_chunk_size(estimator, proposed)
        return proposed

    def set_chunk_size(self, estimator: str, size: int) -> None:
        sizes = self._sizes()
        sizes[estimator] = int(size)
        if self.writer:
            atomic_write_json(self.dir / "chunk_sizes.json", sizes)

    # -- timing across invocations -----------------------------------------------------------
    def timing(self) -> dict[str, Any]:
        return self._json("timing.json", {"chunks": {}, "invocations_wall_s": []})

    def add_timing(self, chunk: str | None = None, seconds: dict | None = None, wall_s=None):
        """Record a finished chunk's seconds and/or this invocation's wall time. Every call
        brings this invocation's entry up to date (`wall_s`, or the time since the checkpoint
        was created), so an invocation killed later still counts up to its last finished
        chunk or saved segment. Only the writing process keeps the record."""
        if not self.writer:
            return
        t = self.timing()
        if chunk is not None:
            t["chunks"][chunk] = seconds
        walls = t["invocations_wall_s"]
        if self._slot is None or self._slot >= len(walls):
            self._slot = len(walls)
            walls.append(0.0)
        elapsed = wall_s if wall_s is not None else time.perf_counter() - self._started
        walls[self._slot] = round(elapsed, 2)
        atomic_write_json(self.dir / "timing.json", t)

    # -- finished chunks ---------------------------------------------------------------------
    def _name(self, tag: str, estimator: str, k: int) -> str:
        return f"{tag}-{estimator}-{k:04d}"

    def load_chunk(self, tag: str, estimator: str, k: int, runs: Sequence | int):
        """(run records, figure arrays) of a finished chunk, or None if it has not finished.

        `runs`: the chunk's runs (`grid.Run`), which the file's records must match one for one
        in every field; a file that holds other runs (written with another chunk size, or by
        another process on the same folder) is set aside with a warning and None is returned,
        so that the chunk is trained again. An int only checks the number of records.

        Raises:
          CheckpointError: if the file is damaged (not a list of run records).
        """
        name = self._name(tag, estimator, k)
        path = self.dir / f"chunk-{name}.json"
        if not path.exists():
            return None
        records = _read_json(path)
        n_runs = runs if isinstance(runs, int) else len(runs)
        well_formed = isinstance(records, list) and all(isinstance(r, dict) for r in records)
        if not well_formed or (isinstance(runs, int) and len(records) != n_runs):
            raise CheckpointError(
                f"{path} should hold {n_runs} runs but holds "
                f"{len(records) if isinstance(records, list) else 'no list of'} runs; delete it "
                "and rerun the same command to train that chunk again"
            )
        why = None if isinstance(runs, int) else mismatched_runs(records, runs)
        if why is not None:
            warnings.warn(
                f"{path} is not chunk {k} of this sweep's {estimator} runs ({why}; the chunks "
                "were cut another way, e.g. by another --chunk-size or device count): that "
                "chunk is trained again",
                stacklevel=2,
            )
            if self.writer:
                path.unlink(missing_ok=True)
                (self.dir / f"chunk-{name}.npz").unlink(missing_ok=True)
            return None
        figures = {}
        npz = self.dir / f"chunk-{name}.npz"
        if npz.exists():
            try:
                with np.load(npz, allow_pickle=False) as z:
                    figures = {key: z[key] for key in z.files}
            except (OSError, ValueError) as e:
                raise CheckpointError(
                    f"{npz} is damaged ({e}); delete it and the .json beside it, then rerun"
                ) from None
        return records, figures

    def save_chunk(self, tag: str, estimator: str, k: int, records: list, figures: dict) -> None:
        name = self._name(tag, estimator, k)
        if self.writer:
            if figures:
                with atomic_open(self.dir / f"chunk-{name}.npz", "wb") as f:
                    np.savez(f, **figures)
            atomic_write_json(self.dir / f"chunk-{name}.json", records)
        self._delete_state(name)

    # -- end-of-rung state (successive halving) -----------------------------------------------
    def save_rung_state(self, tag: str, estimator: str, k: int, state) -> None:
        """Saves a chunk's state at the end of a rung (host arrays; every process holds all of
        them, process 0 writes)."""
        if self.writer:
            leaves = jax.tree.leaves(state)
            with atomic_open(
                self.dir / f"rungstate-{self._name(tag, estimator, k)}.npz", "wb"
            ) as f:
                np.savez(f, *[np.asarray(x) for x in leaves])

    def load_rung_state(self, tag: str, estimator: str, k: int, like):
        """The state saved by `save_rung_state`, as host arrays with the structure, shapes and
        dtypes of `like` (a pytree of arrays or ShapeDtypeStructs)."""
        path = self.dir / f"rungstate-{self._name(tag, estimator, k)}.npz"
        fix = (
            f"delete it and chunk-{self._name(tag, estimator, k)}.json beside it, then rerun the "
            "same command to train that chunk again"
        )
        leaves, treedef = jax.tree.flatten(like)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path} is missing or damaged ({e}); {fix}") from None
        if len(arrays) != len(leaves) or any(
            a.shape != tuple(x.shape) or a.dtype.itemsize != np.dtype(x.dtype).itemsize
            for a, x in zip(arrays, leaves, strict=False)
        ):
            raise CheckpointError(f"{path} does not hold this chunk's state; {fix}")
        # np.savez stores dtypes numpy does not know (bfloat16) as raw bytes: view them back.
        arrays = [a.view(x.dtype) for a, x in zip(arrays, leaves, strict=True)]
        return jax.tree.unflatten(treedef, arrays)

    # -- mid-chunk state (orbax) -------------------------------------------------------------
    def _state_dir(self, name: str) -> Path:
        return self.dir / f"state-{name}"

    def save_state(
        self,
        tag: str,
        estimator: str,
        k: int,
        state,
        meta: dict[str, Any],
        runs: Sequence[Run] | None = None,
    ) -> bool:
        """Saves the vmapped train state (sharded arrays: each process writes its shards) and
        then `meta` (with the chunk's `runs`, which a resume must match); the arrays of the
        previous save are replaced only once the new ones are complete.

        Where the disk has no room for the arrays, nothing is written (a save that runs out of
        space midway is removed again), a warning names the disk and the folder, and False is
        returned: training carries on without that save. Returns True once saved.
        """
        import orbax.checkpoint as ocp

        name = self._name(tag, estimator, k)
        target = self._state_dir(name)
        step = int(meta["next_segment"])
        path = target / f"segment-{step:05d}"
        leaves = jax.tree.leaves(state)
        meta = {**meta, "arrays": path.name, "configs": int(leaves[0].shape[0])}
        if runs is not None:
            meta["runs"] = [run_keys(r) for r in runs]
        # Each process writes its share of the arrays; all of them skip the save if any lacks
        # the room (orbax's save is collective).
        need = sum(x.nbytes for x in leaves) / jax.process_count() * 1.1 + 2**20
        if not dev.agreed_min(int(free_bytes(self.dir) >= need)):
            self._no_room(path, need)
            return False
        try:
            with _quiet_orbax():
                checkpointer = ocp.StandardCheckpointer()
                checkpointer.save(path.absolute(), state, force=True)
                checkpointer.wait_until_finished()
            if self.writer:
                atomic_write_json(self.dir / f"state-{name}.json", meta)
        except Exception as e:
            # orbax reports a full disk as a ValueError from tensorstore naming errno 28.
            full = (
                isinstance(e, OSError)
                and e.errno in DISK_FULL
                or "No space left" in str(e)
                or free_bytes(self.dir) < need
            )
            self._remove_partial(target, path)
            if not full:
                raise
            self._no_room(path, need)
            return False
        if self.writer:
            for old in target.glob("segment-*"):
                if old.name != path.name:
                    shutil.rmtree(old, ignore_errors=True)
        return True

    def _remove_partial(self, target: Path, path: Path) -> None:
        """Removes what a failed save of `path` left: orbax's temporary folder, partial arrays."""
        if self.writer:
            for partial in target.glob(f"{path.name}*"):
                shutil.rmtree(partial, ignore_errors=True)

    def _no_room(self, path: Path, need: float) -> None:
        warnings.warn(
            f"the disk holding {self.dir} is full ({free_bytes(self.dir) / 2**20:.1f} MiB free): "
            f"the mid-chunk state {path.relative_to(self.dir)} (about {need / 2**20:.0f} MiB) "
            "was not saved; the sweep carries on without it (an interruption now loses that "
            "chunk's progress since its last save)",
            stacklevel=3,
        )

    def load_state(
        self, tag: str, estimator: str, k: int, like, runs: Sequence[Run] | None = None
    ) -> tuple[Any, dict] | None:
        """(state, meta) saved for this chunk, restored with the shardings of `like` (a pytree
        of arrays or ShapeDtypeStructs); None if there is none, if it is damaged, or if it was
        saved for other runs (another chunk size) or another number of configs per chunk
        (another device count): the chunk then restarts, with a warning."""
        import orbax.checkpoint as ocp

        name = self._name(tag, estimator, k)
        meta_path = self.dir / f"state-{name}.json"
        if not meta_path.exists():
            return None
        configs = int(jax.tree.leaves(like)[0].shape[0])
        try:
            meta = _read_json(meta_path)
            saved_runs = meta.get("runs")
            if runs is not None and saved_runs is not None:
                why = mismatched_runs(saved_runs, runs)
                if why is not None:
                    raise CheckpointError(f"it was saved for other runs: {why}")
            if meta.get("configs", configs) != configs:
                raise CheckpointError(
                    f"it holds {meta['configs']} configs, this invocation trains {configs} per "
                    "chunk (another device count)"
                )
            abstract = jax.tree.map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like
            )
            path = (self._state_dir(name) / meta["arrays"]).absolute()
            with _quiet_orbax():
                state = ocp.StandardCheckpointer().restore(path, abstract)
        except Exception as e:  # noqa: BLE001 (orbax and tensorstore raise many kinds)
            why = str(e) if isinstance(e, CheckpointError) else f"{type(e).__name__}: {e}"
            warnings.warn(
                f"the saved mid-chunk state of chunk {name} in {self.dir} cannot be used "
                f"({why[:300]}); that chunk restarts from its first step",
                stacklevel=2,
            )
            self._delete_state(name)
            return None
        return state, meta

    def _delete_state(self, name: str) -> None:
        if self.writer:
            (self.dir / f"state-{name}.json").unlink(missing_ok=True)
            shutil.rmtree(self._state_dir(name), ignore_errors=True)


@contextlib.contextmanager
def _quiet_orbax():
    """Keeps orbax's own error logs (a traceback per background thread) off the console: a
    failed save or restore raises here, and the caller says what happened in one line."""
    logger = logging.getLogger("absl")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled
