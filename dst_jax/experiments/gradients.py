"""Gradient quality of every estimator against exact gradients (DESIGN.md section 6): the command.

    python -m experiments.gradients cae --out runs/gradients-cae
    python -m experiments.gradients cae --out /tmp/gradients-smoke --smoke

The categorical autoencoder (4 latents x 8 classes), at its initial parameters and after a short
training run by the sweep engine's trainer (Adam, lr 5e-4, batch 100, beta = 1, with
decoupled_st at tau_f = 0.5, tau_b = 1.0 by default), on the first S MNIST test images. For each
image x with encoder logits l (4, 8) the objective is f(z) = sum_pixels BCE(decoder(z), x); its
exact gradient, for q = softmax(l) ("tau1") and q = softmax(l / tau_f) ("tau_f", the distribution
the forward pass samples), comes from enumerating the 4,096 codes. Every registered discrete
estimator draws N gradients at every configuration of the temperature grid (two-temperature
estimators over the (tau_f, tau_b) grid, the others over the axis; the softmax relaxation is
skipped: it does not sample, so the enumerated objective does not apply to it), one vmapped
program per estimator, and the relative bias, relative spread and cosine are averaged over images.
RLOO, the unbiased score-function reference, draws each gradient from --score-samples samples
(default 4); the summary sets every estimator's bias against its own sampling error
(`gradients.noise_ratio`: about 1 where the bias is consistent with zero). The science lives in
the library, `dst_jax.gradients` (protocol, claims, report); this module reads the command line.

Writes into --out: `gradients.json` (settings, machine, versions, git commit, wall time, the
metric grids), `per_image.npz` (every metric per image), `summary.md` (best temperatures; the
verdict on the first version's claim that raising tau_b lowers bias and spread and raising tau_f
raises both), heatmaps `heatmap_<estimator>_<checkpoint>_<reference>_<metric>.png` for the
two-temperature estimators and curves `curves_<checkpoint>_<reference>.png` for the others.

Cost, measured on the 2-core development CPU (AMD EPYC, shared with other jobs; gradients.json
records the machine and the load average at the start):
- default (S = 1,000 images, N = 1,024 draws, the 10-value axis, 2,000 training steps; 250
  configurations x 1,024 draws x 1,000 images x 2 checkpoints): 560 s wall at load average ~4,
  724 s at load average 5-9 (training about 30-60 s, each checkpoint 4-7 min, figures 14 s);
- smoke (4 images, 64 draws, temperatures 0.5, 1, 2, 20 training steps): 32-36 s wall and 35 s
  CPU on a quiet machine, most of it compiling one program per estimator; 62 s wall at load
  average ~5.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

import jax

from dst_jax import compilation_cache
from dst_jax.argtypes import floats, names, positive_int
from dst_jax.experiments.errors import report_error
from dst_jax.gradients import report
from dst_jax.gradients.claims import (  # noqa: F401  (public names of this module, kept)
    CLAIM_PARTS,
    DIRECTIONS,
    FAILS,
    HOLDS,
    T_SIGNIFICANT,
    best_cell,
    best_temperatures,
    bias_vs_noise,
    claim_check,
    claim_part,
    fewest_images,
    reduce_images,
)
from dst_jax.gradients.protocol import (  # noqa: F401
    CHECKPOINTS,
    Settings,
    checkpoint_stats,
    measure_checkpoints,
    objective,
    select_entries,
)
from dst_jax.gradients.report import (  # noqa: F401
    curves,
    replot,
    summary_markdown,
    verdict_lines,
    write_figures,
    write_per_image,
)
from dst_jax.provenance import git_commit, machine_info, versions  # noqa: F401
from dst_jax.sweep.config import PRNG_IMPLS

TASKS = ("cae",)
# The machine record of gradients.json (`dst_jax.provenance`), under its earlier name.
machine = machine_info


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.gradients",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", choices=TASKS)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--data-dir", default=None, help="data folder (default: $DST_DATA_DIR, else the user cache)"
    )
    p.add_argument("--smoke", action="store_true", help="few images, draws and steps; 3 taus")
    p.add_argument("--images", type=positive_int("--images"), help="test images S")
    p.add_argument("--draws", type=positive_int("--draws"), help="gradient draws N per config")
    p.add_argument("--train-steps", type=int, help="Adam steps before the 'trained' checkpoint")
    p.add_argument("--taus", type=floats("--taus"), help="temperature axis (comma list)")
    p.add_argument("--estimators", type=names, help="comma list (default: every discrete one)")
    p.add_argument("--chunk-size", type=positive_int("--chunk-size"), help="configs per chunk")
    p.add_argument(
        "--score-samples",
        type=positive_int("--score-samples"),
        help="samples per RLOO gradient draw, >= 2 (default 4)",
    )
    p.add_argument("--seed", type=int, help="seed of initialisation, training and draws")
    p.add_argument("--prng", choices=PRNG_IMPLS, help="JAX PRNG implementation (default rbg)")
    p.add_argument(
        "--dtype", choices=("float32", "float64"), help="of the references and draws (float64)"
    )
    p.add_argument(
        "--replot",
        action="store_true",
        help="only redraw the figures of --out from its gradients.json (measures nothing)",
    )
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    """The `Settings` of a command line: the full protocol or the smoke check, with the given
    flags replacing their defaults (bad values raise ValueError naming the flag)."""
    base = Settings.smoke() if args.smoke else Settings()
    given = {
        "images": args.images,
        "draws": args.draws,
        "train_steps": args.train_steps,
        "taus": args.taus,
        "estimators": args.estimators,
        "chunk_size": args.chunk_size,
        "score_samples": args.score_samples,
        "seed": args.seed,
        "prng": args.prng,
        "dtype": args.dtype,
    }
    return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})


def run(settings: Settings, out_dir: str, data_dir: str | None, command: str, log=print) -> dict:
    """Measure (`protocol.measure_checkpoints`) and write the files (`report.write`); returns
    gradients.json's content."""
    doc, raw = measure_checkpoints(settings, data_dir, command, log)
    return report.write(out_dir, doc, raw)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.replot:
        try:
            written = replot(args.out)
        except ValueError as e:
            return report_error(e)
        print(f"redrew {len(written)} figures in {args.out}")
        return 0
    compilation_cache.enable()
    try:
        settings = settings_from(args)
        if settings.dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        command = "python -m experiments.gradients " + shlex.join(
            sys.argv[1:] if argv is None else argv
        )
        doc = run(settings, args.out, args.data_dir, command)
    except ValueError as e:  # bad input: a clear message, not a traceback
        return report_error(e)
    print(f"wrote {args.out}/gradients.json and summary.md in {doc['wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
