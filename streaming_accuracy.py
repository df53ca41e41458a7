"""Measure keyword spotting on long audio: the TF example's figures and false accepts per hour.

    python streaming_accuracy.py --model tf_files/real/model_int8.tflite \
        --wav data/streams/test.wav --negative_wav data/streams/test_negative.wav

The model scores every hop of each stream once; recognizer settings (from NAME_streaming.json
beside the model, then flags) turn the scores into detections, which are matched to the ground
truth (STREAM.csv, `label,time_ms[,clip]`, as make_streams.py writes it):
- the TF speech_commands example's figures: matched / correct / wrong / false positive as a
  share of the ground-truth words, with its +-time tolerance around the window start;
- the wake-word figures: the share of command words detected with the right label within
  --after_ms of their start, the miss rate per word, and false accepts per hour (any other
  command-word detection) on the positive stream and on the negative one.
`--tf_example` runs the TF example's recognizer with its defaults instead, as the baseline;
`--also_model` averages more models' probabilities with --model's (an ensemble).
`--sweep` tries detection thresholds and draws a DET plot (miss rate against false accepts per
hour); with `--target_fa_per_hour X --save_settings` it stores the threshold that detects most
under X false accepts per hour beside the model. Choose it on streams of validation speakers,
never on the test stream.
"""

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

from kws.audio import stream_wav
from kws.common import UserError, atomic_path, run_cli, write_metrics
from kws.labels import COMPETITION_WORDS
from kws.runtime import load_streaming_models
from kws.streaming import (
    add_ensemble_arg,
    add_settings_args,
    read_ground_truth,
    recognize,
    save_settings,
    score_stream,
    settings_from_flags,
    tf_example_settings,
    tf_example_stats,
    wakeword_stats,
)

SWEEP = np.round(np.concatenate([np.arange(0.30, 0.89, 0.05), np.arange(0.90, 0.995, 0.01)]), 2)


def stream_duration_s(path):
    import soundfile as sf

    try:
        return sf.info(path).duration
    except Exception as e:
        raise UserError(f"{path}: not readable audio ({e})") from None


def score_file(model, path, stride_ms):
    """(times, probabilities, seconds of audio, seconds of CPU) of one stream."""
    t0 = time.process_time()
    times, probs = score_stream(model, stream_wav(path, 16000), stride_ms)
    return times, probs, stream_duration_s(path), time.process_time() - t0


def evaluate(labels, settings, positive, negative, after_ms, tolerance_ms):
    """The figures of one recognizer over the scored streams."""
    found = recognize(positive["times"], positive["probs"], labels, settings)
    result = {"settings": dataclasses.asdict(settings),
              "tf_example": tf_example_stats(found, positive["truth"], tolerance_ms),
              "positive": wakeword_stats(found, positive["truth"], positive["seconds"],
                                         COMPETITION_WORDS, after_ms)}
    if negative:
        false_found = recognize(negative["times"], negative["probs"], labels, settings)
        result["negative"] = wakeword_stats(false_found, negative["truth"], negative["seconds"],
                                            COMPETITION_WORDS, after_ms)
    result["detections"] = [(d.time_ms, d.label, d.score) for d in found]
    return result


def sweep(labels, settings, positive, negative, after_ms, tolerance_ms):
    rows = []
    for threshold in SWEEP:
        s = dataclasses.replace(settings, detection_threshold=float(threshold))
        r = evaluate(labels, s, positive, negative, after_ms, tolerance_ms)
        fa = (r.get("negative") or r["positive"])["false_accepts_per_hour"]
        rows.append({"threshold": float(threshold),
                     "detection_rate": r["positive"]["detection_rate"],
                     "false_accepts_per_hour": fa})
    return rows


def choose_threshold(rows, target_fa_per_hour):
    """The sweep row that detects most within the false-accept budget (None if none fits)."""
    fits = [r for r in rows if r["false_accepts_per_hour"] <= target_fa_per_hour]
    return max(fits, key=lambda r: (r["detection_rate"], r["threshold"])) if fits else None


