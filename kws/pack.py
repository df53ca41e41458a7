"""The published spectrograms of Speech Commands v0.02 (`speech_commands_v0.02_spectrograms.zip`):
read in place, pair with the dev clips whose audio we have, and map between their grey levels and
the models' PackFeatures front end.

    pack = read_pack("../shared/data/speech_commands_v0.02_spectrograms.zip", "data/pack")
    pack.images            # uint8 [n, 98, 40]: frames x channels, low to high frequency
    pack.labels            # the 12-class label of each image (_silence_, _unknown_, yes, ...)

Names are `<folder>/<speaker>_nohash_<take>.<word>.jpg` (`unknown/` holds 25 other words,
`_background_noise_/<n>_background.jpg` one-second noise crops, used as silence). The images are
decoded once (about 10 s for 50k) and kept as one uint8 array in <zip name>.images.npz in the
caller's cache folder, keyed by the zip's path, size and mtime. PackFeatures (kws.layers) computes
the same grey levels from 16 kHz audio: clip(GREY_SCALE * log(mel power + LOG_OFFSET) +
GREY_OFFSET, 0, 255) on 40 HTK-mel bands over 0-4000 Hz of 30 ms Hann frames every 10 ms;
fit_frontend.py fits the two constants on paired clips of training speakers.
"""

import dataclasses
import io
import json
import os
import zipfile

import numpy as np

from kws.common import UserError, atomic_path
from kws.labels import COMPETITION_WORDS, SILENCE_LABEL, UNKNOWN_LABEL

PACK_FRAMES, PACK_CHANNELS = 98, 40
NOISE_FOLDER = "_background_noise_"
UNKNOWN_FOLDER = "unknown"
CACHE_SUFFIX = ".images.npz"
# fitted by `fit_frontend.py` on the 1,514 paired clips of make real's 66 training speakers
GREY_SCALE, GREY_OFFSET, LOG_OFFSET = 9.895, 145.94, 1e-6
GREY_CENTRE, GREY_SPREAD = 128.0, 64.0  # features = (grey - 128) / 64


def grey_to_features(images):
    """Pack images (uint8 grey) -> the float features PackFeatures gives for the same audio."""
    return (np.asarray(images, np.float32) - GREY_CENTRE) / GREY_SPREAD


@dataclasses.dataclass
class PackEntry:
    name: str      # path inside the zip
    label: str     # the 12-class label (a command word, _unknown_ or _silence_)
    word: str      # the spoken word ("" for noise)
    speaker: str   # "" for noise
    take: str      # the n of _nohash_<n>

    @property
    def clip_name(self):
        """The Speech Commands file name of the same take: `<speaker>_nohash_<n>.wav`."""
        return f"{self.speaker}_nohash_{self.take}.wav" if self.speaker else ""


def parse_name(name):
    """A PackEntry for a zip member name, or None for what is not an image of the pack."""
    parts = name.split("/")
    if len(parts) != 2 or not parts[1].endswith(".jpg") or parts[1].startswith("."):
        return None
    folder, base = parts[0], parts[1][:-len(".jpg")]
    if folder == NOISE_FOLDER:
        return PackEntry(name, SILENCE_LABEL, "", "", "")
    stem, _, word = base.rpartition(".")
    if "_nohash_" not in stem or not word:
        return None
    speaker, _, take = stem.partition("_nohash_")
    if folder == UNKNOWN_FOLDER:
        label = UNKNOWN_LABEL
    elif folder in COMPETITION_WORDS and word == folder:
        label = folder
    else:
        return None
    return PackEntry(name, label, word, speaker, take)


@dataclasses.dataclass
class Pack:
    entries: list          # PackEntry of every image, in zip order
    images: np.ndarray     # uint8 [n, 98, 40]

    @property
    def labels(self):
        return [e.label for e in self.entries]

    @property
    def speakers(self):
        return [e.speaker for e in self.entries]

    def select(self, keep):
        """The pack restricted to the entries where keep(entry) is true."""
        index = [i for i, e in enumerate(self.entries) if keep(e)]
        return Pack([self.entries[i] for i in index], self.images[index])


def decode_image(data, name):
    from PIL import Image

    try:
        image = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    except Exception as e:  # PIL raises many kinds on a bad image
        raise UserError(f"{name}: not a readable image ({e})") from None
    if image.shape != (PACK_FRAMES, PACK_CHANNELS):
        raise UserError(f"{name}: expected {PACK_FRAMES} x {PACK_CHANNELS} pixels, got "
                        f"{image.shape[0]} x {image.shape[1]}")
    return image


def open_pack(path):
    if not os.path.isfile(path):
        raise UserError(f"spectrogram pack not found: {path}")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"{path}: not a zip archive ({e})") from None


def read_pack(path, cache_dir=None):
    """Every image of the pack at `path` (decoded once, then from cache_dir)."""
    stat = os.stat(path) if os.path.isfile(path) else None
    key = f"{os.path.abspath(path)}:{stat.st_size}:{int(stat.st_mtime)}" if stat else ""
    cache = os.path.join(cache_dir, cache_name(path)) if cache_dir else None
    if cache and stat and os.path.isfile(cache):
        try:
            with np.load(cache, allow_pickle=False) as data:
                if str(data["key"]) == key:
                    names = json.loads(str(data["names"]))
                    return Pack([parse_name(n) for n in names], data["images"])
        except (OSError, ValueError, KeyError):
            pass  # a stale or broken cache is rebuilt
    with open_pack(path) as archive:
        entries = [e for e in map(parse_name, archive.namelist()) if e]
        if not entries:
            raise UserError(f"{path}: no spectrogram images (<word>/<speaker>_nohash_<n>.<word>"
                            ".jpg) inside")
        images = np.stack([decode_image(archive.read(e.name), e.name) for e in entries])
    pack = Pack(entries, images)
    if cache:
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                names = json.dumps([e.name for e in entries])
                np.savez(f, key=np.array(key), names=np.array(names), images=images)
    return pack


def cache_name(path):
    """The decoded pack's file name in a cache folder: one per zip name."""
    return os.path.splitext(os.path.basename(path))[0] + CACHE_SUFFIX


def paired_clips(pack, dev_dir):
    """(index into the pack, path of the same take's audio) for every image whose clip is in
    dev_dir (`<word>/<speaker>_nohash_<n>.wav`; unknown words as the v0.02 test set names them,
    `_unknown_/<word>_<speaker>_nohash_<n>.wav.wav`)."""
    pairs = []
    for i, e in enumerate(pack.entries):
        if not e.speaker:
            continue
        if e.label == UNKNOWN_LABEL:
            path = os.path.join(dev_dir, UNKNOWN_LABEL, f"{e.word}_{e.clip_name}.wav")
        else:
            path = os.path.join(dev_dir, e.word, e.clip_name)
        if os.path.isfile(path):
            pairs.append((i, path))
    return pairs
