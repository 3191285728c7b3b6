#!/usr/bin/env bash
# Run stages of a benchmark recipe in the background-safe way: from a snapshot of the working tree, so edits
# made while it runs (hours) do not leak into its later stages. Resumable: finished stages are skipped and
# training stages continue from their newest checkpoint.
#   scripts/bench_run.sh configs/games-cpu.yaml ~/.cache/gr2/runs/games-tiny midtrain stage1-eval traces sft rl eval
# Stages: those of `gr2 quickstart` (tokenizer ranker pretrain midtrain traces sft rl eval) plus stage1-eval
# (gr2 eval stage1), rl-conditional / rl-naive (one reward's RL) and hilight-train / hilight-eval (`gr2 hilight`,
# with BENCH_HILIGHT_ARGS, e.g. "--solver-model rl-conditional --methods none,random,hilight" for transfer).
# BENCH_SET="eval.splits=[test] ..." overrides recipe fields as --set does (space-separated). RUN/COMMIT records
# the commit (and uncommitted files) each launch ran at.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
RECIPE=$1 RUN=$2
shift 2
mkdir -p "$RUN"
SNAP=$RUN/src
rm -rf "$SNAP.new" && mkdir -p "$SNAP.new"
(cd "$REPO" && git ls-files -co --exclude-standard | tar -cf - -T -) | tar -xf - -C "$SNAP.new"
(cd "$REPO" && git rev-parse HEAD && git status --short) > "$SNAP.new/COMMIT"
rm -rf "$SNAP" && mv "$SNAP.new" "$SNAP"
echo "$(date -u +%FT%TZ) stages: $* ${BENCH_SET:+set: $BENCH_SET } commit: $(head -1 "$SNAP/COMMIT") (+ uncommitted: $(tail -n +2 "$SNAP/COMMIT" | wc -l) files)" >> "$RUN/COMMIT"
cd "$SNAP"
export OMP_WAIT_POLICY=PASSIVE
# the program is a file, not stdin: vLLM's engine processes are spawned and re-import the main module by its path
cat > bench_main.py <<'PY'
import os
import sys
import time
from pathlib import Path


def hilight(command: str, recipe: Path, run: Path, sets: list[str]) -> None:
    """`gr2 hilight COMMAND` (train, eval) with BENCH_HILIGHT_ARGS (e.g. --solver-model rl-conditional); its wall
    time goes to RUN/hilight/timings.json under the command (and its arguments)."""
    import json

    from gr2.cli import app

    extra = os.environ.get("BENCH_HILIGHT_ARGS", "").split()
    start = time.perf_counter()
    try:
        app(["hilight", command, "--recipe", str(recipe), "--run", str(run),
             *[arg for s in sets for arg in ("--set", s)], *extra], standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
    path = run / "hilight" / "timings.json"
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings[" ".join([command, *extra])] = round(time.perf_counter() - start, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timings, indent=2))


def main() -> None:
    import gr2

    assert gr2.__file__.startswith(str(Path.cwd())), f"not running from the snapshot: {gr2.__file__}"
    from gr2.cli.run_options import make_pipeline

    recipe, run, stages = Path(sys.argv[1]), Path(sys.argv[2]).expanduser(), sys.argv[3:]
    sets = os.environ.get("BENCH_SET", "").split()
    pipeline = make_pipeline(recipe if recipe.is_absolute() else Path.cwd() / recipe, run, sets)
    for stage in stages:
        start = time.perf_counter()
        if stage == "stage1-eval":
            pipeline.run_stage1_rerank_eval()
            pipeline.run_stage1_eval()
        elif stage.startswith("rl-"):
            pipeline.run_rl([stage.removeprefix("rl-")])
        elif stage.startswith("hilight-"):
            hilight(stage.removeprefix("hilight-"), recipe, run, sets)
        else:
            pipeline.run([stage])
        print(f"== {stage}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":  # vLLM spawns engine processes that import this module
    main()
PY
exec "$REPO/.venv/bin/python" bench_main.py "$RECIPE" "$RUN" "$@"
