"""Spot keywords in a long recording, standard input, or a microphone, and print them live.

    python label_stream.py --model tf_files/real/model_int8.tflite --wav long.wav --csv det.csv

Sources: `--wav FILE` (any length and any format kws.audio reads; read block by block, never
whole), `--raw -` (16 kHz mono s16le PCM on standard input, e.g.
`arecord -f S16_LE -r 16000 -c 1 -t raw` or `ffmpeg -i in.mp3 -f s16le -ar 16000 -ac 1 -`), or
`--mic` (the optional `sounddevice` package). Each detection prints as `time  word  score`;
`--csv` also writes them with the header `time_ms,label,score` (time from the start of the
audio), `--plot` draws the score traces with the detections marked, `--scores_csv` writes every
hop's probabilities. The recognizer's settings come from NAME_streaming.json beside the model
(what the recipe that made it chose), else the TF example's defaults; flags override both.
`--also_model` averages more models' probabilities with --model's (an ensemble). An empty
`--raw` stream (no microphone, a recorder that failed) is an error.
"""

import argparse
import sys

import numpy as np

from kws import SAMPLE_RATE
from kws.common import UserError, atomic_write_text, run_cli
from kws.runtime import load_streaming_models
from kws.shipped import DEFAULT_MODEL
from kws.sources import file_blocks, mic_blocks, raw_blocks
from kws.streaming import (
    Spotter,
    add_ensemble_arg,
    add_settings_args,
    detections_csv,
    settings_from_flags,
)
from kws.traces import ScoreTrace, plot_traces, scores_csv


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=".tflite, .pb or .keras (default: the shipped model, models/)")
    add_ensemble_arg(parser)
    parser.add_argument("--labels", default="", help="labels file (default: beside the model)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", help="a recording of any length")
    source.add_argument("--raw", help="'-': 16 kHz mono s16le PCM on standard input")
    source.add_argument("--mic", action="store_true", help="the default microphone")
    parser.add_argument("--rate", type=int, default=SAMPLE_RATE,
                        help="sample rate of --raw (only 16000 is accepted)")
    parser.add_argument("--seconds", type=float, default=0, help="--mic: stop after this long")
    parser.add_argument("--csv", default="", help="write the detections here")
    parser.add_argument("--plot", default="", help="PNG of the score traces and detections")
    parser.add_argument("--scores_csv", default="",
                        help="write every hop's model probabilities (time_ms,<label>...) here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quiet", action="store_true", help="no live lines, no progress bar")
    add_settings_args(parser)
    return parser


def check_args(args):
    if args.raw is not None and args.raw != "-":
        raise UserError("--raw takes '-' (standard input); use --wav for a file")
    if args.raw is not None and args.rate != SAMPLE_RATE:
        raise UserError(f"--raw must be {SAMPLE_RATE} Hz mono s16le, got --rate {args.rate}: "
                        f"resample it first (ffmpeg ... -ar {SAMPLE_RATE} -ac 1 -f s16le -)")


def audio_blocks(args):
    if args.wav:
        return file_blocks(args.wav, progress=not args.quiet and sys.stderr.isatty())
    if args.raw:
        return raw_blocks(sys.stdin.buffer)
    return mic_blocks(args.seconds)


def spot(spotter, blocks, trace, quiet):
    """The detections of every block, each printed as it is found unless quiet; Ctrl-C stops."""
    found = []
    try:
        for block in blocks:
            for d in spotter.feed(block, trace):
                found.append(d)
                if not quiet:
                    print(f"{d.time_ms / 1000:9.2f} s  {d.label:<10} {d.score:.3f}", flush=True)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return found


def write_outputs(args, found, trace, labels, threshold):
    if args.csv:
        atomic_write_text(args.csv, detections_csv(found))
    if args.scores_csv:
        atomic_write_text(args.scores_csv, scores_csv(trace.hops, labels))
    if args.plot and trace.times:
        plot_traces(args.plot, trace.times, np.asarray(trace.smoothed), labels, found, threshold)


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    settings = settings_from_flags(args)
    model, labels = load_streaming_models([args.model] + args.also_model, args.labels or None,
                                          args.threads, settings.stride_ms)
    spotter = Spotter(model, labels, settings)
    trace = ScoreTrace(keep_smoothed=bool(args.plot), keep_probs=bool(args.scores_csv))
    found = spot(spotter, audio_blocks(args), trace, args.quiet)
    heard = spotter.windows.samples_seen / SAMPLE_RATE
    if args.raw and not heard:
        raise UserError("no audio on standard input: is the recorder running and is there a "
                        "microphone? (arecord -l lists them)")
    if args.wav and not heard:
        raise UserError(f"{args.wav}: no audio (0 samples)")
    write_outputs(args, found, trace, labels, settings.detection_threshold)
    print(f"{len(found)} detections in {heard:.1f} s of audio"
          + (f"; wrote {args.csv}" if args.csv else "") + (f", {args.plot}" if args.plot else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
