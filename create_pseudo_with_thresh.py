"""Keep the test clips the models are sure about and write them as a pseudo-labelled training set.

    python create_pseudo_with_thresh.py --inputs subs/ensemble.probs.csv subs/seed106.csv \
        --threshold 0.7 --test_data data/test/audio --out_dir data/pseudo

--inputs takes probabilities CSVs (make_submission.py, ensemble.py) and submissions (fname,label),
all over the same clips. A clip is kept when every input gives it the same label and, in every
probabilities file, that label's probability is at least --threshold. Labels are compared in the
files' own label set when all inputs are probabilities files with the same labels (an all-words
model keeps its words), otherwise in the 12 competition classes (as convert_to_12_classes.py).

Writes OUT/<label>/<fname>.wav (fname's `/` become `__`; 16 kHz 16-bit WAVs are copied as they
are, anything else re-encoded to that) and OUT/pseudo_info.json. Clips labelled silence become
background noise instead: each scaled to --silence_rms, concatenated into
OUT/_background_noise_/pseudo_silence.wav. train.py takes OUT as a pseudo pool
(kws.data.AudioProcessor(..., pseudo_dirs=[OUT], pseudo_frequency=...)). OUT is built beside
its final name and renamed into place at the end; an existing OUT is replaced only with
--overwrite and only if it holds a pseudo_info.json.
"""

import argparse
import os
import sys

from kws.common import UserError, require_dir, run_cli
from kws.labels import SILENCE_LABEL, UNKNOWN_MODES
from kws.pseudo import print_counts, pseudo_labels, read_input, write_pool


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", nargs="+", required=True,
                        help="probabilities CSVs and/or submissions over the same clips")
    parser.add_argument("--threshold", type=float, default=0.7,
                        help="smallest top probability kept (in every probabilities file)")
    parser.add_argument("--test_data", required=True,
                        help="the folder the inputs' fnames are relative to")
    parser.add_argument("--out_dir", required=True, help="pseudo-labelled dataset to create")
    parser.add_argument("--unknown_mode", choices=UNKNOWN_MODES, default="sum",
                        help="when comparing in 12 classes: how other words combine into unknown")
    parser.add_argument("--silence_rms", type=float, default=0.03,
                        help="RMS each silence clip is scaled to in the noise file (0: as is)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out_dir written by this script")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    require_dir(args.test_data, "test folder")
    if args.silence_rms < 0:
        raise UserError("--silence_rms must be >= 0")
    if os.path.exists(args.out_dir) and not args.overwrite:
        raise UserError(f"{args.out_dir} exists: choose a new --out_dir or pass --overwrite")
    inputs = [read_input(p) for p in args.inputs]
    fnames, labels, _ = pseudo_labels(inputs, args.threshold, args.unknown_mode)
    total = len(inputs[0]["fnames"])
    if not fnames:
        raise UserError(f"no clip of {total} passes threshold {args.threshold} with all inputs "
                        "agreeing")
    info = {"inputs": args.inputs, "threshold": args.threshold, "test_data": args.test_data,
            "clips": total, "selected": len(fnames)}
    counts = write_pool(args.out_dir, args.test_data, fnames, labels, args.silence_rms, info,
                        args.overwrite)
    print_counts(counts)
    print(f"kept {sum(counts.values())} of {total} clips (threshold {args.threshold}, "
          f"{len(inputs)} input(s) agreeing) in {args.out_dir}")
    if SILENCE_LABEL in counts and len(counts) == 1:
        print("warning: only silence was kept: the pool has no word folder", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
