"""The gradient analysis's files: summary.md, per_image.npz and the figures (drawn by the
project's plotting module), from the document `protocol.measure_checkpoints` returns.

`write` writes a finished analysis; `replot` redraws the figures of a folder from its
gradients.json without measuring anything.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from dst_jax import plotting, provenance
from dst_jax.gradients.claims import (
    CLAIM_PARTS,
    DIRECTIONS,
    FAILS,
    HOLDS,
    T_SIGNIFICANT,
    best_cell,
)
from dst_jax.gradients.measure import METRICS, REFERENCES
from dst_jax.io import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = [
    "curves",
    "replot",
    "summary_markdown",
    "verdict_lines",
    "write",
    "write_figures",
    "write_per_image",
]


def write(out_dir: str | Path, doc: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """Write per_image.npz, the figures, summary.md and gradients.json into `out_dir`; returns
    `doc` with the figures' names, the time the files took and the total wall time added."""
    out = Path(out_dir)
    t = time.perf_counter()
    write_per_image(out / "per_image.npz", raw)
    figures = write_figures(out, doc["estimators"])
    files_s = time.perf_counter() - t
    doc = {
        **doc,
        "figures": [Path(f).name for f in figures],
        "timing": {**doc["timing"], "files_s": files_s},
        "wall_s": doc["wall_s"] + files_s,
    }
    atomic_write_text(out / "summary.md", summary_markdown(doc))
    atomic_write_json(out / "gradients.json", provenance.json_safe(doc))
    return doc


def write_figures(out: Path, measured: dict) -> list[str]:
    """The heatmaps of each two-temperature estimator and the curves of the single-temperature
    ones, per checkpoint and reference, from `measured` (gradients.json's "estimators")."""
    written = []
    checkpoints = next(iter(measured.values()))["results"].keys() if measured else []
    for ckpt in checkpoints:
        for ref in REFERENCES:
            for name, est in measured.items():
                if len(est["shape"]) != 2:
                    continue
                taus_f = [float(t) for t in np.reshape(est["tau_f"], est["shape"])[:, 0]]
                taus_b = [float(t) for t in np.reshape(est["tau_b"], est["shape"])[0, :]]
                for m in METRICS:
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
        values = {m: est["results"][ckpt][ref][m] for m in METRICS}
        if tuple(est["shape"]) == ():
            lines[f"{name} (no temperature)"] = {"tau": None, **values}
        else:
            acts = " = ".join(est.get("writes_tau_to") or ["tau"])
            lines[f"{name} (tau = {acts})"] = {"tau": list(est["tau"]), **values}
    ylabels = {m: f"relative {m}" if m != "cosine" else "cosine(mean, exact)" for m in METRICS}
    return plotting.temperature_curves(
        lines, tuple(METRICS), ylabels, f"{ckpt} parameters, reference {_ref_text(ref)}"
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
        f"Wall time {doc['wall_s']:.0f} s on {doc['machine'].get('cpu_model') or '?'} "
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
            f"{row[m]['value']:.3g} at ({row[m]['tau_f']:g}, {row[m]['tau_b']:g})" for m in METRICS
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
    # Folders written before the noise-ratio analysis existed have no rows: no empty section.
    if doc.get("bias_vs_noise"):
        lines += [
            "",
            "## Bias against sampling error",
            "",
            f"An unbiased estimator's mean of N = {s['draws']} draws misses g by sampling error "
            "alone, about spread / sqrt(N); the noise ratio bias sqrt(N) / spread (median over "
            "images) is then near 1, and grows like sqrt(N) for a biased one. Each row is the "
            "estimator's cell with the lowest ratio"
            + (
                # Folders written before the score-function estimator existed have no such setting.
                f"; RLOO (score-function, {s['score_samples']} samples per draw) is unbiased for "
                "the tau1 reference."
                if "score_samples" in s
                else "."
            ),
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
