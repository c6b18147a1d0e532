"""`load(name, split)`: MNIST, Fashion-MNIST and CIFAR-10 from files on disk, as numpy arrays.

Where the files are looked for (the data folder): the `data_dir` argument, else the environment
variable `DST_DATA_DIR`, else the per-user cache folder `~/.cache/dst_jax` (or
`$XDG_CACHE_HOME/dst_jax`). Inside it:

    mnist/          train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
                    t10k-images-idx3-ubyte.gz  t10k-labels-idx1-ubyte.gz
    fashion_mnist/  the same four names
    cifar10/        one of, in this order of preference:
                    cifar-10-batches-py/      (the extracted official python archive)
                    cifar-10-python.tar.gz    (the official python archive)
                    cifar-10-binary.tar.gz    (the official binary archive)
                    <variant>.tar.gz | <variant>/  a class-folder image copy holding
                        train/<class>/<image> and test/<class>/<image>

Canonical files are verified against their official sha256 (md5 for the extracted CIFAR
batches, the only published values); an image copy is checked for its counts (50,000 / 10,000,
5,000 / 1,000 per class), an image archive for its gzip CRC32 and length, and against a
`SHA256SUMS` file (as `sha256sum` writes it) beside the archive or in the data folder where one
lists it. Missing canonical files are downloaded from the official sources when a network is
there; without one the load fails within seconds and says which files to put where. Decoded
arrays are cached (see `dst_jax.data.cache`), so only the first load decodes.

The data folder must exist (a mistyped path is refused, not silently created), except the
default per-user folder, which is created for downloads. A data folder that is a file, a file
or folder that cannot be read, or a data file replaced by a folder each give one error that says
what is wrong and how to fix it: `DataUnavailableError` for what is missing or unreadable,
`ValueError` for a path that is the wrong kind of thing.

The variant actually read is reported by `load_with_info` and `variant`: "mnist",
"fashion_mnist", "cifar10" (canonical) or, for an image copy, a name derived from the archive
("cifar10-jpeg-q75" for `cifar10-jpeg-q75.tar.gz`): a JPEG copy is not canonical CIFAR-10 and
results must say so.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dst_jax.data import cache, formats
from dst_jax.data import download as fetch
from dst_jax.data.errors import DataIntegrityError, DataUnavailableError
from dst_jax.data.sources import _find_source, _missing_message, _Source
from dst_jax.data.specs import (
    IDX_FILES,
    SPLITS,
    DatasetSpec,
    check_split,
    get_spec,
)

BACKENDS = ("files", "tfds")


def _data_dir_and_origin(data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser().absolute(), "the data_dir argument"
    env = os.environ.get("DST_DATA_DIR")
    if env:
        return Path(env).expanduser().absolute(), "the DST_DATA_DIR environment variable"
    return cache.user_cache_dir(), "the default, as neither data_dir nor DST_DATA_DIR is set"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: `data_dir`, else `$DST_DATA_DIR`, else `~/.cache/dst_jax`."""
    return _data_dir_and_origin(data_dir)[0]


def _unreadable(e: OSError) -> DataUnavailableError:
    what = e.filename if e.filename is not None else "a data file or folder"
    if isinstance(e, PermissionError):
        return DataUnavailableError(
            f"cannot read {what}: permission denied. Give this user read access to it (and to "
            f"the folders above it; for folders also search access, e.g. chmod -R a+rX), or "
            f"point data_dir / DST_DATA_DIR at a readable copy"
        )
    return DataUnavailableError(
        f"cannot read {what}: {e.strerror or e}. Check the file or folder (a broken link, a "
        f"failing disk, a stale network mount), or point data_dir / DST_DATA_DIR at another copy"
    )


@contextlib.contextmanager
def _reported_os_errors() -> Iterator[None]:
    """Turn an OSError from reading the data folder into one `DataUnavailableError` line."""
    try:
        yield
    except DataUnavailableError:  # already ours (it is an OSError too)
        raise
    except OSError as e:
        # Raised without the inner traceback: the message says all a user can act on.
        raise _unreadable(e) from None


