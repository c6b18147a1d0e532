#!/usr/bin/env bash
# Every benchmark of the three tasks on one GPU, in one command, within 9 minutes
# (the time limits add up to 555 s).
#
# Run from the repository root on the GPU machine (python3 there holds jax, torch, flax, optax):
#     bash benchmarks/gpu_session.sh
# The machine needs no network: difflogic's sdist is fetched beforehand into the ignored
# .device_data/ folder (bash benchmarks/fetch_difflogic.sh) and copied along with the checkout;
# without it the dlgn table reports difflogic as not found and everything else still runs.
#
# Writes ONE archive, $OUT/gpu_bench.tar.gz ($OUT defaults to runs/), holding gpu_bench/:
#   versions.txt           nvidia-smi, Python, jax, torch, nvcc versions
#   {sbn,cae,dlgn}.json    results (python -m benchmarks.report renders them as markdown)
#   {sbn,cae,dlgn}.txt     the printed tables; *.log their progress and errors
#   copies.txt             bytes XLA copies per training step (python -m benchmarks.diagnostics.copies)
#   vmap_overhead.txt      one config jitted alone vs under vmap (benchmarks.diagnostics.vmap_overhead)
#   packed_eval.txt        dlgn's bit-packed evaluation against the float network
#   difflogic_build.log    the CUDA extension build, with the compatibility fix applied
#   session.log            exit status and elapsed time of each step
# Dry run on a CPU (checks the flow, not the numbers):
#     OUT=/tmp/dry PYTHON=.venv/bin/python BENCH_FLAGS="--quick --torch-threads 1" \
#         bash benchmarks/gpu_session.sh
# Each task has its own time limit, so one that hangs cannot eat the others' time, and each
# JSON is rewritten after every comparison, so a task cut off keeps what it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs}"
PY="${PYTHON:-python3}"
RES="$(mktemp -d)/gpu_bench"
mkdir -p "$RES" "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
t0=$(date +%s)
note() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$RES/session.log"; }
pack() { tar czf "$OUT/gpu_bench.tar.gz" -C "$(dirname "$RES")" gpu_bench; }
trap pack EXIT

{
  nvidia-smi
  # One import per line, so a missing package does not hide the others' versions.
  for mod in sys jax jaxlib flax optax chex numpy torch; do
    "$PY" -c "import $mod as m; print('$mod', getattr(m, '__version__', getattr(m, 'version', '')))" 2>&1 | tail -n 1
  done
  "$PY" -c "import jax; print('jax devices', jax.devices())" 2>&1 | tail -n 1
  "$PY" -c "import torch; print('torch cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
    2>&1 | tail -n 1
  nvcc --version
} > "$RES/versions.txt" 2>&1
note "versions written"

# difflogic's CUDA extension builds on the CPU while sbn and cae run on the GPU (nice'd, so the
# dispatch-bound baselines are not starved of a core).
SDIST=$(ls .device_data/difflogic-*.tar.gz 2>/dev/null | head -n 1)
if [[ -n "$SDIST" ]]; then
  nice -n 19 timeout 240 bash benchmarks/build_difflogic.sh "$SDIST" /tmp/difflogic_build \
    > "$RES/difflogic_build.log" 2>&1 &
  build_pid=$!
else
  echo "no .device_data/difflogic-*.tar.gz: difflogic not compared" > "$RES/difflogic_build.log"
  build_pid=
fi

bench() {  # task, time limit in seconds, extra flags
  local task=$1 limit=$2
  shift 2
  # BENCH_FLAGS (e.g. "--quick --torch-threads 1") lets the script be dry-run on a CPU.
  # shellcheck disable=SC2086
  timeout "$limit" "$PY" -m benchmarks.run --task "$task" --json "$RES/$task.json" "$@" \
    ${BENCH_FLAGS:-} > "$RES/$task.txt" 2> "$RES/$task.log"
  note "$task: exit $?"
}

bench sbn 115
bench cae 135
if [[ -n "$build_pid" ]]; then
  wait "$build_pid"
  note "difflogic build: exit $?"
fi
if [[ -f /tmp/difflogic_build/src/difflogic/__init__.py ]]; then
  export DIFFLOGIC_SRC=/tmp/difflogic_build/src
fi
bench dlgn 185
# What XLA makes of the training step on the GPU: bytes copied per step (compiles only) and the
# cost of vmap over one config.
QUICK=()
[[ "${BENCH_FLAGS:-}" == *--quick* ]] && QUICK=(--quick)
timeout 45 "$PY" -m benchmarks.diagnostics.copies "${QUICK[@]}" > "$RES/copies.txt" 2>&1
note "copies: exit $?"
timeout 45 "$PY" -m benchmarks.diagnostics.vmap_overhead --repeats 3 "${QUICK[@]}" > "$RES/vmap_overhead.txt" 2>&1
note "vmap_overhead: exit $?"
# dlgn evaluation of the 10,000 test images: bit-packed against the float network.
PACKED=()
[[ "${BENCH_FLAGS:-}" == *--quick* ]] && PACKED=(--width 1200 --examples 1000)
timeout 30 "$PY" -m benchmarks.packed_eval --repeats 2 "${PACKED[@]}" > "$RES/packed_eval.txt" 2>&1
note "packed_eval: exit $?"
note "done"
