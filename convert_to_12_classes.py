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
This module also holds the probability-file helpers the other scripts share: the probabilities CSV
(`fname,<label>...`, model labels such as `_silence_`) and the submission CSV (`fname,label`).
Writes SUB.csv (submission) and SUB.probs.csv (the 12-class probabilities).
"""

import argparse
import csv
import os
import sys

import numpy as np

from common import UserError, atomic_path, require_file, run_cli
from input_data import (
    COMPETITION_LABELS,
    COMPETITION_WORDS,
    SILENCE_LABEL,
    UNKNOWN_LABEL,
    model_label,
    submission_label,
)

UNKNOWN_MODES = ("sum", "max")
PROB_DECIMALS = 6


# ---- the mapping ---------------------------------------------------------------------------------
def is_competition_labels(labels):
    """True when every label is one of the 12 competition labels (in any order)."""
    return all(model_label(label) in COMPETITION_LABELS for label in labels)


def to_12_classes(probs, labels, mode="sum"):
    """Probabilities over any model labels [n, k] -> [n, 12] in COMPETITION_LABELS order.

    Silence and the ten commands keep their column (zeros when the model lacks one); `_unknown_`
    and every other word are gathered into unknown by `mode` ("sum" or "max"). Rows sum to 1.
    """
    if mode not in UNKNOWN_MODES:
        raise UserError(f"unknown_mode must be one of {UNKNOWN_MODES}, not {mode!r}")
    probs = np.asarray(probs, dtype=np.float64)
    labels = [model_label(label) for label in labels]
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise UserError(f"probabilities of shape {probs.shape} do not match {len(labels)} labels")
    if len(set(labels)) != len(labels):
        raise UserError(f"repeated labels in {labels}")
    out = np.zeros((len(probs), len(COMPETITION_LABELS)), dtype=np.float64)
    unknown_columns = []
    for column, label in enumerate(labels):
        if label == SILENCE_LABEL or label in COMPETITION_WORDS:
            out[:, COMPETITION_LABELS.index(label)] = probs[:, column]
        else:
            unknown_columns.append(column)
    if unknown_columns:
        gather = np.sum if mode == "sum" else np.max
        out[:, COMPETITION_LABELS.index(UNKNOWN_LABEL)] = gather(probs[:, unknown_columns], axis=1)
    return normalise_rows(out)


def normalise_rows(probs):
    """Rows scaled to sum to 1; an all-zero row becomes `unknown` with probability 1."""
    total = probs.sum(axis=1, keepdims=True)
    out = np.divide(probs, total, out=np.zeros_like(probs), where=total > 0)
    if probs.shape[1] == len(COMPETITION_LABELS):
        out[total[:, 0] <= 0, COMPETITION_LABELS.index(UNKNOWN_LABEL)] = 1.0
    return out


def submission_labels(probs, labels, mode="sum"):
    """The Kaggle label (`silence`, `unknown`, a command) of each row of model probabilities."""
    probs12 = to_12_classes(probs, labels, mode)
    return [submission_label(COMPETITION_LABELS[i]) for i in probs12.argmax(axis=1)]


# ---- files ---------------------------------------------------------------------------------------
def output_paths(submission_fn):
    """SUB.csv -> the files written beside it (probabilities CSV, uint8 memmap, sidecar, PNG)."""
    stem = submission_fn[:-4] if submission_fn.lower().endswith(".csv") else submission_fn
    return {"submission": submission_fn, "probs_csv": stem + ".probs.csv",
            "probs_u8": stem + ".probs.u8", "probs_json": stem + ".probs.json",
            "confusion_png": stem + ".confusion.png"}


def read_csv_table(path):
    """A CSV as a pandas DataFrame (fname as strings, numbers parsed), one-line errors."""
    import pandas as pd

    require_file(path, "CSV file")
    try:
        table = pd.read_csv(path, dtype={"fname": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable CSV ({str(e).splitlines()[0][:120]})") from None
    if len(table.columns) < 2 or table.columns[0] != "fname":
        raise UserError(f"{path}: expected a header starting with 'fname', got "
                        f"{','.join(map(str, table.columns[:4]))}")
    if len(table) == 0:
        raise UserError(f"{path}: no rows")
    if table["fname"].duplicated().any():
        repeated = table["fname"][table["fname"].duplicated()].iloc[0]
        raise UserError(f"{path}: repeated fname {repeated}")
    return table


def is_submission_table(table):
    return list(table.columns) == ["fname", "label"]


def read_probs_csv(path):
    """A probabilities CSV -> (fnames list, model labels list, float64 [n, k])."""
    table = read_csv_table(path)
    if is_submission_table(table):
        raise UserError(f"{path}: a submission (fname,label), not a probabilities file")
    labels = [model_label(c) for c in table.columns[1:]]
    if len(set(labels)) != len(labels):
        raise UserError(f"{path}: repeated label columns")
    import pandas as pd

    columns = table[table.columns[1:]]
    if not all(pd.api.types.is_numeric_dtype(t) for t in columns.dtypes):
        raise UserError(f"{path}: non-numeric or missing probability")
    probs = columns.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1 + 1e-6:
        raise UserError(f"{path}: probabilities must be finite and in [0, 1]")
    return list(table["fname"]), labels, probs


def read_submission(path):
    """A submission CSV -> (fnames list, labels list as written, e.g. `silence`)."""
    table = read_csv_table(path)
    if not is_submission_table(table):
        raise UserError(f"{path}: expected a submission with header fname,label")
    return list(table["fname"]), [str(label) for label in table["label"]]


def write_probs_csv(path, fnames, labels, probs):
    """fname,<label>... with one row per clip, probabilities to 6 decimals; atomic."""
    import pandas as pd

    table = pd.DataFrame(np.asarray(probs, dtype=np.float64), columns=list(labels))
    table.insert(0, "fname", list(fnames))
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format=f"%.{PROB_DECIMALS}f", lineterminator="\n")


def write_submission(path, fnames, sub_labels):
    """The Kaggle submission: fname,label; atomic."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")  # quotes a fname that holds a comma
            writer.writerow(["fname", "label"])
            writer.writerows(zip(fnames, sub_labels))


