"""Arrays across devices and hosts: the 1-D config mesh, placing arrays, gathering results.

Single process: `device_put` with a sharding (a device array stays on device) and `np.asarray`.
Several processes (`jax.distributed`): every process builds its own shards with
`jax.make_array_from_callback`, and results are gathered with `process_allgather`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    devices = list(devices) if devices is not None else jax.devices()
    return Mesh(np.array(devices), ("configs",))


def config_sharding(m: Mesh) -> NamedSharding:
    """Sharded along the config axis: each device trains its share of a chunk."""
    return NamedSharding(m, PartitionSpec("configs"))


def replicated(m: Mesh) -> NamedSharding:
    return NamedSharding(m, PartitionSpec())


def to_global(x, sharding: NamedSharding) -> jax.Array:
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)  # a device array stays on device, no host copy
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def to_host(tree):
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def local_device(m: Mesh) -> jax.Device:
    """A device of the mesh that this process can address (only those report memory)."""
    me = jax.process_index()
    return next(d for d in m.devices.flat if d.process_index == me)


def agreed_min(x: int) -> int:
    """The smallest of every process's `x`: processes must agree on shapes (chunk sizes), and
    the most constrained host decides."""
    if jax.process_count() == 1:
        return int(x)
    return int(np.min(multihost_utils.process_allgather(np.int64(x))))


def free_bytes(device: jax.Device) -> int:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    # CPU: no allocator statistics; plan against a quarter of physical memory.
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
