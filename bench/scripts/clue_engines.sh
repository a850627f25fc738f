#!/usr/bin/env bash
# Task models on both engines: for each trained CLUE model (runs/clue/<task>/model, e.g. from clue_table.sh), exports the
# encoder to ONNX in fp32 and int8 (b4s export onnx keeps task.json and the head), predicts the task's default input
# (test split when staged, else dev) with the TorchSharp engine, ONNX Runtime fp32 and ONNX Runtime int8, one after
# another on an otherwise idle machine, and prints records/s (model loading included) and how many output lines equal
# the TorchSharp engine's.
#   bash bench/scripts/clue_engines.sh                       # the tasks below
#   TASKS="tnews cluener" THREADS=2 bash bench/scripts/clue_engines.sh
# Environment: OUT (runs/clue), DATA (../shared/data), THREADS (2), B4S (a command instead of building src/Bert4Sharp.Cli).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/clue}
DATA=${DATA:-../shared/data}
THREADS=${THREADS:-2}
TASKS=${TASKS:-"tnews cluener cmrc2018 c3 duie"}
if [ -z "${B4S:-}" ]; then
  dotnet build -c Release src/Bert4Sharp.Cli -v q -nologo > /dev/null
  B4S="dotnet src/Bert4Sharp.Cli/bin/Release/net10.0/b4s.dll"
fi
echo "| task | records | torch /s | ORT fp32 /s | ORT int8 /s | fp32 lines equal to torch | int8 lines equal to torch |"
echo "|---|---|---|---|---|---|---|"
for task in $TASKS; do
  model="$OUT/$task/model"
  [ -f "$model/task.json" ] || { echo "| $task | (no model in $model) | | | | | |"; continue; }
  work="$OUT/$task/engines"
  mkdir -p "$work"
  $B4S export onnx --model "$model" --output "$work/fp32" --overwrite > "$work/export-fp32.log" 2>&1
  $B4S export onnx --model "$model" --output "$work/int8" --int8 --overwrite --no-verify > "$work/export-int8.log" 2>&1
  rate() { grep -oE '[0-9.]+/s, model loading' "$1" | head -1 | cut -d/ -f1; }
  $B4S clue predict "$task" --data "$DATA" --model "$model" --output "$work/torch.json" --threads "$THREADS" > "$work/torch.log" 2>&1
  $B4S clue predict "$task" --data "$DATA" --model "$work/fp32" --engine onnx --output "$work/fp32.json" --threads "$THREADS" > "$work/fp32.log" 2>&1
  $B4S clue predict "$task" --data "$DATA" --model "$work/int8" --engine onnx --output "$work/int8.json" --threads "$THREADS" > "$work/int8.log" 2>&1
  records=$(grep -oE '^[0-9,]+ records in' "$work/torch.log" | cut -d' ' -f1)
  lines=$(wc -l < "$work/torch.json")
  same() { paste -d '\t' "$work/torch.json" "$1" | awk -F '\t' '$1 == $2' | wc -l; }
  echo "| $task | $records | $(rate "$work/torch.log") | $(rate "$work/fp32.log") | $(rate "$work/int8.log") | $(same "$work/fp32.json") of $lines | $(same "$work/int8.json") of $lines |"
done
