"""Shared fixtures: small generated datasets, and the real clips in ../shared/data when present."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    if not (SHARED_DATA / "speech_commands_test_v0.02_dev").is_dir():
        pytest.skip(f"real clips not present at {SHARED_DATA}")
    return SHARED_DATA


def tone(frequency, seconds=1.0, rate=16000, amplitude=0.3, seed=0):
    """A tone with a little noise: distinct words get distinct frequencies."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (amplitude * np.sin(2 * np.pi * frequency * t) + noise).astype(np.float32)


def make_speech_commands(root, words, speakers, clips_per_speaker=1, noise=True, lists=None):
    """Write `<root>/<word>/<speaker>_nohash_<n>.wav` (+ `_background_noise_`); return root.

    lists: optional {"validation": [speaker...], "testing": [speaker...]} written beside the words.
    """
    from kws.audio import write_wav

    root = Path(root)
    for w, word in enumerate(words):
        for s, speaker in enumerate(speakers):
            for n in range(clips_per_speaker):
                write_wav(root / word / f"{speaker}_nohash_{n}.wav",
                          tone(300 + 150 * w, seed=s * 100 + n))
    if noise:
        rng = np.random.default_rng(1)
        write_wav(root / "_background_noise_" / "white.wav",
                  rng.normal(0, 0.2, 48000).astype(np.float32))
    for which, listed in (lists or {}).items():
        lines = [f"{word}/{speaker}_nohash_{n}.wav" for word in words for speaker in listed
                 for n in range(clips_per_speaker)]
        (root / f"{which}_list.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def speech_commands(tmp_path):
    """A tiny Speech Commands tree: 12-class words + 2 unknown words, 12 speakers."""
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "cat", "dog"]
    speakers = [f"{i:08x}" for i in range(0x1a2b3c00, 0x1a2b3c0c)]
    return make_speech_commands(tmp_path / "sc", words, speakers)
