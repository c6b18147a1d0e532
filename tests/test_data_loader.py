"""dst_jax.data.load end to end on small fixtures: folder resolution, sha256 checks, the decoded
cache (atomic, corruption detected and rebuilt), downloads from a local server, fast failure
without a network, CIFAR-10 source selection and variants, the tfds backend.

The data sets are shrunk by replacing their spec (split sizes, checksums of the fixture files,
mirrors on localhost); the real network is never used."""

import dataclasses
import errno
import gzip
import hashlib
import http.server
import io
import os
import pathlib
import pickle
import socket
import struct
import sys
import tarfile
import threading
import time
import types

import numpy as np
import pytest
from PIL import Image

from dst_jax import data
from dst_jax.data import cache, download, formats, loader, specs
from dst_jax.data.errors import DataIntegrityError, DataUnavailableError

SIZES = {"train": 6, "test": 4}


def idx_gz(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there: connection refused


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Isolated data and cache folders; no DST_DATA_DIR from the outside."""
    monkeypatch.delenv("DST_DATA_DIR", raising=False)
    monkeypatch.setenv("DST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


@pytest.fixture
def tiny_mnist(env, monkeypatch):
    """A 6 + 4 example MNIST in env/data/mnist with matching checksums; also served files."""
    rng = np.random.default_rng(0)
    arrays, blobs = {}, {}
    for split, n in SIZES.items():
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        arrays[split] = (x[..., None], y.astype(np.int32))
        img_name, lab_name = specs.IDX_FILES[split]
        blobs[img_name], blobs[lab_name] = idx_gz(x), idx_gz(y)
    folder = env / "data" / "mnist"
    folder.mkdir(parents=True)
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
    spec = dataclasses.replace(
        specs.SPECS["mnist"],
        split_sizes=dict(SIZES),
        sha256={k: hashlib.sha256(v).hexdigest() for k, v in blobs.items()},
        mirrors=(closed_port_url(),),
    )
    monkeypatch.setitem(specs.SPECS, "mnist", spec)
    return types.SimpleNamespace(root=env / "data", folder=folder, arrays=arrays, blobs=blobs)


# ------------------------------------------------------------------------- basic loading


def test_load_returns_the_files_arrays_and_info(tiny_mnist):
    for split in ("train", "test"):
        x, y = data.load("mnist", split, tiny_mnist.root)
        assert x.dtype == np.uint8 and x.shape == (SIZES[split], 28, 28, 1)
        assert y.dtype == np.int32 and y.shape == (SIZES[split],)
        np.testing.assert_array_equal(x, tiny_mnist.arrays[split][0])
        np.testing.assert_array_equal(y, tiny_mnist.arrays[split][1])
    x, y, info = data.load_with_info("mnist", "test", str(tiny_mnist.root))
    assert info["dataset"] == "mnist" and info["canonical"] is True
    assert info["source"] == str(tiny_mnist.folder) and info["num_examples"] == 4
    assert data.variant("mnist", tiny_mnist.root) == "mnist"


def test_data_dir_precedence(env, monkeypatch):
    assert loader.resolve_data_dir() == env / "xdg" / "dst_jax"
    monkeypatch.setenv("DST_DATA_DIR", str(env / "from_env"))
    assert loader.resolve_data_dir() == env / "from_env"
    assert loader.resolve_data_dir(env / "arg") == env / "arg"


def test_data_dir_from_environment(tiny_mnist, monkeypatch):
    monkeypatch.setenv("DST_DATA_DIR", str(tiny_mnist.root))
    x, _ = data.load("mnist", "train")
    np.testing.assert_array_equal(x, tiny_mnist.arrays["train"][0])


@pytest.mark.parametrize(
    "args, message",
    [
        (("svhn", "train"), "unknown data set 'svhn'; choose one of 'mnist'"),
        (("mnist", "valid"), "unknown split 'valid'; choose 'train' or 'test'"),
        (("mnist", "train", None, "torch"), "unknown backend 'torch'"),
    ],
)
def test_bad_arguments_are_value_errors(env, args, message):
    with pytest.raises(ValueError, match=message):
        data.load(*args)


# ---------------------------------------------------------------------- integrity, cache


def test_sha256_mismatch_names_file_and_both_hashes(tiny_mnist):
    path = tiny_mnist.folder / "t10k-labels-idx1-ubyte.gz"
    bad = idx_gz(np.array([1, 2, 3, 3], np.uint8))
    path.write_bytes(bad)
    expected = specs.SPECS["mnist"].sha256[path.name]
    with pytest.raises(DataIntegrityError) as err:
        data.load("mnist", "train", tiny_mnist.root)  # any split: all files are verified
    msg = str(err.value)
    assert str(path) in msg and expected in msg and hashlib.sha256(bad).hexdigest() in msg


def test_second_load_neither_rehashes_nor_decodes(tiny_mnist, monkeypatch, count_calls):
    decodes = count_calls(formats, "read_idx_pair")
    hashes = count_calls(cache, "sha256_file")
    cache._sha256_memo.clear()
    data.load("mnist", "train", tiny_mnist.root)
    assert len(decodes) == 2 and len(hashes) == 4  # both splits decoded, 4 files hashed once
    for split in ("train", "test", "train"):
        x, y = data.load("mnist", split, tiny_mnist.root)
        np.testing.assert_array_equal(x, tiny_mnist.arrays[split][0])
    assert len(decodes) == 2 and len(hashes) == 4
    assert len(list((tiny_mnist.root.parent / "cache").glob("mnist-*.npz"))) == 1


def test_changed_source_file_invalidates_the_cache(tiny_mnist, monkeypatch, count_calls):
    data.load("mnist", "train", tiny_mnist.root)
    decodes = count_calls(formats, "read_idx_pair")
    path = tiny_mnist.folder / "train-labels-idx1-ubyte.gz"
    new_labels = np.array([9, 9, 9, 9, 9, 9], np.uint8)
    path.write_bytes(idx_gz(new_labels))
    spec = specs.SPECS["mnist"]
    sha = {**spec.sha256, path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    monkeypatch.setitem(specs.SPECS, "mnist", dataclasses.replace(spec, sha256=sha))
    _, y = data.load("mnist", "train", tiny_mnist.root)
    assert len(decodes) == 2
    np.testing.assert_array_equal(y, new_labels)


def test_killed_cache_write_leaves_nothing_a_later_load_accepts(
    tiny_mnist, monkeypatch, count_calls
):
    cache_dir = tiny_mnist.root.parent / "cache"
    real_savez = np.savez

    def killed_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an npz")  # some bytes reach the disk, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed_savez)
    with pytest.raises(KeyboardInterrupt):
        data.load("mnist", "train", tiny_mnist.root)
    assert list(cache_dir.iterdir()) == []  # neither a final file nor a temporary one

    # A kill -9 cannot clean up: leave a partial temporary file behind, as it would.
    monkeypatch.setattr(np, "savez", real_savez)
    key = cache.source_key(
        [tiny_mnist.folder / f for s in specs.SPLITS for f in specs.IDX_FILES[s]], "idx"
    )
    final = cache.cache_path("mnist", key)
    partial = cache_dir / f".{final.name}.k1ll3d.tmp"
    partial.write_bytes(b"PK\x03\x04 half an npz")
    decodes = count_calls(formats, "read_idx_pair")
    x, _ = data.load("mnist", "train", tiny_mnist.root)
    assert len(decodes) == 2  # the partial file was not taken for a cache entry
    np.testing.assert_array_equal(x, tiny_mnist.arrays["train"][0])
    assert final.is_file()
    assert cache.read_split(final, "train") is not None


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupted_cache_file_is_detected_and_rebuilt(tiny_mnist, monkeypatch, damage, count_calls):
    data.load("mnist", "train", tiny_mnist.root)
    (final,) = (tiny_mnist.root.parent / "cache").glob("mnist-*.npz")
    blob = bytearray(final.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        # Inside the pixel data of train_images: only the zip CRC can notice.
        at = blob.find(tiny_mnist.arrays["train"][0].tobytes()[:64])
        assert at > 0
        blob[at + 100] ^= 0x01
    else:
        blob = bytearray(b"not a zip at all")
    final.write_bytes(bytes(blob))
    assert cache.read_split(final, "train") is None
    decodes = count_calls(formats, "read_idx_pair")
    x, y = data.load("mnist", "train", tiny_mnist.root)
    assert len(decodes) == 2
    np.testing.assert_array_equal(x, tiny_mnist.arrays["train"][0])
    np.testing.assert_array_equal(y, tiny_mnist.arrays["train"][1])
    assert cache.read_split(final, "train") is not None  # rebuilt in place


def test_unwritable_cache_still_loads_with_a_warning(tiny_mnist, monkeypatch):
    blocker = tiny_mnist.root.parent / "blocker"
    blocker.write_bytes(b"a file where the cache folder should be")
    monkeypatch.setenv("DST_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="could not write the data cache"):
        x, _ = data.load("mnist", "test", tiny_mnist.root)
    np.testing.assert_array_equal(x, tiny_mnist.arrays["test"][0])


# ------------------------------------------------------------------- missing files, network


def test_offline_fails_fast_with_instructions(tiny_mnist):
    (tiny_mnist.folder / "train-images-idx3-ubyte.gz").unlink()
    (tiny_mnist.folder / "t10k-labels-idx1-ubyte.gz").unlink()
    start = time.monotonic()
    with pytest.raises(DataUnavailableError) as err:
        data.load("mnist", "train", tiny_mnist.root)
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert f"Put these files in {tiny_mnist.folder}/" in msg
    for name in specs.SPECS["mnist"].download_files:
        assert name in msg
    assert "train-images-idx3-ubyte.gz  (sha256" in msg
    assert msg.count("<- missing") == 2 and "t10k-labels-idx1-ubyte.gz  (sha256" in msg
    assert "DST_DATA_DIR" in msg and 'backend="tfds"' in msg
    assert "127.0.0.1" in msg  # the reason: which mirror failed and how
    # Nothing half-downloaded is left behind.
    assert sorted(p.name for p in tiny_mnist.folder.iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]


def test_download_false_fails_immediately(tiny_mnist):
    (tiny_mnist.folder / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataUnavailableError, match=r"download=False"):
        data.load("mnist", "train", tiny_mnist.root, download=False)


def test_silent_server_times_out_quickly(tiny_mnist, monkeypatch):
    # A server that accepts connections but never answers: only timeouts can end the wait.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    spec = specs.SPECS["mnist"]
    monkeypatch.setitem(
        specs.SPECS, "mnist", dataclasses.replace(spec, mirrors=(f"http://127.0.0.1:{port}/",))
    )
    monkeypatch.setattr(download, "TIMEOUT_S", 0.5)
    (tiny_mnist.folder / "train-images-idx3-ubyte.gz").unlink()
    start = time.monotonic()
    try:
        with pytest.raises(DataUnavailableError, match="timed out"):
            data.load("mnist", "train", tiny_mnist.root)
    finally:
        listener.close()
    assert time.monotonic() - start < 5


def test_hanging_dns_is_bounded(tiny_mnist, monkeypatch):
    release = threading.Event()

    def stuck_getaddrinfo(*args, **kwargs):
        release.wait(30)  # a resolver on a cut-off network
        raise socket.gaierror("unreachable")

    monkeypatch.setattr(socket, "getaddrinfo", stuck_getaddrinfo)
    monkeypatch.setattr(download, "RESOLVE_TIMEOUT_S", 0.3)
    spec = specs.SPECS["mnist"]
    mirrors = ("http://mirror-a.invalid/", "http://mirror-b.invalid/")
    monkeypatch.setitem(specs.SPECS, "mnist", dataclasses.replace(spec, mirrors=mirrors))
    (tiny_mnist.folder / "t10k-images-idx3-ubyte.gz").unlink()
    start = time.monotonic()
    try:
        with pytest.raises(DataUnavailableError, match="DNS lookup of mirror-a.invalid"):
            data.load("mnist", "test", tiny_mnist.root)
    finally:
        release.set()
    assert time.monotonic() - start < 3


def test_offline_budget_caps_the_total_wait(monkeypatch, tmp_path):
    # Many mirrors, each failing slowly: the shared budget stops the attempts.
    def slow_fetch(url, dest, sha256, timeout, progress):
        time.sleep(min(timeout, 0.2))
        raise TimeoutError("timed out")

    monkeypatch.setattr(download, "_fetch", slow_fetch)
    monkeypatch.setattr(download, "OFFLINE_BUDGET_S", 0.5)
    start = time.monotonic()
    with pytest.raises(download.DownloadError, match="gave up after"):
        download.download_files(
            ["f"], tmp_path, mirrors=[f"http://m{i}/" for i in range(20)], sha256={"f": "0"}
        )
    assert time.monotonic() - start < 1.5


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server over tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield types.SimpleNamespace(root=root, url=f"http://127.0.0.1:{server.server_port}/")
    server.shutdown()
    server.server_close()


def test_download_verifies_and_stores_atomically(tiny_mnist, http_server, monkeypatch, env):
    (http_server.root / "mnist").mkdir()
    for name, blob in tiny_mnist.blobs.items():
        (http_server.root / "mnist" / name).write_bytes(blob)
    spec = specs.SPECS["mnist"]
    # The first mirror answers 404 for everything: the second one must be used.
    mirrors = (http_server.url + "nothing/", http_server.url + "mnist/")
    monkeypatch.setitem(specs.SPECS, "mnist", dataclasses.replace(spec, mirrors=mirrors))
    root = env / "fresh"
    root.mkdir()  # an explicit data folder must exist; its mnist/ subfolder is created
    x, y = data.load("mnist", "test", root)
    np.testing.assert_array_equal(x, tiny_mnist.arrays["test"][0])
    np.testing.assert_array_equal(y, tiny_mnist.arrays["test"][1])
    stored = sorted(p.name for p in (root / "mnist").iterdir())
    assert stored == sorted(tiny_mnist.blobs)  # no temporary files left
    for name, blob in tiny_mnist.blobs.items():
        assert (root / "mnist" / name).read_bytes() == blob


def test_download_with_wrong_bytes_is_rejected_and_not_stored(
    tiny_mnist, http_server, monkeypatch, env
):
    (http_server.root / "mnist").mkdir()
    for name, blob in tiny_mnist.blobs.items():
        (http_server.root / "mnist" / name).write_bytes(blob)
    (http_server.root / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    spec = specs.SPECS["mnist"]
    monkeypatch.setitem(
        specs.SPECS, "mnist", dataclasses.replace(spec, mirrors=(http_server.url + "mnist/",))
    )
    root = env / "fresh"
    root.mkdir()
    with pytest.raises(DataIntegrityError, match="train-labels-idx1-ubyte.gz: sha256 mismatch"):
        data.load("mnist", "train", root)
    assert not (root / "mnist" / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in (root / "mnist").iterdir() if p.name.endswith(".tmp")]


# -------------------------------------------------------------------- data folder errors


def test_data_dir_that_is_a_file_is_a_value_error(tiny_mnist, monkeypatch):
    afile = tiny_mnist.root.parent / "afile"
    afile.write_bytes(b"not a folder")
    with pytest.raises(ValueError) as err:
        data.load("mnist", "train", afile)
    assert str(err.value).startswith(
        f"the data folder {afile} (from the data_dir argument) is a file, not a folder"
    )
    assert not isinstance(err.value, DataIntegrityError)
    monkeypatch.setenv("DST_DATA_DIR", str(afile))
    with pytest.raises(ValueError, match=r"\(from the DST_DATA_DIR environment variable\) is"):
        data.variant("mnist")


def test_missing_data_dir_is_refused_not_created(tiny_mnist, monkeypatch):
    typo = tiny_mnist.root.parent / "dta"
    start = time.monotonic()
    with pytest.raises(DataUnavailableError) as err:
        data.load("mnist", "train", typo)
    assert time.monotonic() - start < 2  # no download attempted
    msg = str(err.value)
    assert msg.startswith(f"the data folder {typo} (from the data_dir argument) does not exist")
    assert "correct the path, or create the folder" in msg
    assert not typo.exists()
    monkeypatch.setenv("DST_DATA_DIR", str(typo))
    with pytest.raises(DataUnavailableError, match="DST_DATA_DIR environment variable"):
        data.load("mnist", "train")
    with pytest.raises(DataUnavailableError, match="does not exist"):
        data.variant("mnist")
    assert not typo.exists()


def test_default_data_dir_is_created_for_downloads(tiny_mnist, http_server, monkeypatch, env):
    (http_server.root / "mnist").mkdir()
    for name, blob in tiny_mnist.blobs.items():
        (http_server.root / "mnist" / name).write_bytes(blob)
    spec = specs.SPECS["mnist"]
    mirrors = (http_server.url + "mnist/",)
    monkeypatch.setitem(specs.SPECS, "mnist", dataclasses.replace(spec, mirrors=mirrors))
    default = env / "xdg" / "dst_jax"
    assert not default.exists() and loader.resolve_data_dir() == default
    x, _ = data.load("mnist", "test")
    np.testing.assert_array_equal(x, tiny_mnist.arrays["test"][0])
    assert sorted(p.name for p in (default / "mnist").iterdir()) == sorted(tiny_mnist.blobs)


def test_data_set_paths_of_the_wrong_kind_are_value_errors(tiny_mnist):
    path = tiny_mnist.folder / "train-images-idx3-ubyte.gz"
    path.unlink()
    path.mkdir()  # e.g. a failed extraction
    with pytest.raises(ValueError, match=f"{path} is a folder .* should be the file"):
        data.load("mnist", "train", tiny_mnist.root)

    other = tiny_mnist.root.parent / "other"
    other.mkdir()
    (other / "mnist").write_bytes(b"a file where the mnist/ folder belongs")
    with pytest.raises(ValueError, match=f"{other / 'mnist'} is a file, but the MNIST files"):
        data.load("mnist", "train", other)


def test_incomplete_data_set_names_the_missing_files_first(tiny_mnist):
    (tiny_mnist.folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataUnavailableError) as err:
        data.load("mnist", "test", tiny_mnist.root, download=False)
    first = str(err.value).splitlines()[0]
    assert first == (
        f"MNIST is incomplete in {tiny_mnist.folder} (missing t10k-images-idx3-ubyte.gz) and "
        f"could not be downloaded: downloading is switched off (download=False)."
    )


def _denied(path):
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


def test_unreadable_file_or_folder_is_one_clear_error(tiny_mnist, tiny_cifar, monkeypatch):
    # Simulated, so it runs as root too (root reads files whatever their mode).
    locked = tiny_mnist.folder / "train-labels-idx1-ubyte.gz"
    real_sha256 = cache.sha256_file

    def sha256_file(path):
        if pathlib.Path(path) == locked:
            raise _denied(path)
        return real_sha256(path)

    monkeypatch.setattr(cache, "sha256_file", sha256_file)
    with pytest.raises(DataUnavailableError) as err:
        data.load("mnist", "train", tiny_mnist.root)
    assert str(err.value).startswith(f"cannot read {locked}: permission denied. Give this user")
    assert err.value.__cause__ is None and err.value.__suppress_context__

    _tar(tiny_cifar.folder / "copy.tar.gz", tiny_cifar.members)
    real_iterdir = pathlib.Path.iterdir

    def iterdir(self):
        if self == tiny_cifar.folder:
            raise _denied(self)
        return real_iterdir(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", iterdir)
    for call in (data.load, lambda *a: data.variant(a[0], a[2])):
        with pytest.raises(DataUnavailableError, match=f"cannot read {tiny_cifar.folder}: perm"):
            call("cifar10", "train", tiny_cifar.root)


def _permissions_apply(folder) -> bool:
    # Root (with CAP_DAC_OVERRIDE) reads files whatever their mode: try rather than guess.
    probe = folder / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        probe.read_bytes()
        return False
    except PermissionError:
        return True
    finally:
        probe.unlink()


def test_unreadable_file_or_folder_with_real_permissions(tiny_mnist, tiny_cifar, tmp_path):
    if not _permissions_apply(tmp_path):
        pytest.skip("this process reads files whatever their permissions (root)")
    locked = tiny_mnist.folder / "t10k-images-idx3-ubyte.gz"
    locked.chmod(0)
    try:
        with pytest.raises(DataUnavailableError, match=f"cannot read {locked}: permission"):
            data.load("mnist", "test", tiny_mnist.root)
    finally:
        locked.chmod(0o644)

    tiny_mnist.folder.chmod(0)  # not even searchable: every file in it looks inaccessible
    try:
        with pytest.raises(DataUnavailableError, match="permission denied"):
            data.load("mnist", "test", tiny_mnist.root)
    finally:
        tiny_mnist.folder.chmod(0o755)

    # An extracted image copy with one class folder that cannot be listed: not skipped (which
    # would surface as a wrong count) but reported.
    copy = tiny_cifar.folder / "copy"
    for name, blob in tiny_cifar.members.items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(blob)
    (copy / "train" / "dog").chmod(0)
    try:
        with pytest.raises(DataUnavailableError, match=f"cannot read {copy / 'train' / 'dog'}"):
            data.load("cifar10", "train", tiny_cifar.root)
    finally:
        (copy / "train" / "dog").chmod(0o755)


# ------------------------------------------------------------------------------- CIFAR-10


def _png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))


@pytest.fixture
def tiny_cifar(env, monkeypatch):
    """CIFAR-10 shrunk to 2 train + 1 test image per class."""
    spec = dataclasses.replace(
        specs.SPECS["cifar10"], split_sizes={"train": 20, "test": 10}, mirrors=(closed_port_url(),)
    )
    monkeypatch.setitem(specs.SPECS, "cifar10", spec)
    folder = env / "data" / "cifar10"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    members = {}
    for split, per_class in (("train", 2), ("test", 1)):
        for cls in specs.CIFAR10_CLASSES:
            for i in range(per_class):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                members[f"{split}/{cls}/{i:04d}.png"] = _png(img)
    return types.SimpleNamespace(root=env / "data", folder=folder, members=members)


def test_cifar_image_copy_is_read_and_named_by_its_archive(tiny_cifar):
    _tar(tiny_cifar.folder / "cifar10-png-copy.tar.gz", tiny_cifar.members)
    assert data.variant("cifar10", tiny_cifar.root) == "cifar10-png-copy"
    x, y, info = data.load_with_info("cifar10", "train", tiny_cifar.root)
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 2))
    assert info["dataset"] == "cifar10-png-copy" and info["canonical"] is False
    # Class "cat" (label 3), its second image.
    expected = np.asarray(Image.open(io.BytesIO(tiny_cifar.members["train/cat/0001.png"])))
    np.testing.assert_array_equal(x[3 * 2 + 1], expected)


def test_cifar_image_copy_with_wrong_counts_is_rejected(tiny_cifar):
    members = dict(tiny_cifar.members)
    members["train/dog/0002.png"] = members.pop("train/cat/0001.png")
    _tar(tiny_cifar.folder / "copy.tar.gz", members)
    with pytest.raises(DataIntegrityError, match=r"2 images of each class.*\{3: 1, 5: 3\}"):
        data.load("cifar10", "train", tiny_cifar.root)


def test_cifar_canonical_archive_takes_precedence(tiny_cifar, monkeypatch):
    _tar(tiny_cifar.folder / "cifar10-png-copy.tar.gz", tiny_cifar.members)
    rng = np.random.default_rng(7)
    batches = {}
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 10)]:
        labels = np.arange(n) % 10 if name == "test_batch" else np.arange(4) + 2 * int(name[-1])
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = (labels % 10).tolist()
        batches[f"cifar-10-batches-py/{name}"] = pickle.dumps(
            {b"data": rows, b"labels": labels}, protocol=2
        )
    archive = tiny_cifar.folder / specs.CIFAR_PYTHON_ARCHIVE
    _tar(archive, batches)
    spec = specs.SPECS["cifar10"]
    sha = {**spec.sha256, archive.name: hashlib.sha256(archive.read_bytes()).hexdigest()}
    monkeypatch.setitem(specs.SPECS, "cifar10", dataclasses.replace(spec, sha256=sha))
    assert data.variant("cifar10", tiny_cifar.root) == "cifar10"
    x, y, info = data.load_with_info("cifar10", "test", tiny_cifar.root)
    assert info["dataset"] == "cifar10" and info["canonical"] is True
    assert info["source"] == str(archive)
    np.testing.assert_array_equal(y, np.arange(10))

    archive.write_bytes(archive.read_bytes()[:-5])  # damaged: the checksum catches it
    with pytest.raises(DataIntegrityError, match="sha256 mismatch"):
        data.load("cifar10", "test", tiny_cifar.root)


def test_cifar_two_image_copies_are_ambiguous(tiny_cifar):
    _tar(tiny_cifar.folder / "a.tar.gz", tiny_cifar.members)
    _tar(tiny_cifar.folder / "b.tar.gz", tiny_cifar.members)
    with pytest.raises(ValueError, match=r"several CIFAR-10 image copies \(a.tar.gz, b.tar.gz\)"):
        data.load("cifar10", "train", tiny_cifar.root)


def test_cifar_missing_lists_every_accepted_form(tiny_cifar):
    assert data.variant("cifar10", tiny_cifar.root) == "cifar10"  # what a download gives
    start = time.monotonic()
    with pytest.raises(DataUnavailableError) as err:
        data.load("cifar10", "train", tiny_cifar.root)
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert f"Put one of these in {tiny_cifar.folder}/" in msg
    for form in ("cifar-10-python.tar.gz", "cifar-10-batches-py/", "cifar-10-binary.tar.gz"):
        assert form in msg
    assert specs.SPECS["cifar10"].mirrors[0] + "cifar-10-python.tar.gz" in msg
    assert "train/<class>/<image>" in msg and "DST_DATA_DIR" in msg and 'backend="tfds"' in msg


# ---------------------------------------------------------------------------------- tfds


def test_tfds_backend_missing_gives_a_clear_import_error(env, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(ImportError, match=r"tensorflow-datasets.*dst_jax\[tfds\]"):
        data.load("mnist", "train", backend="tfds")


def test_tfds_backend_returns_the_same_layout(env, monkeypatch):
    calls = {}
    images = np.random.default_rng(0).integers(0, 256, (10000, 28, 28, 1), dtype=np.uint8)
    labels = np.arange(10000, dtype=np.int64) % 10

    fake = types.ModuleType("tensorflow_datasets")

    def fake_load(name, **kwargs):
        calls.update(kwargs, name=name)
        return ("tensors",)

    fake.load = fake_load
    fake.as_numpy = lambda ds: (images, labels)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    x, y, info = data.load_with_info("fashion_mnist", "test", backend="tfds")
    assert calls == {
        "name": "fashion_mnist",
        "split": "test",
        "batch_size": -1,
        "as_supervised": True,
        "data_dir": None,
    }
    assert x.dtype == np.uint8 and y.dtype == np.int32
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert info["backend"] == "tfds" and info["dataset"] == "fashion_mnist"
    assert data.variant("cifar10", backend="tfds") == "cifar10"
