"""Gradient quality of every estimator against exact gradients (DESIGN.md section 6).

    python -m experiments.gradients cae --out runs/gradients-cae
    python -m experiments.gradients cae --out /tmp/gradients-smoke --smoke

The categorical autoencoder (4 latents x 8 classes), at its initial parameters and after a short
training run done here (Adam, lr 5e-4, batch 100, beta = 1, with decoupled_st at tau_f = 0.5,
tau_b = 1.0 by default), on the first S MNIST test images. For each image x with encoder logits
l (4, 8) the objective is f(z) = sum_pixels BCE(decoder(z), x); its exact gradient, for
q = softmax(l) ("tau1") and q = softmax(l / tau_f) ("tau_f", the distribution the forward pass
samples), comes from enumerating the 4,096 codes (`dst_jax.gradients`). Every registered discrete
estimator draws N gradients at every configuration of the temperature grid (two-temperature
estimators over the (tau_f, tau_b) grid, the others over the axis; the softmax relaxation is
skipped: it does not sample, so the enumerated objective does not apply to it), one vmapped
program per estimator, and the relative bias, relative spread and cosine are averaged over images.
RLOO, the unbiased score-function reference, draws each gradient from --score-samples samples
(default 4); the summary sets every estimator's bias against its own sampling error
(`gradients.noise_ratio`: about 1 where the bias is consistent with zero).

Writes into --out: `gradients.json` (settings, machine, versions, wall time, the metric grids),
`per_image.npz` (every metric per image), `summary.md` (best temperatures; the verdict on the
first version's claim that raising tau_b lowers bias and spread and raising tau_f raises both),
heatmaps `heatmap_<estimator>_<checkpoint>_<reference>_<metric>.png` for the two-temperature
estimators and curves `curves_<checkpoint>_<reference>.png` for the others.

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
import importlib.metadata
import io
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import dst_jax
from dst_jax import compilation_cache, gradients, plotting
from dst_jax import estimators as estimator_lib
from dst_jax.argtypes import floats, names, positive_int
from dst_jax.data import pipeline
from dst_jax.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from dst_jax.runner import machine_info
from dst_jax.sweep.config import PRNG_IMPLS
from dst_jax.tasks import cae

TASKS = ("cae",)
CHECKPOINTS = ("init", "trained")
DIRECTIONS = {"bias": "min", "spread": "min", "cosine": "max"}
# A part of the claim "holds" when at least this fraction of adjacent grid pairs moves the
# claimed way, and "fails" when fewer than half do (more pairs against it than for it).
HOLDS, FAILS = 0.8, 0.5
# A move between adjacent cells is significant when the paired t over images exceeds this.
T_SIGNIFICANT = 2.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a run measures. The defaults are the full protocol; `smoke()` the quick check."""

    images: int = 1000
    draws: int = 1024
    taus: tuple[float, ...] = gradients.DEFAULT_TAUS
    train_steps: int = 2000
    train_estimator: str = estimator_lib.REFERENCE
    train_tau_f: float = 0.5
    train_tau_b: float = 1.0
    lr: float = 5e-4
    batch_size: int = 100
    beta: float = 1.0
    seed: int = 0
    # Configurations per vmapped chunk: bounds memory to chunk x draws gradients at a time.
    chunk_size: int = 50
    # rbg compiles the estimators' Gumbel draws about 4x faster than threefry on a CPU, and
    # compilation is most of a smoke run.
    prng: str = "rbg"
    # The references and the draws in float64: for a nearly deterministic q (a trained encoder)
    # the exact gradient is many orders of magnitude below f, and float32's 1 - p rounds to 0.
    # Training and the decoder's tables stay float32.
    dtype: str = "float64"
    estimators: tuple[str, ...] | None = None
    # Samples behind each draw of a score-function estimator (RLOO).
    score_samples: int = 4

    @staticmethod
    def smoke() -> Settings:
        return Settings(images=4, draws=64, taus=(0.5, 1.0, 2.0), train_steps=20)


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
    s = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    if s.train_steps < 0:
        raise ValueError(f"--train-steps must be >= 0, got {s.train_steps}")
    if s.score_samples < 2:
        raise ValueError(
            f"--score-samples must be >= 2 (a leave-one-out baseline), got {s.score_samples}"
        )
    try:
        estimator_lib.check_temperatures(taus=np.asarray(s.taus))
    except ValueError as e:
        raise ValueError(f"--taus: {e}") from None
    return s


