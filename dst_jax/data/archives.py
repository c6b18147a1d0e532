"""Streaming reads of data archives (tar, optionally gzip/bzip2/xz-compressed) and folders,
checked to their last byte, so that a damaged archive gives an error, never wrong data.

Archives are read by streaming (`tarfile` mode "r|"), so the 60,000 members of an image archive
are never unpacked to disk. The compressed stream under the tar is always read to its end, where
gzip keeps the CRC32 and length of everything it compressed (xz and bzip2 carry their own
checks): a streamed tar read stops at the tar's end-of-archive blocks and would never look
there, so a byte changed in the middle of an image archive would decode, silently, to a few
changed images (JPEG and BMP carry no checksum of their own).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from dst_jax.data.errors import DataIntegrityError

# Errors that a truncated or corrupted gzip/xz/bzip2/tar stream raises, depending on where it
# breaks (gzip.BadGzipFile and bz2's "Invalid data stream" are OSErrors).
_STREAM_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)

# Compressed formats by their magic bytes; anything else is read as a plain tar.
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
_READ_CHUNK = 1 << 20


def _damaged_archive(path: Path, compression: str, e: BaseException) -> DataIntegrityError:
    if isinstance(e, gzip.BadGzipFile):
        # Mostly "CRC check failed 0x.. != 0x.." or "Incorrect length of data produced": the
        # trailer's CRC32 or length disagrees with what the stream decompressed to.
        what = f"its gzip CRC32/length check failed ({e})"
    elif isinstance(e, lzma.LZMAError):
        what = f"its xz integrity check failed ({e})"
    elif isinstance(e, EOFError):
        what = f"it ends early ({e})"
    elif compression == "none":
        what = f"it cannot be read as a tar ({type(e).__name__}: {e})"
    else:
        what = f"it cannot be read as a {compression}-compressed tar ({type(e).__name__}: {e})"
    return DataIntegrityError(
        f"{path}: the archive is truncated or corrupted: {what}. Its bytes are not the ones "
        f"that were written, so no data were loaded from it. Replace it with an intact copy "
        f"(copy or download it again; where a SHA256SUMS file comes with it, "
        f"`sha256sum -c SHA256SUMS` checks the copy)"
    )


def _open_tar_stream(raw) -> tuple[io.BufferedIOBase, str]:
    """The decompressed stream of an open archive file, and the name of its compression."""
    head = raw.read(6)
    raw.seek(0)
    for magic, compression in _COMPRESSED:
        if head.startswith(magic):
            if compression == "gzip":
                return gzip.GzipFile(fileobj=raw, mode="rb"), compression
            if compression == "bzip2":
                return bz2.BZ2File(raw, "rb"), compression
            return lzma.LZMAFile(raw, "rb"), compression
    return raw, "none"


def iter_members(path: str | os.PathLike) -> Iterator[tuple[str, bytes]]:
    """(relative name with '/' separators, bytes) for each regular file of a folder or archive.

    Archives are streamed (tar, tar.gz, tar.bz2, tar.xz) and their compressed stream is checked
    to its end (gzip CRC32 and length; xz and bzip2 checks): a damaged archive raises
    `DataIntegrityError` after its last member, so a consumer must read all members before
    trusting any. Folders are walked in sorted order.
    """
    path = Path(path)
    if path.is_dir():
        yield from _iter_folder(path)
        return
    # Opened outside the error mapping below: an unreadable file is a permission problem for the
    # caller to report, not a corrupted archive.
    with open(path, "rb") as raw:
        stream, compression = _open_tar_stream(raw)
        try:
            with stream, tarfile.open(fileobj=stream, mode="r|") as tf:
                for member in tf:
                    if not member.isfile():
                        continue
                    fobj = tf.extractfile(member)
                    assert fobj is not None  # a regular file member always has one
                    data = fobj.read()
                    if len(data) != member.size:
                        raise DataIntegrityError(
                            f"{path}: member {member.name} is truncated ({len(data)} of "
                            f"{member.size} bytes)"
                        )
                    yield member.name, data
                # tarfile stops at the end-of-archive blocks; the rest of the stream (padding,
                # then the gzip trailer) must be read for the decompressor to check it.
                while stream.read(_READ_CHUNK):
                    pass
        except DataIntegrityError:
            raise
        except _STREAM_ERRORS as e:
            raise _damaged_archive(path, compression, e) from None


def _iter_folder(path: Path) -> Iterator[tuple[str, bytes]]:
    def unreadable(e: OSError) -> None:
        # os.walk skips a folder it cannot list unless told otherwise: a class folder would go
        # missing and only the count check would notice, with a misleading message.
        raise e

    for dirpath, dirnames, filenames in os.walk(path, onerror=unreadable):
        dirnames.sort()
        for fname in sorted(filenames):
            full = Path(dirpath, fname)
            yield full.relative_to(path).as_posix(), full.read_bytes()


def check_archive(path: str | os.PathLike) -> None:
    """Read a compressed archive to its end, raising `DataIntegrityError` (naming the file and
    what to do) unless its own checks pass: gzip's CRC32 and length, xz's and bzip2's checks.
    A folder or an uncompressed tar carries no such check and passes."""
    path = Path(path)
    if path.is_dir():
        return
    with open(path, "rb") as raw:
        stream, compression = _open_tar_stream(raw)
        if compression == "none":
            return
        try:
            with stream:
                while stream.read(_READ_CHUNK):
                    pass
        except _STREAM_ERRORS as e:
            raise _damaged_archive(path, compression, e) from None
