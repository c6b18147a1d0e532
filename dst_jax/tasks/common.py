"""Helpers every task uses: seeded subsets, evaluation in padded slices, perplexity.

One implementation of each, so that the three tasks agree on what a subset is, how a split is
cut into evaluation slices, and what perplexity means.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

PyTree = Any


def subset(x: Any, y: Any, k: int | None, seed: int | None, what: str = "split") -> tuple[Any, Any]:
    """k examples of (x, y): the first k (`seed=None`), or k chosen by a seeded permutation and
    kept in their original order. `k=None` keeps the split whole; `y=None` (no labels) stays None.

    Raises:
      ValueError: if k exceeds the split's size (a silent clamp would hide a typo).
    """
    n = int(np.shape(x)[0])
    if k is None:
        return x, y
    if not 1 <= k <= n:
        raise ValueError(f"a subset of {k} examples of the {what} needs 1 <= k <= {n}")
    if seed is None:
        return x[:k], _rows(y, slice(0, k))
    idx = np.sort(np.random.default_rng(seed).permutation(n)[:k])
    return x[idx], _rows(y, idx)


def _rows(y: Any, idx: Any) -> Any:
    return None if y is None else y[idx]


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How a task cuts its data; every task's `Config` extends it.

    Attributes:
      val_fraction: share of the training split held out for validation (model selection):
        a seeded random subset, the same for every run of a sweep; 0 keeps no validation split.
      val_seed: seed of that subset.
      train_subset, test_subset: k examples of the split only (quick runs and tests), chosen by
        a seeded permutation (`subset_seed`) and kept in their original order; None: all. The
        validation split is cut from the training subset.
      subset_seed: seed of the subsets (the test subset uses subset_seed + 1).
      eval_batch_size: examples per evaluation slice (bounds evaluation memory per config).
    """

    val_fraction: float = 0.1
    val_seed: int = 0
    train_subset: int | None = None
    test_subset: int | None = None
    subset_seed: int = 0
    eval_batch_size: int = 500

    def __post_init__(self) -> None:
        if not (isinstance(self.val_fraction, int | float) and 0 <= self.val_fraction < 1):
            raise ValueError(
                f"Config.val_fraction must be a number in [0, 1) (0: no validation split), "
                f"got {self.val_fraction!r}"
            )
        for name in ("train_subset", "test_subset"):
            k = getattr(self, name)
            if k is not None and not (isinstance(k, int) and k >= 1):
                raise ValueError(f"Config.{name} must be None (all) or an int >= 1, got {k!r}")
        for name in ("val_seed", "subset_seed"):
            seed = getattr(self, name)
            # numpy's generators take non-negative seeds only.
            if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
                raise ValueError(f"Config.{name} must be an int >= 0, got {seed!r}")
        if not (isinstance(self.eval_batch_size, int) and self.eval_batch_size >= 1):
            raise ValueError(
                f"Config.eval_batch_size must be an int >= 1, got {self.eval_batch_size!r}"
            )


def split_validation(x: Any, y: Any, fraction: float, seed: int) -> tuple[Any, Any, Any, Any]:
    """(train_x, train_y, val_x, val_y): `round(fraction * N)` examples, chosen by a permutation
    seeded by `seed`, held out; both parts keep their original order. `y=None` (no labels)
    gives None labels."""
    n = int(np.shape(x)[0])
    n_val = int(round(fraction * n))
    if n_val == 0:
        # An empty validation split has no metrics to select on (and would divide by zero).
        raise ValueError(
            f"val_fraction={fraction:g} holds out 0 of the {n:,} training examples; use at least "
            f"{1 / n:.2g} (one example), or 0 for no validation split"
        )
    if n_val >= n:
        raise ValueError(
            f"val_fraction={fraction:g} leaves no training examples of {n:,}; use a smaller one"
        )
    perm = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return x[train], _rows(y, train), x[val], _rows(y, val)


def make_splits(config: SplitConfig, train_x, train_y, test_x, test_y) -> dict[str, Any]:
    """The evaluation and training splits of a task's `data` dict: subsets first, then the
    validation split cut from the training examples (`SplitConfig`). No `val_*` entries when
    `val_fraction` is 0; no `<split>_y` entries when the labels are None (unlabelled data)."""
    train_x, train_y = subset(
        train_x, train_y, config.train_subset, config.subset_seed, "train split"
    )
    test_x, test_y = subset(
        test_x, test_y, config.test_subset, config.subset_seed + 1, "test split"
    )
    data = {"test_x": test_x, "test_y": test_y}
    if config.val_fraction > 0:
        train_x, train_y, val_x, val_y = split_validation(
            train_x, train_y, config.val_fraction, config.val_seed
        )
        data.update(val_x=val_x, val_y=val_y)
    data = {"train_x": train_x, "train_y": train_y, **data}
    return {k: v for k, v in data.items() if v is not None}


