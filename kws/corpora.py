"""The real corpora beside the dev clips, staged for training and streams: the extra Speech
Commands speakers (split by speaker with the pack alike), other speech with no command word
(split by phrase group), and running speech (split by speaker).

Each stager links or writes into a folder of its own and returns what it staged; a manifest row
whose file is missing is counted and named in one warning line, and the run goes on.
"""

import csv
import json
import os
import re
import shutil
import sys

import numpy as np

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.audio import ENERGY_FRAME, AudioError, frame_energy, read_wav, warn_skipped, write_wav
from kws.common import UserError, atomic_write_text, require_dir, require_file
from kws.folders import SETS, is_audio_name, which_set

# The extra speakers (outside the official test set) and the pack's images of them: a salted
# speaker hash sends this share to validation, the rest trains. Hundreds of validation speakers
# choose checkpoints and thresholds far more steadily than the two dozen dev ones.
EXTRA_SALT, EXTRA_VALIDATION_PERCENT = "extra", 20.0
# other_speech's phrase groups (its speakers recur across phrases of one source, so it is
# split by phrase): two for the validation streams, three for the held-out streams, the rest
# train as unknown words
OTHER_SPEECH_GROUPS = {"validation": ("alexa", "smart mirror"),
                       "testing": ("jarvis", "snowboy", "view glass")}
# running speech (LibriSpeech): speakers by a salted hash
RUNNING_SALT, RUNNING_VALIDATION_PERCENT, RUNNING_TESTING_PERCENT = "running", 20.0, 30.0


def extra_split(speaker):
    """'training' or 'validation' for a speaker outside the dev set (audio and pack alike)."""
    return which_set(f"{speaker}_nohash_0", EXTRA_VALIDATION_PERCENT, 0.0, EXTRA_SALT)


def read_manifest(path, columns):
    require_file(path, "manifest")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    missing_columns = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing_columns:
        raise UserError(f"{path}: need a header with {', '.join(columns)} and at least one row")
    return rows


def existing_rows(rows, root, what):
    """The manifest rows whose file exists; one warning names the missing ones."""
    kept, missing = [], []
    for row in rows:
        (kept if os.path.isfile(os.path.join(root, row["file"])) else missing).append(row)
    if missing:
        shown = ", ".join(r["file"] for r in missing[:3])
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        print(f"warning: {len(missing)} {what} manifest rows name missing files: {shown}{more}",
              file=sys.stderr)
    return kept


def fresh_dir(out):
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)


def link_into(path, link):
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(os.path.abspath(path), link)


def stage_extra(shared, out):
    """speech_commands_extra as a data folder out/<word>/<speaker>_nohash_<n>.opus of links with
    validation_list.txt naming the validation speakers' clips (the rest train), so kws.data
    splits it as the dev folder, and the pack loses the validation speakers' images through
    the same speaker set. Returns {"dir", "speakers": {set: n}, "clips": {set: n}}."""
    source = require_dir(os.path.join(shared, "speech_commands_extra"), "extra speech commands")
    rows = existing_rows(read_manifest(os.path.join(source, "manifest.csv"),
                                       ("file", "word", "speaker")), source, "extra set")
    fresh_dir(out)
    validation, speakers, clips = [], {s: set() for s in SETS[:2]}, {s: 0 for s in SETS[:2]}
    for row in rows:
        which = extra_split(row["speaker"])
        name = os.path.basename(row["file"])
        link_into(os.path.join(source, row["file"]), os.path.join(out, row["word"], name))
        if which == "validation":
            validation.append(f"{row['word']}/{name}")
        speakers[which].add(row["speaker"])
        clips[which] += 1
    atomic_write_text(os.path.join(out, "validation_list.txt"), "\n".join(validation) + "\n")
    return {"dir": out, "speakers": {k: len(v) for k, v in speakers.items()}, "clips": clips}


def loudest_second(samples, num_samples=CLIP_SAMPLES):
    """The num_samples window of samples with the most energy (10 ms steps): a one-second
    training or stream clip of a longer phrase holds its speech, not its leading silence."""
    if len(samples) <= num_samples:
        return np.pad(samples, (0, num_samples - len(samples)))
    energy = frame_energy(samples)
    width = num_samples // ENERGY_FRAME
    sums = np.convolve(energy, np.ones(width), "valid")
    start = int(np.argmax(sums)) * ENERGY_FRAME
    return samples[start:start + num_samples]


def slug(text):
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "other"


