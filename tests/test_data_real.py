"""The real data sets in ../shared/data (beside the checkout; CI has it): shapes, dtypes,
per-class counts and a pinned sha256 of the pixel and label bytes of every split.

The pins are checksums of real data, computed once from the verified files: MNIST and
Fashion-MNIST come from the canonical IDX files (their own sha256 is checked by the loader), the
CIFAR-10 pins from the JPEG q75 copy as decoded by Pillow's libjpeg(-turbo). If only the CIFAR
pixel pin fails after a Pillow upgrade, suspect a changed JPEG decoder before the loader.

The decoded-array cache goes to a temporary folder, so the CIFAR archive is decoded once per
session (a few seconds) and the second load exercises the cache."""

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest

from dst_jax import data
from dst_jax.data import cache, formats


def _shared_data() -> Path | None:
    candidates = [os.environ.get("DST_DATA_DIR"), Path(__file__).resolve().parents[2] / "shared"]
    for c in candidates:
        if c and (Path(c) / "data" / "mnist").is_dir():
            return Path(c) / "data"
        if c and (Path(c) / "mnist").is_dir():
            return Path(c)
    return None


ROOT = _shared_data()
pytestmark = pytest.mark.skipif(
    ROOT is None,
    reason="real data not found: ../shared/data (beside the checkout) or $DST_DATA_DIR with "
    "mnist/, fashion_mnist/, cifar10/ is absent on this machine",
)

MNIST_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}
# (sha256 of images.tobytes(), sha256 of labels.tobytes()) of the arrays load() returns.
PINS = {
    ("mnist", "train"): (
        "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "ba2e26c82ab7a46fbcd5ec6de8eee4d541cf3829f5050669177da23b515defeb",
    ),
    ("mnist", "test"): (
        "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "52aa149c856ca033d02e1d2e5cc61033b4c56ed4a56f0edc328206a178c42126",
    ),
    ("fashion_mnist", "train"): (
        "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        "d69b1d6e0b8064974aa5aecc2786f961b8b2be829ee3a39dd8989efee46cad5a",
    ),
    ("fashion_mnist", "test"): (
        "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        "53fdd09ed9cbcd893df0e3b0af7802f2d62457de11c87273d4b4186f4992a40c",
    ),
    ("cifar10", "train"): (
        "bf3aabd52be912dae02a0435296c4dab5289524b57f55cd162dc4796935a611b",
        "e771d74a30161020cc7b8007f567001ee7a761a991eb03767303f704690a3581",
    ),
    ("cifar10", "test"): (
        "5a6aa8185204d80b65d3dfb540696dadd5f10d185ded226a96665d3e0fc6259f",
        "5bc63514646d9a3ef27a5166ac297b02a103368c7956b68a7541af6746e419a2",
    ),
}


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DST_CACHE_DIR", str(tmp_path_factory.mktemp("decoded")))
        yield


def _digests(x, y):
    return hashlib.sha256(x.tobytes()).hexdigest(), hashlib.sha256(y.tobytes()).hexdigest()


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnists(name):
    for split, n in (("train", 60_000), ("test", 10_000)):
        x, y, info = data.load_with_info(name, split, ROOT, download=False)
        assert x.shape == (n, 28, 28, 1) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int32
        counts = np.bincount(y, minlength=10).tolist()
        assert counts == (MNIST_COUNTS[split] if name == "mnist" else [n // 10] * 10)
        assert info["dataset"] == name and info["canonical"] is True
        assert _digests(x, y) == PINS[name, split]


@pytest.mark.slow
def test_cifar10_jpeg_copy_decodes_once_then_reads_the_cache():
    assert data.variant("cifar10", ROOT) == "cifar10-jpeg-q75"
    start = time.monotonic()
    x, y, info = data.load_with_info("cifar10", "train", ROOT, download=False)
    first = time.monotonic() - start
    assert x.shape == (50_000, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    assert np.bincount(y, minlength=10).tolist() == [5000] * 10
    assert info["dataset"] == "cifar10-jpeg-q75" and info["canonical"] is False
    assert info["source"].endswith("cifar10-jpeg-q75.tar.gz")
    assert _digests(x, y) == PINS["cifar10", "train"]
    del x

    start = time.monotonic()
    x, y = data.load("cifar10", "test", ROOT, download=False)
    second = time.monotonic() - start
    assert x.shape == (10_000, 32, 32, 3)
    assert np.bincount(y, minlength=10).tolist() == [1000] * 10
    assert _digests(x, y) == PINS["cifar10", "test"]
    assert second < first / 4, (first, second)  # the test split came from the cache

    # The DLGN input: thresholded on the device, 9,216 binary inputs per image.
    bits, labels, info = data.device_split("cifar10", "test", ROOT, preprocess="threshold")
    assert bits.shape == (10_000, 9216) and str(bits.dtype) == "uint8"
    assert info["preprocess"] == "threshold" and info["dataset"] == "cifar10-jpeg-q75"
    planes = np.asarray(bits[:2]).reshape(2, 3, 32, 32, 3)
    np.testing.assert_array_equal(planes[:, 1], x[:2] >= 128)
    np.testing.assert_array_equal(np.asarray(labels), y)


def test_device_split_unit_on_fashion_mnist():
    x, y, info = data.device_split("fashion_mnist", "test", ROOT)
    assert x.shape == (10_000, 784) and str(x.dtype) == "float32" and str(y.dtype) == "int32"
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # Mean pixel of the Fashion-MNIST test set, 73.15 / 255 (computed from the raw bytes).
    raw, _ = data.load("fashion_mnist", "test", ROOT)
    np.testing.assert_allclose(float(x.mean()), raw.mean() / 255.0, rtol=1e-5)
    assert info["preprocess"] == "unit" and info["dataset"] == "fashion_mnist"


def test_cifar10_copy_passes_its_gzip_check_and_the_shared_sha256sums():
    archive = ROOT / "cifar10" / "cifar10-jpeg-q75.tar.gz"
    if not (ROOT / "SHA256SUMS").is_file():
        pytest.skip(f"no SHA256SUMS in {ROOT}")
    # The loader finds the data folder's SHA256SUMS line for the archive (so it verifies it on
    # every load), and the shared copy is intact by both checks.
    sums = [s for s, _ in cache.listed_sha256(archive, ROOT)]
    assert sums == [ROOT.absolute() / "SHA256SUMS"]
    cache.verify_listed_sha256(archive, ROOT)
    formats.check_archive(archive)
