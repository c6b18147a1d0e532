#!/usr/bin/env bash
# Build difflogic's CUDA extension from its PyPI sdist, outside the repository, offline.
#
#   bash benchmarks/build_difflogic.sh SDIST.tar.gz WORKDIR
#
# Leaves WORKDIR/src holding the `difflogic` package and the built `difflogic_cuda*.so`; put
# WORKDIR/src on PYTHONPATH (or DIFFLOGIC_SRC=WORKDIR/src for benchmarks/logic_bench.py).
#
# difflogic 0.1.0 does not compile as published against recent PyTorch (torch 2.11 / CUDA 13):
# its kernels pass `x.type()`, the deprecated DeprecatedTypeProperties, to the AT_DISPATCH_*
# macros, which take an at::ScalarType. The smallest fix, applied to the extracted copy only:
#     AT_DISPATCH_...(x.type(), ...)  ->  AT_DISPATCH_...(x.scalar_type(), ...)
# Only if the build still fails is a second fix applied, to the CUDA check macro:
#     TORCH_CHECK(x.type().is_cuda(), ...)  ->  TORCH_CHECK(x.is_cuda(), ...)
# The log shows the diff of each fix applied. Builds for the local GPU's architecture only
# (TORCH_CUDA_ARCH_LIST, default 9.0 = H100/H200) to keep the build to about a minute.
set -euo pipefail
sdist=${1:?usage: build_difflogic.sh SDIST.tar.gz WORKDIR}
work=${2:?usage: build_difflogic.sh SDIST.tar.gz WORKDIR}
py=$(command -v "${PYTHON:-python3}")
py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"  # absolute, symlinks kept (venvs)
sdist=$(readlink -f "$sdist")

rm -rf "$work"
mkdir -p "$work"
tar xzf "$sdist" -C "$work"
mv "$work"/difflogic-*/ "$work/src"
cd "$work/src"
kernel=difflogic/cuda/difflogic_kernel.cu
cp "$kernel" "$kernel.orig"

# torch.utils.cpp_extension finds the toolkit itself (CUDA_HOME, else nvcc on PATH, else
# /usr/local/cuda); fail early with a clear message where there is none.
if [[ -z "${CUDA_HOME:-}" ]] && ! command -v nvcc > /dev/null; then
  echo "no nvcc on PATH and CUDA_HOME unset: cannot build difflogic's CUDA extension"
  exit 2
fi
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-8}"
echo "nvcc: $(command -v nvcc || echo "\$CUDA_HOME/bin/nvcc"), TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
"$py" -c "import torch, torch.utils.cpp_extension as c; print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'CUDA_HOME', c.CUDA_HOME)"

build() {
  rm -rf build ./difflogic_cuda*.so
  "$py" setup.py build_ext --inplace
}

echo "== fix 1: AT_DISPATCH(x.type()) -> AT_DISPATCH(x.scalar_type())"
sed -i -E '/AT_DISPATCH_/ s/\b([A-Za-z_][A-Za-z_0-9]*)\.type\(\)/\1.scalar_type()/' "$kernel"
diff "$kernel.orig" "$kernel" || true
if ! build; then
  echo "== fix 2: TORCH_CHECK(x.type().is_cuda()) -> TORCH_CHECK(x.is_cuda())"
  cp "$kernel" "$kernel.fix1"
  sed -i -E 's/\b([A-Za-z_][A-Za-z_0-9]*)\.type\(\)\.is_cuda\(\)/\1.is_cuda()/' "$kernel"
  diff "$kernel.fix1" "$kernel" || true
  build
fi
"$py" -c "import torch, difflogic_cuda; print('built', difflogic_cuda.__file__)"
