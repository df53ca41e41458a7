"""The real-speech recipe (`make real`): train on real speakers, score speakers training never saw.

    python real.py --shared ../shared/data

Speakers of the Speech Commands v0.02 test clips in ../shared/data are split by a salted speaker
hash into training, validation and held-out testing. Training adds, as train-only data, the v0.01
sample, the spoken digits (as unknown words), synthetic espeak-ng speech and the real background
noise; no held-out speaker's clip is ever trained on. Each model trains within a time budget,
is scored on the held-out speakers with test-time augmentation, and the edge model is frozen to
tf_files/real/ (model.pb, model.tflite, model_int8.tflite, labels.txt) and scored again as int8
through make_submission_on_rpi.py. Results: data/real/results.json and a table on stdout.
"""

import argparse
import json
import os
import re
import shutil
import sys

from common import UserError, atomic_write_text, require_dir, run_cli, run_step

DIGITS = "zero one two three four five six seven eight nine".split()
SPLIT = ["--split_salt", "real", "--validation_percentage", "15", "--testing_percentage", "25"]
MODELS = {  # name -> (config, share of the training budget)
    "edge": ("experiments/real_edge.json", 0.60),
    "seed195": ("experiments/real_seed195.json", 0.27),
    "tutorial_conv": ("experiments/real_tutorial_conv.json", 0.13),
}
TTA = ["--tta_shift=-1600,1600", "--tta_gain", "1.25"]


def stage_digits(shared, out):
    """Free Spoken Digits as `<word>/<speaker>_nohash_<n>.wav` links, so they read as words."""
    source = require_dir(os.path.join(shared, "free_spoken_digits", "recordings"),
                         "free spoken digits")
    for name in sorted(os.listdir(source)):
        match = re.fullmatch(r"(\d)_([a-z]+)_(\d+)\.wav", name)
        if not match:
            continue
        digit, speaker, n = match.groups()
        link = os.path.join(out, DIGITS[int(digit)], f"{speaker}_nohash_{n}.wav")
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(source, name)), link)
    return out


def stage_held_out(data_args, out):
    """The held-out speakers' clips as a labelled folder `<label>/<file>` (links), for scoring."""
    from input_data import AudioProcessor

    processor = AudioProcessor(data_args["data_dir"], silence_percentage=0,
                               unknown_percentage=-1, split_salt="real",
                               validation_percentage=15, testing_percentage=25)
    if os.path.isdir(out):
        shutil.rmtree(out)
    for item in processor.data_index["testing"]:
        link = os.path.join(out, item["label"], os.path.basename(item["file"]))
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.abspath(item["file"]), link)
    speakers = processor.speakers("testing")
    print(f"held out: {processor.set_size('testing')} clips of {len(speakers)} speakers")
    return out, len(speakers), processor.set_size("testing")


def accuracy_from(output):
    match = re.search(r"accuracy (\d\.\d+)", output)
    return float(match.group(1)) if match else None


