#!/usr/bin/env bash
# The pretrained column of docs/tasks.md: pretrains the 4 × 256 RoFormerV2 with MLM for a fixed number of steps on text
# no CLUE task holds out (recipes/pretrain-roformer-v2-clue.json), then fine-tunes every task from it for exactly the
# steps its from-scratch run made (runs/clue/<task>/result.json of bench/scripts/clue_table.sh, listed below), at the
# from-scratch learning rate: only the starting weights differ. Steps, not minutes, so a busy machine changes only time.
#   bash bench/scripts/clue_pretrained.sh            # PRETRAIN_STEPS (1400 ≈ 30 idle minutes), OUT (runs/clue-pre)
set -euo pipefail
cd "$(dirname "$0")/../.."
PRETRAIN_STEPS=${PRETRAIN_STEPS:-1400}
OUT=${OUT:-runs/clue-pre}
dotnet build -c Release src/Bert4Sharp.Cli -v q -nologo > /dev/null
BIN=$(mktemp -d)                      # a copy of the binaries: rebuilding the source during the run changes nothing here
cp -r src/Bert4Sharp.Cli/bin/Release/net10.0/. "$BIN"
export B4S="dotnet $BIN/b4s.dll"
if [ ! -f runs/pretrain-clue/model/config.json ]; then
  $B4S pretrain recipes/pretrain-roformer-v2-clue.json --max-steps "$PRETRAIN_STEPS" --minutes 600 > runs/pretrain-clue.log 2>&1
fi
tail -3 runs/pretrain-clue.log
# task:minutes-cap:flags — the step counts of the from-scratch table
OUT=$OUT B4S="$B4S" EXTRA="--model runs/pretrain-clue/model --learning-rate 3e-4" TASKS="afqmc:60:--max-steps,226 tnews:60:--max-steps,385 \
iflytek:60:--max-steps,124 ocnli:60:--max-steps,323 cmnli:60:--max-steps,205 csl:60:--max-steps,17 \
cluewsc2020:60:--max-steps,54 cluener:60:--max-steps,802 cmrc2018:60:--max-steps,187,--eval-every,100000 \
c3:60:--max-steps,222,--max-length,128,--eval-every,100000 chid:60:--max-steps,29 duie:60:--max-steps,126 duee:60:--max-steps,27" \
  bash bench/scripts/clue_table.sh
