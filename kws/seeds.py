"""Runs of one recipe with different seeds, summarised: the mean and spread of each figure.

The project reports every figure as the mean of 3 seeds with its spread (a best run read alone
inflates it); `summarize_runs` reads each run's `results.json` (written by real.py) and gives,
per figure, its value in every run, mean, sample standard deviation, min and max.
"""

import json
import os
import statistics
from dataclasses import asdict, dataclass

from kws.common import UserError

# figure name -> path of keys in results.json; every model of a run also gives
# <model>_<figure> for each of MODEL_FIGURES (edge_tta_accuracy, seed195_tta_accuracy, ...)
# and <model>_recall_<word> for each word of its held-out recall (seed195_recall_off, ...)
FIGURES = {
    "edge_int8_accuracy": ("edge_int8", "int8", "accuracy"),
    "edge_float_accuracy": ("edge_int8", "float", "accuracy"),
    "stream_threshold": ("streaming", "chosen_on_validation", "threshold"),
    "stream_average_window_ms": ("streaming", "chosen_on_validation", "average_window_ms"),
    # the chosen point on the validation streams themselves: what the choice expected
    "stream_validation_detection_rate": ("streaming", "chosen_on_validation", "detection_rate"),
    "stream_validation_false_accepts_per_hour": ("streaming", "chosen_on_validation",
                                                 "false_accepts_per_hour"),
    "stream_detection_rate": ("streaming", "ours", "detection_rate"),
    "stream_false_accepts_per_hour": ("streaming", "ours", "false_accepts_per_hour"),
    "running_speech_detections_per_hour": ("running_speech", "testing", "detections_per_hour"),
}


MODEL_FIGURES = {"tta_accuracy": "accuracy_tta", "validation_accuracy": "validation_accuracy",
                 "epochs": "epochs", "train_wall_minutes": "train_wall_minutes"}


@dataclass
class Spread:
    values: list
    mean: float
    std: float
    min: float
    max: float


def spread(values):
    """Mean, sample standard deviation (0 for one value), min and max of numbers."""
    values = [float(v) for v in values]
    if not values:
        raise UserError("no values to summarise")
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return Spread(values, statistics.fmean(values), deviation, min(values), max(values))


def lookup(results, keys):
    for key in keys:
        if not isinstance(results, dict) or key not in results:
            return None
        results = results[key]
    return results


def read_results(path):
    if not os.path.isfile(path):
        raise UserError(f"results not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a results.json ({e})") from None


def weakest_word(results):
    """(word, recall) of the int8 edge model's lowest per-word recall on the held-out speakers."""
    recall = lookup(results, ("edge_int8", "int8", "recall")) or {}
    if not recall:
        return None, None
    word = min(recall, key=recall.get)
    return word, recall[word]


def summarize_runs(paths):
    """{"runs": [path...], "figures": {name: Spread as a dict}, "weakest_word": [...]} over
    the runs that have each figure (a figure missing from every run is left out)."""
    runs = [read_results(p) for p in paths]
    figures, paths_of = {}, dict(FIGURES)
    for model in sorted({m for r in runs for m in (r.get("models") or {})}):
        paths_of.update({f"{model}_{figure}": ("models", model, key)
                         for figure, key in MODEL_FIGURES.items()})
        words = {w for r in runs for w in lookup(r, ("models", model, "recall_tta")) or {}}
        paths_of.update({f"{model}_recall_{word}": ("models", model, "recall_tta", word)
                         for word in sorted(words)})
    for name, keys in paths_of.items():
        values = [v for v in (lookup(r, keys) for r in runs) if isinstance(v, (int, float))]
        if values:
            figures[name] = asdict(spread(values))
    weakest = [dict(zip(("word", "recall"), weakest_word(r))) for r in runs]
    return {"runs": list(paths), "figures": figures, "weakest_word": weakest}