def train_command(py, config, data_args, budget, exp_name):
    cmd = [py, "train.py", "--config", config, "--exp_name", exp_name,
           "--data_dir", data_args["data_dir"], *SPLIT, "--max_minutes", f"{budget:.1f}",
           "--checkpoint_dir", "checkpoints", "--log_dir", "logs", "--resume"]
    for d in data_args["train_only"]:
        cmd += ["--train_only_dir", d]
    return cmd + ["--noise_dir", data_args["noise"]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default="../shared/data", help="folder of the real clips")
    parser.add_argument("--out_dir", default="data/real", help="staging and results")
    parser.add_argument("--models", default="edge,seed195,tutorial_conv",
                        help=f"comma-separated, from {','.join(MODELS)}; edge is frozen")
    parser.add_argument("--minutes", type=float, default=45.0,
                        help="training budget shared by the models")
    parser.add_argument("--zoo_cpu_minutes", type=float, default=0,
                        help="instead of the recipe: train every model of the zoo with the edge "
                             "recipe for this much CPU time each and tabulate validation accuracy")
    parser.add_argument("--synthetic_dir", default="data/synthetic",
                        help="synthetic speech (made with make_synthetic_data.py if missing)")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown or not models:
        raise UserError(f"unknown models {unknown}; choose from {sorted(MODELS)}")
    if args.minutes <= 0:
        raise UserError("--minutes must be > 0")
    py = sys.executable
    shared = require_dir(args.shared, "shared data folder")
    data_args = {
        "data_dir": require_dir(os.path.join(shared, "speech_commands_test_v0.02_dev"),
                                "v0.02 test clips"),
        "noise": require_dir(os.path.join(shared, "background_noise"), "background noise"),
        "train_only": [require_dir(os.path.join(shared, "speech_commands_v0.01_sample"),
                                   "v0.01 sample"),
                       stage_digits(shared, os.path.join(args.out_dir, "digits")),
                       os.path.join(args.synthetic_dir, "train", "audio")],
    }
    if not os.path.isdir(data_args["train_only"][-1]):
        run_step("synthetic speech", [py, "make_synthetic_data.py", "--out_dir",
                                      args.synthetic_dir])
    if args.zoo_cpu_minutes > 0:
        return compare_zoo(py, data_args, args.zoo_cpu_minutes, args.out_dir)
    held_out, n_speakers, n_clips = stage_held_out(data_args, os.path.join(args.out_dir,
                                                                          "held_out"))
    share = sum(MODELS[m][1] for m in models)
    results = {"held_out_speakers": n_speakers, "held_out_clips": n_clips, "models": {}}
    from train import best_checkpoint

    for name in models:
        config, part = MODELS[name]
        exp = f"real_{name}"
        run_step(f"train {name}", train_command(py, config, data_args,
                                                args.minutes * part / share, exp))
        checkpoint = best_checkpoint(os.path.join("checkpoints", exp))
        out = run_step(f"score {name} on held-out speakers (TTA)", [
            py, "make_submission.py", "--checkpoint", checkpoint, "--test_data", held_out,
            "--submission_fn", os.path.join(args.out_dir, name, "held_out.csv"), *TTA,
            "--fresh"], capture=True)
        results["models"][name] = {"checkpoint": checkpoint, "accuracy_tta": accuracy_from(out)}
    if "edge" in models:
        results["edge_int8"] = freeze_and_score_edge(py, results["models"]["edge"]["checkpoint"],
                                                     data_args, held_out, args.out_dir)
    path = os.path.join(args.out_dir, "results.json")
    atomic_write_text(path, json.dumps(results, indent=1))
    print_summary(results, path)
    return 0


def freeze_and_score_edge(py, checkpoint, data_args, held_out, out_dir):
    os.makedirs("tf_files/real", exist_ok=True)
    run_step("freeze the edge model", [
        py, "freeze_graph.py", "--checkpoint_path", checkpoint, "--frozen_path",
        "tf_files/real/model.pb", "--output_labels", "tf_files/real/labels.txt",
        "--calibration_data", data_args["data_dir"], "--num_calibration", "300"])
    result = {}
    for kind, model_file in (("float", "model.tflite"), ("int8", "model_int8.tflite")):
        out = run_step(f"score the {kind} .tflite one clip at a time", [
            py, "make_submission_on_rpi.py", "--frozen_graph", f"tf_files/real/{model_file}",
            "--test_data", held_out, "--labels", "tf_files/real/labels.txt",
            "--submission_fn", os.path.join(out_dir, "edge", f"held_out_{kind}.csv")],
            capture=True)
        latency = re.search(r"median (\d+\.\d+) ms", out)
        result[kind] = {"accuracy": accuracy_from(out),
                        "latency_ms": float(latency.group(1)) if latency else None,
                        "size_bytes": os.path.getsize(f"tf_files/real/{model_file}")}
    return result


def compare_zoo(py, data_args, cpu_minutes, out_dir):
    """Every model, the same recipe and CPU budget: params, MACs, examples/s, val accuracy."""
    import csv

    import model as zoo

    rows = []
    for name in zoo.MODELS:
        raw_audio = name.startswith("seed")  # SpecAugment needs a spectrogram
        classes = 12
        exp = f"zoo_{name}"
        cmd = train_command(py, MODELS["edge"][0], data_args, 0, exp)
        cmd[cmd.index("--max_minutes") + 1] = "0"
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
        stats = zoo.model_stats(zoo.build_model(name, classes))
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


def print_summary(results, path):
    print(f"\n=== results on {results['held_out_clips']} clips of "
          f"{results['held_out_speakers']} held-out speakers")
    for name, r in results["models"].items():
        print(f"{name:<14} accuracy with TTA {r['accuracy_tta']}")
    for kind, r in results.get("edge_int8", {}).items():
        print(f"edge .tflite {kind:<6} accuracy {r['accuracy']} (no TTA), "
              f"{r['latency_ms']} ms/clip, {r['size_bytes']:,} bytes")
    print(f"results: {path}; frozen models: tf_files/real/")


if __name__ == "__main__":
    run_cli(main)