def plot_det(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    fa = [max(r["false_accepts_per_hour"], 0.1) for r in rows]
    miss = [1 - r["detection_rate"] for r in rows]
    ax.plot(fa, miss, "o-", ms=3)
    for r, x, y in zip(rows, fa, miss):
        if round(r["threshold"] * 100) % 10 == 0 or r["threshold"] >= 0.95:
            ax.annotate(f"{r['threshold']:.2f}", (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("false accepts per hour (negative stream)")
    ax.set_ylabel("miss rate (command words)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def load_stream(model, wav, truth_path, stride_ms, negative=False):
    truth_path = truth_path or os.path.splitext(wav)[0] + ".csv"
    truth = read_ground_truth(truth_path, with_clips=True)
    if not negative and not any(label in COMPETITION_WORDS for label, _, _ in truth):
        raise UserError(f"{truth_path} names no command word: pass a stream without any as "
                        "--negative_wav")
    times, probs, seconds, cpu = score_file(model, wav, stride_ms)
    if not len(times):
        raise UserError(f"{wav}: shorter than one second, nothing to score")
    return {"wav": wav, "truth": truth, "times": times, "probs": probs, "seconds": seconds,
            "cpu_seconds": cpu}


def print_result(name, r):
    tf, pos, neg = r["tf_example"], r["positive"], r.get("negative")
    print(f"{name}: {pos['detected']}/{pos['command_words']} command words detected "
          f"({pos['detection_rate']:.1%}), {pos['false_accepts']} false accepts on the stream"
          + (f"; negative stream: {neg['false_accepts']} in {neg['hours']:.2f} h = "
             f"{neg['false_accepts_per_hour']:.1f} per hour" if neg else ""))
    worst = (neg or {}).get("false_accepts_by_clip", [])[:3]
    if worst:
        print(f"  negative stream: false accepts on {neg['clips_fired_on']} of its "
              f"{neg['distinct_clips']} distinct clips, most often on: " + "; ".join(
                  f"{w['heard'] or 'noise'} as {w['fired']} ({w['count']})" for w in worst))
    print(f"  TF example figures: {tf['matched']:.1%} matched, {tf['correct']:.1%} correct, "
          f"{tf['wrong']:.1%} wrong, {tf['false_positive']:.1%} false positive")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help=".tflite, .pb or .keras")
    add_ensemble_arg(parser)
    parser.add_argument("--labels", default="", help="labels file (default: beside the model)")
    parser.add_argument("--wav", required=True, help="stream with command words")
    parser.add_argument("--ground_truth", default="", help="default: WAV's .csv")
    parser.add_argument("--negative_wav", default="", help="stream without command words")
    parser.add_argument("--negative_ground_truth", default="", help="default: its .csv")
    parser.add_argument("--after_ms", type=float, default=1750.0,
                        help="a detection counts within this long after the word starts")
    parser.add_argument("--time_tolerance_ms", type=float, default=1500.0,
                        help="the TF example's tolerance around the window start")
    parser.add_argument("--tf_example", action="store_true",
                        help="the TF example's recognizer and defaults (the baseline)")
    parser.add_argument("--also_tf_example", action="store_true",
                        help="report the TF example's recognizer beside these settings")
    parser.add_argument("--sweep", action="store_true", help="try thresholds; DET plot")
    parser.add_argument("--plot", default="", help="DET plot PNG (with --sweep)")
    parser.add_argument("--target_fa_per_hour", type=float, default=2.0,
                        help="with --sweep: the false-accept budget a threshold is chosen for")
    parser.add_argument("--save_settings", action="store_true",
                        help="with --sweep: store the chosen settings beside the model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--metrics_json", default="", help="write every figure as JSON")
    add_settings_args(parser)
    args = parser.parse_args(argv)
    if args.save_settings and not args.sweep:
        raise UserError("--save_settings needs --sweep")
    if args.save_settings and args.also_model:
        raise UserError("--save_settings stores settings beside one model; an ensemble's "
                        "threshold is not that model's (pass it as --detection_threshold)")
    models = [args.model] + args.also_model
    settings = settings_from_flags(args)
    model, labels = load_streaming_models(models, args.labels or None, args.threads,
                                          settings.stride_ms)
    positive = load_stream(model, args.wav, args.ground_truth, settings.stride_ms)
    negative = load_stream(model, args.negative_wav, args.negative_ground_truth,
                           settings.stride_ms, negative=True) if args.negative_wav else None
    audio_s = positive["seconds"] + (negative["seconds"] if negative else 0)
    cpu_s = positive["cpu_seconds"] + (negative["cpu_seconds"] if negative else 0)
    metrics = {"model": args.model, "also_models": args.also_model, "wav": args.wav,
               "negative_wav": args.negative_wav or None,
               "real_time_factor": cpu_s / audio_s, "hops": len(positive["times"]),
               "result": evaluate(labels, settings, positive, negative, args.after_ms,
                                  args.time_tolerance_ms)}
    print_result("this recognizer" if not args.tf_example else "TF example recognizer",
                 metrics["result"])
    if args.also_tf_example and not args.tf_example:
        base = tf_example_settings()
        pos, neg = positive, negative
        if base.stride_ms != settings.stride_ms:
            model, labels = load_streaming_models(models, args.labels or None, args.threads,
                                                  base.stride_ms)
            pos = load_stream(model, args.wav, args.ground_truth, base.stride_ms)
            neg = load_stream(model, args.negative_wav, args.negative_ground_truth,
                              base.stride_ms, negative=True) if args.negative_wav else None
        metrics["tf_example_recognizer"] = evaluate(labels, base, pos, neg, args.after_ms,
                                                    args.time_tolerance_ms)
        print_result("TF example recognizer", metrics["tf_example_recognizer"])
    print(f"real-time factor {metrics['real_time_factor']:.4f} (CPU s per s of audio, model "
          f"and reading, {len(positive['times'])} hops of {settings.stride_ms:g} ms)")
    if args.sweep:
        rows = sweep(labels, settings, positive, negative, args.after_ms,
                     args.time_tolerance_ms)
        metrics["sweep"] = rows
        chosen = choose_threshold(rows, args.target_fa_per_hour)
        metrics["chosen"] = chosen
        if args.plot:
            plot_det(rows, args.plot, f"{os.path.basename(args.model)} on "
                     f"{os.path.basename(args.wav)}")
        if chosen is None:
            print(f"no threshold keeps false accepts under {args.target_fa_per_hour:g}/h",
                  file=sys.stderr)
        else:
            print(f"threshold {chosen['threshold']:.2f}: {chosen['detection_rate']:.1%} detected"
                  f" at {chosen['false_accepts_per_hour']:.2f} false accepts per hour")
            if args.save_settings:
                picked = dataclasses.replace(settings, detection_threshold=chosen["threshold"])
                path = save_settings(args.model, picked, {
                    "chosen_on": [args.wav, args.negative_wav],
                    "target_fa_per_hour": args.target_fa_per_hour})
                print(f"wrote {path}")
    write_metrics(args.metrics_json, metrics)
    return 0


if __name__ == "__main__":
    run_cli(main)
