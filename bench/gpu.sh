#!/usr/bin/env bash
# The deploy benchmarks on an NVIDIA GPU, as they are: ONNX Runtime's CUDA execution provider (the package
# Microsoft.ML.OnnxRuntime.Gpu.Linux 1.31.0 instead of the CPU one, chosen by -p:OnnxRuntimeGpu=true), BERT-base
# fp32 at batch 32 × 128 and 1 × 32 (Bert4Sharp's export vs the PyTorch export, int8 beside), GPT-2-small decoding
# through the exported cache. Needs CUDA 13 + cuDNN 9 libraries on the loader path (ONNX Runtime 1.31's CUDA build
# opens libcublasLt.so.13; the nvidia-* wheels of a CUDA 13 PyTorch are found below), NuGet access for the GPU
# package, and python3-torch for the peer export (skipped with a message without it). Not run in CI.
#   bash bench/gpu.sh            # writes bench-gpu.log
set -euo pipefail
cd "$(dirname "$0")/.."
if python3 -c "import nvidia" 2>/dev/null; then            # CUDA libraries from pip wheels (PyTorch's dependencies)
  nv=$(python3 -c "import nvidia, os; print(list(nvidia.__path__)[0])")
  LD_LIBRARY_PATH="$(find "$nv" -type d -name lib | tr '\n' ':')${LD_LIBRARY_PATH:-}"
  export LD_LIBRARY_PATH
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee bench-gpu.log
run() { dotnet run -c Release -p:OnnxRuntimeGpu=true --project bench/Bert4Sharp.Bench -- "$@" 2>&1 | tee -a bench-gpu.log; }
run deploy 10 --cuda
run deploy decode 3 --cuda
