#!/usr/bin/env bash
# The three tasks' result sweeps on one GPU, as one prepared command.
#
#     bash experiments/gpu_results.sh sbn cae      # or: dlgn
#
# The data sets are read from the git-ignored .device_data/ (same layout as a data folder:
# mnist/, fashion_mnist/, cifar10/), copied there beforehand for a machine without network, e.g.
#     mkdir -p .device_data && cp -r /path/to/data/{fashion_mnist,mnist} .device_data/
# (sbn + cae data are 42 MB, dlgn's CIFAR archive 19 MB: where what travels to the GPU machine
# is limited, run dlgn on its own).
# Writes ONE archive, $OUT/gpu_results.tar.gz, holding results/<task>/ (results.json, PNGs,
# summary.md, timing.json; no checkpoint) and session.log. Each task has its own time limit;
# a task cut off by it keeps its checkpoint on the machine only, so size the limits to fit.
#
# Sizes (each a config value or flag, nothing hidden here):
# - sbn: the paper-scale protocol (10 x 10 grid + 3 x 10 temperatures, 3 seeds, 100 epochs);
# - cae: the 10 x 10 grid + 3 x 10, 3 seeds, 10 epochs (a tenth of the paper-scale length);
# - dlgn: a 6 x 6 grid + 3 x 6 + the softmax relaxation, 1 seed, 4 x 12,000 network, 5,000 steps.
# Not yet run on a GPU: the limits below are estimates, not measurements (assumed: a jit(vmap)
# sbn step at about 290,000 model-steps/s on an H200; cae about 50x more arithmetic per step).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs}"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"
mkdir -p "$OUT" "$WORK/results"
export PYTHONUNBUFFERED=1 DST_DATA_DIR="${DST_DATA_DIR:-$PWD/.device_data}"
export DST_CACHE_DIR="$WORK/cache"
t0=$(date +%s)
note() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$WORK/results/session.log"; }
pack() {
  find "$WORK/results" -name checkpoint -type d -prune -exec rm -rf {} +
  tar czf "$OUT/gpu_results.tar.gz" -C "$WORK" results
}
trap pack EXIT
"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())" >> "$WORK/results/session.log" 2>&1

TAUS6=0.1,0.3,0.7,1.0,2.0,5.0
for task in "$@"; do
  case "$task" in
    sbn)  limit=200; flags=(--seeds 3 --epochs 100 --eval-every 3000) ;;
    cae)  limit=240; flags=(--seeds 3 --epochs 10 --eval-every 1200) ;;
    dlgn) limit=480; flags=(--tau-f $TAUS6 --tau-b $TAUS6 --seeds 1 --max-steps 5000 --eval-every 1000) ;;
    *) note "unknown task $task (choose sbn, cae, dlgn)"; continue ;;
  esac
  timeout "$limit" "$PY" -m experiments.run "$task" --out "$WORK/results/$task" --no-progress \
    "${flags[@]}" > "$WORK/results/$task.log" 2>&1
  note "$task: exit $? (limit ${limit} s)"
done