def _check_data_dir(spec: DatasetSpec, root: Path, origin: str) -> None:
    """Refuse a data folder that is missing (other than the default) or is not a folder, and
    data set paths that are the wrong kind of thing, each with how to fix it."""
    if root.exists() and not root.is_dir():
        raise ValueError(
            f"the data folder {root} (from {origin}) is a file, not a folder: point data_dir "
            f"or DST_DATA_DIR at the folder that holds mnist/, fashion_mnist/ and cifar10/"
        )
    if not root.exists() and root != cache.user_cache_dir():
        # Only the default folder is created: any other missing folder is most likely a typo,
        # and downloading into a fresh folder there would hide it.
        raise DataUnavailableError(
            f"the data folder {root} (from {origin}) does not exist: correct the path, or "
            f"create the folder (missing files are then downloaded into it); only the default "
            f"{cache.user_cache_dir()} is created when missing"
        )
    folder = root / spec.name
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"{folder} is a file, but the {spec.title} files belong in a folder of that name: "
            f"move or delete that file"
        )
    for name in spec.download_files:
        path = folder / name
        if path.exists() and not path.is_file():
            raise ValueError(
                f"{path} is a folder (or other non-file), but should be the file {name}: "
                f"delete it (the file is downloaded again) or put the file there"
            )


def _download(spec: DatasetSpec, root: Path) -> None:
    folder = root / spec.name
    missing = [f for f in spec.download_files if not (folder / f).is_file()]
    try:
        fetch.download_files(missing, folder, mirrors=spec.mirrors, sha256=spec.sha256)
    except fetch.DownloadError as e:
        if e.corrupt:
            raise DataIntegrityError(
                f"downloading {e.file} gave a file with the wrong checksum: " + "; ".join(e.reasons)
            ) from None
        raise DataUnavailableError(
            _missing_message(spec, root, "; ".join(e.reasons) or "no mirror")
        ) from None


