"""dlgn kernels: one logic layer and the whole network, forward + backward, side by side.

Implementations, all at the task's sizes (4 x 12,000 neurons on 9,216 inputs, batch 100):
- dst_jax with decoupled ST gates (one sample per neuron, the task's training path) and with
  difflogic's softmax relaxation (the `softmax_relaxation` row of the task);
- the straightforward PyTorch `LogicNet` of `benchmarks/torch_models.py` (decoupled ST);
- difflogic (PyPI `difflogic` 0.1.0, Petersen et al.): its CUDA kernel where it is built and a
  GPU is present, else its pure-PyTorch implementation. difflogic trains with the softmax
  relaxation only, so its rows compare with dst_jax's relaxation rows.

"layer" is a middle layer, width -> width, with the input gradient (as layers 2..L need);
"network" is all layers + GroupSum + cross-entropy, gradient of the gate logits; "train step"
adds Adam (the whole single-model training step). Times are per call, averaged over `repeats`
calls after warm-up, with the device synchronised once at the end.

difflogic is found, in this order: an importable `difflogic` (e.g. built for the GPU and put on
PYTHONPATH by benchmarks/gpu_session.sh); a source folder or sdist named by $DIFFLOGIC_SRC; the
sdist in the checkout's ignored `.device_data/` folder. Its package imports the compiled
`difflogic_cuda` module unconditionally; where that is not built, a placeholder module is
registered so that the pure-PyTorch implementation (which never calls it) can be imported.
No difflogic code is part of this repository.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import io
import os
import sys
import tarfile
import tempfile
import types
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import ESTIMATOR, Setup, clock
from dst_jax import estimators, logic
from dst_jax.tasks import dlgn

REPO = Path(__file__).resolve().parents[1]
SDIST_GLOBS = (".device_data/difflogic-*/", ".device_data/difflogic-*.tar.gz")
TAU_F, TAU_B = 1.0, 1.0  # temperatures do not change the cost


@dataclasses.dataclass
class DiffLogic:
    module: Any  # the imported `difflogic` package, or None
    implementation: str  # "cuda" or "python"
    source: str  # where it was imported from
    note: str  # why it is missing, or which implementation and why


def _source_dir(path: str) -> str:
    """A folder holding the `difflogic` package: `path` itself, or an sdist extracted."""
    if os.path.isdir(path):
        inner = glob.glob(os.path.join(path, "difflogic-*", "difflogic"))
        return os.path.dirname(inner[0]) if inner else path
    if path.endswith((".tar.gz", ".tgz")):
        dest = tempfile.mkdtemp(prefix="difflogic_src_")
        with tarfile.open(path) as tar:
            tar.extractall(dest, filter="data")
        inner = glob.glob(os.path.join(dest, "difflogic-*"))
        return inner[0] if inner else dest
    raise ValueError(f"DIFFLOGIC_SRC={path!r} is neither a folder nor a .tar.gz sdist")


def import_difflogic() -> DiffLogic:
    """Import difflogic (see the module docstring for where it is looked for)."""
    import importlib.util

    try:
        import torch
    except ImportError:
        return DiffLogic(None, "", "", "torch not installed (pip install -e .[bench])")
    source = "installed"
    if importlib.util.find_spec("difflogic") is None:
        candidates = [os.environ.get("DIFFLOGIC_SRC", "")]
        for pattern in SDIST_GLOBS:
            candidates += sorted(glob.glob(str(REPO / pattern)))
        for cand in filter(None, candidates):
            try:
                folder = _source_dir(cand)
            except (ValueError, OSError, tarfile.TarError) as err:
                return DiffLogic(None, "", cand, f"cannot read difflogic source: {err}")
            if os.path.isdir(os.path.join(folder, "difflogic")):
                sys.path.insert(0, folder)
                source = folder
                break
        else:
            return DiffLogic(
                None,
                "",
                "",
                "difflogic not found: set DIFFLOGIC_SRC to its sdist "
                "or put difflogic-0.1.0.tar.gz in .device_data/",
            )
    try:
        import difflogic_cuda  # noqa: F401

        compiled = True
    except ImportError:
        compiled = False
        placeholder = types.ModuleType("difflogic_cuda")
        placeholder.__doc__ = "placeholder: difflogic's CUDA extension is not built here"
        sys.modules["difflogic_cuda"] = placeholder
    try:
        import difflogic
    except ImportError as err:
        return DiffLogic(None, "", source, f"difflogic does not import: {err}")
    if compiled and torch.cuda.is_available():
        return DiffLogic(difflogic, "cuda", source, "difflogic CUDA kernel")
    why = "no GPU" if compiled else "CUDA extension not built"
    return DiffLogic(difflogic, "python", source, f"difflogic pure PyTorch ({why})")


# -- timing ------------------------------------------------------------------------------------
def _time_jax(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    jax.block_until_ready(fn(*args))
    t0 = clock()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return (clock() - t0) / repeats


def _time_torch(fn, repeats: int, device) -> float:
    from benchmarks.torch_models import sync

    fn()
    fn()
    sync(device)
    t0 = clock()
    for _ in range(repeats):
        fn()
    sync(device)
    return (clock() - t0) / repeats


def _row(impl: str, what: str, batch: int, seconds: float, note: str = "") -> dict[str, Any]:
    return {
        "implementation": impl,
        "what": what,
        "batch_size": batch,
        "ms_per_call": seconds * 1e3,
        "examples_per_s": batch / seconds,
        "status": "ok",
        "note": note,
    }


# -- dst_jax -----------------------------------------------------------------------------------
def _jax_rows(setup: Setup, repeats: int) -> list[dict[str, Any]]:
    task, cfg, data = setup.task, setup.task.config, jax.device_put(setup.data)
    b, n = setup.batch_size, cfg.width
    rng = np.random.default_rng(0)
    # dst_jax's logic layers are neuron-major: activations (N, B).
    x_NxB = jnp.asarray(rng.random((n, b), dtype=np.float32))
    cot_NxB = jnp.asarray(rng.standard_normal((n, b), dtype=np.float32))
    idx, inv = logic.wiring_tables(logic.make_wiring(1, n, n, cfg.wiring), n)
    idx, inv = jnp.asarray(idx), jnp.asarray(inv)
    params = jax.jit(task.init_params)(jax.random.PRNGKey(0), data)
    key = jax.random.PRNGKey(1)
    x_batch, y_batch = data["train_x"][:b], data["train_y"][:b]
    opt = optax.adam(setup.lr)
    rows = []
    relaxation = estimators.REGISTRY.names(discrete=False)[0]
    for name, label in ((ESTIMATOR, f"dst_jax, {ESTIMATOR}"), (relaxation, "dst_jax, relaxation")):
        est = estimators.REGISTRY[name]

        def layer_out(logits, x, key, est=est):
            coef = task.gate_coefficients(key, logits, est, TAU_F, TAU_B)
            return jnp.vdot(logic.logic_layer(x, coef, idx, inv), cot_NxB)

        layer = jax.jit(jax.grad(layer_out, argnums=(0, 1)))
        t = _time_jax(layer, (params["gate_logits"][1 % cfg.layers], x_NxB, key), repeats)
        rows.append(_row(label, f"layer {n}->{n} fwd+bwd", b, t))

        def net_loss(p, key, x, y, data, est=est):
            return task.loss(p, key, x, y, data, est, TAU_F, TAU_B)[0]

        net = jax.jit(jax.grad(net_loss))
        t = _time_jax(net, (params, key, x_batch, y_batch, data), repeats)
        rows.append(_row(label, f"network {cfg.layers}x{n} fwd+bwd", b, t))

        def train_step(p, s, key, x, y, data, est=est):
            g = jax.grad(net_loss)(p, key, x, y, data, est)
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        step = jax.jit(train_step, static_argnums=6)
        opt_state = opt.init(params)
        t = _time_jax(step, (params, opt_state, key, x_batch, y_batch, data, est), repeats)
        rows.append(_row(label, f"network {cfg.layers}x{n} train step (Adam)", b, t))
    return rows


# -- PyTorch: the straightforward model and difflogic ------------------------------------------
def _torch_rows(setup: Setup, repeats: int, dl: DiffLogic) -> list[dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    from benchmarks import torch_models

    cfg, b, n = setup.task.config, setup.batch_size, setup.task.config.width
    dev = torch_models.default_device()
    torch.manual_seed(0)
    x_BxN = torch.rand(b, n, device=dev)
    cot_BxN = torch.randn(b, n, device=dev)
    x_batch = torch.as_tensor(setup.data["train_x"][:b]).to(dev).float()
    y_batch = torch.as_tensor(setup.data["train_y"][:b]).long().to(dev)

    def layer_fwd_bwd(layer_fn):
        def call():
            x = x_BxN.detach().requires_grad_(True)
            layer_fn(x).backward(cot_BxN)

        return call

    def net_fwd_bwd(model):
        def call():
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x_batch), y_batch).backward()

        return call

    def net_train_step(model):
        opt = torch.optim.Adam(model.parameters(), lr=setup.lr)

        def call():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x_batch), y_batch).backward()
            opt.step()

        return call

    rows = []
    # The straightforward PyTorch model, on the task's own wiring.
    wirings = [dlgn.layer_wiring(setup.data, i).reshape(-1) for i in range(cfg.layers)]
    net = torch_models.LogicNet(wirings, cfg.n_classes, cfg.group_sum_tau).to(dev)
    mid = torch_models.LogicNet(
        [logic.make_wiring(1, n, n, cfg.wiring).reshape(-1)], cfg.n_classes
    ).to(dev)
    label = "PyTorch straightforward, decoupled_st"
    t = _time_torch(layer_fwd_bwd(lambda x: mid.layer(0, x)), repeats, dev)
    rows.append(_row(label, f"layer {n}->{n} fwd+bwd", b, t))
    t = _time_torch(net_fwd_bwd(net), repeats, dev)
    rows.append(_row(label, f"network {cfg.layers}x{n} fwd+bwd", b, t))
    t = _time_torch(net_train_step(net), repeats, dev)
    rows.append(_row(label, f"network {cfg.layers}x{n} train step (Adam)", b, t))

    # difflogic, as its users build the network (softmax relaxation in training mode).
    label = f"difflogic {dl.implementation}, relaxation"
    if dl.module is None:
        return rows + [{"implementation": "difflogic", "what": "all", "status": dl.note}]
    device = "cuda" if dev.type == "cuda" else "cpu"
    torch.manual_seed(0)

    def logic_layer(i, o):
        return dl.module.LogicLayer(
            i, o, device=device, implementation=dl.implementation, connections=cfg.wiring
        )

    layers = [logic_layer(setup.in_dim, n)] + [logic_layer(n, n) for _ in range(cfg.layers - 1)]
    model = torch.nn.Sequential(*layers, dl.module.GroupSum(cfg.n_classes, cfg.group_sum_tau))
    model.train()
    one = logic_layer(n, n).train()
    # The pure-PyTorch path prints the index dtype on every call; keep the table readable.
    with contextlib.redirect_stdout(io.StringIO()):
        t_layer = _time_torch(layer_fwd_bwd(one), repeats, dev)
        t_net = _time_torch(net_fwd_bwd(model), repeats, dev)
        t_step = _time_torch(net_train_step(model), repeats, dev)
    rows.append(_row(label, f"layer {n}->{n} fwd+bwd", b, t_layer, dl.note))
    rows.append(_row(label, f"network {cfg.layers}x{n} fwd+bwd", b, t_net, dl.note))
    rows.append(_row(label, f"network {cfg.layers}x{n} train step (Adam)", b, t_step, dl.note))
    return rows


def kernel_rows(setup: Setup, repeats: int, use_torch: bool = True) -> list[dict[str, Any]]:
    """All rows of the dlgn kernel table (see the module docstring)."""
    if setup.name != "dlgn":
        raise ValueError(f"the logic-layer comparison is for the dlgn task, not {setup.name!r}")
    rows = _jax_rows(setup, repeats)
    if not use_torch:
        return rows
    try:
        import torch  # noqa: F401
    except ImportError:
        return rows + [
            {
                "implementation": "PyTorch",
                "what": "all",
                "status": "torch not installed (pip install -e .[bench])",
            }
        ]
    return rows + _torch_rows(setup, repeats, import_difflogic())
