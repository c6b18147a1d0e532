"""File checksums and the decoded-array cache.

Decoding is the slow part of a load (the CIFAR-10 JPEG archive takes several seconds; MNIST's
gzip about a second), so the decoded uint8 arrays of every split are written once to an
uncompressed `.npz` and read back on later loads. The cache file's name carries a key made of
the source files' absolute paths, sizes and modification times, so replacing a source file
invalidates its cache entry without any hashing; an entry is written only after the sources
passed their checksums, so a cache hit also stands for "verified" and the 30-170 MB source
files are not rehashed on every load.

An image copy (a class-folder archive) has no official checksum, only its gzip CRC32 and length
(checked while it is decoded) and, where one comes with it, a `SHA256SUMS` line. Its key also
holds the archive's sha256 (`content`), so an entry stands for exactly the bytes that were
verified: an archive changed in place with its size and mtime kept (bit rot, a copy tool that
preserves times) misses the cache in a new process and is decoded, and refused, again (within one
process `sha256_file` remembers a file's hash by path, size and mtime, so only a new process
rehashes it). Hashing the 19 MB CIFAR-10
copy takes a few hundredths of a second, against seconds for decoding it.

Safety:
- Writes go through `dst_jax.io.atomic_open` (temporary sibling + fsync + rename): a write
  killed half way leaves at most a `.<name>.*.tmp` file, which no reader ever opens.
- A cache file that does not read back cleanly (zip CRC error, truncation, missing keys,
  shapes that disagree with its own metadata) is treated as absent and rebuilt.

Location: `$DST_CACHE_DIR`, else `$XDG_CACHE_HOME/dst_jax/decoded`, else
`~/.cache/dst_jax/decoded`. It is never inside the data folder: that folder may be shared, or
read-only, or (when run as root) writable although it should not be written.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dst_jax.data.errors import DataIntegrityError
from dst_jax.io import atomic_open

# Bump when the cached layout or the decoding changes, so old entries are not read.
CACHE_FORMAT = 1
_STALE_TMP_S = 24 * 3600

_sha256_memo: dict[tuple[str, int, int], str] = {}


def user_cache_dir() -> Path:
    """Per-user cache folder of the project: `$XDG_CACHE_HOME/dst_jax` or `~/.cache/dst_jax`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dst_jax"


def decoded_cache_dir() -> Path:
    """Folder of the decoded-array cache (`$DST_CACHE_DIR` overrides)."""
    env = os.environ.get("DST_CACHE_DIR")
    return Path(env).expanduser() if env else user_cache_dir() / "decoded"


