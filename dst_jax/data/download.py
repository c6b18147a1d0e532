"""Downloading missing data files: verified, atomic, and quick to give up without a network.

A file is streamed from each mirror in turn into a temporary sibling of its destination while
its sha256 is computed; only a file whose hash matches the official value is moved into place
(`dst_jax.io.atomic_open`), so an interrupted or corrupted download never leaves a file that a
later load would accept.

GPU clusters are often offline, and an offline machine must fail in seconds, not minutes:
- DNS lookups run in a helper thread bounded by `RESOLVE_TIMEOUT_S` (the resolver itself has
  no timeout and can block for a long time on a cut-off network);
- every socket operation has a `TIMEOUT_S` timeout;
- failed attempts share one budget, `OFFLINE_BUDGET_S`, and the first file that no mirror could
  serve ends the whole download.
With the defaults (two mirrors at most) an offline load fails within about 20 s.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from dst_jax.data.errors import DataIntegrityError
from dst_jax.io import atomic_open

TIMEOUT_S = 6.0
RESOLVE_TIMEOUT_S = 4.0
OFFLINE_BUDGET_S = 20.0
_CHUNK = 1 << 16
_USER_AGENT = "dst_jax-data/0.1 (python urllib)"


class DownloadError(Exception):
    """No mirror could serve a file. `reasons` holds one line per attempt; `corrupt` is True
    when some mirror answered with bytes whose checksum was wrong."""

    def __init__(self, file: str, reasons: list[str], corrupt: bool):
        self.file, self.reasons, self.corrupt = file, reasons, corrupt
        super().__init__(f"could not download {file}: " + "; ".join(reasons))


def _resolve(host: str, port: int, timeout: float) -> None:
    outcome: dict[str, BaseException] = {}

    def lookup():
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            outcome["error"] = e

    # A daemon thread: if the lookup hangs we walk away from it instead of waiting.
    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"DNS lookup of {host} took more than {timeout:.0f} s")
    if "error" in outcome:
        raise outcome["error"]


def _fetch(url: str, dest: Path, sha256: str, timeout: float, progress: bool) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.hostname:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        _resolve(parts.hostname, port, min(RESOLVE_TIMEOUT_S, timeout))
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        digest = hashlib.sha256()
        with (
            atomic_open(dest, "wb") as f,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"download {dest.name}",
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            # Raising inside atomic_open discards the temporary file: nothing lands on disk.
            if digest.hexdigest() != sha256:
                raise DataIntegrityError(
                    f"{url}: sha256 mismatch: expected {sha256}, got {digest.hexdigest()}"
                )


def download_files(
    files: Sequence[str],
    folder: str | Path,
    *,
    mirrors: Sequence[str],
    sha256: Mapping[str, str],
    progress: bool = True,
) -> None:
    """Download each of `files` (names) from the first mirror that serves it into `folder`.

    `sha256[name]` is the required hash of each file. Raises `DownloadError` for the first file
    that no mirror could serve (network down, HTTP error, wrong bytes).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        raise DownloadError(files[0], [f"the folder {folder} is not writable"], corrupt=False)
    start = time.monotonic()
    connected = False
    for name in files:
        reasons: list[str] = []
        corrupt = False
        for base in mirrors:
            url = base + name
            if connected:
                timeout = TIMEOUT_S
            else:
                # Until one attempt reached a server, all attempts share the offline budget.
                timeout = min(TIMEOUT_S, OFFLINE_BUDGET_S - (time.monotonic() - start))
                if timeout <= 0.1:
                    reasons.append(f"gave up after {OFFLINE_BUDGET_S:.0f} s without a connection")
                    break
            try:
                _fetch(url, folder / name, sha256[name], timeout, progress)
                connected = True
                break
            except DataIntegrityError as e:
                connected, corrupt = True, True
                reasons.append(str(e))
            except urllib.error.HTTPError as e:
                connected = True
                reasons.append(f"{url}: HTTP {e.code} {e.reason}")
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                reasons.append(f"{url}: {getattr(e, 'reason', None) or e}")
        else:
            raise DownloadError(name, reasons, corrupt)
        if not (folder / name).is_file():
            raise DownloadError(name, reasons, corrupt)
