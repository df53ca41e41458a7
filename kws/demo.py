"""The demo recipe (what demo.py runs, `make demo`): synthetic speech -> edge model -> frozen
models -> scored test folder -> keyword spotting on synthetic streams, and one summary. Each
step runs as the script a user would type (kws.recipe); the streams are measured in process.

    summary = run_demo(DemoPaths("data/synthetic", "experiments/demo.json", "demo",
                                 "data/demo", "tf_files/demo"))
"""

import dataclasses
import json
import os
import sys

from kws.common import atomic_write_text
from kws.recipe import (
    STREAM_RECOGNIZER,
    best_checkpoint,
    print_streaming,
    run_scored_step,
    run_step,
    stage_set,
    streaming_figures,
)


@dataclasses.dataclass
class DemoPaths:
    data_dir: str    # the synthetic set
    config: str      # the training recipe
    exp_name: str    # checkpoints/<exp_name>, logs/<exp_name>
    out_dir: str     # submissions, streams and summary.json
    frozen_dir: str  # model.pb, model.tflite, model_int8.tflite, labels.txt


def make_and_train(paths, synthetic_args=(), train_args=()):
    """Steps 1-3: the synthetic set, the edge model trained on it, frozen; its checkpoint."""
    py = sys.executable
    run_step("1/6 synthetic speech and noise", [py, "make_synthetic_data.py", "--out_dir",
                                                paths.data_dir, *synthetic_args])
    run_step("2/6 train the edge model", [
        py, "train.py", "--config", paths.config, "--exp_name", paths.exp_name, "--data_dir",
        os.path.join(paths.data_dir, "train"), "--resume", *train_args])
    checkpoint = best_checkpoint(os.path.join("checkpoints", paths.exp_name))
    run_step("3/6 freeze to .pb, .tflite and int8 .tflite", [
        py, "freeze_graph.py", "--checkpoint", checkpoint, "--frozen_path",
        os.path.join(paths.frozen_dir, "model.pb"), "--output_labels",
        os.path.join(paths.frozen_dir, "labels.txt"), "--calibration_data",
        os.path.join(paths.data_dir, "train")])
    return checkpoint


def label_test_folder(paths, checkpoint):
    """Steps 4-5: the test folder labelled by the checkpoint (TTA) and by the int8 model one
    clip at a time; (Keras figures, int8 figures) as the scripts wrote them."""
    py = sys.executable
    test_audio = os.path.join(paths.data_dir, "test", "audio")
    answers = os.path.join(paths.data_dir, "test", "answers.csv")
    keras_metrics = run_scored_step(
        "4/6 label the test folder in batches, with test-time augmentation", [
            py, "make_submission.py", "--checkpoint", checkpoint, "--test_data", test_audio,
            "--submission_fn", os.path.join(paths.out_dir, "submission.csv"), "--answers",
            answers, "--tta_shift=-1600,1600", "--tta_gain", "1.25", "--tta_stretch",
            "0.9,1.1", "--fresh"],
        os.path.join(paths.out_dir, "keras.metrics.json"))
    rpi_metrics = run_scored_step(
        "5/6 label it again as a Raspberry Pi would: int8, one clip at a time", [
            py, "make_submission_on_rpi.py", "--model",
            os.path.join(paths.frozen_dir, "model_int8.tflite"), "--labels",
            os.path.join(paths.frozen_dir, "labels.txt"), "--test_data", test_audio,
            "--submission_fn", os.path.join(paths.out_dir, "submission_rpi_int8.csv"),
            "--answers", answers],
        os.path.join(paths.out_dir, "rpi_int8.metrics.json"))
    return keras_metrics, rpi_metrics


def spot_words(paths, stream_minutes, negative_stream_minutes):
    """Step 6: keyword spotting on synthetic streams of validation and test speakers."""
    train = os.path.join(paths.data_dir, "train")
    sets = {which: stage_set(train, which, os.path.join(paths.out_dir, which))[0]
            for which in ("validation", "testing")}
    print("\n=== 6/6 keyword spotting on long audio: synthetic streams of validation and test "
          "speakers")
    return streaming_figures(
        sys.executable, os.path.join(paths.frozen_dir, "model_int8.tflite"), sets["validation"],
        sets["testing"], os.path.join(train, "audio", "_background_noise_"),
        os.path.join(paths.out_dir, "streams"), stream_minutes, negative_stream_minutes,
        recognizer=STREAM_RECOGNIZER)


def run_demo(paths, synthetic_args=(), train_args=(), stream_minutes=3.0,
             negative_stream_minutes=30.0):
    """Every step; writes and prints out_dir/summary.json, returns the summary."""
    checkpoint = make_and_train(paths, synthetic_args, train_args)
    keras_metrics, rpi_metrics = label_test_folder(paths, checkpoint)
    streaming = spot_words(paths, stream_minutes, negative_stream_minutes)
    submission = os.path.join(paths.out_dir, "submission.csv")
    summary = {
        "checkpoint": checkpoint,
        "accuracy_keras_tta": keras_metrics["accuracy"],
        "accuracy_int8_tflite": rpi_metrics["accuracy"],
        "int8_latency_ms_median": rpi_metrics["latency_ms_median"],
        "streaming": streaming,
        "sizes_bytes": {os.path.basename(p): os.path.getsize(p) for p in (
            checkpoint, *(os.path.join(paths.frozen_dir, f)
                          for f in ("model.pb", "model.tflite", "model_int8.tflite")))},
        "outputs": {"submission": submission, "probabilities": submission[:-4] + ".probs.csv",
                    "submission_rpi_int8": os.path.join(paths.out_dir,
                                                        "submission_rpi_int8.csv"),
                    "frozen_models": paths.frozen_dir,
                    "checkpoints": os.path.dirname(checkpoint),
                    "tensorboard": os.path.join("logs", paths.exp_name)},
    }
    path = os.path.join(paths.out_dir, "summary.json")
    atomic_write_text(path, json.dumps(summary, indent=1))
    print_summary(summary, path)
    return summary


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
