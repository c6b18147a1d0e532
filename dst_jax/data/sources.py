"""Where a data set's files are in the data folder: the IDX files, CIFAR-10's own archives or
extracted folders, or an image copy of CIFAR-10 (class folders, e.g. the JPEG q75 copy), and
what a missing data set's message says, kept apart from the loading itself because the search
rules are the part that grows with each new layout.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from dst_jax.data.specs import (
    CIFAR_BINARY_ARCHIVE,
    CIFAR_PYTHON_ARCHIVE,
    CIFAR_PYTHON_DIR,
    IDX_FILES,
    SPLITS,
    DatasetSpec,
)

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")
# Folders of CIFAR's own archives, never image copies.
_NOT_IMAGE_FOLDERS = {CIFAR_PYTHON_DIR, "cifar-10-batches-bin"}


@dataclasses.dataclass(frozen=True)
class _Source:
    kind: str  # "idx" | "cifar_python" | "cifar_binary" | "class_folders"
    path: Path  # the data set's folder (idx) or the archive / extracted folder
    variant: str
    canonical: bool

    def files(self) -> list[Path]:
        if self.kind == "idx":
            return [self.path / f for s in SPLITS for f in IDX_FILES[s]]
        return [self.path]


def _image_variant(stem: str) -> str:
    # The name goes into results files; it must never read as plain (canonical) "cifar10".
    if stem == "cifar10":
        return "cifar10-images"
    return stem if stem.startswith("cifar10") else f"cifar10-{stem}"


def _cifar_sources(folder: Path) -> list[_Source]:
    """Usable CIFAR-10 sources in `folder`, canonical ones first."""
    out = []
    if (folder / CIFAR_PYTHON_DIR).is_dir():
        out.append(_Source("cifar_python", folder / CIFAR_PYTHON_DIR, "cifar10", True))
    if (folder / CIFAR_PYTHON_ARCHIVE).is_file():
        out.append(_Source("cifar_python", folder / CIFAR_PYTHON_ARCHIVE, "cifar10", True))
    if (folder / CIFAR_BINARY_ARCHIVE).is_file():
        out.append(_Source("cifar_binary", folder / CIFAR_BINARY_ARCHIVE, "cifar10", True))
    if not folder.is_dir():
        return out
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        out.append(_Source("class_folders", folder, "cifar10-images", False))
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name in (CIFAR_PYTHON_ARCHIVE, CIFAR_BINARY_ARCHIVE):
            continue
        if entry.is_file():
            suffix = next((s for s in _ARCHIVE_SUFFIXES if entry.name.endswith(s)), None)
            if suffix:
                variant = _image_variant(entry.name[: -len(suffix)])
                out.append(_Source("class_folders", entry, variant, False))
        elif entry.is_dir() and entry.name not in _NOT_IMAGE_FOLDERS:
            if (entry / "train").is_dir() and (entry / "test").is_dir():
                out.append(_Source("class_folders", entry, _image_variant(entry.name), False))
    return out


def _find_source(spec: DatasetSpec, root: Path) -> _Source | None:
    folder = root / spec.name
    if spec.name != "cifar10":
        source = _Source("idx", folder, spec.name, True)
        return source if all(p.is_file() for p in source.files()) else None
    found = _cifar_sources(folder)
    if not found:
        return None
    if found[0].canonical:
        return found[0]
    if len(found) > 1:
        names = ", ".join(s.path.name for s in found)
        raise ValueError(
            f"{folder} holds several CIFAR-10 image copies ({names}) and no canonical "
            f"archive; keep one of them there (or put the official "
            f"{CIFAR_PYTHON_ARCHIVE} there, which takes precedence)"
        )
    return found[0]


def _missing_message(spec: DatasetSpec, root: Path, reason: str) -> str:
    folder = root / spec.name
    env = os.environ.get("DST_DATA_DIR")
    first = f"{spec.title} is not in {folder} and could not be downloaded: {reason}."
    if spec.name != "cifar10":
        missing = [f for f in spec.download_files if not (folder / f).is_file()]
        if len(missing) < len(spec.download_files):
            first = (
                f"{spec.title} is incomplete in {folder} (missing {', '.join(missing)}) and "
                f"could not be downloaded: {reason}."
            )
    lines = [first, ""]
    if spec.name == "cifar10":
        url = spec.mirrors[0] + CIFAR_PYTHON_ARCHIVE
        lines += [
            f"Put one of these in {folder}/:",
            f"  {CIFAR_PYTHON_ARCHIVE}  (sha256 {spec.sha256[CIFAR_PYTHON_ARCHIVE]}, from {url})",
            f"  {CIFAR_PYTHON_DIR}/  (that archive, extracted)",
            f"  {CIFAR_BINARY_ARCHIVE}  (sha256 {spec.sha256[CIFAR_BINARY_ARCHIVE]})",
            "  <name>.tar.gz or <name>/ holding train/<class>/<image> and test/<class>/<image> "
            "(an image copy; reported as the variant 'cifar10-<name>', not canonical CIFAR-10)",
        ]
    else:
        present = {f for f in spec.download_files if (folder / f).is_file()}
        lines.append(f"Put these files in {folder}/ (from {spec.mirrors[0]}<file name>):")
        for f in spec.download_files:
            mark = "" if f in present else "   <- missing"
            lines.append(f"  {f}  (sha256 {spec.sha256[f]}){mark}")
    lines += [
        "",
        "Or point the loader at a folder that has them: the data_dir argument, or the "
        f"DST_DATA_DIR environment variable (now {env!r}); it needs a {spec.name}/ subfolder.",
        'Or use backend="tfds" with tensorflow-datasets installed (pip install "dst_jax[tfds]").',
    ]
    return "\n".join(lines)
