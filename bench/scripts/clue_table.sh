#!/usr/bin/env bash
# Trains every `b4s clue` task from scratch, one after another (so each has the CPU to itself), predicts its default
# input from the saved model, and prints the markdown table of docs/tasks.md from each run's result.json.
#   bash bench/scripts/clue_table.sh                 # all tasks with the budgets below
#   TASKS="afqmc:4 csl:1 c3:4:--max-length,128" bash bench/scripts/clue_table.sh   (task:minutes[:flags, commas for spaces])
# Environment: OUT (runs/clue), DATA (../shared/data), EXTRA (more `b4s clue train` flags for every task), B4S (a
# command to run instead of building src/Bert4Sharp.Cli: a copy of the binaries keeps a long run safe from rebuilds).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/clue}
DATA=${DATA:-../shared/data}
TASKS=${TASKS:-"afqmc:3 tnews:3 iflytek:2 ocnli:3 cmnli:3 csl:1 cluewsc2020:1 cluener:8 cmrc2018:4:--eval-every,100000 c3:4:--max-length,128,--eval-every,100000 chid:1 duie:3 duee:3"}
if [ -z "${B4S:-}" ]; then
  dotnet build -c Release src/Bert4Sharp.Cli -v q -nologo > /dev/null
  B4S="dotnet src/Bert4Sharp.Cli/bin/Release/net10.0/b4s.dll"
fi
mkdir -p "$OUT"
for spec in $TASKS; do
  IFS=: read -r task minutes flags <<< "$spec"
  flags=${flags//,/ }
  echo "== $task ($minutes min)"
  $B4S clue train "$task" --data "$DATA" --minutes "$minutes" --output "$OUT/$task" --overwrite $flags ${EXTRA:-} > "$OUT/$task.log" 2>&1 \
    || { echo "$task failed: see $OUT/$task.log"; tail -5 "$OUT/$task.log"; continue; }
  tail -2 "$OUT/$task.log"
  $B4S clue predict "$task" --data "$DATA" --model "$OUT/$task/model" --output "$OUT/$task/predictions.json" >> "$OUT/$task.log" 2>&1 \
    || echo "$task predict failed: see $OUT/$task.log"
done
python3 - "$OUT" $TASKS <<'PY'
import json, os, sys
out = sys.argv[1]
print("| task | dev metrics | steps | training min | command |")
print("|---|---|---|---|---|")
for spec in sys.argv[2:]:
    task = spec.split(":")[0]
    path = os.path.join(out, task, "result.json")
    if not os.path.exists(path):
        print(f"| {task} | (no result) | | | |"); continue
    r = json.load(open(path))
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in r["metrics"].items())   # as the run reports them (CMRC EM/F1 in percent, the others fractions)
    print(f"| {task} | {metrics} | {r['steps']} | {r['training_minutes']:.1f} | `{r['command']}` |")
PY
