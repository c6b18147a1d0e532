"""The hardware floor: work per model-step from the shapes, and the device's measured rates.

A model-step is one Adam step of one config on one minibatch of B examples. Its floor is

    t_floor = max(matmul_flops / R_matmul, min_bytes / BW)

with R_matmul the measured float32 matmul rate (JAX's default precision, the one the models
use) and BW the measured copy bandwidth (bytes read + bytes written per second). A run at
`t` seconds per model-step achieves t_floor / t of the bound; the larger term names the bound
that applies ("arithmetic" or "memory").

Work per model-step (float32 throughout):
- dense layers (sbn, cae): forward 2 B d_in d_out FLOPs per layer; backward the same for the
  weight gradient and again for the input gradient, except the first layer's (the data needs no
  gradient): matmul_flops = 6 B sum(d_in d_out) - 2 B d_0 d_1. Elementwise work (noise, Adam)
  runs on other units and is left out, so the bound stays a lower bound.
- logic layers (dlgn): no matmul worth counting; forward c0 + c1 a + (c2 + c3 a) b is 4 FLOPs
  per neuron and example, the backward (da, db and the 4 coefficient gradients) about 12: the
  16 B N per layer is reported as `elementwise_flops`, and the bound is memory.
- min_bytes: what every step must move however well it is fused: Adam reads and writes the
  parameters and both moments (6 x 4 bytes per parameter) and the minibatch is read once
  (inputs and int32 labels). Activations could in principle stay on chip and are not counted;
  `activation_bytes` gives, for reference, what writing each hidden activation and its gradient
  once and reading each once costs (4 passes x 4 bytes per unit and example).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.common import Setup, clock

ADAM_BYTES_PER_PARAM = 6 * 4  # read + write of params, first and second moments (float32)


def _n_params(setup: Setup) -> int:
    shapes = jax.eval_shape(setup.task.init_params, jax.random.PRNGKey(0), setup.data)
    return int(sum(math.prod(s.shape) for s in jax.tree.leaves(shapes)))


def _dense_dims(setup: Setup) -> list[tuple[int, int]]:
    cfg, d = setup.task.config, setup.in_dim
    if setup.name == "sbn":
        sizes = (d, *cfg.hidden, cfg.n_classes)
        return list(zip(sizes[:-1], sizes[1:], strict=True))
    if setup.name == "cae":
        code = cfg.latents * cfg.classes
        enc, dec = (d, *cfg.encoder, code), (code, *cfg.decoder, d)
        return [*zip(enc[:-1], enc[1:], strict=True), *zip(dec[:-1], dec[1:], strict=True)]
    return []


def work_per_model_step(setup: Setup) -> dict[str, Any]:
    """FLOPs and bytes of one model-step of `setup` (see the module docstring)."""
    b = setup.batch_size
    n_params = _n_params(setup)
    x = setup.data["train_x"]
    batch_bytes = b * (x.shape[-1] * x.dtype.itemsize + 4)
    out: dict[str, Any] = {"params": n_params, "batch_size": b}
    if setup.name in ("sbn", "cae"):
        dims = _dense_dims(setup)
        macs = sum(i * o for i, o in dims)
        out["matmul_flops"] = 6 * b * macs - 2 * b * dims[0][0] * dims[0][1]
        units = sum(o for _, o in dims[:-1])  # hidden and code units
    else:
        cfg = setup.task.config
        out["matmul_flops"] = 0
        out["elementwise_flops"] = 16 * b * cfg.width * cfg.layers
        units = cfg.width * cfg.layers
    out["min_bytes"] = ADAM_BYTES_PER_PARAM * n_params + batch_bytes
    out["activation_bytes"] = 4 * 4 * b * units
    return out


def _best_time(fn, *args, repeats: int) -> float:
    """The fastest of `repeats` synchronised calls: a peak rate, robust to a busy machine."""
    jax.block_until_ready(fn(*args))  # compile + warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        jax.block_until_ready(fn(*args))
        best = min(best, clock() - t0)
    return best


def measure_device(quick: bool = False) -> dict[str, Any]:
    """The default device's float32 matmul rate (FLOP/s) and copy bandwidth (bytes/s).

    Matmul: an n x n by n x n float32 product at the default precision (n = 8192 on an
    accelerator, 1024 on a CPU or with `quick`), 2 n^3 FLOPs. Copy: y = x + 1 over a float32
    array of 1 GiB on an accelerator (64 MiB on a CPU), counting bytes read plus written.
    """
    on_cpu = jax.default_backend() == "cpu"
    n = 1024 if (on_cpu or quick) else 8192
    repeats = 5 if (on_cpu or quick) else 10
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    t_mm = _best_time(jax.jit(jnp.matmul), a, b, repeats=repeats)
    del a, b

    nbytes = (64 << 20) if (on_cpu or quick) else (1 << 30)
    x = jnp.zeros((nbytes // 4,), jnp.float32)
    t_copy = _best_time(jax.jit(lambda v: v + 1.0), x, repeats=repeats)
    del x
    return {
        "matmul_n": n,
        "matmul_flops_per_s": 2 * n**3 / t_mm,
        "copy_bytes": nbytes,
        "copy_bytes_per_s": 2 * nbytes / t_copy,
    }


def floor(setup: Setup, device: dict[str, Any]) -> dict[str, Any]:
    """Work per model-step, the bound per model-step on this device and which bound applies."""
    work = work_per_model_step(setup)
    t_flops = work["matmul_flops"] / device["matmul_flops_per_s"]
    t_bytes = work["min_bytes"] / device["copy_bytes_per_s"]
    t_floor = max(t_flops, t_bytes)
    return {
        **work,
        **device,
        "matmul_s_per_model_step": t_flops,
        "memory_s_per_model_step": t_bytes,
        "floor_s_per_model_step": t_floor,
        "floor_model_steps_per_s": 1.0 / t_floor,
        "bound": "arithmetic" if t_flops >= t_bytes else "memory",
    }


def fraction_of_floor(row: dict[str, Any], fl: dict[str, Any]) -> float | None:
    """t_floor / t of a training row (1.0 = at the bound)."""
    if row.get("status") != "ok":
        return None
    return float(fl["floor_s_per_model_step"] * row["model_steps_per_s"])
