"""Resumable sweep state on disk, every file written atomically.

Layout of `<out>/checkpoint/`:
- `manifest.json`: the sweep's fingerprint (task, config, runs, steps). A rerun with a different
  sweep refuses to resume instead of mixing results.
- `chunk_sizes.json`: configs per chunk for each estimator, fixed by the first run.
- `chunk-<estimator>-<k>.json`: results of a finished chunk (its real runs only).
- `state-<estimator>-<k>.npz`: mid-chunk training state (leaves of the vmapped TrainState), the
  next segment to run and the curves so far. Deleted when the chunk finishes.
- `best-<estimator>.npz`: parameters of that estimator's best single run so far and its score.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from dst_jax.io import atomic_open, atomic_write_json


class Checkpoint:
    """Multi-host: every process reads the same folder (a shared file system), so all of them
    skip the same finished chunks; only process 0 writes."""

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir) / "checkpoint"
        self.writer = jax.process_index() == 0

    # -- manifest ----------------------------------------------------------------------------
    def open(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Start or resume the sweep described by `manifest` (JSON-able)."""
        path = self.dir / "manifest.json"
        fingerprint = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
        if path.exists():
            stored = json.loads(path.read_text())
            if stored.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"{self.dir} holds the checkpoint of a different sweep (other task, grid, "
                    "steps or data). Use a new --out folder, or delete that folder to start over."
                )
            return stored
        stored = {**manifest, "fingerprint": fingerprint}
        if self.writer:
            atomic_write_json(path, stored)
        return stored

    def _sizes(self) -> dict[str, int]:
        path = self.dir / "chunk_sizes.json"
        return json.loads(path.read_text()) if path.exists() else {}

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

    # -- finished chunks ---------------------------------------------------------------------
    def _chunk_path(self, estimator: str, k: int) -> Path:
        return self.dir / f"chunk-{estimator}-{k:04d}.json"

    def load_chunk(self, estimator: str, k: int) -> list[dict] | None:
        path = self._chunk_path(estimator, k)
        return json.loads(path.read_text()) if path.exists() else None

    def save_chunk(self, estimator: str, k: int, runs: list[dict]) -> None:
        if not self.writer:
            return
        atomic_write_json(self._chunk_path(estimator, k), runs)
        self._state_path(estimator, k).unlink(missing_ok=True)

    # -- mid-chunk state ---------------------------------------------------------------------
    def _state_path(self, estimator: str, k: int) -> Path:
        return self.dir / f"state-{estimator}-{k:04d}.npz"

    def save_state(self, estimator: str, k: int, state_leaves, meta: dict[str, Any]) -> None:
        if not self.writer:
            return
        arrays = {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(state_leaves)}
        with atomic_open(self._state_path(estimator, k), "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)

    def load_state(self, estimator: str, k: int, like_leaves) -> tuple[list, dict] | None:
        """Leaves saved for this chunk, checked against the shapes of `like_leaves`."""
        path = self._state_path(estimator, k)
        if not path.exists():
            return None
        with np.load(path) as z:
            meta = json.loads(str(z["__meta__"]))
            leaves = [z[f"leaf_{i:05d}"] for i in range(len(like_leaves))]
        for got, want in zip(leaves, like_leaves, strict=True):
            if got.shape != want.shape or got.dtype != want.dtype:
                raise ValueError(
                    f"checkpoint {path} does not match this sweep's state "
                    f"({got.shape} {got.dtype} vs {want.shape} {want.dtype}); delete it to restart"
                )
        return leaves, meta

    # -- best parameters per estimator -------------------------------------------------------
    def _best_path(self, estimator: str) -> Path:
        return self.dir / f"best-{estimator}.npz"

    def save_best(self, estimator: str, params, score: float, run: dict) -> None:
        if not self.writer:
            return
        leaves, _ = jax.tree.flatten(params)
        arrays = {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
        meta = {"score": score, "run": run}
        with atomic_open(self._best_path(estimator), "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)

    def load_best(self, estimator: str, like_params) -> tuple[Any, float, dict] | None:
        path = self._best_path(estimator)
        if not path.exists():
            return None
        leaves_like, treedef = jax.tree.flatten(like_params)
        with np.load(path) as z:
            meta = json.loads(str(z["__meta__"]))
            leaves = [z[f"leaf_{i:05d}"] for i in range(len(leaves_like))]
        return jax.tree.unflatten(treedef, leaves), meta["score"], meta["run"]
