"""Label a folder of clips one at a time with a frozen model, as on a Raspberry Pi: a Kaggle CSV.

    python make_submission_on_rpi.py --model tf_files/frozen_int8.tflite \
        --test_data data/test/audio --submission_fn rpi_submission.csv

Needs numpy, soundfile and ai_edge_litert for a .tflite model (TensorFlow only for a .pb,
scipy only for clips not at 16 kHz): the clips are read by kws.audio, the reader training uses
(any WAV, channels mixed to mono, resampled to 16 kHz, padded or cropped to one second), so the
Pi labels exactly the samples the model was trained and scored on; a .pb is fed those samples at
`decoded_sample_data`. The labels file is found beside the model (NAME_labels.txt, then
labels.txt) unless --labels is given. Writes `fname,label` rows (labels `silence`/`unknown`
without underscores; an all-words model's labels folded into the 12 classes, as
make_submission.py does) in the order of the sorted file names; fname is the path relative to
--test_data (the bare file name for Kaggle's flat test/audio). An unreadable clip is warned
about and labelled `silence`, so the CSV still has a row for every file. Prints the per-clip
latency (median, p90), the total time and the model size, and the accuracy when the folder is
laid out as <label>/*.wav; `--probs_csv` also writes each clip's probabilities. A clip at another
rate than 16 kHz where scipy is not installed (the Pi bundle) stops the run with one line, before
anything is written.
"""

import argparse
import csv
import os
import sys
import time

import numpy as np

from kws.audio import AudioError, read_wav
from kws.common import UserError, atomic_path, run_cli, write_metrics
from kws.folders import list_test_clips
from kws.labels import (
    COMPETITION_LABELS,
    SILENCE_LABEL,
    UNKNOWN_MODES,
    competition_label,
    is_competition_labels,
    read_answers,
    submission_label,
    to_12_classes,
    truth_label,
)
from kws.runtime import load_model


def label_clips(model, labels, paths, progress_every=5000, unknown_mode="sum", probs=None):
    """(predicted labels or None for unreadable clips, per-clip latencies in s, errors).

    A model of other labels than the 12 competition classes (an all-words model) is folded to
    them as make_submission.py does: every other word adds to `_unknown_`. `probs`, a list,
    receives each clip's model probabilities (None for an unreadable clip)."""
    twelve = is_competition_labels(labels)
    predictions, latencies, errors = [], [], []
    probs = [] if probs is None else probs
    start = time.perf_counter()
    for i, path in enumerate(paths):
        try:
            samples = read_wav(path)
        except AudioError as e:
            errors.append(e)
            predictions.append(None)
            probs.append(None)
            continue
        t0 = time.perf_counter()
        clip_probs = model.predict(samples)
        latencies.append(time.perf_counter() - t0)
        probs.append(clip_probs)
        if twelve:
            predictions.append(labels[int(np.argmax(clip_probs))])
        else:
            folded = to_12_classes(clip_probs.reshape(1, -1), labels, unknown_mode)[0]
            predictions.append(COMPETITION_LABELS[int(np.argmax(folded))])
        if progress_every and (i + 1) % progress_every == 0:
            elapsed = time.perf_counter() - start
            print(f"{i + 1}/{len(paths)} clips, {elapsed:.0f} s, "
                  f"eta {elapsed / (i + 1) * (len(paths) - i - 1):.0f} s", file=sys.stderr)
    return predictions, np.asarray(latencies), errors


def write_submission(path, fnames, predictions):
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["fname", "label"])
            for fname, label in zip(fnames, predictions):
                writer.writerow([fname, submission_label(label or SILENCE_LABEL)])


