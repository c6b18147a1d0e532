"""Parsers of dst_jax.data.formats on small fixtures written here: IDX, CIFAR-10 python and
binary batches, class-folder image archives; truncated and corrupted files must give a clear
DataIntegrityError, never wrong data."""

import gzip
import hashlib
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from dst_jax.data import formats
from dst_jax.data.errors import DataIntegrityError


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


# ------------------------------------------------------------------------------------- IDX


def test_parse_idx_roundtrip_keeps_shape_and_values():
    arr = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    out = formats.parse_idx(idx_bytes(arr))
    assert out.shape == (5, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\0", "extra bytes"),
        (lambda b: b[:3], "too short"),
        (lambda b: b[:9], "header"),  # 3 dims announced, header cut inside the sizes
        (lambda b: b"\x1f\x8b" + b[2:], "not an IDX file"),  # e.g. a still-gzipped file
        (lambda b: b[:2] + b"\x0d" + b[3:], "not an IDX file"),  # float32 element type
    ],
)
def test_parse_idx_rejects_damaged_buffers(mutate, message):
    data = idx_bytes(np.ones((2, 3, 3), np.uint8))
    with pytest.raises(DataIntegrityError, match=message):
        formats.parse_idx(mutate(data), source="x.idx")


def test_read_idx_pair_gives_nhwc_uint8_and_int32(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7).astype(np.uint8)
    (tmp_path / "i.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "l.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    x, y = formats.read_idx_pair(tmp_path / "i.gz", tmp_path / "l.gz", num_classes=10)
    assert x.shape == (7, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (7,) and y.dtype == np.int32
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(y, labels)


def test_read_idx_pair_rejects_inconsistent_files(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    (tmp_path / "i.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "l.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DataIntegrityError, match="3 images but .* 4 labels"):
        formats.read_idx_pair(tmp_path / "i.gz", tmp_path / "l.gz", num_classes=10)
    (tmp_path / "l.gz").write_bytes(gzip.compress(idx_bytes(np.array([0, 10, 2], np.uint8))))
    with pytest.raises(DataIntegrityError, match=r"labels must lie in \[0, 10\)"):
        formats.read_idx_pair(tmp_path / "i.gz", tmp_path / "l.gz", num_classes=10)
    # Images and labels swapped: dimensionality is checked.
    with pytest.raises(DataIntegrityError, match="3-d IDX image file"):
        formats.read_idx_pair(tmp_path / "l.gz", tmp_path / "i.gz", num_classes=10)


def test_read_idx_gz_truncated_and_corrupted_gzip(tmp_path):
    blob = gzip.compress(idx_bytes(np.arange(600, dtype=np.uint8).reshape(6, 10, 10)))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataIntegrityError, match=r"cut\.gz.*truncated or corrupted"):
        formats.read_idx_gz(path)
    flipped = bytearray(blob)
    flipped[-6] ^= 0xFF  # inside the CRC32 trailer: the data decompresses but fails its check
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(flipped))
    with pytest.raises(DataIntegrityError, match=r"crc\.gz"):
        formats.read_idx_gz(path)


# ------------------------------------------------------------------------- CIFAR-10 batches


def cifar_rows(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()


def cifar_pickle(rows, labels, protocol=2, byte_keys=True) -> bytes:
    keys = [b"batch_label", b"labels", b"data"] if byte_keys else ["batch_label", "labels", "data"]
    return pickle.dumps(dict(zip(keys, [b"fixture", labels, rows], strict=True)), protocol=protocol)


@pytest.mark.parametrize("protocol, byte_keys", [(2, True), (pickle.HIGHEST_PROTOCOL, False)])
def test_parse_cifar_batch_channel_layout(protocol, byte_keys):
    rows, labels = cifar_rows(3, seed=0)
    x, y = formats.parse_cifar_batch(cifar_pickle(rows, labels, protocol, byte_keys))
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    np.testing.assert_array_equal(y, labels)
    # Row layout: 1024 red values (row-major 32x32), then 1024 green, then 1024 blue.
    for n, h, w, c in [(0, 0, 0, 0), (1, 5, 7, 1), (2, 31, 30, 2), (2, 0, 31, 1)]:
        assert x[n, h, w, c] == rows[n, c * 1024 + h * 32 + w]


class _Exploit:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_parse_cifar_batch_refuses_code_and_damage():
    rows, labels = cifar_rows(2, seed=1)
    evil = pickle.dumps({b"data": rows, b"labels": labels, b"x": _Exploit()}, protocol=2)
    with pytest.raises(DataIntegrityError, match=r"refusing to unpickle \w+\.eval"):
        formats.parse_cifar_batch(evil, source="evil")
    good = cifar_pickle(rows, labels)
    with pytest.raises(DataIntegrityError, match="truncated or corrupted"):
        formats.parse_cifar_batch(good[: len(good) // 2], source="cut")
    wrong = pickle.dumps({b"data": rows[:, :100], b"labels": labels}, protocol=2)
    with pytest.raises(DataIntegrityError, match=r"\(n, 3072\)"):
        formats.parse_cifar_batch(wrong)
    short = pickle.dumps({b"data": rows, b"labels": labels[:1]}, protocol=2)
    with pytest.raises(DataIntegrityError, match="2 images but labels"):
        formats.parse_cifar_batch(short)


def test_parse_cifar_binary_batch():
    rows, labels = cifar_rows(4, seed=2)
    data = np.concatenate([np.asarray(labels, np.uint8)[:, None], rows], axis=1).tobytes()
    x, y = formats.parse_cifar_binary_batch(data)
    np.testing.assert_array_equal(y, labels)
    assert x[3, 2, 1, 2] == rows[3, 2 * 1024 + 2 * 32 + 1]
    with pytest.raises(DataIntegrityError, match="whole number of 3073-byte"):
        formats.parse_cifar_binary_batch(data[:-10])


def write_cifar_python(folder, archive=None, per_batch=2):
    """Six tiny official-layout batches; returns the expected train/test arrays."""
    batches = {f"data_batch_{i}": i for i in range(1, 6)} | {"test_batch": 9}
    blobs, expected = {}, {}
    for name, seed in batches.items():
        rows, labels = cifar_rows(per_batch, seed)
        blobs[name] = cifar_pickle(rows, labels)
        expected[name] = formats.parse_cifar_batch(blobs[name])
    base = folder / "cifar-10-batches-py"
    if archive is None:
        base.mkdir(parents=True)
        for name, blob in blobs.items():
            (base / name).write_bytes(blob)
        (base / "batches.meta").write_bytes(b"ignored")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            for name, blob in reversed(list(blobs.items())):  # order in the archive is free
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))
    train = [expected[f"data_batch_{i}"] for i in range(1, 6)]
    return {
        "train": (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])),
        "test": expected["test_batch"],
    }, {k: hashlib.md5(v).hexdigest() for k, v in blobs.items()}


