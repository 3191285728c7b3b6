"""Copy a benchmark run's generated artifacts into the repository, so its figures can be checked against files.

    python scripts/collect_results.py RUN OUT      e.g. ~/.cache/gr2/runs/games-gemma-270m results/games-gemma-270m

OUT gets the recipe, stage timings, the commit(s) the stages ran at, every eval report (JSON / Markdown / PNG,
the RL reward-hacking curves among them) and costs.json: each training stage's steps, seconds per step and
final loss, read from the stages' metrics.json. Models and checkpoints stay in the run directory.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

STAGES = {"stage1": "stage1", "sft": "sft", "rl-naive": "rl-naive", "rl-conditional": "rl-conditional"}


def stage_costs(run: Path) -> dict[str, dict]:
    """Steps, seconds per step and final loss of each training stage that finished."""
    costs = {}
    for name, folder in STAGES.items():
        metrics_file = run / folder / "metrics.json"
        if not metrics_file.is_file():
            continue
        metrics = json.loads(metrics_file.read_text())
        timing = metrics.get("step_seconds") or next(
            (p["step_seconds"] for p in metrics.get("phases", []) if p.get("step_seconds")), None)
        costs[name] = {"steps": metrics.get("steps"), "train_loss": metrics.get("train_loss"),
                       "step_seconds": timing}
    return costs


def collect(run: Path, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in ("recipe.yaml", "timings.json", "COMMIT", "manifest.json"):
        if (run / name).is_file():
            copied.append(Path(shutil.copy2(run / name, out / name)))
    if (run / "eval").is_dir():
        (out / "eval").mkdir(exist_ok=True)
        for path in sorted((run / "eval").iterdir()):
            if path.suffix in (".json", ".md", ".png"):
                copied.append(Path(shutil.copy2(path, out / "eval" / path.name)))
    for name in ("naive", "conditional"):  # each RL run's own curves
        for path in sorted((run / f"rl-{name}").glob("curve-*.png")):
            (out / f"rl-{name}").mkdir(exist_ok=True)
            copied.append(Path(shutil.copy2(path, out / f"rl-{name}" / path.name)))
    costs = out / "costs.json"
    costs.write_text(json.dumps(stage_costs(run), indent=2) + "\n")
    return [*copied, costs]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    for path in collect(Path(sys.argv[1]).expanduser(), Path(sys.argv[2])):
        print(path)
