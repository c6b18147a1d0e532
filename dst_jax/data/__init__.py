"""Data: MNIST, Fashion-MNIST and CIFAR-10 from verified files, and on-device minibatches.

    images, labels = dst_jax.data.load("mnist", "train")            # numpy uint8 NHWC, int32
    images, labels, info = dst_jax.data.load_with_info("cifar10", "test")
    info["dataset"]                                                  # e.g. "cifar10-jpeg-q75"
    x, y, info = dst_jax.data.device_split("cifar10", "train", preprocess="threshold")

See `loader` for the folder layout and the data-folder setting (`data_dir`, `DST_DATA_DIR`),
`cache` for the decoded-array cache (`DST_CACHE_DIR`), `pipeline` for batching in the compiled
loop.
"""

from dst_jax.data.errors import DataIntegrityError, DataUnavailableError
from dst_jax.data.loader import load, load_with_info, resolve_data_dir, variant
from dst_jax.data.pipeline import (
    batch_indices,
    device_split,
    epoch_permutation,
    init_batch_order,
    scale_unit,
    threshold_planes,
)
from dst_jax.data.specs import CIFAR10_CLASSES, DATASETS, SPLITS

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "SPLITS",
    "DataIntegrityError",
    "DataUnavailableError",
    "batch_indices",
    "device_split",
    "epoch_permutation",
    "init_batch_order",
    "load",
    "load_with_info",
    "resolve_data_dir",
    "scale_unit",
    "threshold_planes",
    "variant",
]
