"""Every model of the zoo with the real recipe's edge config and the same CPU budget (what
`real.py --zoo_cpu_minutes` runs): params, MACs, training examples/s, validation accuracy.

    compare_zoo(sys.executable, data_args, cpu_minutes=30, out_dir="data/real")
"""

import csv
import json
import os

from kws.checkpoint import model_stats
from kws.common import atomic_write_text
from kws.real import RECIPES, train_command
from kws.recipe import run_step
from kws.zoo import MODELS, build_model


def compare_zoo(py, data_args, cpu_minutes, out_dir):
    """Every model, the same recipe and CPU budget: params, MACs, examples/s, val accuracy."""
    rows = []
    for name in MODELS:
        raw_audio = name.startswith("seed")  # SpecAugment needs a spectrogram
        classes = 12
        exp = f"zoo_{name}"
        cmd = train_command(py, RECIPES["edge"], data_args, exp)
        # the table compares validation accuracy, with the schedule it was first measured with
        cmd += ["--no-train_on_validation", "--lr_schedule", "plateau"]
        run_step(f"train {name} for {cpu_minutes:g} CPU minutes", cmd + [
            "--model", name, "--model_options", "{}" if raw_audio else '{"spec_augment": true}',
            "--max_cpu_minutes", str(cpu_minutes)])
        with open(os.path.join("checkpoints", exp, "state.json"), encoding="utf-8") as f:
            state = json.load(f)
        with open(os.path.join("logs", exp, "log.csv"), encoding="utf-8") as f:
            speeds = [float(r["examples_per_second"]) for r in csv.DictReader(f)
                      if r.get("examples_per_second")]
        stats = model_stats(build_model(name, classes))
        rows.append({"model": name, "params": stats["params"], "macs": stats["macs"],
                     "train_examples_per_s": round(sum(speeds) / max(len(speeds), 1)),
                     "epochs": state["epoch"],
                     "best_val_accuracy": round(state["best_val_accuracy"], 4)})
    lines = ["| model | params | MACs/clip | training examples/s | epochs | best val accuracy |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['params']:,} | {r['macs'] / 1e6:.1f} M | "
              f"{r['train_examples_per_s']} | {r['epochs']} | {r['best_val_accuracy']:.4f} |"
              for r in rows]
    table = "\n".join(lines)
    atomic_write_text(os.path.join(out_dir, "zoo.json"), json.dumps(rows, indent=1))
    atomic_write_text(os.path.join(out_dir, "zoo.md"), table + "\n")
    print(f"\n=== every model, {cpu_minutes:g} CPU minutes each\n{table}")
    return 0
