"""Pseudo-labelling: keep the test clips the models agree on with enough probability and write
them as a training pool (OUT/<label>/*.wav, silence as background noise, pseudo_info.json), the
folder built beside its final name and renamed into place."""

import csv
import io
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

from kws import SAMPLE_RATE
from kws.audio import AudioError, read_many, read_wav, warn_skipped, write_wav
from kws.common import UserError, atomic_write_text
from kws.data import PSEUDO_SOURCES_FILE
from kws.folders import BACKGROUND_NOISE_DIR_NAME
from kws.labels import (
    COMPETITION_LABELS,
    SILENCE_LABEL,
    competition_label,
    model_label,
    to_12_classes,
)
from kws.probs import (
    check_same_clips,
    is_submission_table,
    read_csv_table,
    read_probs,
    read_submission,
)

INFO_FILE = "pseudo_info.json"
SILENCE_FILE = "pseudo_silence.wav"
MAX_SILENCE_GAIN = 30.0  # a near-digital-silence clip is raised at most this much


def read_input(path):
    """Probabilities (CSV or uint8 sidecar) -> dict(kind='probs', ...); a submission ->
    dict(kind='sub', ...)."""
    if not path.lower().endswith(".json") and is_submission_table(read_csv_table(path)):
        fnames, labels = read_submission(path)
        return {"name": path, "kind": "sub", "fnames": fnames, "clip_labels": labels}
    fnames, labels, probs = read_probs(path)
    return {"name": path, "kind": "probs", "fnames": fnames, "labels": labels, "probs": probs}


def votes(item, fnames, twelve, unknown_mode):
    """(label per clip, top probability per clip or None) of one input, rows in fnames order."""
    row = {f: i for i, f in enumerate(item["fnames"])}
    rows = np.array([row[f] for f in fnames])
    if item["kind"] == "sub":
        labels = [item["clip_labels"][i] for i in rows]
        return [competition_label(x) if twelve else model_label(x) for x in labels], None
    probs, names = item["probs"][rows], item["labels"]
    if twelve:
        probs, names = to_12_classes(probs, names, unknown_mode), COMPETITION_LABELS
    top = probs.argmax(axis=1)
    return [names[i] for i in top], probs[np.arange(len(probs)), top]


def pseudo_labels(inputs, threshold, unknown_mode="sum"):
    """(fnames, labels, confidence) of the clips to keep, in the first input's row order.

    confidence is the smallest top probability over the probabilities files.
    """
    if not 0 <= threshold <= 1:
        raise UserError(f"--threshold must be in [0, 1], got {threshold}")
    if not any(item["kind"] == "probs" for item in inputs):
        raise UserError("need at least one probabilities file: submissions alone carry no "
                        "probability to compare with --threshold")
    fnames = inputs[0]["fnames"]
    for item in inputs[1:]:
        check_same_clips(fnames, inputs[0]["name"], item["fnames"], item["name"])
    label_sets = {frozenset(item["labels"]) if item["kind"] == "probs" else None for item in inputs}
    twelve = len(label_sets) > 1 or None in label_sets
    keep = np.ones(len(fnames), bool)
    confidence = np.ones(len(fnames))
    first = None
    for item in inputs:
        labels, top = votes(item, fnames, twelve, unknown_mode)
        if first is None:
            first = labels
        else:
            keep &= np.array([a == b for a, b in zip(first, labels)])
        if top is not None:
            confidence = np.minimum(confidence, top)
    keep &= confidence >= threshold
    kept = np.flatnonzero(keep)
    return [fnames[i] for i in kept], [first[i] for i in kept], confidence[kept]


def is_plain_wav(path):
    """16 kHz mono 16-bit PCM WAV: such files are copied byte for byte."""
    try:
        info = sf.info(path)
    except Exception:
        return False
    return (info.format, info.subtype, info.channels, info.samplerate) == (
        "WAV", "PCM_16", 1, SAMPLE_RATE)


def write_clip(source, target):
    """Copy a plain 16 kHz 16-bit WAV, re-encode anything else; AudioError if unreadable."""
    samples = read_wav(source)  # validates the file either way
    if is_plain_wav(source):
        shutil.copyfile(source, target)  # the whole folder is renamed into place at the end
    else:
        write_wav(target, samples)


