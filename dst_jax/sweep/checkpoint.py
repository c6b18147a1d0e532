"""Resumable sweep state on disk: every file written atomically, every file tied to one sweep.

Layout of `<out>/checkpoint/<fingerprint>/`, the fingerprint being a hash of the sweep's
manifest (task, config, runs, steps), so that no file of another sweep is ever read:
- `manifest.json`: the manifest itself.
- `chunk_sizes.json`: configs per chunk for each estimator, fixed by the first run.
- `timing.json`: compile and train seconds of each finished chunk, and wall seconds of each
  invocation, so records stay true across interruptions.
- `chunk-<tag>-<estimator>-<k>.json` and `.npz`: results of a finished chunk (its real runs
  only) and its runs' figure arrays.
- `state-<tag>-<estimator>-<k>/`: mid-chunk training state, written by orbax (each process
  writes its own shards), and `state-<...>.json` beside it: the next segment to run and the
  curves so far, written after the arrays. Both are deleted when the chunk finishes.
- `rungstate-<tag>-<estimator>-<k>.npz`: with successive halving, a chunk's state at the end of
  its rung (host arrays, one per leaf of the train state), from which the survivors continue;
  written before the chunk's results.

`tag` names a group of runs trained together (the grid, or a refinement round).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from dst_jax.io import atomic_open, atomic_write_json


class CheckpointError(ValueError):
    """A checkpoint file is damaged or belongs to something else; the message says what to do."""


def fingerprint(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


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

    def load_chunk(self, tag: str, estimator: str, k: int, n_runs: int):
        """(run records, figure arrays) of a finished chunk, or None if it has not finished."""
        name = self._name(tag, estimator, k)
        path = self.dir / f"chunk-{name}.json"
        if not path.exists():
            return None
        records = _read_json(path)
        if not isinstance(records, list) or len(records) != n_runs:
            raise CheckpointError(
                f"{path} should hold {n_runs} runs but holds "
                f"{len(records) if isinstance(records, list) else 'no list of'} runs; delete it "
                "and rerun the same command to train that chunk again"
            )
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

    def save_state(self, tag: str, estimator: str, k: int, state, meta: dict[str, Any]) -> None:
        """Saves the vmapped train state (sharded arrays: each process writes its shards) and
        then `meta`; the arrays of the previous save are replaced only once the new ones are
        complete."""
        import orbax.checkpoint as ocp

        name = self._name(tag, estimator, k)
        target = self._state_dir(name)
        step = int(meta["next_segment"])
        path = target / f"segment-{step:05d}"
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(path.absolute(), state, force=True)
        checkpointer.wait_until_finished()
        if self.writer:
            atomic_write_json(self.dir / f"state-{name}.json", {**meta, "arrays": path.name})
            for old in target.glob("segment-*"):
                if old.name != path.name:
                    shutil.rmtree(old, ignore_errors=True)

    def load_state(self, tag: str, estimator: str, k: int, like) -> tuple[Any, dict] | None:
        """(state, meta) saved for this chunk, restored with the shardings of `like` (a pytree
        of arrays or ShapeDtypeStructs); None if there is none, or if it is damaged (the chunk
        then restarts, with a warning)."""
        import orbax.checkpoint as ocp

        name = self._name(tag, estimator, k)
        meta_path = self.dir / f"state-{name}.json"
        if not meta_path.exists():
            return None
        try:
            meta = _read_json(meta_path)
            abstract = jax.tree.map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like
            )
            path = (self._state_dir(name) / meta["arrays"]).absolute()
            state = ocp.StandardCheckpointer().restore(path, abstract)
        except Exception as e:  # noqa: BLE001 (orbax and tensorstore raise many kinds)
            warnings.warn(
                f"the saved mid-chunk state of chunk {name} in {self.dir} cannot be read "
                f"({type(e).__name__}: {str(e)[:200]}); that chunk restarts from its first step",
                stacklevel=2,
            )
            self._delete_state(name)
            return None
        return state, meta

    def _delete_state(self, name: str) -> None:
        if self.writer:
            (self.dir / f"state-{name}.json").unlink(missing_ok=True)
            shutil.rmtree(self._state_dir(name), ignore_errors=True)