def _decode(source: _Source, spec: DatasetSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Verify and decode every split of `source`, checking counts and shapes."""
    per_class = None
    if source.kind == "idx":
        for path in source.files():
            cache.verify_sha256(path, spec.sha256[path.name])
        splits = {
            s: formats.read_idx_pair(
                source.path / IDX_FILES[s][0],
                source.path / IDX_FILES[s][1],
                num_classes=spec.num_classes,
            )
            for s in SPLITS
        }
    elif source.kind in ("cifar_python", "cifar_binary"):
        if source.path.is_file():
            cache.verify_sha256(source.path, spec.sha256[source.path.name])
            md5 = None  # the archive's sha256 already covers its members
        else:
            md5 = spec.md5
        splits = formats.read_cifar_batches(
            source.path, binary=source.kind == "cifar_binary", md5=md5
        )
    else:
        splits = formats.read_class_folders(
            source.path, class_names=spec.class_names, image_shape=spec.image_shape
        )
        per_class = {s: spec.split_sizes[s] // spec.num_classes for s in SPLITS}
    for s, (images, labels) in splits.items():
        if images.shape[1:] != spec.image_shape:
            raise DataIntegrityError(
                f"{source.path}: {s} images have shape {images.shape[1:]}, expected "
                f"{spec.image_shape}"
            )
        formats.check_counts(
            labels,
            source=str(source.path),
            split=s,
            total=spec.split_sizes[s],
            num_classes=spec.num_classes,
            per_class=per_class[s] if per_class else None,
        )
    return splits


def _cache_key(source: _Source) -> str:
    content: tuple[str, ...] = ()
    if source.kind == "class_folders" and source.path.is_file():
        # An image archive has no official checksum to verify on every cache miss, only its
        # gzip CRC32 (checked while decoding) and an optional SHA256SUMS line; keying the entry
        # by its sha256 ties it to the exact bytes that passed, so a changed archive is never
        # answered from an old entry (see `dst_jax.data.cache`).
        content = (cache.sha256_file(source.path),)
    return cache.source_key(source.files(), source.kind, content=content)


def _verify_listed(source: _Source, root: Path) -> None:
    # Before the cache is consulted: a SHA256SUMS that now disagrees with the archive is obeyed
    # even when an entry for these bytes exists. The hash is shared with the cache key.
    if not source.canonical and source.path.is_file():
        cache.verify_listed_sha256(source.path, root)


def _info(source: _Source, split: str, n: int, backend: str = "files") -> dict[str, Any]:
    return {
        "dataset": source.variant,
        "source": str(source.path),
        "canonical": source.canonical,
        "backend": backend,
        "split": split,
        "num_examples": int(n),
    }


def _load_tfds(
    spec: DatasetSpec, split: str, data_dir: str | os.PathLike | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            'backend="tfds" needs tensorflow-datasets, which is not installed: '
            'pip install "dst_jax[tfds]" (tensorflow-datasets and tensorflow-cpu), or use '
            'the default backend="files", which reads the canonical files from a data folder '
            "(data_dir or DST_DATA_DIR) and downloads them when missing"
        ) from e
    tfds_dir = None if data_dir is None else os.fspath(data_dir)
    ds = tfds.load(spec.name, split=split, batch_size=-1, as_supervised=True, data_dir=tfds_dir)
    images, labels = tfds.as_numpy(ds)
    images, labels = np.asarray(images), np.asarray(labels)
    source = f"tensorflow_datasets:{spec.name}"
    if images.dtype != np.uint8 or images.shape[1:] != spec.image_shape:
        raise DataIntegrityError(
            f"{source}: expected uint8 images of shape (N, *{spec.image_shape}), got "
            f"{images.dtype} {images.shape}"
        )
    labels = labels.astype(np.int32)
    formats.check_counts(
        labels,
        source=source,
        split=split,
        total=spec.split_sizes[split],
        num_classes=spec.num_classes,
    )
    info = {
        "dataset": spec.name,
        "source": source,
        "canonical": True,
        "backend": "tfds",
        "split": split,
        "num_examples": int(labels.shape[0]),
    }
    return images, labels, info


def load_with_info(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    backend: str = "files",
    *,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Like `load`, plus a JSON-able provenance dict.

    info: {"dataset": the variant read ("mnist", "fashion_mnist", "cifar10",
    "cifar10-jpeg-q75", ...), "source": the folder or archive read, "canonical": bool,
    "backend", "split", "num_examples"}.
    """
    spec = get_spec(name)
    check_split(split)
    if backend == "tfds":
        return _load_tfds(spec, split, data_dir)
    if backend != "files":
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    root, origin = _data_dir_and_origin(data_dir)
    with _reported_os_errors():
        _check_data_dir(spec, root, origin)
        source = _find_source(spec, root)
        if source is None:
            if not download:
                raise DataUnavailableError(
                    _missing_message(spec, root, "downloading is switched off (download=False)")
                )
            _download(spec, root)
            source = _find_source(spec, root)
            assert source is not None, "files were downloaded, so a source must exist"
        _verify_listed(source, root)
        path = cache.cache_path(source.variant, _cache_key(source))
        hit = cache.read_split(path, split)
        if hit is not None:
            images, labels, _ = hit
            return images, labels, _info(source, split, labels.shape[0])
        splits = _decode(source, spec)
    cache.write(path, splits, {"dataset": source.variant, "source": str(source.path)})
    images, labels = splits[split]
    return images, labels, _info(source, split, labels.shape[0])


def load(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    backend: str = "files",
    *,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """One split of a data set as numpy arrays.

    Args:
      name: "mnist", "fashion_mnist" or "cifar10".
      split: "train" or "test".
      data_dir: the data folder; default `$DST_DATA_DIR`, else `~/.cache/dst_jax`. With
        backend="tfds" it is passed to tfds as its data_dir (default: tfds's own).
      backend: "files" (this package's readers) or "tfds" (tensorflow-datasets, if installed).
      download: fetch missing canonical files from the official sources.

    Returns:
      images: uint8 (N, H, W, C): (N, 28, 28, 1) for the MNISTs, (N, 32, 32, 3) for CIFAR-10.
      labels: int32 (N,), in [0, 10).
    """
    images, labels, _ = load_with_info(name, split, data_dir, backend, download=download)
    return images, labels


def variant(name: str, data_dir: str | os.PathLike | None = None, backend: str = "files") -> str:
    """The variant `load(name, ...)` reads from this data folder, without loading it.

    "mnist" / "fashion_mnist" / "cifar10" for canonical files (also what a download would
    give), or the image copy's name, e.g. "cifar10-jpeg-q75". A data folder that `load` would
    refuse (missing, a file, unreadable) raises the same error here.
    """
    spec = get_spec(name)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "tfds":
        return spec.name
    root, origin = _data_dir_and_origin(data_dir)
    with _reported_os_errors():
        _check_data_dir(spec, root, origin)
        source = _find_source(spec, root)
    return spec.name if source is None else source.variant
