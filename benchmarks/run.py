"""Run every comparison of one task and print one table.

    python -m benchmarks.run --task {sbn,cae,dlgn} [--configs 1,16,64,256,1024] [--steps N]
                             [--loop-configs K] [--quick] [--no-torch] [--json PATH]

Comparisons, all training the same model with decoupled ST, batch 100, Adam, for `--steps`
steps per config after warm-up (compile time reported apart):
1. grid: dst_jax's engine, one `jit(vmap(scan))` chunk holding all configs, for each grid size
   in `--configs` (a size that does not fit the device is reported and the larger ones skipped);
2. loop: a Python loop over configs, each trained by a jitted single-model step;
3. torch: a straightforward PyTorch model (`benchmarks/torch_models.py`), configs one after
   another, as a PyTorch user runs a sweep (needs the `bench` extra);
4. dlgn only: one logic layer and the whole network, forward + backward, dst_jax vs PyTorch vs
   difflogic (`benchmarks/logic_bench.py`);
5. the floor: FLOPs and minimum bytes per model-step, the device's measured matmul rate and copy
   bandwidth, and each grid row's fraction of the bound (`benchmarks/floor.py`).
The sequential baselines (2, 3) cost the same per config, so they are measured on the first
`--loop-configs` configs and their wall time for n configs is n times the per-config time
(marked "extrapolated" in the JSON and with "*" in the table).

`--quick` runs the same code paths with small shapes and few steps (a CPU smoke run). The JSON
file is rewritten after every comparison, so an interrupted run keeps what it measured.
Synthetic data of the real shapes: throughput does not depend on pixel values.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

# JAX and PyTorch share the accelerator in one process: JAX must not grab 75% of its memory up
# front. (Set before jax is imported.)
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from benchmarks import common  # noqa: E402
from benchmarks.common import GRID, LOOP, METHODS, TASKS, TORCH  # noqa: E402
from dst_jax.argtypes import positive_int  # noqa: E402

DEFAULTS = {  # (configs, steps per config)
    "sbn": ("1,16,64,256,1024", 100),
    "cae": ("1,16,64,256,1024", 100),
    "dlgn": ("1,8,32,128,512", 50),
}
QUICK = ("1,4", 4)


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--configs takes comma-separated grid sizes, e.g. 1,16,64; got {text!r}"
        ) from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"--configs needs positive grid sizes, got {text!r}")
    return sizes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument(
        "--configs",
        type=_sizes,
        default=None,
        help="grid sizes (default sbn/cae 1,16,64,256,1024; dlgn 1,8,32,128,512; --quick 1,4)",
    )
    p.add_argument(
        "--steps",
        type=positive_int("--steps"),
        default=None,
        help="timed training steps per config (default 100, dlgn 50, --quick 4)",
    )
    p.add_argument(
        "--loop-configs",
        type=positive_int("--loop-configs"),
        default=None,
        help="configs the sequential baselines are measured on (default 4, --quick 2)",
    )
    p.add_argument(
        "--kernel-repeats",
        type=positive_int("--kernel-repeats"),
        default=None,
        help="dlgn: calls averaged per kernel timing (default 20, --quick 2)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small shapes, few steps: the same code paths in seconds on a CPU",
    )
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparisons")
    p.add_argument(
        "--torch-threads",
        type=positive_int("--torch-threads"),
        default=None,
        help="torch.set_num_threads for the CPU (default: PyTorch's own choice); "
        "on a busy shared CPU, 1 avoids OpenMP threads waiting on each other",
    )
    p.add_argument("--json", default=None, help="write the results here (JSON)")
    return p


# -- the run -----------------------------------------------------------------------------------
def _sequential_rows(
    method: str, measure: dict[str, Any], sizes: list[int], steps: int, batch: int
) -> list[dict[str, Any]]:
    return [
        common.training_row(
            method,
            n,
            steps,
            batch,
            measure["per_config_s"] * n,
            measure["compile_s"],
            measured_configs=min(n, measure["measured_configs"]),
        )
        for n in sizes
    ]


def _torch_measure(setup, steps: int, n_configs: int) -> dict[str, Any]:
    from benchmarks import torch_models

    runs = common.make_runs(setup, n_configs)
    configs = [(r.tau_f, r.tau_b, r.seed, r.lr) for r in runs]
    out = torch_models.sweep(
        setup.name, setup.task.config, setup.data, configs, steps, warmup_steps=min(steps, 10)
    )
    return {
        "per_config_s": out["wall_s"] / len(configs),
        "compile_s": None,
        "measured_configs": len(configs),
    }


def _release_torch_memory() -> None:
    """Hand PyTorch's cached accelerator memory back before the grids need it."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per grid size: the grid's throughput over each baseline's."""
    by = {(r["method"], r["configs"]): r for r in rows if r.get("status") == "ok"}
    out = []
    for (method, n), g in sorted(by.items(), key=lambda kv: kv[0][1]):
        if method != GRID:
            continue
        entry: dict[str, Any] = {"configs": n}
        for name, base in (("vs_loop", LOOP), ("vs_torch", TORCH)):
            b = by.get((base, n))
            entry[name] = g["model_steps_per_s"] / b["model_steps_per_s"] if b else None
        out.append(entry)
    return out


