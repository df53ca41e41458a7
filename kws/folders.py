"""Data folders: find the clips of a Speech Commands tree or a test folder, and split by speaker.

Layouts: `<word>/<speaker>_nohash_<n>.wav` (or .flac, .ogg, .opus) with `_background_noise_/`
and optional `validation_list.txt` / `testing_list.txt` beside the words or one level up (Kaggle's
`train/audio`), the official test-set layout (`_silence_/`, `_unknown_/`, the ten words), and a
flat folder of clips. Hidden files, macOS metadata and names that are not UTF-8 are passed over
with one warning. The split is the TF speech_commands tutorial's hash of the speaker.
"""

import dataclasses
import hashlib
import os
import re
import sys

from kws.common import UserError

SETS = ("training", "validation", "testing")  # the three sides of every split

BACKGROUND_NOISE_DIR_NAME = "_background_noise_"
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # ~134M
# what a data folder's clips may be: anything kws.audio reads (soundfile: WAV, FLAC, Ogg Vorbis
# and Ogg/Opus)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus")


def speaker_id(filename):
    """The part of a clip's name that identifies its speaker.

    `0a7c2a8d_nohash_0.wav` -> `0a7c2a8d`. The official test set names unknown words
    `<word>_<speaker>_nohash_<n>.wav.wav`; we keep only the speaker so a speaker's command words and
    unknown words land in the same set. Names without `_nohash_` hash as a whole.
    """
    base = os.path.basename(filename)
    if "_nohash_" in base:
        return re.sub(r"_nohash_.*$", "", base).split("_")[-1]
    return base.split(".")[0]


