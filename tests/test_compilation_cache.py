"""The persistent compilation cache (on for the command line and the tests, off on import, keyed
by the program) and what the progress bar says while compiling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from test_sweep import tiny_task

from dst_jax.sweep import grid
from dst_jax.sweep.engine import train_runs

ROOT = Path(__file__).resolve().parents[1]

# Compiles `f` (its body chosen by argv[1]) with the cache on and prints the cache events.
PROGRAM = """
import sys, jax, jax.numpy as jnp
from dst_jax import compilation_cache
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
folder = compilation_cache.enable()
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
k = float(sys.argv[1])
jax.jit(lambda x: jnp.sin(x) * k + jnp.cos(x) ** 2)(jnp.arange(5.0)).block_until_ready()
hits = sum("cache_hits" in e for e in events)
misses = sum("cache_misses" in e for e in events)
print(folder, hits, misses)
"""


def _run(code: str, *args: str, **env: str) -> list[str]:
    full = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), **env}
    full.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=full, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()


def test_import_leaves_the_cache_off():
    out = _run("import dst_jax, jax; print(jax.config.jax_compilation_cache_dir)")
    assert out == ["None"]


@pytest.mark.slow
def test_cache_is_written_reused_and_keyed_by_the_program(tmp_path):
    folder = tmp_path / "cache"
    first = _run(PROGRAM, "2.0", DST_JAX_COMPILATION_CACHE=str(folder))
    assert first[0] == str(folder) and int(first[2]) >= 1  # compiled and stored
    stored = set(os.listdir(folder))
    assert stored
    again = _run(PROGRAM, "2.0", DST_JAX_COMPILATION_CACHE=str(folder))
    assert int(again[1]) >= 1 and int(again[2]) == 0  # read back, nothing compiled
    assert set(os.listdir(folder)) == stored
    changed = _run(PROGRAM, "3.0", DST_JAX_COMPILATION_CACHE=str(folder))
    assert int(changed[2]) >= 1  # another constant: another program, a miss
    assert set(os.listdir(folder)) > stored


def test_the_variable_turns_the_cache_off(tmp_path):
    out = _run(PROGRAM, "2.0", DST_JAX_COMPILATION_CACHE="0", XDG_CACHE_HOME=str(tmp_path))
    assert out[0] == "None" and out[1] == "0"
    assert not (tmp_path / "dst_jax").exists()


def test_default_folder_is_the_users_cache(tmp_path):
    out = _run(PROGRAM, "2.0", DST_JAX_COMPILATION_CACHE="", XDG_CACHE_HOME=str(tmp_path))
    assert out[0] == str(tmp_path / "dst_jax" / "jax")
    assert os.listdir(tmp_path / "dst_jax" / "jax")


def test_progress_bar_says_compiling(capsys):
    task = tiny_task()  # a fresh task: its programs are not compiled yet in this process
    data, _ = task.load_data(None)
    runs = [grid.Run("decoupled_st", 0.5, 2.0, 0, 1e-3)]
    out = train_runs(
        task, data, runs, steps=4, eval_every=2, progress=True, devices=jax.devices()[:1]
    )
    err = capsys.readouterr().err
    assert "compiling decoupled_st" in err
    assert np.isfinite(out.runs[0]["final"]["train_loss"])
    assert out.timing["decoupled_st"]["compile_s"] > 0


def test_compile_seconds_are_left_out_of_the_progress_rate():
    import io
    import time

    from tqdm import tqdm

    from dst_jax.sweep.engine import _compile_status

    out = io.StringIO()
    bar = tqdm(total=10, file=out, mininterval=0)
    bar.update(1)
    start = bar.start_t
    _compile_status(bar, "decoupled_st", True)
    assert bar.desc == "compiling decoupled_st" and "compiling decoupled_st" in out.getvalue()
    time.sleep(0.3)
    _compile_status(bar, "decoupled_st", False)
    # The timer moved on by the compile's seconds: the rate and ETA count training only.
    assert bar.start_t - start >= 0.3
    assert bar.desc == "decoupled_st"
    bar.close()