def run(args: argparse.Namespace, log=print) -> dict[str, Any]:
    """Run the comparisons of `args.task`; returns the results dict (also written to --json)."""
    from benchmarks import floor as floor_lib
    from benchmarks import jax_bench

    sizes_default, steps_default = QUICK if args.quick else DEFAULTS[args.task]
    sizes = args.configs or _sizes(sizes_default)
    steps = args.steps or steps_default
    loop_configs = args.loop_configs or (2 if args.quick else 4)
    repeats = args.kernel_repeats or (2 if args.quick else 20)

    if args.torch_threads is not None and not args.no_torch:
        try:
            import torch

            torch.set_num_threads(args.torch_threads)
        except ImportError:
            pass
    setup = common.make_setup(args.task, quick=args.quick)
    result: dict[str, Any] = {
        "task": args.task,
        "command": "python -m benchmarks.run " + " ".join(getattr(args, "argv", sys.argv[1:])),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "environment": common.environment(),
        "settings": {
            "quick": bool(args.quick),
            "configs": sizes,
            "steps": steps,
            "loop_configs": loop_configs,
            "kernel_repeats": repeats,
            "batch_size": setup.batch_size,
            "estimator": common.ESTIMATOR,
            "n_train": int(setup.data["train_x"].shape[0]),
            "in_dim": setup.in_dim,
            "data": "synthetic, real shapes",
        },
        "training": [],
    }

    def save():
        # Derived numbers are refreshed on every save, so a run cut off keeps complete tables.
        for row in result["training"]:
            if row.get("status") == "ok" and "floor" in result:
                row["floor_fraction"] = floor_lib.fraction_of_floor(row, result["floor"])
        result["speedups"] = _speedups(result["training"])
        result["environment"]["load_average_1min_end"] = os.getloadavg()[0]
        if args.json:
            from dst_jax.io import atomic_write_json

            atomic_write_json(args.json, common.json_document(result))

    log(f"[{args.task}] measuring the device's matmul rate and copy bandwidth")
    result["floor"] = floor_lib.floor(setup, floor_lib.measure_device(args.quick))
    save()

    # Order: the quick, fixed-cost comparisons first and the grids (largest last) at the end, so
    # a time limit cuts the largest grids rather than the baselines.
    if args.task == "dlgn":
        from benchmarks import logic_bench

        log(f"[{args.task}] logic layer and network, forward + backward")
        result["kernels"] = logic_bench.kernel_rows(setup, repeats, use_torch=not args.no_torch)
        if not args.no_torch and any(
            k["status"] == "ok" and "PyTorch" in k["implementation"] for k in result["kernels"]
        ):
            _release_torch_memory()
        save()

    k = min(max(sizes), loop_configs)
    log(f"[{args.task}] Python loop of a jitted step, {k} configs x {steps} steps")
    measure = jax_bench.python_loop(setup, steps, k)
    result["training"] += _sequential_rows(LOOP, measure, sizes, steps, setup.batch_size)
    save()

    if args.no_torch:
        result["training"] += [common.failed_row(TORCH, n, "skipped (--no-torch)") for n in sizes]
    else:
        try:
            import torch  # noqa: F401

            have_torch = True
        except ImportError:
            have_torch = False
            result["training"] += [
                common.failed_row(TORCH, n, "torch not installed (pip install -e .[bench])")
                for n in sizes
            ]
        if have_torch:
            log(f"[{args.task}] PyTorch sweep, {k} configs x {steps} steps")
            measure = _torch_measure(setup, steps, k)
            result["training"] += _sequential_rows(TORCH, measure, sizes, steps, setup.batch_size)
            _release_torch_memory()
    save()

    for n in sizes:
        log(f"[{args.task}] grid of {n} configs x {steps} steps")
        try:
            row = jax_bench.grid_engine(setup, n, steps)
        except Exception as err:  # an accelerator out of memory: report it, skip larger grids
            if not common.is_out_of_memory(err):
                raise
            result["training"].append(common.failed_row(GRID, n, "out of memory"))
            save()
            break
        result["training"].append(row)
        save()
    return result


