"""What the recipes (demo.py, real.py) share: run the pipeline's scripts as a user would, read
the figures they write as JSON, measure streams in this process (kws.stream_eval), and read
what train.py left in checkpoints/<exp>/.
"""

import csv
import dataclasses
import json
import os
import shutil
import subprocess

import soundfile as sf

from kws.common import UserError, require_file, usable_cores, write_metrics
from kws.data import AudioProcessor
from kws.labels import COMPETITION_WORDS
from kws.stream_eval import (
    SMOOTHING_WINDOWS_MS,
    StreamJob,
    describe,
    measure_streams,
    plot_det,
    save_chosen,
    score_streams,
)
from kws.streaming import load_settings, tf_example_settings

# The recipes' recognizer (StreamSettings fields the threshold sweep starts from): hops of the
# front end's 20 ms (its frames are cached), a second between two detections
STREAM_RECOGNIZER = {"stride_ms": 20, "suppression_ms": 1000}


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


def stage_set(data_dir, which, out):
    """One set of a data folder's split as a labelled folder `<label>/<file>` of links (the
    held-out speakers for scoring and streams, the training speakers for int8 calibration).
    Returns (folder, speakers, clips). A clip whose label is not its folder's name (a word that
    counts as `_unknown_`) is linked as `<folder>_<file>`, so names cannot collide."""

    processor = AudioProcessor.from_settings({"data_dir": data_dir, "silence_percentage": 0,
                                              "unknown_percentage": -1})
    if os.path.isdir(out):
        shutil.rmtree(out)
    for item in processor.data_index[which]:
        folder, name = os.path.split(item["file"])
        folder = os.path.basename(folder)
        if folder != item["label"]:
            name = f"{folder}_{name}"
        link = os.path.join(out, item["label"], name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.abspath(item["file"]), link)
    speakers = processor.speakers(which)
    counts = processor.label_counts(which)
    print(f"{which}: {processor.set_size(which)} clips of {len(speakers)} speakers "
          f"({counts['_silence_']} silence)")
    return out, len(speakers), processor.set_size(which)


def streaming_figures(py, model, validation, testing, noise_dir, out_dir, minutes=20.0,
                      negative_minutes=60.0, target_fa_per_hour=2.0, recognizer=None,
                      other_speech=None, other_share=None):
    """Keyword spotting on long audio, for a recipe: streams of the validation and the held-out
    speakers (make_streams.py, noise that training never mixes in), the threshold and the moving
    average's window (SMOOTHING_WINDOWS_MS) chosen on the validation streams for
    target_fa_per_hour and stored beside the model, then the held-out
    streams measured with it and with the TF example's recognizer (kws.stream_eval: each stream
    scored once, in a process a core, and measured in this one; each report is also written as
    streaming_accuracy.py's --metrics_json would be).
    Returns the figures. validation, testing: a labelled folder or a list of them (the speakers
    of one set); other_speech: {"validation": [folders], "test": [folders]} of speech with no
    command word that the negative streams mix in (make_streams.py --other_dir); recognizer:
    StreamSettings fields the sweep starts from (over those stored beside the model);
    other_share: make_streams.py's --other_share for the negative streams (-1: each clip placed
    about equally often)."""
    streams = make_streams(py, validation, testing, noise_dir, out_dir, minutes,
                           negative_minutes, other_speech or {}, other_share)
    settings = load_settings(model, recognizer)
    scored = score_recipe_streams(model, streams, settings.stride_ms)
    print("\n=== choose the threshold and the window on the validation streams", flush=True)
    chosen = measure_streams([model], streams["validation"]["wav"],
                             streams["validation_negative"]["wav"], settings, sweep=True,
                             sweep_windows=SMOOTHING_WINDOWS_MS,
                             target_fa_per_hour=target_fa_per_hour, scored=scored)
    print(describe("this recognizer", chosen.result))
    write_metrics(os.path.join(out_dir, "validation.metrics.json"), chosen.as_json())
    plot_det(chosen.sweep, os.path.join(out_dir, "validation_det.png"),
             f"{os.path.basename(model)} on validation.wav", chosen.chosen)
    if chosen.chosen is None:
        raise UserError(f"no threshold keeps false accepts under {target_fa_per_hour:g} per "
                        "hour on the validation streams")
    print(f"threshold {chosen.chosen.threshold:g} and a {chosen.chosen.average_window_ms:g} ms "
          f"average chosen on the validation streams: wrote "
          f"{save_chosen(model, chosen, target_fa_per_hour)}")
    print("\n=== streaming accuracy on the held-out speakers", flush=True)
    test = measure_streams([model], streams["test"]["wav"], streams["test_negative"]["wav"],
                           load_settings(model), also_tf_example=True, sweep=True,
                           scored=scored)
    print(describe("this recognizer", test.result))
    print(describe("TF example recognizer", test.tf_example_recognizer))
    write_metrics(os.path.join(out_dir, "test.metrics.json"), test.as_json())
    plot_det(test.sweep, os.path.join(out_dir, "test_det.png"),
             f"{os.path.basename(model)} on test.wav")
    summary = {"streams": streams, "chosen_on_validation": dataclasses.asdict(chosen.chosen),
               "settings": dataclasses.asdict(test.result.settings),
               "real_time_factor": test.real_time_factor,
               "ours": recognizer_summary(test.result),
               "tf_example": recognizer_summary(test.tf_example_recognizer)}
    return summary


