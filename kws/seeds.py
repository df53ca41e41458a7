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
            results = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a results.json ({e})") from None
    if not isinstance(results, dict):
        raise UserError(f"{path}: not a results.json (a JSON {type(results).__name__}, "
                        "not an object)")
    return results


def number(path, results, keys):
    """The figure at keys of one run's results: None where it has none, else a number."""
    value = lookup(results, keys)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise UserError(f"{path}: {'.'.join(keys)} is not a number ({value!r:.40})")
    return value


def table(path, results, keys):
    """The object at keys of one run's results ({} where it has none)."""
    value = lookup(results, keys)
    if value is not None and not isinstance(value, dict):
        raise UserError(f"{path}: {'.'.join(keys)} is not an object ({value!r:.40})")
    return value or {}


def weakest_word(path, results):
    """(word, recall) of the int8 edge model's lowest per-word recall on the held-out speakers."""
    keys = ("edge_int8", "int8", "recall")
    recall = {w: number(path, results, (*keys, w)) for w in table(path, results, keys)}
    if not recall:
        return None, None
    word = min(recall, key=recall.get)
    return word, recall[word]


def summarize_runs(paths):
    """{"runs": [path...], "figures": {name: Spread as a dict}, "weakest_word": [...]} over
    the runs that have each figure (a figure missing from every run is left out). A run with
    none of the figures, or with one that is no number, is a UserError naming its file."""
    runs = [read_results(p) for p in paths]
    paths_of = dict(FIGURES)
    for model in sorted({m for p, r in zip(paths, runs) for m in table(p, r, ("models",))}):
        paths_of.update({f"{model}_{figure}": ("models", model, key)
                         for figure, key in MODEL_FIGURES.items()})
        words = {w for p, r in zip(paths, runs)
                 for w in table(p, r, ("models", model, "recall_tta"))}
        paths_of.update({f"{model}_recall_{word}": ("models", model, "recall_tta", word)
                         for word in sorted(words)})
    found = {name: [number(p, r, keys) for p, r in zip(paths, runs)]
             for name, keys in paths_of.items()}
    weakest = [dict(zip(("word", "recall"), weakest_word(p, r))) for p, r in zip(paths, runs)]
    for n, path in enumerate(paths):
        if weakest[n]["word"] is None and all(v[n] is None for v in found.values()):
            raise UserError(f"{path}: not a real.py results.json (none of the figures it "
                            "gives, such as edge_int8.int8.accuracy)")
    figures = {name: asdict(spread([v for v in values if v is not None]))
               for name, values in found.items() if any(v is not None for v in values)}
    return {"runs": list(paths), "figures": figures, "weakest_word": weakest}