def write_probabilities(path, fnames, labels, probs):
    """fname,<model label>... : each clip's probabilities to 8 decimals (int8 outputs are
    multiples of 1/256, exact at 8); an unreadable clip's row is left empty. Standard library
    only, unlike make_submission.py's probabilities file (pandas)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["fname", *labels])
            for fname, row in zip(fnames, probs):
                writer.writerow([fname, *([] if row is None else [f"{p:.8f}" for p in row])])


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", "--frozen_graph", default="tf_files/frozen.pb",
                   help="a .pb or .tflite written by freeze_graph.py")
    p.add_argument("--test_data", default="data/test/audio",
                   help="folder of WAV clips (flat, or <label>/*.wav to also get the accuracy)")
    p.add_argument("--submission_fn", default="rpi_submission.csv", help="the CSV to write")
    p.add_argument("--labels", default="",
                   help="labels file (default: NAME_labels.txt or labels.txt beside the model)")
    p.add_argument("--answers", default="",
                   help="CSV fname,label with the true labels, to score a flat folder")
    p.add_argument("--probs_csv", default="",
                   help="also write each clip's probabilities (fname,<label>...) here")
    p.add_argument("--metrics_json", default="",
                   help="also write the figures (latency, accuracy, recall) as JSON")
    p.add_argument("--unknown_mode", choices=UNKNOWN_MODES, default="sum",
                   help="all-words models: how other words combine into unknown")
    p.add_argument("--threads", "--num_threads", type=int, default=1,
                   help="interpreter / TF threads (1 = the single-core latency the prize measured)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    paths, folder_labels = list_test_clips(args.test_data)
    model, labels = load_model(args.model, args.labels or None, args.threads)
    start = time.perf_counter()
    probs = []
    predictions, latencies, errors = label_clips(model, labels, paths,
                                                 unknown_mode=args.unknown_mode, probs=probs)
    total = time.perf_counter() - start
    fnames = [os.path.relpath(p, args.test_data).replace(os.sep, "/") for p in paths]
    write_submission(args.submission_fn, fnames, predictions)
    if args.probs_csv:
        write_probabilities(args.probs_csv, fnames, labels, probs)
    if errors:
        first = "; ".join(str(e) for e in errors[:3])
        print(f"warning: {len(errors)} unreadable clips labelled silence: {first}"
              + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""), file=sys.stderr)
    print(f"wrote {args.submission_fn}: {len(paths)} rows")
    if len(latencies):
        print(f"latency per clip: median {np.median(latencies) * 1e3:.2f} ms, "
              f"p90 {np.percentile(latencies, 90) * 1e3:.2f} ms (model only, batch 1, "
              f"{args.threads} thread{'s' if args.threads > 1 else ''})")
    print(f"total {total:.1f} s for {len(paths)} clips (read + model); "
          f"model {os.path.getsize(args.model):,} bytes")
    metrics = {"model": args.model, "test_data": args.test_data, "clips": len(paths),
               "unreadable": len(errors), "model_bytes": os.path.getsize(args.model),
               "threads": args.threads, "total_seconds": total,
               "latency_ms_median": float(np.median(latencies) * 1e3) if len(latencies) else None,
               "latency_ms_p90": float(np.percentile(latencies, 90) * 1e3)
               if len(latencies) else None}
    truth = dict(zip(fnames, folder_labels)) if folder_labels is not None else None
    if args.answers:
        truth = read_answers(args.answers)
    if truth is not None:
        twelve = is_competition_labels(labels)
        scored = [(p or SILENCE_LABEL, truth_label(truth[f], labels) if twelve
                   else competition_label(truth[f]))
                  for f, p in zip(fnames, predictions) if f in truth]
        if not scored:
            raise UserError(f"no clip of {args.test_data} is named in {args.answers}")
        correct = sum(p == t for p, t in scored)
        print(f"accuracy {correct / len(scored):.4f} ({correct}/{len(scored)}, unreadable clips "
              "count as silence)")
        metrics.update(accuracy=correct / len(scored), scored_clips=len(scored),
                       recall=recall_by_label(scored))
    write_metrics(args.metrics_json, metrics)
    return 0


def recall_by_label(scored):
    """{Kaggle label: recall} over (predicted, true) pairs."""
    totals, hits = {}, {}
    for predicted, true in scored:
        totals[true] = totals.get(true, 0) + 1
        hits[true] = hits.get(true, 0) + (predicted == true)
    return {submission_label(label): hits[label] / totals[label] for label in sorted(totals)}


if __name__ == "__main__":
    run_cli(main)