def select_entries(settings: Settings) -> tuple[list[estimator_lib.Estimator], dict[str, str]]:
    """The estimators to measure, and those skipped with the reason."""
    skipped = {
        e.name: "a relaxation: its output is not a one-hot code, so the enumerated objective "
        "E_q f(z) is not what its gradient estimates"
        for e in estimator_lib.REGISTRY
        if not e.discrete
    }
    wanted = settings.estimators or estimator_lib.REGISTRY.names(discrete=True)
    entries = [estimator_lib.REGISTRY[n] for n in wanted]  # unknown names raise ValueError
    for e in entries:
        if not e.discrete:
            raise ValueError(f"--estimators: {e.name} is {skipped[e.name]}")
    return entries, skipped


# ----------------------------------------------------------------------------------------------
# Model and training.


def objective(params: cae.Params, z_LxC: jax.Array, x_D: jax.Array) -> jax.Array:
    """f(z) = sum_pixels BCE(sigmoid(Dec(z)), x): the reconstruction term of one image."""
    return jnp.sum(cae.bce_with_logits(cae.decode(params, z_LxC[None])[0], x_D))


def train(
    params: cae.Params,
    x_train_NxD: jax.Array,
    key: jax.Array,
    settings: Settings,
) -> tuple[cae.Params, np.ndarray]:
    """`settings.train_steps` Adam steps on the cae loss (mean over the batch of BCE + beta KL)
    with the training estimator; one `lax.scan`. Returns the parameters and the loss per step."""
    sample = estimator_lib.REGISTRY[settings.train_estimator].uniform("categorical")
    opt = optax.adam(settings.lr)
    n = int(x_train_NxD.shape[0])
    k_data, k_noise = jax.random.split(key)

    def loss_fn(p, k, x_BxD, tau_f, tau_b):
        bce_B, kl_B, _ = cae.forward(p, x_BxD, lambda l: sample(k, l, tau_f, tau_b))
        return jnp.mean(bce_B + settings.beta * kl_B)

    @jax.jit
    def run(params, x_train_NxD, tau_f, tau_b):
        def step(carry, t):
            p, state, order = carry
            idx, order = pipeline.batch_indices(
                k_data, t, order, n=n, batch_size=settings.batch_size
            )
            loss, g = jax.value_and_grad(loss_fn)(
                p, jax.random.fold_in(k_noise, t), x_train_NxD[idx], tau_f, tau_b
            )
            updates, state = opt.update(g, state, p)
            return (optax.apply_updates(p, updates), state, order), loss

        init = (params, opt.init(params), pipeline.init_batch_order(n))
        (params, _, _), losses = jax.lax.scan(step, init, jnp.arange(settings.train_steps))
        return params, losses

    params, losses = run(params, x_train_NxD, settings.train_tau_f, settings.train_tau_b)
    losses = np.asarray(losses)
    if not np.all(np.isfinite(losses)):
        first = int(np.argmin(np.isfinite(losses)))
        raise FloatingPointError(f"training diverged: the loss is not finite at step {first}")
    return params, losses


def checkpoint_stats(params: cae.Params, x_SxD: jax.Array, expected_S: np.ndarray) -> dict:
    """Context for a checkpoint's numbers: how peaked the encoder's distributions are."""
    l_SxLxC = cae.encode(params, x_SxD)
    logp = jax.nn.log_softmax(l_SxLxC, axis=-1)
    entropy_SxL = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return {
        "expected_bce": float(np.mean(expected_S)),
        "entropy_per_latent": float(jnp.mean(entropy_SxL)),
        "max_probability": float(jnp.mean(jnp.max(jnp.exp(logp), axis=-1))),
        "kl_to_uniform": float(jnp.mean(cae.kl_to_uniform(l_SxLxC))),
    }


# ----------------------------------------------------------------------------------------------
# Reading the results.