def test_read_cifar_batches_archive_and_folder_agree_in_official_order(tmp_path):
    expected, md5 = write_cifar_python(tmp_path / "a", archive=tmp_path / "c.tar.gz")
    out = formats.read_cifar_batches(tmp_path / "c.tar.gz")
    for split in ("train", "test"):
        np.testing.assert_array_equal(out[split][0], expected[split][0])
        np.testing.assert_array_equal(out[split][1], expected[split][1])
    assert out["train"][0].shape == (10, 32, 32, 3)

    expected, md5 = write_cifar_python(tmp_path / "b")
    out = formats.read_cifar_batches(tmp_path / "b" / "cifar-10-batches-py", md5=md5)
    np.testing.assert_array_equal(out["train"][1], expected["train"][1])
    bad = {**md5, "data_batch_3": "0" * 32}
    with pytest.raises(DataIntegrityError, match="data_batch_3: md5 mismatch"):
        formats.read_cifar_batches(tmp_path / "b" / "cifar-10-batches-py", md5=bad)
    (tmp_path / "b" / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataIntegrityError, match="missing CIFAR-10 batches.*data_batch_4"):
        formats.read_cifar_batches(tmp_path / "b" / "cifar-10-batches-py")


def test_read_cifar_batches_truncated_archive(tmp_path):
    write_cifar_python(tmp_path, archive=tmp_path / "c.tar.gz", per_batch=50)
    blob = (tmp_path / "c.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(blob[: int(len(blob) * 0.6)])
    with pytest.raises(DataIntegrityError, match=r"cut\.tar\.gz.*truncated or corrupted"):
        formats.read_cifar_batches(tmp_path / "cut.tar.gz")


# ------------------------------------------------------------------- class-folder archives


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def image_members(prefix=""):
    """{member name: bytes} and expected {split: (images, labels)} for classes a, b, c."""
    rng = np.random.default_rng(3)
    members, expected = {}, {}
    for split, per_class in (("train", 3), ("test", 1)):
        imgs, labels = [], []
        for k, cls in enumerate("abc"):
            # Names 9 and 10 check numeric (not lexicographic) order within a class.
            for fname in ["9.png", "10.png", "11.png"][:per_class]:
                img = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
                members[f"{prefix}{split}/{cls}/{fname}"] = png_bytes(img)
                imgs.append(img)
                labels.append(k)
        expected[split] = (np.stack(imgs), np.asarray(labels, np.int32))
    members[f"{prefix}README.txt"] = b"not an image"
    members[f"{prefix}train/a/._9.png"] = b"AppleDouble junk"
    return members, expected


def write_tar(path, members, order=None):
    with tarfile.open(path, "w:gz") as tf:
        for name in order or sorted(members, reverse=True):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tf.addfile(info, io.BytesIO(members[name]))


@pytest.mark.parametrize("as_archive", [True, False])
def test_read_class_folders_exact_pixels_labels_and_order(tmp_path, as_archive):
    members, expected = image_members(prefix="copy/" if as_archive else "")
    if as_archive:
        path = tmp_path / "copy.tar.gz"
        write_tar(path, members)
    else:
        path = tmp_path / "copy"
        for name, blob in members.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(blob)
    out = formats.read_class_folders(path, class_names=("a", "b", "c"), image_shape=(4, 4, 3))
    for split in ("train", "test"):
        np.testing.assert_array_equal(out[split][0], expected[split][0])
        np.testing.assert_array_equal(out[split][1], expected[split][1])


def test_read_class_folders_errors(tmp_path):
    members, _ = image_members()
    kwargs = dict(class_names=("a", "b", "c"), image_shape=(4, 4, 3))

    write_tar(tmp_path / "extra.tar.gz", {**members, "train/zebra/0.png": members["test/a/9.png"]})
    with pytest.raises(DataIntegrityError, match="unexpected class folder train/zebra"):
        formats.read_class_folders(tmp_path / "extra.tar.gz", **kwargs)

    broken = {**members, "test/b/9.png": members["test/b/9.png"][:30]}
    write_tar(tmp_path / "broken.tar.gz", broken)
    with pytest.raises(DataIntegrityError, match=r"test/b/9\.png: cannot decode image"):
        formats.read_class_folders(tmp_path / "broken.tar.gz", **kwargs)

    big = {**members, "test/c/9.png": png_bytes(np.zeros((5, 4, 3), np.uint8))}
    write_tar(tmp_path / "big.tar.gz", big)
    with pytest.raises(DataIntegrityError, match=r"image is \(5, 4, 3\), expected \(4, 4, 3\)"):
        formats.read_class_folders(tmp_path / "big.tar.gz", **kwargs)

    write_tar(tmp_path / "ok.tar.gz", members)
    blob = (tmp_path / "ok.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(blob[: len(blob) - 200])
    with pytest.raises(DataIntegrityError, match="truncated or corrupted"):
        formats.read_class_folders(tmp_path / "cut.tar.gz", **kwargs)

    no_test = {k: v for k, v in members.items() if not k.startswith("test/")}
    write_tar(tmp_path / "notest.tar.gz", no_test)
    with pytest.raises(DataIntegrityError, match="no images found under test"):
        formats.read_class_folders(tmp_path / "notest.tar.gz", **kwargs)


def test_check_counts():
    labels = np.array([0, 0, 1, 1, 2, 2], np.int32)
    formats.check_counts(labels, source="s", split="train", total=6, num_classes=3, per_class=2)
    with pytest.raises(DataIntegrityError, match="has 6 examples, expected 7"):
        formats.check_counts(labels, source="s", split="train", total=7, num_classes=3)
    with pytest.raises(DataIntegrityError, match=r"class counts that differ: \{0: 3, 1: 1\}"):
        formats.check_counts(
            np.array([0, 0, 0, 1, 2, 2], np.int32),
            source="s",
            split="train",
            total=6,
            num_classes=3,
            per_class=2,
        )


def test_read_cifar_batches_binary_archive(tmp_path):
    expected_labels = []
    with tarfile.open(tmp_path / "bin.tar.gz", "w:gz") as tf:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            rows, labels = cifar_rows(3, seed=len(expected_labels))
            expected_labels.append(labels)
            blob = np.concatenate([np.asarray(labels, np.uint8)[:, None], rows], 1).tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}.bin")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    out = formats.read_cifar_batches(tmp_path / "bin.tar.gz", binary=True)
    assert out["train"][0].shape == (15, 32, 32, 3) and out["test"][0].shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(out["train"][1], np.concatenate(expected_labels[:5]))
    np.testing.assert_array_equal(out["test"][1], expected_labels[5])
    with pytest.raises(DataIntegrityError, match="missing CIFAR-10 batches"):
        formats.read_cifar_batches(tmp_path / "bin.tar.gz")  # python names are absent
