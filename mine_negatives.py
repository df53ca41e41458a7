"""Mine hard negatives: windows of recordings with no command word that a model hears as one.

    python mine_negatives.py --model tf_files/real/model_int8.tflite \
        --data_dir ../shared/data/other_speech/picovoice_wake_words/computer \
        --out_dir data/hard_negatives

Slides the model (a frozen model or a train.py checkpoint) over each recording (`--wav`, any
length and format kws.audio reads, those named in a `--wav_list` file, or every clip of
`--data_dir`, any layout) a hop at a time, keeps the windows whose highest command-word
probability reaches --threshold (the best one per second), and writes each as a one-second WAV
under OUT_DIR/hard_negative/ (a folder name that is no command word, so the windows train as
_unknown_: `train.py --train_only_dir OUT_DIR`). Use recordings of training speakers only.
OUT_DIR/mined.json lists every window: source, time, the word heard and its score; a rerun into
the same OUT_DIR replaces both. Not one readable recording is an error (exit 2). The mining
itself is kws/mining.py.
"""

import argparse
import json
import os
import sys

from kws import SAMPLE_RATE
from kws.audio import warn_skipped
from kws.common import UserError, atomic_write_text, require_file, run_cli, write_metrics
from kws.folders import list_test_clips
from kws.mining import FOLDER, mine
from kws.runtime import load_model


def sources(args):
    paths = list(args.wav)
    if args.wav_list:
        with open(require_file(args.wav_list, "--wav_list"), encoding="utf-8") as f:
            paths += [line.strip() for line in f if line.strip()]
    for folder in args.data_dir:
        paths += list_test_clips(folder)[0]
    if not paths:
        raise UserError("give --wav recordings, a --wav_list or --data_dir folders to mine")
    return list(dict.fromkeys(paths))  # a recording named twice is mined once


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True,
                        help=".tflite or .pb model, or a train.py checkpoint (.keras)")
    parser.add_argument("--labels", default="", help="labels file (default: beside the model)")
    parser.add_argument("--wav", action="append", default=[],
                        help="a recording with no command word in it (repeatable)")
    parser.add_argument("--wav_list", default="",
                        help="a text file naming such recordings, one path a line")
    parser.add_argument("--data_dir", action="append", default=[],
                        help="a folder of clips with no command word (repeatable)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="keep windows whose highest command-word probability reaches this")
    parser.add_argument("--hop_ms", type=float, default=100.0, help="window step")
    parser.add_argument("--out_dir", required=True, help="where hard_negative/*.wav go")
    parser.add_argument("--metrics_json", default="", help="also write the counts as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.threshold <= 1 or not 1 <= args.hop_ms <= 1000:
        raise UserError("need --threshold in (0, 1] and --hop_ms in [1, 1000]")
    paths = sources(args)
    model, labels = load_model(args.model, args.labels or None, allow_keras=True)
    hop = int(args.hop_ms * SAMPLE_RATE / 1000)
    rows, errors = mine(model, labels, paths, args.threshold, hop, args.out_dir)
    warn_skipped(errors, "recordings")
    os.makedirs(args.out_dir, exist_ok=True)
    atomic_write_text(os.path.join(args.out_dir, "mined.json"), json.dumps(rows, indent=1))
    heard = {}
    for row in rows:
        heard[row["heard"]] = heard.get(row["heard"], 0) + 1
    summary = {"recordings": len(paths) - len(errors), "unreadable": len(errors),
               "windows": len(rows), "heard": heard, "threshold": args.threshold}
    write_metrics(args.metrics_json, summary)
    print(f"{len(rows)} hard negatives from {summary['recordings']} recordings in "
          f"{os.path.join(args.out_dir, FOLDER)} {heard}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