def _identity(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, remembered for the process while its size and mtime are unchanged."""
    path = Path(path)
    ident = _identity(path)
    if ident not in _sha256_memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _sha256_memo[ident] = h.hexdigest()
    return _sha256_memo[ident]


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise `DataIntegrityError` naming the file and both hashes unless they agree."""
    actual = sha256_file(path)
    if actual != expected:
        raise DataIntegrityError(
            f"{path}: sha256 mismatch: expected {expected}, got {actual}. The file is corrupted, "
            f"truncated or not the official one; delete it (it is downloaded again when "
            f"missing) or replace it with the official file"
        )


SUMS_FILE = "SHA256SUMS"
# A line as `sha256sum` writes it: the hex digest, a space, then " " (text mode) or "*" (binary
# mode) and the path. Escaped lines (sha256sum starts them with a backslash, for names holding
# one or a newline) do not match, so such a name is treated as not listed.
_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def read_sha256sums(path: str | os.PathLike) -> dict[str, str]:
    """{normalised relative path: lower-case hex} of a `SHA256SUMS` file."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        m = _SUMS_LINE.match(line.rstrip("\r"))
        if m:
            out[posixpath.normpath(m.group(2))] = m.group(1).lower()
    return out


def listed_sha256(file: str | os.PathLike, root: str | os.PathLike) -> list[tuple[Path, str]]:
    """(checksum file, expected hex) for each `SHA256SUMS` that lists `file`: the one beside it
    (listing its bare name) and the one in the data folder `root` (listing its path relative to
    `root`, e.g. `cifar10/cifar10-jpeg-q75.tar.gz`)."""
    file, root = Path(file).absolute(), Path(root).absolute()
    places = [(file.parent / SUMS_FILE, file.name)]
    if root != file.parent and file.is_relative_to(root):
        places.append((root / SUMS_FILE, file.relative_to(root).as_posix()))
    found = []
    for sums, name in places:
        if sums.is_file():
            expected = read_sha256sums(sums).get(posixpath.normpath(name))
            if expected is not None:
                found.append((sums, expected))
    return found


def verify_listed_sha256(file: str | os.PathLike, root: str | os.PathLike) -> None:
    """Raise `DataIntegrityError` unless `file` matches every `SHA256SUMS` line that lists it
    (see `listed_sha256`); a file that none lists passes."""
    for sums, expected in listed_sha256(file, root):
        actual = sha256_file(file)
        if actual != expected:
            raise DataIntegrityError(
                f"{file}: sha256 mismatch against {sums}: expected {expected}, got {actual}. The "
                f"file is corrupted or is not the copy that {sums.name} describes; replace it "
                f"with an intact copy (copy or download it again) and check it with "
                f"`sha256sum -c {SUMS_FILE}` in {sums.parent}"
            )


def source_key(paths: Iterable[str | os.PathLike], tag: str, content: Iterable[str] = ()) -> str:
    """Cache key of a set of source files/folders: absolute path, size and mtime of each file,
    and `content` (e.g. sha256 sums) when the entry must stand for exact bytes."""
    items: list[Any] = [CACHE_FORMAT, tag, *content]
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames.sort()
                items.extend(_identity(Path(dirpath, f)) for f in sorted(filenames))
        else:
            items.append(_identity(p))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:20]


def cache_path(tag: str, key: str) -> Path:
    return decoded_cache_dir() / f"{tag}-{key}.npz"


def read_split(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(images, labels, meta) of one split from a cache file, or None if absent or unreadable."""
    try:
        # Inside the try: a cache folder that cannot be searched is a missing cache, not an
        # error of the load.
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != CACHE_FORMAT:
                return None
            # Reading a whole member checks its zip CRC, so flipped bits raise here.
            images = z[f"{split}_images"]
            labels = z[f"{split}_labels"]
    except Exception:  # a damaged zip fails in many ways (BadZipFile, ValueError, EOF, ...)
        return None
    n = meta.get("sizes", {}).get(split)
    if (
        images.dtype != np.uint8
        or labels.dtype != np.int32
        or images.ndim != 4
        or images.shape[0] != n
        or labels.shape != (n,)
    ):
        return None
    return images, labels, meta


def write(
    path: Path, splits: Mapping[str, tuple[np.ndarray, np.ndarray]], meta: Mapping[str, Any]
) -> bool:
    """Atomically write all splits and `meta` to `path`; False (with a warning) on failure."""
    # Any: np.savez's stub would read a str -> ndarray mapping as its `allow_pickle` flag too.
    arrays: dict[str, Any] = {}
    for split, (images, labels) in splits.items():
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels
    sizes = {split: int(labels.shape[0]) for split, (_, labels) in splits.items()}
    meta = {**meta, "format": CACHE_FORMAT, "sizes": sizes}
    try:
        with atomic_open(path, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    except OSError as e:
        warnings.warn(
            f"could not write the data cache {path} ({e}); the next load decodes again. "
            f"Set DST_CACHE_DIR to a writable folder.",
            stacklevel=3,
        )
        return False
    _remove_stale_tmp(path.parent)
    return True


def _remove_stale_tmp(folder: Path) -> None:
    # Leftovers of writes that were killed (kill -9, power loss); a day old means nobody is
    # still writing them.
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_S:
                tmp.unlink()
        except OSError:
            pass
