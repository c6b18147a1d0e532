"""The claim checks and statistics of a measured grid: means over images, best cells, the first
version's claim on the (tau_f, tau_b) grid and the bias set against its own sampling error.

`measured` below is gradients.json's "estimators": per estimator its grid ("shape", "tau_f",
"tau_b", "tau") and per checkpoint and reference the grids of `reduce_images`; `raw` the
per-image metrics of `measure.gradient_quality` per checkpoint (`raw[ckpt][name]["per_image"]`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from jax.typing import ArrayLike

from dst_jax.gradients.measure import METRICS, REFERENCES
from dst_jax.sweep import results

__all__ = [
    "CLAIM_PARTS",
    "DIRECTIONS",
    "FAILS",
    "HOLDS",
    "T_SIGNIFICANT",
    "best_cell",
    "best_temperatures",
    "bias_vs_noise",
    "claim_check",
    "claim_part",
    "claimed_moves",
    "fewest_images",
    "noise_ratio",
    "reduce_images",
]

DIRECTIONS = {"bias": "min", "spread": "min", "cosine": "max"}
# A part of the claim "holds" when at least this fraction of adjacent grid pairs moves the
# claimed way, and "fails" when fewer than half do (more pairs against it than for it).
HOLDS, FAILS = 0.8, 0.5
# A move between adjacent cells is significant when the paired t over images exceeds this.
T_SIGNIFICANT = 2.0


def noise_ratio(bias: ArrayLike, spread: ArrayLike, n_draws: int) -> np.ndarray:
    """`bias sqrt(N) / spread`: a relative bias measured in units of its own sampling error.

    For an unbiased estimator the mean of N draws misses g by sampling error alone,
    `E|mean - g|^2 = E|g_n - E g_n|^2 / N`, so the ratio is about 1 (below it, since a norm's
    mean is below its root mean square); a biased estimator's grows like sqrt(N). Where every
    draw is the same (spread 0) a non-zero bias is not sampling error: +inf (and 0 for no bias;
    NaN where the bias is undefined). An unbiased estimator whose variance lies in events rarer
    than 1/N (RLOO on a nearly deterministic q) can show large ratios too: read them as "N
    draws cannot tell", which the median over images is robust to.
    """
    bias, spread = np.asarray(bias, np.float64), np.asarray(spread, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        flat = np.where(bias > 0, np.inf, np.where(bias == 0, 0.0, np.nan))
        return np.where(spread > 0, bias * np.sqrt(n_draws) / spread, flat)


def claimed_moves(mat: ArrayLike, axis: int, direction: str) -> np.ndarray:
    """Whether a grid metric moves the claimed way between adjacent cells along `axis`.

    Entry i along `axis` (the other axes kept) is `mat[i+1] < mat[i]` for `direction` "down",
    `mat[i+1] > mat[i]` for "up"; ties and NaN count against the claim. Boolean, the shape of
    `mat` with one entry fewer along `axis`.
    """
    if direction not in ("down", "up"):
        raise ValueError(f"direction must be 'down' or 'up', got {direction!r}")
    step = np.diff(np.asarray(mat, np.float64), axis=axis)
    with np.errstate(invalid="ignore"):
        return step < 0 if direction == "down" else step > 0


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
            for m in METRICS
        )
    )


def best_cell(grid: np.ndarray, metric: str) -> tuple[int, ...]:
    """Index of the best entry of a grid of any rank (one axis for a single-temperature
    estimator, two for a (tau_f, tau_b) grid) by `metric`'s direction (`DIRECTIONS`); the
    sweep's rule, `sweep.results.best_cell` (NaN entries never win)."""
    return results.best_cell(np.asarray(grid, np.float64), DIRECTIONS[metric])


def best_temperatures(measured: dict) -> list[dict[str, Any]]:
    """Per estimator, checkpoint and reference: the best configuration by each metric."""
    rows = []
    for name, est in measured.items():
        tf, tb = np.reshape(est["tau_f"], est["shape"]), np.reshape(est["tau_b"], est["shape"])
        for ckpt, per_ref in est["results"].items():
            for ref, res in per_ref.items():
                row = {"estimator": name, "checkpoint": ckpt, "reference": ref}
                for m in METRICS:
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
    noise) has `|t| > T_SIGNIFICANT` in the claimed / the opposite direction; the rest are flat
    within the noise of S images.
    """
    ax = 1 if axis == "tau_b" else 0
    ok = claimed_moves(grid_FxB, ax, way)
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
    sampling error (`noise_ratio`, median over images: a nearly deterministic q
    makes a few images' spreads almost 0 and their ratios huge), with that cell's bias, spread
    and spread / sqrt(N) (means over images). A ratio near 1 is a bias consistent with zero."""
    rows = []
    for name, est in measured.items():
        for ckpt in est["results"]:
            for ref in REFERENCES:
                per = raw[ckpt][name]["per_image"][ref]
                ratio_SxK = noise_ratio(per["bias"], per["spread"], n_draws)
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
