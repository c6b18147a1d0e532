"""Image archives that changed after they were written must be refused, never loaded.

A class-folder image copy (like the CIFAR-10 JPEG archive) has no official checksum, and its
images (JPEG, BMP) have none of their own: a byte changed in the middle of the compressed data
mostly decodes, silently, to a few changed images. What catches it is the gzip trailer's CRC32
and length over the whole stream, and a `SHA256SUMS` file (as `sha256sum` writes it) beside the
archive or in the data folder's root. The decoded-array cache must not serve an entry for an
archive whose bytes have changed since it was verified.

The fixtures are tiny: CIFAR-10 shrunk to 2 train + 1 test image per class, as BMP files (no
checksum inside, like JPEG)."""

import dataclasses
import gzip
import hashlib
import io
import os
import struct
import tarfile
import types
import zlib

import numpy as np
import pytest
from PIL import Image

from dst_jax import data
from dst_jax.data import cache, formats, loader, specs
from dst_jax.data.errors import DataIntegrityError

ARCHIVE = "cifar10-bmp-copy.tar.gz"


def _bmp(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="BMP")
    return buf.getvalue()


def _tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def _streamed_members(blob: bytes) -> dict[str, bytes]:
    """What a plain streaming tar read returns: it never reaches the gzip trailer."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r|gz") as tf:
        for member in tf:
            if member.isfile():
                out[member.name] = tf.extractfile(member).read()
    return out


def _silent_flip(blob: bytes, members: dict[str, bytes]) -> bytes:
    """`blob` with one bit flipped in the middle of the compressed data, at the first place from
    the middle where a plain streaming read still succeeds but returns changed images: the
    damage that only a checksum can notice. Searched, not fixed, so that another zlib build
    (which may compress differently) still gives such a place."""
    for offset in range(len(blob) // 2, len(blob) - 8):
        damaged = bytearray(blob)
        damaged[offset] ^= 0x01
        try:
            read = _streamed_members(bytes(damaged))
        except Exception:  # broken loudly (tar header, deflate code): not the case sought
            continue
        if read.keys() == members.keys() and read != members:
            return bytes(damaged)
    raise AssertionError("no flip in the second half of the archive decodes silently")


def _write_keeping_mtime(path, blob: bytes) -> None:
    # Same size, same mtime: what bit rot or a careless copy tool leaves; a cache keyed by size
    # and mtime alone would take it for the verified file.
    st = path.stat()
    path.write_bytes(blob)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    cache._sha256_memo.clear()  # as in a new process


def _sums_line(digest: str, name: str) -> str:
    return f"{digest}  {name}\n"


@pytest.fixture
def copy(tmp_path, monkeypatch):
    """A tiny CIFAR-10 BMP copy at tmp/data/cifar10/cifar10-bmp-copy.tar.gz; private cache."""
    monkeypatch.delenv("DST_DATA_DIR", raising=False)
    monkeypatch.setenv("DST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    spec = dataclasses.replace(
        specs.SPECS["cifar10"],
        split_sizes={"train": 20, "test": 10},
        mirrors=("http://127.0.0.1:9/",),  # never reached: the copy is there
    )
    monkeypatch.setitem(specs.SPECS, "cifar10", spec)
    cache._sha256_memo.clear()
    rng = np.random.default_rng(11)
    members, arrays = {}, {}
    for split, per_class in (("train", 2), ("test", 1)):
        images = []
        for cls in specs.CIFAR10_CLASSES:
            for i in range(per_class):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                members[f"{split}/{cls}/{i:04d}.bmp"] = _bmp(img)
                images.append(img)
        arrays[split] = np.stack(images)
    root = tmp_path / "data"
    folder = root / "cifar10"
    folder.mkdir(parents=True)
    blob = _tar_bytes(members)
    path = folder / ARCHIVE
    path.write_bytes(blob)
    return types.SimpleNamespace(
        root=root,
        folder=folder,
        path=path,
        blob=blob,
        members=members,
        arrays=arrays,
        sha256=hashlib.sha256(blob).hexdigest(),
    )


# ---------------------------------------------------------------------- gzip CRC32 and length


def test_intact_copy_loads_exact_pixels(copy):
    x, y, info = data.load_with_info("cifar10", "train", copy.root)
    np.testing.assert_array_equal(x, copy.arrays["train"])
    np.testing.assert_array_equal(y, np.repeat(np.arange(10), 2))
    assert info["dataset"] == "cifar10-bmp-copy"


def test_flipped_byte_in_archive_is_refused_not_loaded(copy):
    damaged = _silent_flip(copy.blob, copy.members)
    copy.path.write_bytes(damaged)
    with pytest.raises(DataIntegrityError) as err:
        data.load("cifar10", "train", copy.root)
    msg = str(err.value)
    assert str(copy.path) in msg
    assert "CRC" in msg and "corrupted" in msg
    assert "intact copy" in msg  # what to do about it
    assert not list((copy.root.parent / "cache").glob("*.npz"))  # nothing cached from it


def test_damaged_archive_is_refused_even_with_a_cache_entry(copy, monkeypatch, count_calls):
    data.load("cifar10", "train", copy.root)  # decoded, verified and cached
    _write_keeping_mtime(copy.path, _silent_flip(copy.blob, copy.members))
    with pytest.raises(DataIntegrityError, match="CRC"):
        data.load("cifar10", "test", copy.root)

    # The intact bytes again (same size and mtime): the cache entry is theirs, so no decoding.
    _write_keeping_mtime(copy.path, copy.blob)
    decodes = count_calls(formats, "read_class_folders")
    x, _ = data.load("cifar10", "test", copy.root)
    assert decodes == []
    np.testing.assert_array_equal(x, copy.arrays["test"])


@pytest.mark.parametrize(
    "field, at, message",
    [("crc32", -8, "CRC check failed"), ("length", -4, "Incorrect length")],
)
def test_gzip_trailer_crc32_and_length_are_checked(copy, field, at, message):
    damaged = bytearray(copy.blob)
    damaged[at] ^= 0x01
    copy.path.write_bytes(bytes(damaged))
    assert _streamed_members(bytes(damaged)) == copy.members  # a plain stream read never looks
    with pytest.raises(DataIntegrityError, match=message) as err:
        formats.read_class_folders(
            copy.path, class_names=specs.CIFAR10_CLASSES, image_shape=(32, 32, 3)
        )
    assert str(copy.path) in str(err.value)
    with pytest.raises(DataIntegrityError, match=message):
        data.load("cifar10", "train", copy.root)


def test_check_archive_reads_the_whole_stream(copy, tmp_path):
    formats.check_archive(copy.path)  # intact: no error
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(_silent_flip(copy.blob, copy.members))
    with pytest.raises(DataIntegrityError, match="CRC"):
        formats.check_archive(damaged)
    # xz keeps its own check (CRC64 by default): a flipped byte is refused as well.
    xz = tmp_path / "copy.tar.xz"
    blob = bytearray(_tar_bytes(copy.members, mode="w:xz"))
    xz.write_bytes(bytes(blob))
    formats.check_archive(xz)
    blob[len(blob) // 2] ^= 0x01
    xz.write_bytes(bytes(blob))
    with pytest.raises(DataIntegrityError, match=str(xz)):
        formats.check_archive(xz)


def test_corrupted_image_inside_a_damaged_archive_blames_the_archive(copy, tmp_path):
    # When a flip breaks an image (it no longer decodes) before the stream's end is reached,
    # the error still says what is wrong: the archive, not one image.
    intact = gzip.decompress(copy.blob)
    raw = bytearray(intact)
    at = raw.find(copy.members["train/cat/0001.bmp"])
    raw[at : at + 2] = b"XX"  # no longer a BMP signature: Pillow cannot decode it
    # The changed tar, compressed, with the intact tar's trailer (CRC32, length): a stream that
    # decompresses to something other than what was written.
    damaged = gzip.compress(bytes(raw), mtime=0)[:-8]
    damaged += struct.pack("<II", zlib.crc32(intact), len(intact))
    path = tmp_path / "x.tar.gz"
    path.write_bytes(damaged)
    with pytest.raises(DataIntegrityError, match="CRC") as err:
        formats.read_class_folders(path, class_names=specs.CIFAR10_CLASSES, image_shape=(32, 32, 3))
    assert "intact copy" in str(err.value)


# ------------------------------------------------------------------------------- SHA256SUMS


@pytest.mark.parametrize("where", ["beside", "root"])
def test_sha256sums_mismatch_is_refused(copy, where):
    wrong = hashlib.sha256(b"another file").hexdigest()
    if where == "beside":
        sums = copy.folder / "SHA256SUMS"
        sums.write_text(_sums_line(wrong, ARCHIVE))
    else:
        sums = copy.root / "SHA256SUMS"
        sums.write_text(
            _sums_line("0" * 64, "mnist/x.gz") + _sums_line(wrong, f"cifar10/{ARCHIVE}")
        )
    with pytest.raises(DataIntegrityError) as err:
        data.load("cifar10", "train", copy.root)
    msg = str(err.value)
    assert str(copy.path) in msg and str(sums) in msg
    assert wrong in msg and copy.sha256 in msg
    assert "sha256sum -c" in msg


def test_correct_sha256sums_loads_and_is_checked_before_the_cache(copy):
    (copy.folder / "SHA256SUMS").write_text(f"{copy.sha256} *{ARCHIVE}\n")  # binary-mode mark
    (copy.root / "SHA256SUMS").write_text(
        _sums_line("1" * 64, "mnist/train-images-idx3-ubyte.gz")
        + _sums_line(copy.sha256, f"./cifar10/{ARCHIVE}")
    )
    x, _ = data.load("cifar10", "train", copy.root)
    np.testing.assert_array_equal(x, copy.arrays["train"])

    # A cached entry is not trusted over the checksum file: a changed SHA256SUMS is obeyed.
    (copy.root / "SHA256SUMS").write_text(_sums_line("2" * 64, f"cifar10/{ARCHIVE}"))
    with pytest.raises(DataIntegrityError, match="sha256 mismatch"):
        data.load("cifar10", "train", copy.root)


def test_sha256sums_not_listing_the_archive_is_ignored(copy):
    (copy.root / "SHA256SUMS").write_text(_sums_line("3" * 64, "cifar10/other.tar.gz"))
    x, _ = data.load("cifar10", "test", copy.root)
    np.testing.assert_array_equal(x, copy.arrays["test"])


def test_listed_sha256_finds_both_places(copy):
    (copy.folder / "SHA256SUMS").write_text(_sums_line(copy.sha256, ARCHIVE))
    (copy.root / "SHA256SUMS").write_text(_sums_line(copy.sha256, f"cifar10/{ARCHIVE}"))
    found = cache.listed_sha256(copy.path, copy.root)
    assert found == [
        (copy.folder / "SHA256SUMS", copy.sha256),
        (copy.root / "SHA256SUMS", copy.sha256),
    ]
    assert loader.resolve_data_dir(copy.root) == copy.root
