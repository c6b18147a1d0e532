"""What each data set is: canonical files, official checksums, download mirrors, split sizes.

Checksums are the official values (MNIST and Fashion-MNIST: the sha256 sums that
tensorflow-datasets registers for the canonical IDX files; CIFAR-10: the sha256 of the two
archives at cs.toronto.edu, and for an extracted `cifar-10-batches-py/` the per-batch md5 sums
that the CIFAR page and torchvision publish, the only ones that exist for those files).

The loader reads everything from `SPECS`, so tests can shrink a data set by replacing its spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

SPLITS = ("train", "test")

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# IDX file names per split: (images, labels). Same names for MNIST and Fashion-MNIST.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

CIFAR_PYTHON_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_PYTHON_DIR = "cifar-10-batches-py"
CIFAR_BINARY_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCHES = ("test_batch",)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A data set's fixed facts.

    Attributes:
      name: folder name under the data directory and the canonical variant name.
      title: human name used in messages.
      image_shape: (H, W, C) of one image.
      num_classes: labels are in [0, num_classes).
      split_sizes: number of examples per split.
      sha256: canonical file name -> official sha256 (hex).
      md5: extra file name -> official md5, for files with no published sha256.
      mirrors: base URLs tried in order; a file's URL is base + file name.
      download_files: what to fetch when nothing usable is on disk.
      class_names: label index -> class name (folder names of image archives).
    """

    name: str
    title: str
    image_shape: tuple[int, int, int]
    num_classes: int
    split_sizes: Mapping[str, int]
    sha256: Mapping[str, str]
    mirrors: tuple[str, ...]
    download_files: tuple[str, ...]
    md5: Mapping[str, str] = dataclasses.field(default_factory=dict)
    class_names: tuple[str, ...] = ()


SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        image_shape=(28, 28, 1),
        num_classes=10,
        split_sizes={"train": 60_000, "test": 10_000},
        sha256={
            "train-images-idx3-ubyte.gz": (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
            ),
            "train-labels-idx1-ubyte.gz": (
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
            ),
            "t10k-images-idx3-ubyte.gz": (
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
            ),
            "t10k-labels-idx1-ubyte.gz": (
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
            ),
        },
        # yann.lecun.com has been unreliable for years; the PyTorch mirror goes first.
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        download_files=(*IDX_FILES["train"], *IDX_FILES["test"]),
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        image_shape=(28, 28, 1),
        num_classes=10,
        split_sizes={"train": 60_000, "test": 10_000},
        sha256={
            "train-images-idx3-ubyte.gz": (
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
            ),
            "train-labels-idx1-ubyte.gz": (
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
            ),
            "t10k-images-idx3-ubyte.gz": (
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
            ),
            "t10k-labels-idx1-ubyte.gz": (
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
            ),
        },
        # Zalando's bucket named in the fashion-mnist README (the website endpoint is http only).
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        download_files=(*IDX_FILES["train"], *IDX_FILES["test"]),
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        title="CIFAR-10",
        image_shape=(32, 32, 3),
        num_classes=10,
        split_sizes={"train": 50_000, "test": 10_000},
        sha256={
            # 170,498,071 bytes (md5 c58f30108f718f92721af3b95e74349a, as on the CIFAR page).
            CIFAR_PYTHON_ARCHIVE: (
                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
            ),
            # 170,052,171 bytes; the archive tensorflow-datasets downloads.
            CIFAR_BINARY_ARCHIVE: (
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
            ),
        },
        md5={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
        },
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        download_files=(CIFAR_PYTHON_ARCHIVE,),
        class_names=CIFAR10_CLASSES,
    ),
}

DATASETS = tuple(SPECS)


def get_spec(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(map(repr, SPECS))}")
    return SPECS[name]


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
    return split
