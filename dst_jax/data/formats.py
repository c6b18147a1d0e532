"""Parsers from the on-disk formats to uint8 NHWC images and int32 labels.

Every parser checks what it reads and raises `DataIntegrityError` naming the file (and the
archive member) on anything unexpected: a truncated or corrupted file gives an error, never
wrong data. Archives are streamed and checked to their last byte by `archives` (whose
`iter_members` and `check_archive` are importable from here too).

Formats:
- IDX (MNIST, Fashion-MNIST): bytes 0-1 zero, byte 2 the element type (0x08 = uint8), byte 3
  the number of dimensions d, then d big-endian uint32 sizes, then the elements in C order.
- CIFAR-10 python batches: a (Python 2) pickle of a dict with b"data", a uint8 (n, 3072) array
  of rows [R(32x32), G(32x32), B(32x32)], and b"labels", a list of n ints. Unpickled with a
  loader that admits only the numpy array constructors, so a doctored batch cannot run code.
- CIFAR-10 binary batches: n records of 1 label byte + 3072 pixel bytes (same channel layout).
- Class-folder images: `[top/]train/<class>/<file>` and `[top/]test/<class>/<file>`, any format
  Pillow decodes. Within a class, files are ordered by name (numerically when the stems are
  numbers); classes by their index in `class_names`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from dst_jax.data.archives import check_archive, iter_members
from dst_jax.data.errors import DataIntegrityError

_UINT8_IDX_TYPE = 0x08
_CIFAR_PIXELS = 32 * 32 * 3
_IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"}


# ---------------------------------------------------------------------------------------------
# IDX


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode an uncompressed IDX buffer of uint8 elements into an array of its stated shape."""
    if len(data) < 4:
        raise DataIntegrityError(
            f"{source}: {len(data)} bytes is too short for an IDX header; the file is truncated"
        )
    if data[0:2] != b"\0\0" or data[2] != _UINT8_IDX_TYPE:
        raise DataIntegrityError(
            f"{source}: not an IDX file of uint8 elements (magic bytes {data[:4].hex()}, "
            f"expected 000008xx); the file is corrupted or is not an IDX file"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataIntegrityError(f"{source}: IDX header with {ndim} dimensions is truncated")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    body = len(data) - header
    if body != expected:
        what = "truncated" if body < expected else "followed by extra bytes"
        raise DataIntegrityError(
            f"{source}: IDX header says shape {dims} ({expected} bytes) but the file holds "
            f"{body} bytes after the header; the file is {what}"
        )
    return np.frombuffer(data, np.uint8, count=expected, offset=header).reshape(dims).copy()


def read_idx_gz(path: str | os.PathLike) -> np.ndarray:
    """Read a gzip-compressed IDX file (see `parse_idx`)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes())
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataIntegrityError(f"{path}: gzip stream is truncated or corrupted ({e})") from e
    return parse_idx(raw, source=str(path))


def read_idx_pair(
    images_path: str | os.PathLike, labels_path: str | os.PathLike, *, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, 1) uint8 and labels (N,) int32 from an IDX image/label file pair."""
    images = read_idx_gz(images_path)
    labels = read_idx_gz(labels_path)
    if images.ndim != 3:
        raise DataIntegrityError(
            f"{images_path}: expected a 3-d IDX image file (N, H, W), got shape {images.shape}"
        )
    if labels.ndim != 1:
        raise DataIntegrityError(
            f"{labels_path}: expected a 1-d IDX label file (N,), got shape {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DataIntegrityError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    _check_label_range(labels, num_classes, str(labels_path))
    return images[..., None], labels.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 batches


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, numbers and numpy arrays, and nothing executable."""

    _ALLOWED = {
        ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        # Old pickles (the official batches) name numpy.core, which numpy 2 moved to numpy._core.
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def _check_label_range(labels: np.ndarray, num_classes: int, source: str) -> None:
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataIntegrityError(
            f"{source}: labels must lie in [0, {num_classes}), found "
            f"[{int(labels.min())}, {int(labels.max())}]; the file is corrupted"
        )


def _cifar_rows_to_nhwc(rows: np.ndarray) -> np.ndarray:
    # Rows hold the three 32x32 planes one after the other: (N, C, H, W) -> (N, H, W, C).
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def parse_cifar_batch(data: bytes, *, source: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> images (n, 32, 32, 3) uint8, labels (n,) int32."""
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # a corrupted pickle can fail in any of a dozen ways
        raise DataIntegrityError(
            f"{source}: not a readable CIFAR-10 python batch ({type(e).__name__}: {e}); the "
            f"file is truncated or corrupted"
        ) from e
    if not isinstance(batch, dict):
        raise DataIntegrityError(f"{source}: a CIFAR-10 batch is a dict, got {type(batch)}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataIntegrityError(
            f"{source}: CIFAR-10 batch lacks 'data' or 'labels' (keys: {sorted(batch)})"
        )
    rows, labels = batch["data"], np.asarray(batch["labels"])
    if not (
        isinstance(rows, np.ndarray)
        and rows.dtype == np.uint8
        and rows.ndim == 2
        and rows.shape[1] == _CIFAR_PIXELS
    ):
        raise DataIntegrityError(
            f"{source}: CIFAR-10 'data' must be a uint8 array of shape (n, 3072), got "
            f"{getattr(rows, 'dtype', type(rows))} {getattr(rows, 'shape', '')}"
        )
    if labels.shape != (rows.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataIntegrityError(
            f"{source}: CIFAR-10 batch has {rows.shape[0]} images but labels of shape "
            f"{labels.shape} and dtype {labels.dtype}"
        )
    _check_label_range(labels, 10, source)
    return _cifar_rows_to_nhwc(rows), labels.astype(np.int32)


def parse_cifar_binary_batch(
    data: bytes, *, source: str = "<bytes>"
) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch (records of 1 label byte + 3072 pixel bytes)."""
    record = 1 + _CIFAR_PIXELS
    if len(data) == 0 or len(data) % record:
        raise DataIntegrityError(
            f"{source}: {len(data)} bytes is not a whole number of {record}-byte CIFAR-10 "
            f"records; the file is truncated or corrupted"
        )
    table = np.frombuffer(data, np.uint8).reshape(-1, record)
    labels = table[:, 0].astype(np.int32)
    _check_label_range(labels, 10, source)
    return _cifar_rows_to_nhwc(table[:, 1:]), labels


def read_cifar_batches(
    path: str | os.PathLike,
    *,
    binary: bool = False,
    md5: Mapping[str, str] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All CIFAR-10 batches of an archive or extracted folder -> {split: (images, labels)}.

    Train = data_batch_1..5 in that order, test = test_batch, as in the official files.
    `binary` selects the binary format (`data_batch_1.bin`, ...). `md5` (batch name -> hex)
    verifies each batch's bytes before it is parsed.
    """
    from dst_jax.data.specs import CIFAR_TEST_BATCHES, CIFAR_TRAIN_BATCHES

    suffix = ".bin" if binary else ""
    wanted = {b + suffix: b for b in (*CIFAR_TRAIN_BATCHES, *CIFAR_TEST_BATCHES)}
    parse = parse_cifar_binary_batch if binary else parse_cifar_batch
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, data in iter_members(path):
        base = name.rsplit("/", 1)[-1]
        if base not in wanted:
            continue
        batch = wanted[base]
        source = f"{path}:{name}"
        if batch in found:
            raise DataIntegrityError(f"{path}: batch {base} appears twice")
        if md5 is not None and batch in md5:
            digest = hashlib.md5(data).hexdigest()
            if digest != md5[batch]:
                raise DataIntegrityError(
                    f"{source}: md5 mismatch: expected {md5[batch]}, got {digest}; the file "
                    f"is corrupted or not the official CIFAR-10 batch"
                )
        found[batch] = parse(data, source=source)
    missing = [b + suffix for b in wanted.values() if b not in found]
    if missing:
        raise DataIntegrityError(f"{path}: missing CIFAR-10 batches {missing}")

    def cat(batches):
        return (
            np.concatenate([found[b][0] for b in batches]),
            np.concatenate([found[b][1] for b in batches]),
        )

    return {"train": cat(CIFAR_TRAIN_BATCHES), "test": cat(CIFAR_TEST_BATCHES)}


# ---------------------------------------------------------------------------------------------
# Class-folder image archives


def _name_order(fname: str) -> tuple:
    stem = fname.rsplit(".", 1)[0]
    return (0, int(stem), fname) if stem.isdigit() else (1, 0, fname)


def decode_image(data: bytes, shape: tuple[int, int, int], *, source: str) -> np.ndarray:
    """Decode one image file to uint8 (H, W, C) with Pillow; its size must equal `shape`."""
    h, w, c = shape
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB" if c == 3 else "L"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataIntegrityError(
            f"{source}: cannot decode image ({type(e).__name__}: {e}); the file is truncated "
            f"or corrupted"
        ) from e
    arr = arr.reshape(arr.shape[0], arr.shape[1], c)
    if arr.shape != (h, w, c):
        raise DataIntegrityError(f"{source}: image is {arr.shape}, expected {(h, w, c)}")
    return arr


def read_class_folders(
    path: str | os.PathLike,
    *,
    class_names: tuple[str, ...],
    image_shape: tuple[int, int, int],
    splits: tuple[str, ...] = ("train", "test"),
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Images under `[top/]<split>/<class>/<file>` of an archive or folder.

    Returns {split: (images (n, H, W, C) uint8, labels (n,) int32)}, ordered by class index,
    then by file name. Hidden files and non-image extensions are skipped; a class folder not
    in `class_names`, or a split with no images, is an error.
    """
    class_index = {c: i for i, c in enumerate(class_names)}
    entries: dict[str, list[tuple[int, tuple, np.ndarray]]] = {s: [] for s in splits}
    try:
        for name, data in iter_members(path):
            parts = name.split("/")
            if len(parts) < 3 or parts[-3] not in entries:
                continue
            split, cls, fname = parts[-3:]
            if fname.startswith(".") or Path(fname).suffix.lower() not in _IMAGE_EXTENSIONS:
                continue
            if cls not in class_index:
                raise DataIntegrityError(
                    f"{path}: unexpected class folder {split}/{cls}; expected one of "
                    f"{', '.join(class_names)}"
                )
            img = decode_image(data, image_shape, source=f"{path}:{name}")
            entries[split].append((class_index[cls], _name_order(fname), img))
    except DataIntegrityError:
        # A damaged compressed archive often breaks a member (an image that no longer decodes,
        # a garbled folder name) before the stream's end, where its checksum is: when the
        # archive itself fails its check, that is the error to report.
        check_archive(path)
        raise
    out = {}
    for split, items in entries.items():
        if not items:
            raise DataIntegrityError(f"{path}: no images found under {split}/<class>/")
        items.sort(key=lambda e: (e[0], e[1]))
        images = np.stack([e[2] for e in items])
        labels = np.asarray([e[0] for e in items], np.int32)
        out[split] = (images, labels)
    return out


def check_counts(
    labels: np.ndarray,
    *,
    source: str,
    split: str,
    total: int,
    num_classes: int,
    per_class: int | None = None,
) -> None:
    """Raise `DataIntegrityError` unless `labels` has `total` entries (and `per_class` of
    each class when given)."""
    if labels.shape != (total,):
        raise DataIntegrityError(
            f"{source}: the {split} split has {labels.shape[0]} examples, expected {total}"
        )
    if per_class is not None:
        counts = np.bincount(labels, minlength=num_classes)
        bad = {i: int(n) for i, n in enumerate(counts) if n != per_class}
        if bad:
            raise DataIntegrityError(
                f"{source}: the {split} split should hold {per_class} images of each class; "
                f"class counts that differ: {bad}"
            )
