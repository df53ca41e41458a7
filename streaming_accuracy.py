"""Measure keyword spotting on long audio: the TF example's figures and false accepts per hour.

    python streaming_accuracy.py --model tf_files/real/model_int8.tflite \
        --wav data/real/streams/test.wav --negative_wav data/real/streams/test_negative.wav

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
`--sweep` tries detection thresholds (with `--sweep_windows`, with each of those moving-average
windows) and draws a DET plot (miss rate against false accepts per hour); with
`--target_fa_per_hour X --save_settings` it stores the threshold (and window) that detects most
under X false accepts per hour beside the model. Choose it on streams of validation speakers,
never on the test stream.
"""

import argparse
import os
import sys

from kws.common import UserError, comma_list, run_cli, write_metrics
from kws.stream_eval import describe, measure_streams, plot_det, save_chosen
from kws.streaming import add_ensemble_arg, add_settings_args, settings_from_flags


def build_parser():
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
    parser.add_argument("--sweep_windows", type=comma_list(float), default=[],
                        help="with --sweep: also try these moving-average windows (ms) with "
                             "every threshold, e.g. 200,300,500,750 (default: only the "
                             "settings' own)")
    parser.add_argument("--plot", default="", help="DET plot PNG (with --sweep)")
    parser.add_argument("--target_fa_per_hour", type=float, default=2.0,
                        help="with --sweep: the false-accept budget a threshold is chosen for")
    parser.add_argument("--save_settings", action="store_true",
                        help="with --sweep: store the chosen settings beside the model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--metrics_json", default="", help="write every figure as JSON")
    add_settings_args(parser)
    return parser


def report_sweep(args, report):
    """Plot the sweep, say which threshold it chose and store it (--save_settings)."""
    if args.plot:
        plot_det(report.sweep, args.plot, f"{os.path.basename(args.model)} on "
                 f"{os.path.basename(args.wav)}", report.chosen)
    chosen = report.chosen
    if chosen is None:
        print(f"no threshold keeps false accepts under {args.target_fa_per_hour:g}/h",
              file=sys.stderr)
        return
    print(f"threshold {chosen.threshold:g} ({chosen.average_window_ms:g} ms average): "
          f"{chosen.detection_rate:.1%} detected"
          f" at {chosen.false_accepts_per_hour:.2f} false accepts per hour")
    if args.save_settings:
        print(f"wrote {save_chosen(args.model, report, args.target_fa_per_hour)}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    for flag, given in (("--save_settings", args.save_settings),
                        ("--sweep_windows", args.sweep_windows)):
        if given and not args.sweep:
            raise UserError(f"{flag} needs --sweep")
    if args.save_settings and args.also_model:
        raise UserError("--save_settings stores settings beside one model; an ensemble's "
                        "threshold is not that model's (pass it as --detection_threshold)")
    for flag, value, least in (("--after_ms", args.after_ms, 1e-9),
                               ("--time_tolerance_ms", args.time_tolerance_ms, 0.0),
                               ("--target_fa_per_hour", args.target_fa_per_hour, 0.0)):
        if not value >= least:  # also refuses nan
            raise UserError(f"{flag} must be {'positive' if least else '0 or more'}, got {value:g}")
    settings = settings_from_flags(args)
    report = measure_streams(
        [args.model] + args.also_model, args.wav, args.negative_wav, settings,
        labels_path=args.labels or None, threads=args.threads, ground_truth=args.ground_truth,
        negative_ground_truth=args.negative_ground_truth, after_ms=args.after_ms,
        tolerance_ms=args.time_tolerance_ms,
        also_tf_example=args.also_tf_example and not args.tf_example, sweep=args.sweep,
        sweep_windows=args.sweep_windows, target_fa_per_hour=args.target_fa_per_hour)
    print(describe("this recognizer" if not args.tf_example else "TF example recognizer",
                   report.result))
    if report.tf_example_recognizer is not None:
        print(describe("TF example recognizer", report.tf_example_recognizer))
    print(f"real-time factor {report.real_time_factor:.4f} (CPU s per s of audio, model "
          f"and reading, {report.hops} hops of {settings.stride_ms:g} ms)")
    if args.sweep:
        report_sweep(args, report)
    write_metrics(args.metrics_json, report.as_json())
    return 0


if __name__ == "__main__":
    run_cli(main)
