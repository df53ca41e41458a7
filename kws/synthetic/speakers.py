"""Synthetic speakers: an espeak-ng voice with a variant, pitch, range and rate (or a Piper voice's
speaker and length scale), drawn from a grid; test speakers use grid values training never does."""

import dataclasses
import hashlib
import math
import os

import numpy as np

from kws.common import UserError

# Grid values of a speaker; the test set's speakers use the TEST values only, so they are new.
TRAIN_PITCHES, TEST_PITCHES = (20, 35, 50, 65, 80), (27, 42, 57, 72)
TRAIN_RANGES, TEST_RANGES = (20, 50, 80), (35, 65)
TRAIN_RATES, TEST_RATES = (130, 150, 175, 200, 235), (140, 162, 187, 217)
TRAIN_LENGTH_SCALES, TEST_LENGTH_SCALES = (0.8, 0.9, 1.0, 1.12, 1.25), (0.85, 0.95, 1.06, 1.18)


@dataclasses.dataclass(frozen=True)
class Speaker:
    voice: str
    variant: str  # "" for the plain voice
    pitch: int
    pitch_range: int
    rate: int

    @property
    def espeak_name(self):
        return f"{self.voice}+{self.variant}" if self.variant else self.voice

    @property
    def id(self):
        key = f"espeak|{self.voice}|{self.variant}|{self.pitch}|{self.pitch_range}|{self.rate}"
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]

    def describe(self):
        return (f"{self.espeak_name} pitch={self.pitch} range={self.pitch_range} "
                f"rate={self.rate}")


@dataclasses.dataclass(frozen=True)
class PiperSpeaker:
    """A speaker of a Piper voice model (optional: needs the piper-tts package)."""
    model: str          # path to the .onnx voice; its .onnx.json sits beside it
    speaker: int        # speaker number of a multi-speaker model, else 0
    length_scale: float

    @property
    def id(self):
        key = f"piper|{os.path.basename(self.model)}|{self.speaker}|{self.length_scale}"
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]

    def describe(self):
        return (f"piper {os.path.basename(self.model)} speaker={self.speaker} "
                f"length_scale={self.length_scale}")


def stable_seed(*parts):
    """A 63-bit seed from any parts (strings, ints): the same everywhere, unlike hash()."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def sample_speakers(count, voices, variants, pitches, ranges, rates, seed, stream):
    """count distinct speakers drawn without replacement from the grid, in a fixed order."""
    grid = (voices, [""] + list(variants), pitches, ranges, rates)
    shape = tuple(len(g) for g in grid)
    total = math.prod(shape)
    if count > total:
        raise UserError(f"only {total} distinct {stream} speakers with these voices and variants; "
                        f"ask for at most {total}")
    rng = np.random.default_rng(stable_seed(seed, "speakers", stream))
    picks = rng.choice(total, size=count, replace=False)
    speakers = []
    for flat in picks:
        v, var, p, r, s = np.unravel_index(int(flat), shape)
        speakers.append(Speaker(grid[0][v], grid[1][var], int(grid[2][p]), int(grid[3][r]),
                                int(grid[4][s])))
    return speakers


def sample_pool(count, config, voices, variants, stream):
    """count speakers for stream 'train' or 'test': espeak-ng ones, plus a --piper_share of
    Piper ones when Piper voices are given, in a seeded random order."""
    test = stream == "test"
    piper = [PiperSpeaker(model, n, scale)
             for model, speakers in sorted(config.get("piper_voices", {}).items())
             for n in range(speakers)
             for scale in (TEST_LENGTH_SCALES if test else TRAIN_LENGTH_SCALES)]
    rng = np.random.default_rng(stable_seed(config["seed"], "pool", stream))
    n_piper = min(len(piper), int(round(count * config.get("piper_share", 0.0)))) if piper else 0
    picked = [piper[i] for i in sorted(rng.choice(len(piper), n_piper, replace=False))]
    espeak = sample_speakers(count - n_piper, voices, variants,
                             TEST_PITCHES if test else TRAIN_PITCHES,
                             TEST_RANGES if test else TRAIN_RANGES,
                             TEST_RATES if test else TRAIN_RATES, config["seed"], stream)
    if not picked:
        return espeak
    pool = espeak + picked
    return [pool[i] for i in rng.permutation(len(pool))]


def by_engine(jobs):
    """espeak-ng jobs first, then Piper jobs grouped by model: a chunk loads few Piper models."""
    return sorted(jobs, key=lambda j: ("" if not isinstance(j.speaker, PiperSpeaker)
                                       else j.speaker.model))
