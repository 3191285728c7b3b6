#!/usr/bin/env bash
# Builds the HiLight solver run from a snapshot of the tree (src/): stage-1 copy phase, traces, SFT.
set -euo pipefail
RUN=$HOME/.cache/gr2/runs/ml-100k-hilight
cd "$RUN/src"
export OMP_WAIT_POLICY=PASSIVE
for stage in midtrain traces sft; do
  start=$(date +%s)
  nice -n 10 /work/main/.venv/bin/python - "$stage" <<'PY'
import sys
from pathlib import Path
import gr2
assert gr2.__file__.startswith(str(Path.cwd())), gr2.__file__
from gr2.cli.run_options import make_pipeline
# smaller than the recipe so the solver run fits beside the Games benchmark on 2 cores:
# copy phase 250 steps of 32 (recipe 350), SFT 1 epoch (recipe 2)
SETS = ["midtrain.phases=[{name: copy, tasks: {copy_sids: 1}, num_examples: 8000, training: {batch_size: 32, "
        "learning_rate: 0.001, lr_scheduler: constant_with_warmup, logging_steps: 25}}]", "sft.training.epochs=1"]
make_pipeline(Path("configs/ml-100k-tiny.yaml"), Path.home() / ".cache/gr2/runs/ml-100k-hilight", SETS).run([sys.argv[1]])
PY
  echo "== $stage: $(( $(date +%s) - start )) s"
done
