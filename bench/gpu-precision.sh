#!/usr/bin/env bash
# fp32 vs bf16 vs fp16 (dynamic loss scaling) training and inference on an NVIDIA GPU through TorchSharp, as it is:
# `bench -- precision --cuda` (RoFormerV2 4 × 256, batch 32 × 64, 300 interleaved steps): step-time ratios and whether
# each 16-bit loss curve matches fp32's (|Δ mean loss of the last 10 steps| ≤ 0.05 + 2 %).
# TorchSharp-cuda-linux is not on the NuGet copy, so the CUDA libtorch comes from the machine's PyTorch wheel: TorchSharp
# 0.107 is built against libtorch 2.10; PyTorch 2.11.0+cu130's libtorch worked on an H200 (docs/training.md), another version
# may fail to load (the bench then says so and exits 2).
# Not run in CI.   bash bench/gpu-precision.sh     # writes bench-gpu-precision.log
set -euo pipefail
cd "$(dirname "$0")/.."
log=bench-gpu-precision.log
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv | tee "$log"
if lib=$(python3 -c "import torch, os; print(os.path.join(torch.__path__[0], 'lib'))" 2>/dev/null); then
  echo "PyTorch $(python3 -c 'import torch; print(torch.__version__)') CUDA libtorch in $lib (TorchSharp 0.107 expects 2.10)" | tee -a "$log"
  nv=$(python3 -c "import nvidia, os; print(list(nvidia.__path__)[0])" 2>/dev/null || true)
  LD_LIBRARY_PATH="$lib:$( [ -n "$nv" ] && find "$nv" -type d -name lib | tr '\n' ':')${LD_LIBRARY_PATH:-}"
  export LD_LIBRARY_PATH
else
  echo "no PyTorch wheel found: relying on a libtorch 2.10 CUDA build already on LD_LIBRARY_PATH" | tee -a "$log"
fi
dotnet run -c Release --project bench/Bert4Sharp.Bench -- precision --cuda --steps 300 --budget 600 2>&1 | tee -a "$log"
