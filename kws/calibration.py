"""Clips for freeze_graph's int8 calibration and export checks: drawn from training data (a data
dir train.py reads, or a flat WAV folder), with some background-noise crops, or synthetic noise
and tones when there is no data."""

import json
import os
import sys

import numpy as np

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.audio import AudioError, read_many, read_wav
from kws.common import UserError
from kws.folders import assign_set, list_test_clips, scan_data_dir

NOISE_FRACTION = 0.1  # share of calibration clips cut from _background_noise_ (silence-like input)


DEFAULT_SPLIT = (10.0, 10.0, "")  # train.py's validation and testing percentages, split salt


def find_clips(folder, split=None):
    """(clip paths, background-noise paths) of a flat WAV folder, or of the training side of a
    data dir train.py reads: its split lists where it has them, else with `split` (validation
    %, testing %, salt: a checkpoint's own data) the speaker hash, else every clip (a folder of
    training clips). Validation and test speakers never calibrate."""
    if not os.path.isdir(folder):
        raise UserError(f"calibration folder not found: {folder}")
    try:
        data = scan_data_dir(folder)
    except UserError:  # no word folders: a flat folder of clips
        return list_test_clips(folder)[0], []
    listed = data.validation_list is not None or data.testing_list is not None
    split = split or (DEFAULT_SPLIT if listed else None)
    paths = [os.path.join(data.root, w, f) for w, files in data.words.items() for f in files
             if split is None or assign_set(data, w, f, *split) == "training"]
    if not paths:
        raise UserError(f"{folder}: no clip on the training side of its split to calibrate on")
    return paths, data.noise_files


def read_train_config(checkpoint_path):
    """The config.json train.py wrote beside the checkpoint ({} if there is none)."""
    config = os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), "config.json")
    try:
        with open(config, encoding="utf-8") as f:
            settings = json.load(f)
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


def config_split(checkpoint_path):
    """(validation %, testing %, split salt) the checkpoint was trained with."""
    config = read_train_config(checkpoint_path)
    keys = ("validation_percentage", "testing_percentage", "split_salt")
    return tuple(config.get(k, d) for k, d in zip(keys, DEFAULT_SPLIT))


def config_data_dirs(checkpoint_path):
    """data_dir from the config.json train.py wrote beside the checkpoint, if it still exists."""
    dirs = [d for d in str(read_train_config(checkpoint_path).get("data_dir") or "").split(",")
            if d]
    return dirs if dirs and all(os.path.isdir(d) for d in dirs) else []


def noise_crops(noise_paths, count, rng):
    """count one-second crops of background noise at random gains in [0, 1]."""
    recordings = []
    for path in noise_paths:
        try:
            recordings.append(read_wav(path, num_samples=None))
        except AudioError as e:
            print(f"warning: skipped noise file {e}", file=sys.stderr)
    recordings = [r for r in recordings if len(r) >= CLIP_SAMPLES]
    crops = []
    for _ in range(count if recordings else 0):
        r = recordings[rng.randint(len(recordings))]
        start = rng.randint(len(r) - CLIP_SAMPLES + 1)
        crops.append(r[start:start + CLIP_SAMPLES] * rng.uniform(0, 1))
    return np.asarray(crops, np.float32).reshape(-1, CLIP_SAMPLES)


def load_clips(dirs, num_calibration, num_check, seed, split=None):
    """(calibration clips [n, 16000], check clips [m, 16000]) drawn at random from the training
    side of dirs (find_clips).

    The two sets are disjoint when there are enough clips; with few, the checks reuse clips.
    """
    paths, noise = [], []
    for d in dirs:
        p, n = find_clips(d, split)
        paths += p
        noise += n
    rng = np.random.RandomState(seed)
    num_noise = int(num_calibration * NOISE_FRACTION) if noise else 0
    order = rng.permutation(len(paths))
    calib_idx = order[:num_calibration - num_noise]
    check_idx = order[len(calib_idx):len(calib_idx) + num_check]
    if len(check_idx) < num_check:
        check_idx = np.concatenate([check_idx, order[:num_check - len(check_idx)]])
    wanted = sorted(set(calib_idx.tolist()) | set(check_idx.tolist()))
    audio, kept = read_many([paths[i] for i in wanted])
    row = {wanted[k]: r for r, k in enumerate(kept)}
    calib = audio[[row[i] for i in calib_idx if i in row]]
    check = audio[[row[i] for i in check_idx if i in row]]
    calib = np.concatenate([calib, noise_crops(noise, num_noise, rng)])
    if (num_calibration and len(calib) == 0) or len(check) == 0:
        raise UserError(f"no readable clips in {','.join(dirs)}")
    return calib, check


def synthetic_clips(count, seed):
    """Noise and tones at several volumes: enough to compare float exports with Keras."""
    rng = np.random.RandomState(seed)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    clips = []
    for i in range(count):
        gain = 10 ** rng.uniform(-3, 0)
        if i % 2:
            clip = np.sin(2 * np.pi * rng.uniform(100, 3000) * t) * gain
        else:
            clip = rng.uniform(-1, 1, CLIP_SAMPLES) * gain
        clips.append(clip)
    return np.asarray(clips, np.float32)


def pick_clips(checkpoint, calibration_data, num_calibration, num_check, seed, need_int8):
    """(calibration clips or None, check clips, description of where they came from), from the
    comma-separated folders of calibration_data, else the checkpoint's data_dir."""
    dirs, split = [d for d in calibration_data.split(",") if d], None
    if not dirs:
        dirs, split = config_data_dirs(checkpoint), config_split(checkpoint)
        if dirs:
            print(f"note: no --calibration_data; using the checkpoint's data_dir {','.join(dirs)}",
                  file=sys.stderr)
    if dirs:
        calib, check = load_clips(dirs, num_calibration if need_int8 else 0, num_check, seed,
                                  split)
        return calib, check, ",".join(dirs)
    if need_int8:
        raise UserError("the int8 model needs --calibration_data DIR (training clips); or leave "
                        "it out with --formats pb,tflite")
    print("note: no --calibration_data; checking the float models on synthetic clips",
          file=sys.stderr)
    return None, synthetic_clips(num_check, seed), "synthetic"
