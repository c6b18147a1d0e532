#!/usr/bin/env bash
# Fetch difflogic's sdist (PyPI difflogic==0.1.0) into the git-ignored .device_data/ folder,
# from where benchmarks/gpu_session.sh builds it on the GPU machine (which has no network) and
# benchmarks/logic_bench.py imports its pure-PyTorch implementation on a CPU.
#
#     bash benchmarks/fetch_difflogic.sh            # run from the repository root
#
# `pip download` prepares the package's metadata, which runs its setup.py, which builds a
# torch CUDAExtension and fails where torch has no CUDA ("CUDA_HOME environment variable is not
# set"). Metadata needs no compiler, so for this one pip call a sitecustomize module stands
# CUDAExtension in by a CppExtension; nothing is compiled and nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
cat > "$shim/sitecustomize.py" <<'PY'
import torch.utils.cpp_extension as ce

def _metadata_only(name, sources, *args, **kwargs):
    kwargs.pop("extra_compile_args", None)
    return ce.CppExtension(name, sources, *args, **kwargs)

ce.CUDAExtension = _metadata_only
PY
mkdir -p .device_data
PYTHONPATH="$shim" "$py" -m pip download --no-deps --no-build-isolation --dest .device_data \
  difflogic==0.1.0
sha256sum .device_data/difflogic-0.1.0.tar.gz
