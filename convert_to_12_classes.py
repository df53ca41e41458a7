"""Turn all-words probabilities into the 12 competition classes and write a Kaggle submission.

    python convert_to_12_classes.py --probs sub_all.probs.csv --submission_fn sub12.csv

A model trained on every word (`--wanted_words all`: `_silence_`, `_unknown_` and 30 words) says
which word it heard; Kaggle wants `silence`, `unknown` or one of the ten commands. `_silence_` and
the commands keep their probability; `_unknown_` and every other word go to `unknown`:

- `--unknown_mode sum` (default): the words are disjoint events, so the probability that the clip is
  *some* non-command word is the sum of theirs. This is the principled choice.
- `--unknown_mode max`: what some competition entries did. With 20 unknown words each holding a
  little probability, the sum can outvote a command that won every single-word comparison; the max
  is less biased toward `unknown` (at the price of no longer being a probability, hence the
  renormalisation).

Rows are renormalised to sum to 1. The inputs are probabilities already: no softmax is applied.
Writes SUB.csv (submission), SUB.probs.csv (the 12-class probabilities) and SUB.probs.u8 with its
sidecar SUB.probs.json (the same as a uint8 memmap; ensemble.py reads either form).
"""

import argparse
import os

from kws.common import UserError, run_cli
from kws.labels import COMPETITION_LABELS, UNKNOWN_MODES, submission_labels, to_12_classes
from kws.probs import output_paths, read_probs, write_outputs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probs", required=True,
                        help="probabilities written by make_submission.py or ensemble.py: "
                             "SUB.probs.csv, or SUB.probs.json for its uint8 memmap")
    parser.add_argument("--submission_fn", required=True,
                        help="submission CSV to write; the 12-class probabilities go to "
                             "<stem>.probs.csv and <stem>.probs.u8 (+ .probs.json) beside it")
    parser.add_argument("--unknown_mode", choices=UNKNOWN_MODES, default="sum",
                        help="how non-command words combine into unknown: sum (probability of "
                             "the union) or max")
    args = parser.parse_args(argv)
    fnames, labels, probs = read_probs(args.probs)
    paths = output_paths(args.submission_fn)
    outputs = ("submission", "probs_csv", "probs_u8", "probs_json")
    for path in (paths[k] for k in outputs):
        if os.path.abspath(path) == os.path.abspath(args.probs):
            raise UserError(f"would overwrite the input {path}: choose another --submission_fn")
    probs12 = to_12_classes(probs, labels, args.unknown_mode)
    sub = submission_labels(probs12, COMPETITION_LABELS)
    write_outputs(paths, fnames, COMPETITION_LABELS, probs12, sub, args.unknown_mode)
    print(f"wrote {paths['submission']}, {paths['probs_csv']} and {paths['probs_u8']} "
          f"({len(fnames)} clips, {len(labels)} -> 12 classes, unknown by {args.unknown_mode})")


if __name__ == "__main__":
    run_cli(main)
