"""Average the class probabilities of several models and write the ensemble's submission.

    python ensemble.py --probs subs/seed195.probs.csv subs/seed106.probs.csv --weights 2,1 \
        --submission_fn subs/ensemble.csv

Rows are matched by fname (the files may list the clips in any order; the output follows the first
file) and columns by label (any order). Files over different clip sets or label sets are refused:
convert all-words files to the 12 classes with convert_to_12_classes.py before mixing them with
12-class ones. Writes SUB.csv (submission) and SUB.probs.csv (the weighted mean probabilities).
"""

import argparse
import os

import numpy as np

from common import UserError, run_cli
from convert_to_12_classes import (
    UNKNOWN_MODES,
    output_paths,
    read_probs_csv,
    submission_labels,
    write_outputs,
)


def check_same_clips(fnames0, name0, fnames, name):
    """Raise UserError unless two files list the same clips (in any order)."""
    if set(fnames) != set(fnames0):
        only_here = sorted(set(fnames) - set(fnames0))
        only_first = sorted(set(fnames0) - set(fnames))
        example = (only_here or only_first)[0]
        raise UserError(f"{name} and {name0} cover different clips ({len(only_here)} only in "
                        f"{name}, {len(only_first)} only in {name0}, e.g. {example})")


def align(tables, names):
    """Tables [(fnames, labels, probs)] reordered to the first one's rows and columns.

    Raises UserError naming the first pair of files that cover different clips or labels.
    """
    fnames0, labels0, _ = tables[0]
    aligned = []
    for (fnames, labels, probs), name in zip(tables, names):
        check_same_clips(fnames0, names[0], fnames, name)
        if set(labels) != set(labels0):
            raise UserError(f"{name} and {names[0]} have different labels "
                            f"({len(labels)} vs {len(labels0)}: "
                            f"{','.join(sorted(set(labels) ^ set(labels0))[:5])} differ); "
                            "convert all-words files with convert_to_12_classes.py first")
        row = {f: i for i, f in enumerate(fnames)}
        rows = np.array([row[f] for f in fnames0])
        columns = np.array([labels.index(label) for label in labels0])
        aligned.append(probs[rows][:, columns])
    return fnames0, labels0, aligned


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


def average(tables, names, weights=None):
    """(fnames, labels, weighted mean probabilities) of tables; weights default to equal."""
    fnames, labels, probs = align(tables, names)
    weights = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    weights = weights / weights.sum()
    mean = sum(w * p for w, p in zip(weights, probs))
    return fnames, labels, mean


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probs", nargs="+", required=True,
                        help="probabilities CSVs (make_submission.py's SUB.probs.csv)")
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
    for path in (paths["submission"], paths["probs_csv"]):
        if os.path.abspath(path) in inputs:
            raise UserError(f"would overwrite an input, {path}: choose another --submission_fn")
    tables = [read_probs_csv(p) for p in args.probs]
    fnames, labels, mean = average(tables, args.probs, weights)
    sub = submission_labels(mean, labels, args.unknown_mode)
    write_outputs(paths, fnames, labels, mean, sub)
    print(f"wrote {paths['submission']} and {paths['probs_csv']}: mean of {len(tables)} files "
          f"(weights {', '.join(f'{w:.3g}' for w in weights)}) over {len(fnames)} clips")


if __name__ == "__main__":
    run_cli(main)
