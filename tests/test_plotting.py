"""Figures are drawn from arrays and results, without pyplot or a global backend."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dst_jax import logic, plotting

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_compute_imports_no_plotting_library():
    code = (
        "import sys, dst_jax.sweep, dst_jax.tasks, dst_jax.estimators; "
        "assert 'matplotlib' not in sys.modules, 'compute imported matplotlib'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_plotting_leaves_the_matplotlib_backend_alone():
    code = (
        "import matplotlib; matplotlib.use('svg'); import dst_jax.plotting, dst_jax.runner; "
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_heatmap_curves_code_grid_and_histograms_write_pngs(tmp_path):
    mat = np.arange(6.0).reshape(2, 3)
    fig = plotting.heatmap([0.1, 1.0], [0.5, 1.0, 2.0], mat, (1, 2), "max", "acc", "title")
    plotting.save(fig, tmp_path / "h.png")
    runs = [{"curve": {"step": [1, 2], "loss": [2.0, 1.0], "acc": [None, 0.5]}}]
    plotting.save(plotting.curves({"a": runs}, ("loss", "acc")), tmp_path / "c.png")
    grid = np.random.default_rng(0).random((3, 5, 784))
    plotting.save(plotting.code_grid(grid, "codes"), tmp_path / "g.png")
    hists = {"a": np.full(16, 1 / 16), "b": np.eye(16)[3]}
    plotting.save(
        plotting.histograms(hists, logic.GATE_NAMES, "gates", "fraction"), tmp_path / "b.png"
    )
    for name in ("h.png", "c.png", "g.png", "b.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG, name
        with Image.open(tmp_path / name) as im:
            assert np.asarray(im.convert("L")).std() > 5, name  # something was drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "c.png", "g.png", "h.png"]
