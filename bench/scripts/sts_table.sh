#!/usr/bin/env bash
# The similarity table of docs/embeddings.md: the project's own pretrained RoFormerV2 (bench/scripts/clue_pretrained.sh
# makes runs/pretrain-clue/model) evaluated with three poolings, with and without BERT-whitening, and WRD; then the same
# encoder trained with unsupervised SimCSE, supervised SimCSE and CoSENT, each evaluated the same way.
#   bash bench/scripts/sts_table.sh        # MODEL (runs/pretrain-clue/model), OUT (runs/sts), LIMIT (2000 pairs a task)
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${MODEL:-runs/pretrain-clue/model}
OUT=${OUT:-runs/sts}
LIMIT=${LIMIT:-2000}
if [ -z "${B4S:-}" ]; then
  dotnet build -c Release src/Bert4Sharp.Cli -v q -nologo > /dev/null
  BIN=$(mktemp -d); cp -r src/Bert4Sharp.Cli/bin/Release/net10.0/. "$BIN"; B4S="dotnet $BIN/b4s.dll"
fi
mkdir -p "$OUT"
$B4S sts --model "$MODEL" --limit "$LIMIT" --whitening 0,256,128 --wrd --label pretrained --json "$OUT/pretrained.json" | tee "$OUT/pretrained.log"
train() {  # name objective flags…
  local name=$1 objective=$2; shift 2
  $B4S sts train --objective "$objective" --model "$MODEL" --output "$OUT/$name" --overwrite "$@" > "$OUT/$name-train.log" 2>&1
  tail -1 "$OUT/$name-train.log"
  $B4S sts --model "$OUT/$name/model" --limit "$LIMIT" --whitening 0,256 --label "$name" --json "$OUT/$name.json" | tee "$OUT/$name.log"
}
train simcse simcse --max-steps 300
train sup-simcse sup-simcse --max-steps 300
train cosent cosent --epochs 3