def reduce_images(per_image: dict, shape: tuple[int, ...]) -> dict[str, Any]:
    """{metric: grid of means over images, "median": {...}, "sem": {...}, "n_images": {...}}.

    An image whose metric is undefined (NaN: its exact gradient is 0) is left out of that
    cell; "n_images" counts the images each cell averages.
    """
    out: dict[str, Any] = {"median": {}, "sem": {}, "n_images": {}}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
        for m, v_SxK in per_image.items():
            n_K = np.sum(np.isfinite(v_SxK), axis=0)
            out[m] = np.nanmean(v_SxK, axis=0).reshape(shape)
            out["median"][m] = np.nanmedian(v_SxK, axis=0).reshape(shape)
            sem_K = np.nanstd(v_SxK, axis=0, ddof=1) / np.sqrt(n_K)
            out["sem"][m] = np.where(n_K > 1, sem_K, np.nan).reshape(shape)
            out["n_images"][m] = n_K.reshape(shape)
    return out


def fewest_images(measured: dict) -> int:
    return int(
        min(
            np.min(res["n_images"][m])
            for est in measured.values()
            for per_ref in est["results"].values()
            for res in per_ref.values()
            for m in gradients.METRICS
        )
    )


def best_cell(grid: np.ndarray, metric: str) -> tuple[int, ...]:
    """Index of the best finite entry of a grid of any rank (one axis for a single-temperature
    estimator, two for a (tau_f, tau_b) grid)."""
    mat = np.where(np.isfinite(grid), grid, np.inf if DIRECTIONS[metric] == "min" else -np.inf)
    flat = np.argmin(mat) if DIRECTIONS[metric] == "min" else np.argmax(mat)
    return tuple(int(i) for i in np.unravel_index(flat, grid.shape))


def best_temperatures(measured: dict) -> list[dict[str, Any]]:
    """Per estimator, checkpoint and reference: the best configuration by each metric."""
    rows = []
    for name, est in measured.items():
        tf, tb = np.reshape(est["tau_f"], est["shape"]), np.reshape(est["tau_b"], est["shape"])
        for ckpt, per_ref in est["results"].items():
            for ref, res in per_ref.items():
                row = {"estimator": name, "checkpoint": ckpt, "reference": ref}
                for m in gradients.METRICS:
                    cell = best_cell(res[m], m)
                    row[m] = {
                        "value": float(res[m][cell]),
                        "tau_f": float(tf[cell]),
                        "tau_b": float(tb[cell]),
                    }
                rows.append(row)
    return rows


# The claim's four parts: (metric, axis along which the temperature rises, claimed direction).
CLAIM_PARTS = {
    "bias_down_along_tau_b": ("bias", "tau_b", "down"),
    "spread_down_along_tau_b": ("spread", "tau_b", "down"),
    "bias_up_along_tau_f": ("bias", "tau_f", "up"),
    "spread_up_along_tau_f": ("spread", "tau_f", "up"),
}