def score_recipe_streams(model, streams, stride_ms):
    """Every stream streaming_figures measures, scored once, on all cores side by side: the
    validation streams at the recognizer's stride, the held-out ones at it and at the TF
    example's (the threshold chosen later changes no score)."""
    strides = {"validation": [stride_ms],
               "test": list(dict.fromkeys([stride_ms, tf_example_settings().stride_ms]))}
    jobs = [StreamJob(streams[key]["wav"], "", stride, negative)
            for which, each in strides.items() for stride in each
            for key, negative in ((which, False), (f"{which}_negative", True))]
    workers = usable_cores()
    print(f"\n=== score {len(jobs)} streams in {min(workers, len(jobs))} processes", flush=True)
    return score_streams([model], jobs, workers=workers)


def make_streams(py, validation, testing, noise_dir, out_dir, minutes, negative_minutes,
                 other_speech, other_share):
    """make_streams.py for each set: a stream with command words and a negative one; returns
    {validation, validation_negative, test, test_negative: the figures make_streams.py wrote}."""
    streams = {}
    for seed, (name, folders) in enumerate((("validation", validation), ("test", testing))):
        folders = [folders] if isinstance(folders, str) else list(folders)
        data = [flag for folder in folders for flag in ("--data_dir", folder)]
        other = [flag for folder in other_speech.get(name, ()) for flag in ("--other_dir", folder)]
        if other and other_share is not None:
            other += ["--other_share", f"{other_share:g}"]
        for negative, length in ((False, minutes), (True, negative_minutes)):
            key = f"{name}_negative" if negative else name
            wav = os.path.join(out_dir, f"{key}.wav")
            streams[key] = run_scored_step(f"stream of {key} speakers ({length:g} min)", [
                py, "make_streams.py", *data, "--noise_dir", noise_dir,
                "--noise_part", "tail", "--minutes", f"{length:g}", "--out", wav,
                "--seed", str(2 * seed + negative)] + (["--negative", *other] if negative else []),
                os.path.join(out_dir, f"{key}.stream.json"))
    return streams


def recognizer_summary(result):
    """A recipe's figures of one recognizer on the held-out streams (a StreamResult)."""
    return {"detection_rate": result.positive.detection_rate,
            "false_accepts_per_hour": result.negative.false_accepts_per_hour,
            "false_accepts_on_positive_stream": result.positive.false_accepts,
            "false_accepts_by_clip": (result.negative.false_accepts_by_clip or [])[:10],
            "miss_rate_by_word": result.positive.miss_rate_by_word,
            "tf_example_figures": result.tf_example.as_json()}


def running_speech_rate(py, model, wav, csv_path):
    """Command detections per hour on running speech (people talking, no command said as a
    command): label_stream.py with the settings stored beside the model. Its detections of
    _unknown_ are not commands and are not counted."""
    run_step(f"detections on running speech {os.path.basename(wav)}", [
        py, "label_stream.py", "--model", model, "--wav", wav, "--csv", csv_path, "--quiet"])
    with open(csv_path, encoding="utf-8", newline="") as f:
        detections = [row["label"] for row in csv.DictReader(f)
                      if row["label"] in COMPETITION_WORDS]
    hours = sf.info(wav).duration / 3600
    words = {w: detections.count(w) for w in sorted(set(detections))}
    return {"wav": wav, "minutes": round(hours * 60, 1), "detections": len(detections),
            "detections_per_hour": round(len(detections) / hours, 1) if hours else None,
            "by_word": words}


def print_streaming(s):
    chosen = s["settings"]
    print(f"\n=== keyword spotting on long audio (threshold {chosen['detection_threshold']} and a "
          f"{chosen['average_window_ms']:g} ms average chosen on validation speakers; real-time "
          f"factor {s['real_time_factor']:.4f})")
    for name, title in (("ours", "this recognizer"), ("tf_example", "TF example recognizer")):
        r = s[name]
        print(f"{title:<22} {r['detection_rate']:.1%} of command words detected, "
              f"{r['false_accepts_per_hour']:.1f} false accepts per hour (negative stream)")
