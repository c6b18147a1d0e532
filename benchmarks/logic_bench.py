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

Run as a script, it times the training step of every sampler and PRNG implementation side by
side, and optionally that of another checkout (`train_step_rows`):

    python -m benchmarks.logic_bench [--baseline /tmp/base] [--rounds 8] [--calls 3] [--quick]
        [--json PATH]

difflogic is found, in this order: an importable `difflogic` (e.g. built for the GPU and put on
PYTHONPATH by benchmarks/gpu_session.sh); a source folder or sdist named by $DIFFLOGIC_SRC; the
sdist in the checkout's ignored `.device_data/` folder. Its package imports the compiled
`difflogic_cuda` module unconditionally; where that is not built, a placeholder module is
registered so that the pure-PyTorch implementation (which never calls it) can be imported.
No difflogic code is part of this repository.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import importlib
import inspect
import io
import os
import sys
import tarfile
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import ESTIMATOR, Setup, clock, environment, json_document, make_setup
from dst_jax import estimators, logic
from dst_jax.tasks import dlgn
from dst_jax.tasks.base import Batch, Hparams, fixed_arrays

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
            return _task_loss(task, p, key, x, y, data, est)

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


# -- the training step: samplers, PRNG implementations, another checkout -----------------------
PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


@dataclasses.dataclass
class StepProgram:
    label: str
    version: str  # "this" or "baseline"
    estimator: str
    sampler: str
    prng: str
    step: Any  # jitted (params, opt_state, key, x, y, data) -> (params, opt_state)
    key: jax.Array


def _task_loss(task, params, key, x, y, data, estimator):
    """The scalar loss of `task` (this checkout's, or a baseline's of either task contract)."""
    if len(inspect.signature(task.loss).parameters) == 4:  # loss(params, key, batch, hp)
        batch = Batch(x, y, fixed_arrays(data))
        return task.loss(params, key, batch, Hparams(estimator, TAU_F, TAU_B))[0]
    return task.loss(params, key, x, y, data, estimator, TAU_F, TAU_B)[0]


def _train_step(task, estimator, lr):
    opt = optax.adam(lr)

    def step(params, opt_state, key, x, y, data):
        grads = jax.grad(lambda p: _task_loss(task, p, key, x, y, data, estimator))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return jax.jit(step), opt


def _baseline_task(baseline_dir: Path, config):
    """The baseline checkout's dlgn task for the same shapes, and `name -> what its loss takes
    as the estimator` (a registry entry, or the name in versions without a registry)."""
    from benchmarks.compare_checkouts import BASELINE, import_baseline

    import_baseline(baseline_dir.resolve())
    module = importlib.import_module(f"{BASELINE}.tasks.dlgn")
    fields = {f.name for f in dataclasses.fields(module.Config)}
    same = {k: v for k, v in dataclasses.asdict(config).items() if k in fields}
    registry = getattr(importlib.import_module(f"{BASELINE}.estimators"), "REGISTRY", None)
    return module.DLGNTask(module.Config(**same)), (
        (lambda name: name) if registry is None else registry.__getitem__
    )


