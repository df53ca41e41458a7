"""The label vocabulary: the 12 competition classes, and how any label folds into them.

Needs only numpy and the standard library (the Pi script imports it). Three spellings of a
label exist: the model's (`_silence_`, `_unknown_`, a word: what labels.txt holds), Kaggle's
submission labels (`silence`, `unknown`, a command) and a folder's name (either).
"""

import csv

import numpy as np

from kws.common import UserError, read_text

SILENCE_LABEL = "_silence_"
UNKNOWN_LABEL = "_unknown_"
COMPETITION_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
COMPETITION_LABELS = [SILENCE_LABEL, UNKNOWN_LABEL] + COMPETITION_WORDS
UNKNOWN_MODES = ("sum", "max")


def submission_label(label):
    """Model label -> Kaggle submission label (`_silence_` -> `silence`)."""
    return label.strip("_") if label in (SILENCE_LABEL, UNKNOWN_LABEL) else label


def model_label(label):
    """Submission or folder label -> model label (`silence` -> `_silence_`)."""
    return {"silence": SILENCE_LABEL, "unknown": UNKNOWN_LABEL}.get(label, label)


def competition_label(label):
    """Any label in the 12-class space: silence and the ten commands stay, the rest is unknown."""
    label = model_label(label)
    return label if label == SILENCE_LABEL or label in COMPETITION_WORDS else UNKNOWN_LABEL


def competition_index(labels):
    """Index into COMPETITION_LABELS of each label, folded."""
    return np.array([COMPETITION_LABELS.index(competition_label(lb)) for lb in labels], np.int64)


def truth_label(folder, labels):
    """A test folder's name as one of the model's labels (other words count as `_unknown_`)."""
    label = model_label(folder)
    return label if label in labels else UNKNOWN_LABEL


def is_competition_labels(labels):
    """True when every label is one of the 12 competition labels (in any order)."""
    return all(model_label(label) in COMPETITION_LABELS for label in labels)


def normalise_rows(probs):
    """Rows scaled to sum to 1; an all-zero row of 12 classes becomes `unknown`."""
    total = probs.sum(axis=1, keepdims=True)
    out = np.divide(probs, total, out=np.zeros_like(probs), where=total > 0)
    if probs.shape[1] == len(COMPETITION_LABELS):
        out[total[:, 0] <= 0, COMPETITION_LABELS.index(UNKNOWN_LABEL)] = 1.0
    return out


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


def submission_labels(probs, labels, mode="sum"):
    """The Kaggle label (`silence`, `unknown`, a command) of each row of model probabilities."""
    probs12 = to_12_classes(probs, labels, mode)
    return [submission_label(COMPETITION_LABELS[i]) for i in probs12.argmax(axis=1)]


def read_answers(path):
    """An answer key or a submission, `fname,label`, as {fname: label} (standard library only)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    if not rows or rows[0] != ["fname", "label"]:
        raise UserError(f"{path}: expected a CSV with header fname,label")
    answers = {}
    for row in rows[1:]:
        if len(row) != 2:
            raise UserError(f"{path}: a row without two fields: {row[:3]}")
        if row[0] in answers:
            raise UserError(f"{path}: repeated fname {row[0]}")
        answers[row[0]] = row[1]
    if not answers:
        raise UserError(f"{path}: no rows")
    return answers


def read_labels(path):
    """A labels.txt: one label per line."""
    labels = [line.strip() for line in read_text(path, "labels").splitlines() if line.strip()]
    if not labels:
        raise UserError(f"{path}: no labels")
    return labels