def print_label_counts(sub_labels, file=sys.stdout):
    counts = {label: 0 for label in map(submission_label, COMPETITION_LABELS)}
    for label in sub_labels:
        counts[label] = counts.get(label, 0) + 1
    print("predicted: " + ", ".join(f"{k} {v}" for k, v in counts.items()), file=file)


def write_outputs(paths, fnames, labels, probs, sub_labels):
    """The probabilities CSV and the submission of output_paths(), then the predicted counts."""
    write_probs_csv(paths["probs_csv"], fnames, labels, probs)
    write_submission(paths["submission"], fnames, sub_labels)
    print_label_counts(sub_labels)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probs", required=True,
                        help="probabilities CSV written by make_submission.py or ensemble.py")
    parser.add_argument("--submission_fn", required=True,
                        help="submission CSV to write; the 12-class probabilities go to "
                             "<stem>.probs.csv beside it")
    parser.add_argument("--unknown_mode", choices=UNKNOWN_MODES, default="sum",
                        help="how non-command words combine into unknown: sum (probability of "
                             "the union) or max")
    args = parser.parse_args(argv)
    fnames, labels, probs = read_probs_csv(args.probs)
    paths = output_paths(args.submission_fn)
    for path in (paths["submission"], paths["probs_csv"]):
        if os.path.abspath(path) == os.path.abspath(args.probs):
            raise UserError(f"would overwrite the input {path}: choose another --submission_fn")
    probs12 = to_12_classes(probs, labels, args.unknown_mode)
    sub = [submission_label(COMPETITION_LABELS[i]) for i in probs12.argmax(axis=1)]
    write_outputs(paths, fnames, COMPETITION_LABELS, probs12, sub)
    print(f"wrote {paths['submission']} and {paths['probs_csv']} ({len(fnames)} clips, "
          f"{len(labels)} -> 12 classes, unknown by {args.unknown_mode})")


if __name__ == "__main__":
    run_cli(main)
