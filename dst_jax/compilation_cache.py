"""JAX's persistent compilation cache, in the user's cache folder.

Compiling is most of a short sweep's wall time, and a rerun, a resumed sweep or the test suite
compiles the same programs again. With the cache on, XLA's executables are stored on disk and
read back instead of recompiled. JAX keys every entry by a hash of the lowered program, the
compile options, the XLA flags, the backend and the jax/jaxlib versions, so a changed program
(or another jax) never reuses a stale executable: it just misses the cache.

Turned on by the command-line entry points (`experiments.run`, `experiments.gradients`) and by
the test suite, never by `import dst_jax`: a library import should not change a user's JAX
settings. `DST_JAX_COMPILATION_CACHE=0` turns it off; `DST_JAX_COMPILATION_CACHE=/some/dir`
puts it elsewhere. The folder is not pruned (JAX's size limit needs the `filelock` package);
deleting it only costs the next run its compiles.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "DST_JAX_COMPILATION_CACHE"
_OFF = ("0", "false", "off", "no")
_ON = ("", "1", "true", "on", "yes")
# Programs that compile faster than this are not stored: reading one back costs about as much.
MIN_COMPILE_S = 0.2


def default_dir() -> Path:
    """`$XDG_CACHE_HOME/dst_jax/jax`, else `~/.cache/dst_jax/jax`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dst_jax" / "jax"


def enable(path: str | os.PathLike | None = None) -> str | None:
    """Turn JAX's persistent compilation cache on in `path` (default: `$DST_JAX_COMPILATION_CACHE`
    if it names a folder, else `default_dir()`); returns the folder, or None when the variable
    turns the cache off."""
    import jax

    value = os.environ.get(ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if path is None:
        path = default_dir() if value.lower() in _ON else Path(value).expanduser()
    folder = str(path)
    os.makedirs(folder, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    return folder


def disable() -> None:
    """Turn the persistent cache off for the rest of the process."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
