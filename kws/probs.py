"""Probability files: what make_submission.py, convert_to_12_classes.py, ensemble.py and
create_pseudo_with_thresh.py read and write.

- SUB.csv: the Kaggle submission, `fname,label` (labels `silence`, `unknown`, a command);
- SUB.probs.csv: `fname,<model label>...`, one row of probabilities per clip;
- SUB.probs.u8 + SUB.probs.json: the same probabilities as a raw uint8 [n, k] memmap
  (round(p * 255)) and its sidecar (shape, labels, fnames, scale), the compact form the winning
  entry averaged its ensemble in. convert_to_12_classes.py and ensemble.py write it in the 12
  competition classes; make_submission.py in the model's labels (its sidecar says which).

fname is a clip's path relative to the folder that was labelled.
"""

import csv
import json
import os
import sys

import numpy as np

from kws.common import UserError, atomic_path, atomic_write_text, require_file
from kws.labels import (
    COMPETITION_LABELS,
    model_label,
    submission_label,
    to_12_classes,
)

PROB_DECIMALS = 6


def output_paths(submission_fn):
    """SUB.csv -> the files written beside it (probabilities CSV, uint8 memmap, sidecar, PNG)."""
    stem = submission_fn[:-4] if submission_fn.lower().endswith(".csv") else submission_fn
    return {"submission": submission_fn, "probs_csv": stem + ".probs.csv",
            "probs_u8": stem + ".probs.u8", "probs_json": stem + ".probs.json",
            "confusion_png": stem + ".confusion.png"}


# ---- CSV ---------------------------------------------------------------------------------------
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


# ---- uint8 memmap ------------------------------------------------------------------------------
def write_probs_u8(u8_path, json_path, fnames, labels, probs, extra=None):
    """uint8 [n, k] = round(probs * 255) as a raw file, plus a JSON sidecar describing it.
    The sidecar is written last: a reader that finds it finds a complete .u8 beside it."""
    quantised = np.rint(np.clip(probs, 0, 1) * 255).astype(np.uint8)
    with atomic_path(u8_path) as tmp:
        quantised.tofile(tmp)
    sidecar = {"shape": list(quantised.shape), "dtype": "uint8", "scale": 255,
               "labels": list(labels), "fnames": list(fnames), **(extra or {})}
    atomic_write_text(json_path, json.dumps(sidecar))


def read_probs_u8(json_path):
    """(fnames, labels, float32 probabilities [n, k]) from a SUB.probs.json and its .u8 file,
    refusing a sidecar and a data file that disagree."""
    require_file(json_path, "probabilities sidecar")
    try:
        with open(json_path, encoding="utf-8") as f:
            sidecar = json.load(f)
        shape = tuple(int(n) for n in sidecar["shape"])
        fnames, labels, scale = sidecar["fnames"], sidecar["labels"], float(sidecar["scale"])
        if not all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                   for v in (fnames, labels)):
            raise TypeError("fnames and labels must be lists of strings")
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{json_path}: not a probabilities sidecar ({e})") from None
    u8_path = json_path[:-len(".json")] + ".u8" if json_path.endswith(".json") else json_path
    require_file(u8_path, "uint8 probabilities")
    if len(shape) != 2 or shape != (len(fnames), len(labels)) or scale <= 0:
        raise UserError(f"{json_path}: shape {list(shape)} does not match its {len(fnames)} "
                        f"fnames and {len(labels)} labels")
    size = os.path.getsize(u8_path)
    if size != shape[0] * shape[1]:
        raise UserError(f"{u8_path} holds {size:,} bytes; its sidecar says {shape[0]} x "
                        f"{shape[1]} = {shape[0] * shape[1]:,}")
    data = np.memmap(u8_path, dtype=np.uint8, mode="r", shape=shape) if size else \
        np.zeros(shape, np.uint8)
    return list(fnames), [model_label(lb) for lb in labels], np.asarray(data, np.float32) / scale


def read_probs(path):
    """(fnames, model labels, probabilities [n, k]) of a SUB.probs.csv or a SUB.probs.json."""
    if path.lower().endswith(".json"):
        return read_probs_u8(path)
    return read_probs_csv(path)


# ---- several files -----------------------------------------------------------------------------
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


def average(tables, names, weights=None):
    """(fnames, labels, weighted mean probabilities) of tables; weights default to equal."""
    fnames, labels, probs = align(tables, names)
    weights = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    weights = weights / weights.sum()
    mean = sum(w * p for w, p in zip(weights, probs))
    return fnames, labels, mean


# ---- a submission and its probabilities --------------------------------------------------------
def print_label_counts(sub_labels, file=sys.stdout):
    counts = {label: 0 for label in map(submission_label, COMPETITION_LABELS)}
    for label in sub_labels:
        counts[label] = counts.get(label, 0) + 1
    print("predicted: " + ", ".join(f"{k} {v}" for k, v in counts.items()), file=file)


def write_outputs(paths, fnames, labels, probs, sub_labels, unknown_mode="sum"):
    """The probabilities CSV, the 12-class uint8 memmap and the submission of output_paths(),
    then the predicted counts."""
    write_probs_csv(paths["probs_csv"], fnames, labels, probs)
    probs12 = to_12_classes(probs, labels, unknown_mode)
    write_probs_u8(paths["probs_u8"], paths["probs_json"], fnames, COMPETITION_LABELS, probs12,
                   {"unknown_mode": unknown_mode})
    write_submission(paths["submission"], fnames, sub_labels)
    print_label_counts(sub_labels)
