"""Hard negatives: the one-second windows of speech with no command word that a model hears as
a command, to train on as unknown words (the wake-word recipe). Mine only recordings of the
training side: windows of held-out or validation audio would leak into training.
"""

import os
import re

import numpy as np

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.audio import AudioError, read_wav, write_wav
from kws.common import UserError, atomic_dir
from kws.labels import COMPETITION_WORDS

FOLDER = "hard_negative"  # no command word: its windows train as _unknown_


def command_scores(model, labels, samples, hop):
    """(window starts, the highest command-word probability of each window, its word index)."""
    commands = np.array([i for i, label in enumerate(labels) if label in COMPETITION_WORDS])
    if len(samples) < CLIP_SAMPLES:
        samples = np.pad(samples, (0, CLIP_SAMPLES - len(samples)))
    starts = np.arange(0, len(samples) - CLIP_SAMPLES + 1, hop)
    best, word = np.zeros(len(starts), np.float32), np.zeros(len(starts), np.int64)
    for n, start in enumerate(starts):
        probs = model.predict(np.ascontiguousarray(samples[start:start + CLIP_SAMPLES]))
        k = int(np.argmax(probs[commands]))
        best[n], word[n] = probs[commands[k]], commands[k]
    return starts, best, word


def hard_windows(starts, scores, threshold, min_gap=CLIP_SAMPLES * 3 // 2):
    """Indices of the windows scoring at least threshold, greedily by score, no two starting
    closer than min_gap (one window per misheard word, not one per hop: windows up to a second
    and a word's length apart hold the same word)."""
    chosen = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < threshold:
            break
        if all(abs(int(starts[i]) - int(starts[j])) >= min_gap for j in chosen):
            chosen.append(int(i))
    return sorted(chosen, key=lambda i: starts[i])


def window_name(path, start):
    """The recording's folder and name (yes/x.wav and no/x.wav get different windows) and the
    window's start; not where the tree lives, so a run names its windows as on another machine
    (their names order the training files)."""
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    stem = os.path.splitext(os.path.basename(path))[0]
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{folder}_{stem}")
    return f"{safe}_{start * 1000 // SAMPLE_RATE:08d}ms.wav"


def unique_name(name, taken):
    """name, or name with _2, _3... before its extension when a recording of the same folder
    and name elsewhere in the tree took it; adds it to taken."""
    stem, ext = os.path.splitext(name)
    n, unique = 1, name
    while unique in taken:
        n += 1
        unique = f"{stem}_{n}{ext}"
    taken.add(unique)
    return unique


def mine(model, labels, paths, threshold, hop, out_dir):
    """Write the hard windows of every readable recording as out_dir/hard_negative/, replacing
    the windows of an earlier run (written into a hidden folder beside it, swapped in at the
    end); returns (rows of mined.json, unreadable recordings' errors). A UserError, with
    out_dir left as it was, when not one recording can be read."""
    with atomic_dir(os.path.join(out_dir, FOLDER)) as folder:
        rows, errors, taken = [], [], set()
        for path in paths:
            try:
                samples = read_wav(path, num_samples=None)
            except AudioError as e:
                errors.append(e)
                continue
            starts, scores, words = command_scores(model, labels, samples, hop)
            for i in hard_windows(starts, scores, threshold):
                start = int(starts[i])
                name = unique_name(window_name(path, start), taken)
                write_wav(os.path.join(folder, name), samples[start:start + SAMPLE_RATE])
                rows.append({"file": f"{FOLDER}/{name}", "source": path,
                             "time_ms": start * 1000 // SAMPLE_RATE, "heard": labels[words[i]],
                             "score": round(float(scores[i]), 4)})
        if paths and len(errors) == len(paths):
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise UserError(f"no recording to mine could be read: {errors[0]}{more}")
    return rows, errors