def which_set(filename, validation_percentage, testing_percentage, salt=""):
    """The tutorial's stable split into 'training', 'validation' or 'testing' by speaker hash.

    A non-empty salt draws another speaker-stable split: the official v0.02 test set is exactly the
    speakers whose unsalted hash lands in 'testing', so splitting it needs a salt.
    """
    hashed = hashlib.sha1((salt + speaker_id(filename)).encode("utf-8")).hexdigest()
    percentage_hash = ((int(hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) *
                       (100.0 / MAX_NUM_WAVS_PER_CLASS))
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def speakers_in(folders):
    """The speakers (of <speaker>_nohash_<n> names) of every clip in data folders."""
    speakers = set()
    for folder in folders:
        data = scan_data_dir(folder)
        speakers |= {speaker_id(f) for files in data.words.values() for f in files
                     if "_nohash_" in f}
    return speakers


def assign_set(data_dir, word, fname, validation_percentage, testing_percentage, salt=""):
    """The set of a clip of a scanned data dir: its split lists where it has them (a clip in
    neither trains), else which_set's speaker hash."""
    if data_dir.validation_list is not None or data_dir.testing_list is not None:
        key = f"{word}/{fname}"
        if data_dir.validation_list and key in data_dir.validation_list:
            return "validation"
        if data_dir.testing_list and key in data_dir.testing_list:
            return "testing"
        return "training"
    return which_set(fname, validation_percentage, testing_percentage, salt)


# make real's split of the real speakers, stated once (real.py stages it; fit_frontend.py fits
# on its training speakers only)
REAL_SALT, REAL_VALIDATION_PERCENT, REAL_TESTING_PERCENT = "real", 15.0, 25.0


def real_split(filename):
    """'training', 'validation' or 'testing': where make real's split puts a clip's speaker."""
    return which_set(filename, REAL_VALIDATION_PERCENT, REAL_TESTING_PERCENT, REAL_SALT)


def readable_name(name):
    """False for names no clip should have: hidden files (macOS `._x.wav`, the `.x.part.wav` of a
    killed writer) and names that are not valid UTF-8 (they cannot go into a CSV)."""
    if name.startswith("."):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def skipped_folder(name):
    """Hidden folders and `__MACOSX` (the resource forks a macOS zip carries) hold no clips."""
    return name.startswith(".") or name == "__MACOSX" or not readable_name(name)


def is_audio_name(name):
    return name.lower().endswith(AUDIO_EXTENSIONS)


def clips_in(folder, ignored=None):
    """Sorted audio file names (AUDIO_EXTENSIONS) in folder; the ones readable_name refuses go
    to `ignored`."""
    names = sorted(f for f in os.listdir(folder)
                   if is_audio_name(f) and os.path.isfile(os.path.join(folder, f)))
    keep = [f for f in names if readable_name(f)]
    if ignored is not None and len(keep) < len(names):
        ignored.extend(os.path.join(folder, f) for f in names if not readable_name(f))
    return keep


def warn_ignored(ignored):
    """One warning for the hidden, non-UTF-8 and macOS-metadata files and folders passed over."""
    if ignored:
        shown = ", ".join(ascii(p)[1:-1] for p in ignored[:3])
        more = f" (and {len(ignored) - 3} more)" if len(ignored) > 3 else ""
        print(f"warning: ignored {len(ignored)} hidden, macOS-metadata or non-UTF-8-named files "
              f"or folders: {shown}{more}", file=sys.stderr)


def read_list(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return {line.strip().replace("\\", "/") for line in f if line.strip()}


@dataclasses.dataclass
class DataDir:
    """One scanned data folder: its word folders, noise files and optional split lists."""
    root: str
    words: dict            # folder name -> sorted clip file names
    noise_files: list
    validation_list: set = None
    testing_list: set = None
    train_only: bool = False  # every clip trains (extra corpora, synthetic speech)


def scan_data_dir(data_dir):
    """Find word folders, `_background_noise_` and split lists in any of the supported layouts."""
    if not os.path.isdir(data_dir):
        raise UserError(f"data folder not found: {data_dir}")
    root = data_dir
    if not has_word_folders(root) and os.path.isdir(os.path.join(root, "audio")):
        root = os.path.join(root, "audio")  # Kaggle: train/ holds audio/ and the lists
    words, noise_files, ignored = {}, [], []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            continue
        if skipped_folder(name):
            ignored.append(path)
        elif name == BACKGROUND_NOISE_DIR_NAME:
            noise_files = [os.path.join(path, f) for f in clips_in(path, ignored)]
        else:
            files = clips_in(path, ignored)
            if files:
                words[name] = files
    warn_ignored(ignored)
    if not words:
        raise UserError(f"no word folders with audio clips ({', '.join(AUDIO_EXTENSIONS)}) in "
                        f"{data_dir}")
    lists = {}
    for which in ("validation", "testing"):
        for folder in (root, os.path.dirname(os.path.abspath(root))):
            lists[which] = read_list(os.path.join(folder, f"{which}_list.txt"))
            if lists[which] is not None:
                break
    return DataDir(root, words, noise_files, lists["validation"], lists["testing"])


def has_word_folders(folder):
    return any(os.path.isdir(os.path.join(folder, d)) and not skipped_folder(d)
               and clips_in(os.path.join(folder, d)) for d in os.listdir(folder))


def list_test_clips(folder):
    """Clips of a test folder: flat (Kaggle `test/audio`, labels None) or `<label>/<clip>`.

    Returns (paths, labels) with labels a list of folder names, or None for a flat folder.
    """
    if not os.path.isdir(folder):
        raise UserError(f"test folder not found: {folder}")
    ignored = []
    flat = clips_in(folder, ignored)
    if flat:
        warn_ignored(ignored)
        return [os.path.join(folder, f) for f in flat], None
    paths, labels = [], []
    for name in sorted(os.listdir(folder)):
        sub = os.path.join(folder, name)
        if not os.path.isdir(sub) or name == BACKGROUND_NOISE_DIR_NAME:
            continue
        if skipped_folder(name):
            ignored.append(sub)
            continue
        for f in clips_in(sub, ignored):
            paths.append(os.path.join(sub, f))
            labels.append(name)
    warn_ignored(ignored)
    if not paths:
        raise UserError(f"no audio clips ({', '.join(AUDIO_EXTENSIONS)}) in {folder}")
    return paths, labels