def train_step_rows(
    setup: Setup, rounds: int, calls: int, baseline: Path | None = None
) -> list[dict[str, Any]]:
    """The single-model training step (task loss, gradient, Adam) of decoupled ST with each
    sampler and PRNG implementation and of the softmax relaxation, and those of `baseline`
    (decoupled ST with its default stream, Gumbel noise from threefry; the relaxation), at
    `setup`'s shapes.

    The programs are compiled first, then timed in turn for `rounds` rounds of `calls` calls
    each, so that a shared machine's drift reaches them alike; a row keeps its best round:
    wall ms per step, and process CPU ms per step (all threads; what other processes take
    from the machine does not count). `vs_relaxation` divides by the same version's
    relaxation row; `baseline_over_this`, the baseline's row of the same estimator by this one.
    """
    cfg = setup.task.config
    data = jax.device_put(setup.data)
    b = setup.batch_size
    x, y = data["train_x"][:b], data["train_y"][:b]
    relax_name = estimators.REGISTRY.names(discrete=False)[0]
    programs = []
    opt = None
    for sampler in estimators.SAMPLERS:
        task = dlgn.DLGNTask(dataclasses.replace(cfg, sampler=sampler))
        for prng in PRNG_IMPLS:
            step, opt = _train_step(task, estimators.REGISTRY[ESTIMATOR], setup.lr)
            key = jax.random.key(1, impl=prng)
            label = f"dst_jax, {ESTIMATOR}"
            programs.append(StepProgram(label, "this", ESTIMATOR, sampler, prng, step, key))
    threefry = jax.random.key(1, impl="threefry2x32")
    step, _ = _train_step(setup.task, estimators.REGISTRY[relax_name], setup.lr)
    programs.append(
        StepProgram("dst_jax, relaxation", "this", relax_name, "none", "-", step, threefry)
    )
    if baseline is not None:
        task, entry = _baseline_task(baseline, cfg)
        for name, sampler in ((ESTIMATOR, "gumbel"), (relax_name, "none")):
            step, _ = _train_step(task, entry(name), setup.lr)
            label = f"baseline {baseline}, {'relaxation' if name == relax_name else name}"
            prng = "-" if sampler == "none" else "threefry2x32"
            programs.append(StepProgram(label, "baseline", name, sampler, prng, step, threefry))
    params = jax.jit(setup.task.init_params)(jax.random.key(0), data)
    opt_state = opt.init(params)

    def run(p: StepProgram, n: int) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            out = p.step(params, opt_state, p.key, x, y, data)
        jax.block_until_ready(out)
        return (time.perf_counter() - w0) / n, (time.process_time() - c0) / n

    compile_s = {}
    for p in programs:
        t0 = clock()
        run(p, 1)
        compile_s[id(p)] = clock() - t0
        run(p, 1)
    best = {id(p): [float("inf"), float("inf")] for p in programs}
    for _ in range(rounds):
        for p in programs:
            wall, cpu = run(p, calls)
            best[id(p)] = [min(best[id(p)][0], wall), min(best[id(p)][1], cpu)]
    relax = {p.version: best[id(p)] for p in programs if p.estimator == relax_name}
    base_of = {p.estimator: best[id(p)] for p in programs if p.version == "baseline"}
    rows = []
    for p in programs:
        wall_ms, cpu_ms = (t * 1e3 for t in best[id(p)])
        base = base_of.get(p.estimator) if p.version == "this" else None
        rows.append(
            {
                "implementation": p.label,
                "version": p.version,
                "estimator": p.estimator,
                "sampler": p.sampler,
                "prng": p.prng,
                "what": f"network {cfg.layers}x{cfg.width} train step (Adam)",
                "batch_size": b,
                "ms_per_call": wall_ms,
                "cpu_ms_per_call": cpu_ms,
                "vs_relaxation": best[id(p)][0] / relax[p.version][0],
                "vs_relaxation_cpu": best[id(p)][1] / relax[p.version][1],
                "baseline_over_this": None if base is None else base[0] / best[id(p)][0],
                "baseline_over_this_cpu": None if base is None else base[1] / best[id(p)][1],
                "compile_s": compile_s[id(p)],
                "status": "ok",
            }
        )
    return rows


def format_train_steps(rows: list[dict[str, Any]]) -> str:
    """The rows as a text table; ratios of wall times, then of CPU times."""

    def ratio(r, key):
        return "-" if r[key] is None else f"{r[key]:.2f}x"

    header = (
        "implementation",
        "sampler",
        "PRNG",
        "ms/step",
        "CPU ms/step",
        "/ relax",
        "/ relax CPU",
        "base /",
        "base / CPU",
    )
    body = [
        (
            r["implementation"],
            r["sampler"],
            r["prng"],
            f"{r['ms_per_call']:.2f}",
            f"{r['cpu_ms_per_call']:.2f}",
            ratio(r, "vs_relaxation"),
            ratio(r, "vs_relaxation_cpu"),
            ratio(r, "baseline_over_this"),
            ratio(r, "baseline_over_this_cpu"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*line) for line in (header, *body))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.logic_bench",
        description="dlgn training step: samplers x PRNG implementations, relaxation, baseline",
    )
    p.add_argument("--baseline", type=Path, default=None, help="another checkout's root")
    p.add_argument("--rounds", type=int, default=8, help="timing rounds (best kept)")
    p.add_argument("--calls", type=int, default=3, help="steps per program and round")
    p.add_argument("--quick", action="store_true", help="2 x 1,000 neurons (CPU smoke run)")
    p.add_argument("--json", default=None, help="write the rows here (JSON)")
    args = p.parse_args(argv)
    setup = make_setup("dlgn", quick=args.quick)
    env = environment()
    rows = train_step_rows(setup, args.rounds, args.calls, args.baseline)
    env["load_average_1min_end"] = os.getloadavg()[0]
    cfg = setup.task.config
    print(
        f"dlgn {cfg.layers} x {cfg.width}, batch {setup.batch_size}: {env['device']} "
        f"({env['backend']}), jax {env['jax']}, load average {env['load_average_1min']:.1f} -> "
        f"{env['load_average_1min_end']:.1f}; best of {args.rounds} rounds of {args.calls} steps"
    )
    print(format_train_steps(rows))
    if args.json:
        from dst_jax.io import atomic_write_json

        command = "python -m benchmarks.logic_bench " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        atomic_write_json(
            args.json, json_document({"command": command, "environment": env, "train_steps": rows})
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
