"""The sweep engine: one compiled, vmapped program trains a whole grid of configurations.

- `SweepConfig` (config.py): the grid axes and training length;
- `Run`, `expand` (grid.py): the runs of a sweep;
- `train_runs` (engine.py): train runs in memory as vmapped, sharded, checkpointed chunks;
- `run_sweep` (runner.py): a whole sweep from configs to results files and figures.
"""

from dst_jax.sweep.config import DEFAULT_TAUS, SweepConfig
from dst_jax.sweep.engine import SweepOutput, train_runs
from dst_jax.sweep.grid import Run, expand
from dst_jax.sweep.runner import run_sweep

__all__ = ["DEFAULT_TAUS", "Run", "SweepConfig", "SweepOutput", "expand", "run_sweep", "train_runs"]
