"""Where and from what code an output file was made, and the one rule that makes values JSON-safe.

Every file that records provenance (a sweep's timing.json, the gradient analysis's
gradients.json, a benchmark's JSON) writes `record()` at its top level, so they hold the same
keys::

    machine      platform, device, n_devices, n_processes, host_cpus, python, jax, os, arch,
                 cpu_model (where /proc/cpuinfo says), load_average (1, 5 and 15 minutes)
    versions     python, dst_jax, jax, jaxlib, numpy, optax, flax, matplotlib (None: not installed)
    git_commit   the checkout's HEAD, or None outside a git checkout of this project
    git_dirty    whether tracked files differ from HEAD (None where git_commit is None)
    created_utc  when the record was made, ISO 8601 in UTC

`json_safe` is the JSON rule: numpy and JAX values become Python numbers and lists, tuples
become lists, keys become strings, and a non-finite float becomes null (strict JSON has no NaN).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = ["git_commit", "git_dirty", "json_safe", "machine_info", "record", "versions"]

PACKAGES = ("jax", "jaxlib", "numpy", "optax", "flax", "matplotlib")
# The checkout that holds this package (a repository's root when it is one).
_ROOT = Path(__file__).resolve().parents[1]


def json_safe(x: Any) -> Any:
    """`x` with every value JSON can hold strictly: dicts (keys as strings), lists, Python
    numbers; a NaN or infinite float becomes None. Arrays (numpy or JAX) become nested lists."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, jax.Array):
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, np.generic):
        return json_safe(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """The machine and the JAX devices this process sees (the `machine` entry of `record`)."""
    devs = jax.devices()
    info: dict[str, Any] = {
        "platform": devs[0].platform,
        "device": devs[0].device_kind,
        "n_devices": len(devs),
        "n_processes": jax.process_count(),
        "host_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "os": platform.platform(),
        "arch": platform.machine(),
        "cpu_model": _cpu_model(),
    }
    # Other processes compete for a shared CPU; the load average says how much.
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return info


def versions() -> dict[str, str | None]:
    """Versions of Python, this package and the libraries its numbers depend on."""
    from dst_jax import __version__

    out: dict[str, str | None] = {"python": platform.python_version(), "dst_jax": __version__}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _in_checkout() -> bool:
    # An installed package can sit inside some other repository (a virtual environment in a
    # project folder): only a repository whose root holds this package describes its code.
    top = _git("rev-parse", "--show-toplevel")
    return top is not None and Path(top).resolve() == _ROOT


def git_commit() -> str | None:
    """The commit checked out where this package's code lives; None outside a git checkout."""
    return _git("rev-parse", "HEAD") if _in_checkout() else None


def git_dirty() -> bool | None:
    """Whether tracked files differ from the checked-out commit; None outside a git checkout."""
    if not _in_checkout():
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def record() -> dict[str, Any]:
    """{"machine", "versions", "git_commit", "git_dirty", "created_utc"}: what every output file
    that records provenance writes at its top level."""
    commit = git_commit()
    return {
        "machine": machine_info(),
        "versions": versions(),
        "git_commit": commit,
        "git_dirty": git_dirty() if commit is not None else None,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
