#!/usr/bin/env bash
# HiLight on this run from a snapshot of the committed tree (src-hilight/): `gr2 hilight CMD` for each CMD given,
# then the timings. Usage: hilight-launch.sh train eval [-- --set key=value ...]
set -euo pipefail
RUN=$HOME/.cache/gr2/runs/ml-100k-hilight
SNAP=$RUN/src-hilight
rm -rf "$SNAP" && mkdir -p "$SNAP"
(cd /work/main && git archive HEAD) | tar -x -C "$SNAP"
echo "$(date -u +%FT%TZ) hilight $* commit: $(cd /work/main && git rev-parse HEAD)" >> "$RUN/COMMIT"
cd "$SNAP"
export OMP_WAIT_POLICY=PASSIVE
# a file, not stdin: vLLM's engine process is spawned and re-imports the main module
cat > hilight_run.py <<'PY'
import json, sys, time
from pathlib import Path
import gr2
assert gr2.__file__.startswith(str(Path.cwd())), gr2.__file__
from gr2.cli import app


def main() -> None:
    run = Path.home() / ".cache/gr2/runs/ml-100k-hilight"
    args = sys.argv[1:]
    extra = args[args.index("--") + 1:] if "--" in args else []
    commands = args[: args.index("--")] if "--" in args else args
    timings_path = run / "hilight" / "timings.json"
    for command in commands:
        start = time.perf_counter()
        try:
            app([ "hilight", command, "--recipe", "configs/ml-100k-tiny.yaml", "--run", str(run), *extra],
                standalone_mode=False)
        except SystemExit as exc:
            if exc.code:
                raise
        seconds = round(time.perf_counter() - start, 1)
        timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
        timings[command] = seconds
        timings_path.parent.mkdir(parents=True, exist_ok=True)
        timings_path.write_text(json.dumps(timings, indent=2))
        print(f"== hilight {command}: {seconds} s", flush=True)


if __name__ == "__main__":
    main()
PY
exec nice -n 10 /work/main/.venv/bin/python hilight_run.py "$@"