# -- the table ---------------------------------------------------------------------------------
def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(result: dict[str, Any], markdown: bool = False) -> str:
    """The results as text: the training table, speed-ups, the floor, and dlgn's kernels."""
    env, st, fl = result["environment"], result["settings"], result.get("floor", {})
    lines = []

    def table(header: list[str], rows: list[list[str]]):
        if markdown:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join(" --- " for _ in header) + "|")
            lines.extend("| " + " | ".join(r) + " |" for r in rows)
        else:
            widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
            fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
            lines.append(fmt.format(*header))
            lines.extend(fmt.format(*r) for r in rows)
        lines.append("")

    lines.append(
        f"task {result['task']}: {st['estimator']}, batch {st['batch_size']}, "
        f"{st['steps']} timed steps per config, {st['data']}"
        + (" (--quick shapes)" if st["quick"] else "")
    )
    lines.append(
        f"device: {env['device']} ({env['backend']}), jax {env['jax']}, torch {env.get('torch')}"
        f" on {env.get('torch_device', '-')} ({env.get('torch_threads', '-')} threads), "
        f"{env['cpu_count']} CPU cores, load average {_fmt(env.get('load_average_1min'), '.1f')}"
        " at start" + (f", XLA_FLAGS={env['xla_flags']}" if env.get("xla_flags") else "")
    )
    lines.append("")
    header = [
        "method",
        "configs",
        "compile s",
        "wall s",
        "model-steps/s",
        "examples/s",
        "us/model-step",
        "of floor",
    ]
    rows = []
    order = {m: i for i, m in enumerate(METHODS)}
    training = sorted(result["training"], key=lambda r: (order.get(r["method"], 9), r["configs"]))
    for r in training:
        if r.get("status") != "ok":
            rows.append([r["method"], str(r["configs"]), r["status"], "", "", "", "", ""])
            continue
        star = "*" if r["extrapolated"] else ""
        rows.append(
            [
                r["method"],
                str(r["configs"]),
                _fmt(r["compile_s"], ".2f"),
                _fmt(r["wall_s"], ".3g") + star,
                _fmt(r["model_steps_per_s"], ",.0f"),
                _fmt(r["examples_per_s"], ",.0f"),
                _fmt(r["us_per_model_step"], ",.1f"),
                _fmt(r.get("floor_fraction"), ".1%"),
            ]
        )
    table(header, rows)
    lines.append(
        "* sequential baseline: measured on "
        f"{st['loop_configs']} configs, wall time = configs x time per config"
    )
    lines.append("")
    if result.get("speedups"):
        table(
            ["configs", "grid / loop", "grid / torch"],
            [
                [
                    str(s["configs"]),
                    _fmt(s["vs_loop"], ".1f") + "x",
                    _fmt(s["vs_torch"], ".1f") + ("x" if s["vs_torch"] is not None else ""),
                ]
                for s in result["speedups"]
            ],
        )
    if fl:
        flops = fl["matmul_flops"] or fl.get("elementwise_flops", 0)
        kind = "matmul" if fl["matmul_flops"] else "elementwise"
        lines.append(
            f"floor per model-step: {flops / 1e6:,.1f} MFLOP ({kind}), "
            f"{fl['min_bytes'] / 1e6:,.2f} MB min bytes ({fl['params']:,} params; activations "
            f"would add {fl['activation_bytes'] / 1e6:,.2f} MB); device: "
            f"{fl['matmul_flops_per_s'] / 1e12:,.2f} TFLOP/s f32 matmul (n={fl['matmul_n']}), "
            f"{fl['copy_bytes_per_s'] / 1e9:,.1f} GB/s copy; bound: {fl['bound']}, "
            f"{fl['floor_s_per_model_step'] * 1e6:,.2f} us/model-step = "
            f"{fl['floor_model_steps_per_s']:,.0f} model-steps/s"
        )
        lines.append("")
    if result.get("kernels"):
        rows = []
        for k in result["kernels"]:
            if k.get("status") != "ok":
                rows.append([k["implementation"], k["what"], k["status"], ""])
            else:
                rows.append(
                    [
                        k["implementation"],
                        k["what"],
                        _fmt(k["ms_per_call"], ".3f"),
                        _fmt(k["examples_per_s"], ",.0f"),
                    ]
                )
        table(["implementation", "what", "ms/call", "examples/s"], rows)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv
    result = run(args, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