def target_name(fname):
    name = fname.replace("\\", "/").replace("/", "__")
    return name if name.lower().endswith(".wav") else name + ".wav"


def silence_noise(clips, target_rms=0.03):
    """Clips [n, 16000] each scaled to target_rms (gain capped), then concatenated."""
    if target_rms > 0:
        rms = np.sqrt(np.mean(np.square(clips, dtype=np.float64), axis=1))
        gain = np.minimum(target_rms / np.maximum(rms, 1e-9), MAX_SILENCE_GAIN)
        clips = clips * gain[:, None].astype(np.float32)
    return np.clip(clips, -1.0, 1.0).reshape(-1)


def write_dataset(out_dir, test_data, fnames, labels, silence_rms=0.03, workers=8):
    """Fill out_dir; returns {label: clips written} (silence counted in its noise file)."""
    words = [(f, lab) for f, lab in zip(fnames, labels) if lab != SILENCE_LABEL]
    silence = [f for f, lab in zip(fnames, labels) if lab == SILENCE_LABEL]
    for label in sorted({lab for _, lab in words}):
        os.makedirs(os.path.join(out_dir, label))
    errors = []

    def one(item):
        fname, label = item
        try:
            write_clip(os.path.join(test_data, fname),
                       os.path.join(out_dir, label, target_name(fname)))
            return label
        except AudioError as e:
            errors.append(e)
            return None

    counts, sources = {}, [["file", "fname"]]
    with ThreadPoolExecutor(workers) as pool:
        for (fname, _), label in zip(words, pool.map(one, words)):
            if label is not None:
                counts[label] = counts.get(label, 0) + 1
                sources.append([f"{label}/{target_name(fname)}", fname])
    warn_skipped(errors, "clips")
    if len(sources) > 1:  # train.py --teacher_probs matches the pool's clips by these fnames
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(sources)
        atomic_write_text(os.path.join(out_dir, PSEUDO_SOURCES_FILE), buffer.getvalue())
    if silence:
        clips, kept = read_many([os.path.join(test_data, f) for f in silence])
        if len(kept):
            write_wav(os.path.join(out_dir, BACKGROUND_NOISE_DIR_NAME, SILENCE_FILE),
                      silence_noise(clips, silence_rms))
            counts[SILENCE_LABEL] = len(kept)
    return counts


def replace_dir(new_dir, out_dir, overwrite):
    if os.path.exists(out_dir):
        if not overwrite:
            raise UserError(f"{out_dir} exists: choose a new --out_dir or pass --overwrite")
        if not os.path.isfile(os.path.join(out_dir, INFO_FILE)):
            raise UserError(f"{out_dir} holds no {INFO_FILE}: not replacing a folder this script "
                            "did not write")
        shutil.rmtree(out_dir)
    os.replace(new_dir, out_dir)


def write_pool(out_dir, test_data, fnames, labels, silence_rms, info, overwrite):
    """Build the pool in a temporary folder beside out_dir, with info (plus the counts) in
    pseudo_info.json, then rename it into place; returns {label: clips written}."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    new_dir = tempfile.mkdtemp(prefix="." + os.path.basename(os.path.abspath(out_dir)) + ".",
                               dir=parent)
    os.chmod(new_dir, 0o755)  # mkdtemp makes it private
    try:
        counts = write_dataset(new_dir, test_data, fnames, labels, silence_rms)
        if not counts:
            raise UserError(f"none of the {len(fnames)} selected clips could be read from "
                            f"{test_data}")
        info = {**info, "counts": counts}
        atomic_write_text(os.path.join(new_dir, INFO_FILE), json.dumps(info, indent=1))
        replace_dir(new_dir, out_dir, overwrite)
    finally:
        if os.path.isdir(new_dir):
            shutil.rmtree(new_dir)
    return counts


def print_counts(counts):
    """One line per label kept: its clip count and where it went."""
    for label in sorted(counts, key=lambda x: (x not in COMPETITION_LABELS, x)):
        where = f"{BACKGROUND_NOISE_DIR_NAME}/{SILENCE_FILE}" if label == SILENCE_LABEL else label
        print(f"{label:<12} {counts[label]:7d}  {where}")
