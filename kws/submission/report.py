"""make_submission's results: Kaggle labels from probabilities, unreadable clips, and the score
against known labels (accuracy, recall per class, a confusion-matrix PNG)."""

import numpy as np

from kws.common import UserError, atomic_path
from kws.labels import (
    COMPETITION_LABELS,
    SILENCE_LABEL,
    competition_label,
    model_label,
    submission_label,
    to_12_classes,
)


def unreadable_warning(unreadable, paths_by_fname, errors):
    """One line: the count, and the first few clips with the decoder's reason where known."""
    messages = [str(e) for e in errors]
    shown = [next((m for m in messages if m.startswith(paths_by_fname[f] + ": ")), f)
             for f in unreadable[:3]]
    return (f"warning: {len(unreadable)} unreadable clips labelled silence (probability 1): "
            + "; ".join(shown) + (" ..." if len(unreadable) > 3 else ""))


def fill_unreadable(probs, ok, labels):
    """Rows of unreadable clips become `_silence_` with probability 1 (uniform without one)."""
    probs = probs.copy()
    bad = ~ok
    probs[bad] = 0.0
    if SILENCE_LABEL in labels:
        probs[bad, labels.index(SILENCE_LABEL)] = 1.0
    else:
        probs[bad] = 1.0 / len(labels)
    return probs


def submission_from_probs(probs, labels, ok, unknown_mode):
    probs12 = to_12_classes(probs, labels, unknown_mode)
    sub = [submission_label(COMPETITION_LABELS[i]) for i in probs12.argmax(axis=1)]
    return [label if good else "silence" for label, good in zip(sub, ok)]


def evaluate(fnames, sub_labels, truth, png_path, title=""):
    """Accuracy, per-class recall and a confusion-matrix PNG over the clips with a known label."""
    index = {label: i for i, label in enumerate(COMPETITION_LABELS)}
    confusion = np.zeros((len(COMPETITION_LABELS),) * 2, np.int64)
    for fname, predicted in zip(fnames, sub_labels):
        if fname in truth:
            confusion[index[competition_label(truth[fname])], index[model_label(predicted)]] += 1
    scored = int(confusion.sum())
    if scored == 0:
        raise UserError("none of the labelled clips matches a clip of the submission")
    accuracy = float(np.trace(confusion)) / scored
    print(f"accuracy {accuracy:.4f} on {scored} labelled clips"
          + (f" (of {len(fnames)})" if scored < len(fnames) else ""))
    print("class        recall   clips")
    for i, label in enumerate(COMPETITION_LABELS):
        total = confusion[i].sum()
        recall = f"{confusion[i, i] / total:.4f}" if total else "   -  "
        print(f"{submission_label(label):<12} {recall}  {total:6d}")
    save_confusion_png(confusion, png_path, f"{title} accuracy {accuracy:.4f} (n={scored})")
    return accuracy, confusion


def recall_by_label(confusion):
    """{Kaggle label: recall or None} of a 12-class confusion matrix (rows: truth)."""
    totals = confusion.sum(axis=1)
    return {submission_label(label): float(confusion[i, i] / totals[i]) if totals[i] else None
            for i, label in enumerate(COMPETITION_LABELS)}


def save_confusion_png(confusion, path, title):
    """The confusion matrix as a PNG: each row's share in blue, the counts written in."""
    names = [submission_label(label) for label in COMPETITION_LABELS]
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    from matplotlib.figure import Figure  # only where a confusion PNG is drawn

    fig = Figure(figsize=(8, 7))  # no pyplot: no GUI backend, nothing global to close
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(confusion):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title.strip(), fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
