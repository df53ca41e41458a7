"""Average the class probabilities of several models and write the ensemble's submission.

    python ensemble.py --probs subs/seed195.probs.csv subs/seed106.probs.csv --weights 2,1 \
        --submission_fn subs/ensemble.csv

Rows are matched by fname (the files may list the clips in any order; the output follows the first
file) and columns by label (any order). Files over different clip sets or label sets are refused:
convert all-words files to the 12 classes with convert_to_12_classes.py before mixing them with
12-class ones. Inputs are SUB.probs.csv files or the SUB.probs.json sidecars of uint8 memmaps.
Writes SUB.csv (submission), SUB.probs.csv (the weighted mean probabilities) and SUB.probs.u8
with SUB.probs.json (the mean in the 12 classes as a uint8 memmap, as the winning entry kept it).
"""

import argparse
import os

import numpy as np

from kws.common import UserError, run_cli
from kws.labels import UNKNOWN_MODES, submission_labels
from kws.probs import average, output_paths, read_probs, write_outputs


def parse_weights(text, count):
    if text is None:
        return np.ones(count) / count
    try:
        weights = np.array([float(w) for w in text.split(",")])
    except ValueError:
        raise UserError(f"--weights must be comma-separated numbers, got {text!r}") from None
    if len(weights) != count:
        raise UserError(f"--weights has {len(weights)} values for {count} files")
    if not np.all(np.isfinite(weights)) or weights.min() < 0 or weights.sum() <= 0:
        raise UserError("--weights must be >= 0 with a positive sum")
    return weights / weights.sum()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probs", nargs="+", required=True,
                        help="probabilities files: SUB.probs.csv, or SUB.probs.json for a "
                             "uint8 memmap")
    parser.add_argument("--weights", help="comma-separated weights, one per file (default equal)")
    parser.add_argument("--submission_fn", required=True,
                        help="submission CSV to write; the mean probabilities go to "
                             "<stem>.probs.csv beside it")
    parser.add_argument("--unknown_mode", choices=UNKNOWN_MODES, default="sum",
                        help="all-words files: how other words combine into unknown")
    args = parser.parse_args(argv)
    weights = parse_weights(args.weights, len(args.probs))
    paths = output_paths(args.submission_fn)
    inputs = {os.path.abspath(p) for p in args.probs}
    for path in (paths[k] for k in ("submission", "probs_csv", "probs_u8", "probs_json")):
        if os.path.abspath(path) in inputs:
            raise UserError(f"would overwrite an input, {path}: choose another --submission_fn")
    tables = [read_probs(p) for p in args.probs]
    fnames, labels, mean = average(tables, args.probs, weights)
    sub = submission_labels(mean, labels, args.unknown_mode)
    write_outputs(paths, fnames, labels, mean, sub, args.unknown_mode)
    print(f"wrote {paths['submission']} and {paths['probs_csv']}: mean of {len(tables)} files "
          f"(weights {', '.join(f'{w:.3g}' for w in weights)}) over {len(fnames)} clips")


if __name__ == "__main__":
    run_cli(main)
