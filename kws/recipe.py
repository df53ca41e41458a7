"""What the recipes (demo.py, real.py) share: run the pipeline's scripts as a user would, read
the figures they write as JSON, and read what train.py left in checkpoints/<exp>/.
"""

import json
import os
import subprocess

from kws.common import UserError, require_file


def run_step(title, cmd):
    """Run one pipeline script as a subprocess (so each step is exactly what a user would type).

    Prints the command; a failing step raises UserError naming it."""
    print(f"\n=== {title}\n$ {' '.join(cmd)}", flush=True)
    code = subprocess.run(cmd).returncode
    if code != 0:
        raise UserError(f"step '{title}' failed with exit code {code}")


def run_scored_step(title, cmd, metrics_path):
    """run_step with `--metrics_json metrics_path`; returns the figures the script wrote."""
    if os.path.exists(metrics_path):
        os.remove(metrics_path)  # a stale file must not pass for this run's figures
    run_step(title, cmd + ["--metrics_json", metrics_path])
    require_file(metrics_path, f"figures of step '{title}'")
    with open(metrics_path, encoding="utf-8") as f:
        return json.load(f)


def best_checkpoint(exp_dir):
    """Path of the checkpoint with the best validation accuracy of a finished or running run
    (last.keras for a final fit, which has nothing to select on)."""
    return os.path.join(exp_dir, read_state(exp_dir)["best_checkpoint"])


def read_state(exp_dir):
    state_path = os.path.join(exp_dir, "state.json")
    require_file(state_path, "training state (has train.py run?)")
    with open(state_path, encoding="utf-8") as f:
        return json.load(f)


def training_record(exp_dir):
    """Epochs, which budget ended the run and the time it took, from train.py's state.json."""
    state = read_state(exp_dir)
    used = state.get("time_used") or {}
    return {"epochs": state["epoch"], "stopped_by": state.get("stopped_by"),
            "train_wall_minutes": round(used.get("wall_seconds", 0) / 60, 1),
            "train_cpu_minutes": round(used.get("cpu_seconds", 0) / 60, 1)}
