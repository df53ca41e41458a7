"""The main job (`make demo`): synthetic speech -> edge model -> frozen models -> scored test.

    python demo.py

Offline, on data it makes itself: builds the synthetic Kaggle-style set, trains the edge model
briefly, freezes it (.pb, float and int8 .tflite), labels the unlabeled test folder with
make_submission.py (with test-time augmentation) and with make_submission_on_rpi.py (int8, one
clip at a time), then spots the words in long synthetic streams of validation and test speakers
(threshold chosen on the validation streams, beside the TF example's recognizer), and prints one
summary: accuracy against the answer key, sizes, latency, streaming figures, outputs.
Every step resumes or redoes cheaply, so running it again is safe.
"""

import argparse
import json
import os
import sys

from kws.common import atomic_write_text, require_file, run_cli
from kws.recipe import (
    best_checkpoint,
    print_streaming,
    run_scored_step,
    run_step,
    stage_set,
    streaming_figures,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="data/synthetic", help="synthetic set folder")
    parser.add_argument("--config", default="experiments/demo.json", help="training recipe")
    parser.add_argument("--exp_name", default="demo")
    parser.add_argument("--out_dir", default="data/demo", help="submissions and summary")
    parser.add_argument("--frozen_dir", default="tf_files/demo")
    parser.add_argument("--synthetic_args", default="",
                        help="extra flags for make_synthetic_data.py, e.g. '--max_speakers 60'")
    parser.add_argument("--train_args", default="", help="extra flags for train.py")
    parser.add_argument("--stream_minutes", type=float, default=3.0,
                        help="length of the streams with command words")
    parser.add_argument("--negative_stream_minutes", type=float, default=30.0,
                        help="length of the streams without command words")
    args = parser.parse_args(argv)
    require_file(args.config, "training recipe")  # before minutes of synthesis, not after
    py = sys.executable
    test_audio = os.path.join(args.data_dir, "test", "audio")
    answers = os.path.join(args.data_dir, "test", "answers.csv")
    run_step("1/6 synthetic speech and noise", [py, "make_synthetic_data.py", "--out_dir",
                                                args.data_dir, *args.synthetic_args.split()])
    run_step("2/6 train the edge model", [
        py, "train.py", "--config", args.config, "--exp_name", args.exp_name, "--data_dir",
        os.path.join(args.data_dir, "train"), "--resume", *args.train_args.split()])
    checkpoint = best_checkpoint(os.path.join("checkpoints", args.exp_name))
    frozen = os.path.join(args.frozen_dir, "model.pb")
    labels = os.path.join(args.frozen_dir, "labels.txt")
    run_step("3/6 freeze to .pb, .tflite and int8 .tflite", [
        py, "freeze_graph.py", "--checkpoint", checkpoint, "--frozen_path", frozen,
        "--output_labels", labels, "--calibration_data", os.path.join(args.data_dir, "train")])
    submission = os.path.join(args.out_dir, "submission.csv")
    keras_metrics = run_scored_step(
        "4/6 label the test folder in batches, with test-time augmentation", [
            py, "make_submission.py", "--checkpoint", checkpoint, "--test_data", test_audio,
            "--submission_fn", submission, "--answers", answers, "--tta_shift=-1600,1600",
            "--tta_gain", "1.25", "--tta_stretch", "0.9,1.1", "--fresh"],
        os.path.join(args.out_dir, "keras.metrics.json"))
    rpi_submission = os.path.join(args.out_dir, "submission_rpi_int8.csv")
    int8 = os.path.join(args.frozen_dir, "model_int8.tflite")
    rpi_metrics = run_scored_step(
        "5/6 label it again as a Raspberry Pi would: int8, one clip at a time", [
            py, "make_submission_on_rpi.py", "--model", int8, "--labels", labels,
            "--test_data", test_audio, "--submission_fn", rpi_submission, "--answers", answers],
        os.path.join(args.out_dir, "rpi_int8.metrics.json"))
    train = os.path.join(args.data_dir, "train")
    sets = {which: stage_set(train, which, os.path.join(args.out_dir, which))[0]
            for which in ("validation", "testing")}
    print("\n=== 6/6 keyword spotting on long audio: synthetic streams of validation and test "
          "speakers")
    streaming = streaming_figures(
        py, int8, sets["validation"], sets["testing"],
        os.path.join(train, "audio", "_background_noise_"), os.path.join(args.out_dir, "streams"),
        args.stream_minutes, args.negative_stream_minutes,
        recognizer={"stride_ms": 20, "suppression_ms": 1000})
    summary = {
        "checkpoint": checkpoint,
        "accuracy_keras_tta": keras_metrics["accuracy"],
        "accuracy_int8_tflite": rpi_metrics["accuracy"],
        "int8_latency_ms_median": rpi_metrics["latency_ms_median"],
        "streaming": streaming,
        "sizes_bytes": {os.path.basename(p): os.path.getsize(p) for p in
                        (checkpoint, frozen, os.path.join(args.frozen_dir, "model.tflite"), int8)},
        "outputs": {"submission": submission, "probabilities": submission[:-4] + ".probs.csv",
                    "submission_rpi_int8": rpi_submission, "frozen_models": args.frozen_dir,
                    "checkpoints": os.path.dirname(checkpoint),
                    "tensorboard": os.path.join("logs", args.exp_name)},
    }
    atomic_write_text(os.path.join(args.out_dir, "summary.json"), json.dumps(summary, indent=1))
    print_summary(summary, os.path.join(args.out_dir, "summary.json"))
    return 0


def print_summary(s, path):
    print("\n=== demo summary")
    print(f"accuracy on the synthetic test set: {s['accuracy_keras_tta']:.3f} (Keras, TTA), "
          f"{s['accuracy_int8_tflite']:.3f} (int8 .tflite, one clip at a time)")
    print(f"int8 latency per clip (1 thread): {s['int8_latency_ms_median']:.3f} ms")
    for name, size in s["sizes_bytes"].items():
        print(f"  {name:<28} {size:>10,} bytes")
    for what, where in s["outputs"].items():
        print(f"  {what:<22} {where}")
    print_streaming(s["streaming"])
    print(f"summary: {path}   watch training: tensorboard --logdir logs")


if __name__ == "__main__":
    run_cli(main)
