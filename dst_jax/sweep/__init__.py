"""The sweep engine: one compiled, vmapped program trains a whole grid of configurations.

- `SweepConfig` (config.py): the grid axes and training length;
- `Run`, `expand` (grid.py): the runs of a sweep, from the estimator registry;
- `train_runs` (engine.py): train runs in memory as vmapped, sharded, checkpointed chunks;
- `results.py`, `stats.py`: run records, the table of configs over seeds, the rule that picks
  the best config, intervals and paired comparisons.

Writing a sweep's files and figures is `dst_jax.runner.run_sweep`; nothing here imports a
plotting library.
"""

from dst_jax.sweep.config import DEFAULT_TAUS, SweepConfig
from dst_jax.sweep.engine import SweepOutput, train_runs
from dst_jax.sweep.grid import Run, expand

__all__ = ["DEFAULT_TAUS", "Run", "SweepConfig", "SweepOutput", "expand", "train_runs"]