def claim_part(
    grid_FxB: np.ndarray,
    taus_f: np.ndarray,
    taus_b: np.ndarray,
    axis: str,
    way: str,
    per_image_SxFxB: np.ndarray | None = None,
) -> dict[str, Any]:
    """One part of the claim on one (tau_f, tau_b) grid (rows tau_f, columns tau_b).

    fraction: of all adjacent pairs along `axis`, those moving `way`; per_line: the same per
    grid line (per tau_f for pairs along tau_b, per tau_b for pairs along tau_f); below / above:
    over the pairs with tau_b <= tau_f at both ends / tau_b >= tau_f at both ends (the two
    sides of the diagonal, where the estimators behave differently; None if a side is empty).
    With the per-image values: significantly_for / significantly_against, the fractions of
    pairs whose paired difference over images (every configuration sees the same images and
    noise) has |t| > T_SIGNIFICANT in the claimed / the opposite direction; the rest are flat
    within the noise of S images.
    """
    ax = 1 if axis == "tau_b" else 0
    ok = gradients.claimed_moves(grid_FxB, ax, way)
    tf, tb = np.meshgrid(taus_f, taus_b, indexing="ij")
    lo = [slice(None), slice(None)]
    hi = [slice(None), slice(None)]
    lo[ax], hi[ax] = slice(None, -1), slice(1, None)
    ends = [(tf[tuple(i)], tb[tuple(i)]) for i in (lo, hi)]
    below = np.all(np.stack([b <= f for f, b in ends]), axis=0)
    above = np.all(np.stack([b >= f for f, b in ends]), axis=0)
    lines = taus_f if axis == "tau_b" else taus_b
    out = {
        "fraction": float(ok.mean()),
        "below_diagonal": float(ok[below].mean()) if below.any() else None,
        "above_diagonal": float(ok[above].mean()) if above.any() else None,
        "per_line": dict(zip(map(float, lines), map(float, ok.mean(axis=ax)), strict=True)),
        "verdict": _verdict(float(ok.mean())),
    }
    if per_image_SxFxB is not None:
        d = np.diff(per_image_SxFxB, axis=ax + 1)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            n = np.sum(np.isfinite(d), axis=0)
            t = np.nanmean(d, axis=0) / (np.nanstd(d, axis=0, ddof=1) / np.sqrt(n))
        sign = -1.0 if way == "down" else 1.0
        out["significantly_for"] = float(np.mean(sign * t > T_SIGNIFICANT))
        out["significantly_against"] = float(np.mean(sign * t < -T_SIGNIFICANT))
    return out


def claim_check(
    measured: dict, statistic: str = "mean", per_image: dict | None = None
) -> list[dict[str, Any]]:
    """The first version's claim on every two-temperature grid, per checkpoint and reference,
    on the grids of `statistic` over images ("mean" or "median").

    Parts: along tau_b at fixed tau_f, bias and spread go down; along tau_f at fixed tau_b, both
    go up (`claim_part`). The claim holds in a case when all four parts hold, fails when all
    four fail, and holds partly otherwise. `per_image[ckpt][name]["per_image"][ref][metric]`
    (S, K), when given, adds the paired significance of each move.
    """
    rows = []
    for name, est in measured.items():
        if len(est["shape"]) != 2:
            continue
        taus_f = np.reshape(est["tau_f"], est["shape"])[:, 0]
        taus_b = np.reshape(est["tau_b"], est["shape"])[0, :]
        for ckpt, per_ref in est["results"].items():
            for ref, res in per_ref.items():
                grids = res if statistic == "mean" else res[statistic]
                parts = {}
                for part, (m, axis, way) in CLAIM_PARTS.items():
                    images = None
                    if per_image is not None:
                        v_SxK = per_image[ckpt][name]["per_image"][ref][m]
                        images = v_SxK.reshape(v_SxK.shape[0], *est["shape"])
                    parts[part] = claim_part(grids[m], taus_f, taus_b, axis, way, images)
                verdicts = {p["verdict"] for p in parts.values()}
                overall = "partly"
                if verdicts == {"holds"} or verdicts == {"fails"}:
                    overall = verdicts.pop()
                rows.append(
                    {
                        "estimator": name,
                        "checkpoint": ckpt,
                        "reference": ref,
                        "statistic": statistic,
                        "parts": parts,
                        "verdict": overall,
                    }
                )
    return rows


def bias_vs_noise(measured: dict, raw: dict, n_draws: int) -> list[dict[str, Any]]:
    """Per estimator, checkpoint and reference: the cell whose bias is smallest against its own
    sampling error (`gradients.noise_ratio`, median over images: a nearly deterministic q
    makes a few images' spreads almost 0 and their ratios huge), with that cell's bias, spread
    and spread / sqrt(N) (means over images). A ratio near 1 is a bias consistent with zero."""
    rows = []
    for name, est in measured.items():
        for ckpt in est["results"]:
            for ref in gradients.REFERENCES:
                per = raw[ckpt][name]["per_image"][ref]
                ratio_SxK = gradients.noise_ratio(per["bias"], per["spread"], n_draws)
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    ratio_K = np.nanmedian(ratio_SxK, axis=0)
                    k = int(np.nanargmin(ratio_K)) if np.any(~np.isnan(ratio_K)) else 0
                    bias, spread = np.nanmean(per["bias"][:, k]), np.nanmean(per["spread"][:, k])
                rows.append(
                    {
                        "estimator": name,
                        "checkpoint": ckpt,
                        "reference": ref,
                        "tau_f": float(np.ravel(est["tau_f"])[k]),
                        "tau_b": float(np.ravel(est["tau_b"])[k]),
                        "bias": float(bias),
                        "spread": float(spread),
                        "sampling_error": float(spread / math.sqrt(n_draws)),
                        "noise_ratio": float(ratio_K[k]),
                    }
                )
    return rows