def stage_other_speech(shared, out):
    """other_speech as out/<set>/other_<phrase>/<source>_<n>.wav: the loudest second of each
    clip, the phrase groups of OTHER_SPEECH_GROUPS in validation and testing, the rest in
    training. Every folder name is a non-command word, so each clip reads as _unknown_.
    Returns {set: folder} and writes out/summary.json (what was staged; reused if the recipe
    is unchanged)."""
    source = require_dir(os.path.join(shared, "other_speech"), "other speech")
    recipe = {"source": os.path.abspath(source), "groups": OTHER_SPEECH_GROUPS,
              "clip_samples": CLIP_SAMPLES}
    folders = {which: os.path.join(out, which) for which in SETS}
    if read_summary(out).get("recipe") == json.loads(json.dumps(recipe)):
        return folders
    rows = existing_rows(read_manifest(os.path.join(source, "manifest.csv"),
                                       ("file", "phrase")), source, "other speech")
    fresh_dir(out)
    counts, errors = {}, []
    for n, row in enumerate(rows):
        phrase = row["phrase"].strip().lower()
        which = other_speech_split(phrase)
        try:
            samples = read_wav(os.path.join(source, row["file"]), num_samples=None)
        except AudioError as e:
            errors.append(e)
            continue
        name = f"{slug(row['file'].split('/')[0])}_{n}.wav"
        write_wav(os.path.join(folders[which], f"other_{slug(phrase)}", name),
                  loudest_second(samples))
        counts[which] = counts.get(which, 0) + 1
    warn_skipped(errors, "other-speech clips")
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    atomic_write_text(os.path.join(out, "summary.json"),
                      json.dumps({"recipe": recipe, "clips": counts}, indent=1))
    return folders


def other_speech_split(phrase):
    """The set of an other_speech phrase (lower case): its group's, or training."""
    return next((which for which, phrases in OTHER_SPEECH_GROUPS.items() if phrase in phrases),
                "training")


def running_speech_files(source):
    """[(speaker, path)] of every running-speech recording under source, sorted by path."""
    found = []
    for root, _, files in os.walk(source):
        for name in sorted(files):
            if is_audio_name(name):
                found.append((name.split("-")[0], os.path.join(root, name)))
    return sorted(found, key=lambda item: item[1])


def training_recordings(shared):
    """The whole recordings of the training side of other_speech (every phrase group but the
    validation and held-out ones) and running_speech (its training speakers): where hard
    negatives may be mined, since no validation or held-out voice or phrase is among them."""
    source = require_dir(os.path.join(shared, "other_speech"), "other speech")
    rows = existing_rows(read_manifest(os.path.join(source, "manifest.csv"),
                                       ("file", "phrase")), source, "other speech")
    paths = [os.path.join(source, row["file"]) for row in rows
             if other_speech_split(row["phrase"].strip().lower()) == "training"]
    running = require_dir(os.path.join(shared, "running_speech"), "running speech")
    return paths + [path for speaker, path in running_speech_files(running)
                    if running_split(speaker) == "training"]


def read_summary(out):
    path = os.path.join(out, "summary.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def running_split(speaker):
    return which_set(f"{speaker}_nohash_0", RUNNING_VALIDATION_PERCENT, RUNNING_TESTING_PERCENT,
                     RUNNING_SALT)


def stage_running_speech(shared, out):
    """running_speech split by speaker: the training speakers cut into one-second windows
    (out/training/speech/<utterance>_<k>.wav, `speech` being no command word, they train as
    _unknown_), the validation and testing speakers' utterances back to back in
    out/<set>.wav, where a spotter's detections per hour are counted. Returns
    {"training": folder, "validation": wav, "testing": wav, "seconds": {set: s},
    "speakers": {set: n}}."""
    source = require_dir(os.path.join(shared, "running_speech"), "running speech")
    recipe = {"source": os.path.abspath(source), "salt": RUNNING_SALT,
              "validation_percent": RUNNING_VALIDATION_PERCENT,
              "testing_percent": RUNNING_TESTING_PERCENT}
    staged = {"training": os.path.join(out, "training"),
              "validation": os.path.join(out, "validation.wav"),
              "testing": os.path.join(out, "testing.wav")}
    summary = read_summary(out)
    if summary.get("recipe") == recipe:
        return {**staged, **summary["figures"]}
    utterances = {which: [] for which in SETS}
    for speaker, path in running_speech_files(source):
        utterances[running_split(speaker)].append((speaker, path))
    if not any(utterances.values()):
        raise UserError(f"no running-speech clips in {source}")
    fresh_dir(out)
    errors, seconds = [], {}
    for which, items in utterances.items():
        pieces = []
        for _, path in sorted(items, key=lambda item: item[1]):
            try:
                samples = read_wav(path, num_samples=None)
            except AudioError as e:
                errors.append(e)
                continue
            if which == "training":
                stem = os.path.splitext(os.path.basename(path))[0]
                for k in range(len(samples) // CLIP_SAMPLES):
                    write_wav(os.path.join(staged["training"], "speech", f"{stem}_{k}.wav"),
                              samples[k * CLIP_SAMPLES:(k + 1) * CLIP_SAMPLES])
            pieces.append(samples)
        seconds[which] = round(sum(len(p) for p in pieces) / SAMPLE_RATE, 1)
        if which != "training":
            write_wav(staged[which], np.concatenate(pieces) if pieces else np.zeros(1))
    warn_skipped(errors, "running-speech clips")
    figures = {"seconds": seconds,
               "speakers": {w: len({s for s, _ in items}) for w, items in utterances.items()}}
    atomic_write_text(os.path.join(out, "summary.json"),
                      json.dumps({"recipe": recipe, "figures": figures}, indent=1))
    return {**staged, **figures}