def split_sizes(data: dict[str, Any]) -> dict[str, int]:
    """{split: number of examples} of a data dict, for results' provenance."""
    return {k[: -len("_x")]: int(np.shape(v)[0]) for k, v in data.items() if _is_split_x(k)}


def _is_split_x(name: str) -> bool:
    return name in ("train_x", "val_x", "test_x")


def load_data(
    config: Any, data_dir: str | None, encoding: str = "unit", labels: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A task's `(data, info)` from `config.dataset`'s train and test splits
    (`dst_jax.data.pipeline.device_split` with `encoding`), cut by the config (`make_splits`,
    `config` a `SplitConfig`). `labels=False` drops the labels (an unsupervised task's data).
    `info` is the data's provenance with the sizes of the splits."""
    from dst_jax.data import pipeline

    train_x, train_y, info = pipeline.device_split(config.dataset, "train", data_dir, encoding)
    test_x, test_y, _ = pipeline.device_split(config.dataset, "test", data_dir, encoding)
    if labels:
        data = make_splits(config, train_x, train_y, test_x, test_y)
    else:
        data = make_splits(config, train_x, None, test_x, None)
    return data, {**info, "split_sizes": split_sizes(data)}


def pad_to_slices(x_NxD: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """Rows cut into (S, size, ...) slices, the last zero-padded; and the (S, size) row mask."""
    n = x_NxD.shape[0]
    n_slices = -(-n // size)
    pad = n_slices * size - n
    x_SxE = jnp.pad(x_NxD, ((0, pad),) + ((0, 0),) * (x_NxD.ndim - 1))
    w_SxE = (jnp.arange(n_slices * size) < n).astype(jnp.float32).reshape(n_slices, size)
    return x_SxE.reshape(n_slices, size, *x_NxD.shape[1:]), w_SxE


def sliced_sums(
    fn: Callable[[jax.Array, jax.Array, Any, jax.Array], PyTree],
    key: jax.Array,
    x_NxD: jax.Array,
    y_N: jax.Array | None,
    size: int,
) -> PyTree:
    """Sum over the whole split of `fn(key_s, x_ExD, y_E, w_E)`, evaluated slice by slice.

    `fn` returns sums over its slice weighted by the row mask `w_E` (1 for real rows, 0 for
    padding), as a pytree of arrays; `y_E` is None when `y_N` is (data without labels). A
    `lax.scan` keeps one slice of activations alive at a time (times the width of a vmapped
    grid), so evaluation memory does not grow with the split. Slice s gets the key
    `split(key, S)[s]`.
    """
    n = x_NxD.shape[0]
    size = min(size, n)
    x_SxExD, w_SxE = pad_to_slices(x_NxD, size)
    y_SxE = None if y_N is None else pad_to_slices(y_N, size)[0]
    keys = jax.random.split(key, x_SxExD.shape[0])

    def step(total, inputs):
        x, y, w, k = inputs
        return jax.tree.map(jnp.add, total, fn(k, x, y, w)), None

    y_first = None if y_SxE is None else y_SxE[0]
    zeros = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype),
        jax.eval_shape(fn, keys[0], x_SxExD[0], y_first, w_SxE[0]),
    )
    total, _ = jax.lax.scan(step, zeros, (x_SxExD, y_SxE, w_SxE, keys))
    return total


def perplexity(counts: ArrayLike) -> jax.Array:
    """exp(entropy) of the distribution `counts / sum(counts)` over the last axis.

    `counts` are non-negative counts or frequencies; 0 log 0 = 0. The result lies in [1, K]:
    K when every entry is equal, 1 when one entry holds everything. All-zero counts give NaN.
    The inner `where` keeps `log`'s argument positive, so the gradient stays finite too.
    """
    counts = jnp.asarray(counts)
    if not jnp.issubdtype(counts.dtype, jnp.floating):
        counts = counts.astype(jnp.float32)
    p = counts / jnp.sum(counts, axis=-1, keepdims=True)
    plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
    return jnp.exp(-jnp.sum(plogp, axis=-1))