def _verdict(fraction: float) -> str:
    return "holds" if fraction >= HOLDS else "fails" if fraction < FAILS else "partly"


# ----------------------------------------------------------------------------------------------
# Files.


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "dst_jax": dst_jax.__version__,
    }
    for pkg in ("jax", "jaxlib", "numpy", "optax", "matplotlib"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def machine() -> dict[str, Any]:
    info = {**machine_info(), "os": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    return info


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None


def write_figures(out: Path, measured: dict) -> list[str]:
    """The heatmaps of each two-temperature estimator and the curves of the single-temperature
    ones, per checkpoint and reference, from `measured` (gradients.json's "estimators")."""
    written = []
    checkpoints = next(iter(measured.values()))["results"].keys() if measured else []
    for ckpt in checkpoints:
        for ref in gradients.REFERENCES:
            for name, est in measured.items():
                if len(est["shape"]) != 2:
                    continue
                taus_f = [float(t) for t in np.reshape(est["tau_f"], est["shape"])[:, 0]]
                taus_b = [float(t) for t in np.reshape(est["tau_b"], est["shape"])[0, :]]
                for m in gradients.METRICS:
                    grid = np.asarray(est["results"][ckpt][ref][m], np.float64)
                    title = f"{name}: {m} ({ckpt}, reference {_ref_text(ref)})"
                    # A log colour scale where positive values span more than a decade (a
                    # nearly deterministic q puts relative errors from 1e-50 to 1e15 on a grid).
                    row, col = best_cell(grid, m)
                    fig = plotting.heatmap(
                        taus_f, taus_b, grid, (row, col), DIRECTIONS[m], m, title,
                        log_colours=m != "cosine",
                    )  # fmt: skip
                    path = out / f"heatmap_{name}_{ckpt}_{ref}_{m}.png"
                    written.append(plotting.save(fig, str(path)))
            single = {n: e for n, e in measured.items() if len(e["shape"]) < 2}
            if single:
                fig = curves(single, ckpt, ref)
                written.append(plotting.save(fig, str(out / f"curves_{ckpt}_{ref}.png")))
    return written


def _ref_text(ref: str) -> str:
    return "q = softmax(l)" if ref == "tau1" else "q = softmax(l / tau_f)"


def curves(single: dict, ckpt: str, ref: str):
    """Each metric against the single temperature, one line per estimator; an untempered
    estimator is a horizontal line."""
    lines = {}
    for name, est in single.items():
        values = {m: est["results"][ckpt][ref][m] for m in gradients.METRICS}
        if tuple(est["shape"]) == ():
            lines[f"{name} (no temperature)"] = {"tau": None, **values}
        else:
            acts = " = ".join(est.get("writes_tau_to") or ["tau"])
            lines[f"{name} (tau = {acts})"] = {"tau": list(est["tau"]), **values}
    ylabels = {
        m: f"relative {m}" if m != "cosine" else "cosine(mean, exact)" for m in gradients.METRICS
    }
    return plotting.temperature_curves(
        lines, tuple(gradients.METRICS), ylabels, f"{ckpt} parameters, reference {_ref_text(ref)}"
    )


def replot(out_dir: str) -> list[str]:
    """Redraw a finished analysis's figures from its gradients.json (nothing is measured)."""
    path = Path(out_dir) / "gradients.json"
    if not path.is_file():
        raise ValueError(f"{path} not found: --replot needs the folder of a finished analysis")
    return write_figures(Path(out_dir), json.loads(path.read_text())["estimators"])


def summary_markdown(doc: dict) -> str:
    s = doc["settings"]
    lines = [
        f"# Gradient quality: {doc['task']}",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"{s['images']} MNIST test images, {s['draws']} draws per configuration, temperatures "
        f"{', '.join(f'{t:g}' for t in s['taus'])}; trained checkpoint: {s['train_steps']} Adam "
        f"steps (lr {s['lr']:g}, batch {s['batch_size']}, beta {s['beta']:g}) with "
        f"{s['train_estimator']} at tau_f = {s['train_tau_f']:g}, tau_b = {s['train_tau_b']:g}. "
        f"Wall time {doc['wall_s']:.0f} s on {doc['machine'].get('cpu_model', '?')} "
        f"({doc['machine']['platform']}, {doc['machine']['host_cpus']} CPUs).",
        "",
        "Metrics are means over images of the relative bias |mean - g| / |g|, the relative "
        "spread sqrt(mean |g_n - mean|^2) / |g| and cosine(mean, g); g the exact gradient for "
        "q = softmax(l) (tau1) or q = softmax(l / T) with T the temperature the forward pass "
        "samples at (tau_f; for estimators that sample at 1 whatever their tau, T = 1). "
        "An image whose exact gradient is exactly 0 is left out of a cell's mean "
        f"(fewest images in any cell: {doc['fewest_images']}).",
        "",
    ]
    t = doc["training"]
    if t["loss_first"] is not None:
        lines += [
            f"Training loss (BCE + beta KL, mean of {t['loss_window']} steps): "
            f"{t['loss_first']:.1f} at the start, {t['loss_last']:.1f} at the end.",
            "",
        ]
    for ckpt, st in doc["checkpoints"].items():
        lines.append(
            f"- {ckpt}: E_q f = {st['expected_bce']:.1f} (q = softmax(l)); entropy of softmax(l) "
            f"{st['entropy_per_latent']:.3g} nats per latent (uniform: {math.log(8):.3g}); "
            f"largest class probability {st['max_probability']:.6g} on average."
        )
    lines.append("")
    if doc["skipped"]:
        lines += [
            "Skipped: " + "; ".join(f"{n} ({why})" for n, why in doc["skipped"].items()) + ".",
            "",
        ]
    lines += [
        "## Best temperatures per estimator",
        "",
        "Cells: value at (tau_f, tau_b).",
        "",
        "| estimator | checkpoint | reference | lowest bias | lowest spread | highest cosine |",
        "|---|---|---|---|---|---|",
    ]
    for row in doc["best"]:
        cells = [
            f"{row[m]['value']:.3g} at ({row[m]['tau_f']:g}, {row[m]['tau_b']:g})"
            for m in gradients.METRICS
        ]
        lines.append(
            f"| {row['estimator']} | {row['checkpoint']} | {row['reference']} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "## The first version's claim",
        "",
        "Claim: at fixed tau_f, raising tau_b lowers both bias and spread; raising tau_f raises "
        "both. Each cell is the fraction of adjacent grid pairs that move the claimed way "
        f"(a part holds at >= {HOLDS:g}, fails below {FAILS:g}, holds partly between; the "
        "claim holds in a case when all four parts hold). Rows for the mean over images (the "
        "protocol's statistic) and for the median (robust to the few images whose exact "
        "gradient is nearly zero).",
        "",
        "| estimator | checkpoint | reference | statistic | bias down along tau_b | "
        "spread down along tau_b | bias up along tau_f | spread up along tau_f | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in doc["claim"]:
        cells = [f"{row['parts'][p]['fraction']:.2f}" for p in CLAIM_PARTS]
        lines.append(
            f"| {row['estimator']} | {row['checkpoint']} | {row['reference']} | "
            f"{row['statistic']} | " + " | ".join(cells) + f" | **{row['verdict']}** |"
        )
    lines += [
        "",
        "Where (mean over images): each part's fraction below the diagonal (tau_b <= tau_f) / "
        "above it (tau_b >= tau_f), then in brackets the fractions of pairs whose paired "
        f"difference over images is significant (|t| > {T_SIGNIFICANT:g}) for / against the "
        "claim.",
        "",
    ]
    for row in (r for r in doc["claim"] if r["statistic"] == "mean"):
        sides = [
            f"{p.replace('_', ' ')} {_side(row['parts'][p], 'below')} / "
            f"{_side(row['parts'][p], 'above')}"
            + (
                f" [{row['parts'][p]['significantly_for']:.2f} / "
                f"{row['parts'][p]['significantly_against']:.2f}]"
                if "significantly_for" in row["parts"][p]
                else ""
            )
            for p in CLAIM_PARTS
        ]
        lines.append(
            f"- {row['estimator']}, {row['checkpoint']}, {row['reference']}: " + "; ".join(sides)
        )
    lines += ["", "## Verdict", ""]
    lines += verdict_lines(doc["claim"])
    lines += [
        "",
        "## Bias against sampling error",
        "",
        f"An unbiased estimator's mean of N = {s['draws']} draws misses g by sampling error "
        "alone, about spread / sqrt(N); the noise ratio bias sqrt(N) / spread (median over "
        "images) is then near 1, and grows like sqrt(N) for a biased one. Each row is the "
        "estimator's cell with the lowest ratio; RLOO (score-function, "
        f"{s['score_samples']} samples per draw) is unbiased for the tau1 reference.",
        "",
        "| estimator | checkpoint | reference | cell (tau_f, tau_b) | bias | spread | "
        "spread / sqrt(N) | noise ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in doc.get("bias_vs_noise", []):
        lines.append(
            f"| {row['estimator']} | {row['checkpoint']} | {row['reference']} | "
            f"({row['tau_f']:g}, {row['tau_b']:g}) | {row['bias']:.3g} | {row['spread']:.3g} | "
            f"{row['sampling_error']:.3g} | {row['noise_ratio']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def _side(part: dict, side: str) -> str:
    v = part[f"{side}_diagonal"]
    return "-" if v is None else f"{v:.2f}"


def verdict_lines(claim: list[dict[str, Any]]) -> list[str]:
    """Per estimator: in how many cases the claim holds (mean and median over images), and
    where each part holds or fails (mean)."""
    lines = []
    for name in dict.fromkeys(r["estimator"] for r in claim):
        rows = [r for r in claim if r["estimator"] == name]
        counts = []
        for stat in dict.fromkeys(r["statistic"] for r in rows):
            cases = [r for r in rows if r["statistic"] == stat]
            held = [f"{r['checkpoint']}/{r['reference']}" for r in cases if r["verdict"] == "holds"]
            where = f" ({', '.join(held)})" if held else ""
            counts.append(f"{len(held)} of {len(cases)} cases by the {stat}{where}")
        lines.append(f"- {name}: the whole claim holds in " + "; ".join(counts) + ".")
        for p in CLAIM_PARTS:
            by: dict[str, list[str]] = {v: [] for v in ("holds", "partly", "fails")}
            for r in (r for r in rows if r["statistic"] == "mean"):
                part = r["parts"][p]
                by[part["verdict"]].append(
                    f"{r['checkpoint']}/{r['reference']} {part['fraction']:.2f}"
                )
            text = "; ".join(f"{v} at {', '.join(c)}" for v, c in by.items() if c)
            lines.append(f"  - {p.replace('_', ' ')} (mean): {text}.")
    return lines


def write_per_image(path: Path, raw: dict) -> None:
    arrays = {
        f"{ckpt}/{name}/{ref}/{m}": v
        for ckpt, per_est in raw.items()
        for name, est in per_est.items()
        for ref, metrics in est["per_image"].items()
        for m, v in metrics.items()
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------------------------


def run(settings: Settings, out_dir: str, data_dir: str | None, command: str, log=print) -> dict:
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    host = machine()  # before the run loads it
    out = Path(out_dir)
    entries, skipped = select_entries(settings)
    config = cae.Config(beta=settings.beta, batch_size=settings.batch_size)

    t = time.perf_counter()
    x_train, _, info = pipeline.device_split(config.dataset, "train", data_dir=data_dir)
    x_test, _, _ = pipeline.device_split(config.dataset, "test", data_dir=data_dir)
    if settings.images > x_test.shape[0]:
        raise ValueError(f"--images {settings.images} exceeds the {x_test.shape[0]} test images")
    x_SxD = x_test[: settings.images]
    timing["load_s"] = time.perf_counter() - t

    key = jax.random.key(settings.seed, impl=settings.prng)
    k_init, k_train, k_draws = jax.random.split(key, 3)
    params = {"init": cae.init_params(k_init, config, int(x_train.shape[1]))}
    t = time.perf_counter()
    log(f"training {settings.train_steps} steps with {settings.train_estimator}")
    params["trained"], losses = train(params["init"], x_train, k_train, settings)
    timing["train_s"] = time.perf_counter() - t
    window = max(1, min(100, len(losses) // 10))
    training = {
        "estimator": settings.train_estimator,
        "tau_f": settings.train_tau_f,
        "tau_b": settings.train_tau_b,
        "steps": settings.train_steps,
        "loss_first": float(np.mean(losses[:window])) if len(losses) else None,
        "loss_last": float(np.mean(losses[-window:])) if len(losses) else None,
        "loss_window": window,
    }

    raw, stats = {}, {}
    for ckpt in CHECKPOINTS:
        t = time.perf_counter()
        l_SxLxC = cae.encode(params[ckpt], x_SxD).astype(settings.dtype)

        def progress(name: str, sec: float, ckpt: str = ckpt) -> None:
            log(f"  {ckpt} {name}: {sec:.1f} s")

        result = gradients.gradient_quality(
            objective,
            params[ckpt],
            x_SxD,
            l_SxLxC,
            k_draws,
            entries=entries,
            taus=settings.taus,
            n_draws=settings.draws,
            chunk_size=settings.chunk_size,
            score_samples=settings.score_samples,
            progress=progress,
        )
        raw[ckpt] = result["estimators"]
        stats[ckpt] = checkpoint_stats(params[ckpt], x_SxD, result["expected_f"])
        timing[f"{ckpt}_s"] = time.perf_counter() - t
        log(f"{ckpt}: {len(entries)} estimators measured in {timing[f'{ckpt}_s']:.1f} s")

    measured = {}
    for e in entries:
        grid = raw[CHECKPOINTS[0]][e.name]
        measured[e.name] = {
            "n_temperatures": e.n_temperatures,
            "writes_tau_to": list(e.writes_tau_to) if e.n_temperatures == 1 else None,
            "shape": tuple(grid["shape"]),
            "tau": grid["tau"] if e.n_temperatures == 1 else None,
            "tau_f": grid["tau_f"],
            "tau_b": grid["tau_b"],
            "tau_sampled": grid["tau_q"],
            "results": {
                ckpt: {
                    ref: reduce_images(raw[ckpt][e.name]["per_image"][ref], grid["shape"])
                    for ref in gradients.REFERENCES
                }
                for ckpt in CHECKPOINTS
            },
        }
    doc = {
        "task": "cae",
        "dataset": info.get("dataset"),
        "command": command,
        "settings": {**dataclasses.asdict(settings), "model": dataclasses.asdict(config)},
        "objective": "f(z) = sum over 784 pixels of BCE(sigmoid(decoder(z)), x); exact "
        "gradients by enumerating the 8^4 codes; draws use f and grad_z f tabulated at "
        "every code (exact for one-hot codes)",
        "machine": host,
        "versions": versions(),
        "git_commit": git_commit(),
        "training": training,
        "checkpoints": stats,
        "skipped": skipped,
        "estimators": measured,
        "best": best_temperatures(measured),
        "claim": claim_check(measured, "mean", raw) + claim_check(measured, "median"),
        "bias_vs_noise": bias_vs_noise(measured, raw, settings.draws),
        "fewest_images": fewest_images(measured),
    }
    t = time.perf_counter()
    write_per_image(out / "per_image.npz", raw)
    figures = write_figures(out, measured)
    timing["files_s"] = time.perf_counter() - t
    doc["figures"] = [Path(f).name for f in figures]
    doc["wall_s"] = time.perf_counter() - t0
    doc["timing"] = timing
    atomic_write_text(out / "summary.md", summary_markdown(doc))
    atomic_write_json(out / "gradients.json", _jsonable(doc))
    return doc


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.replot:
        try:
            written = replot(args.out)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
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
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}/gradients.json and summary.md in {doc['wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
