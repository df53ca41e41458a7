"""Checkpoints written before the library moved still load and give the same logits.

tests/fixtures/saved_models holds small models of every custom layer (LogMel, MFCC, PackFeatures,
SpecAugment, SubSpectralNorm, FrequencySubsample, TimeSlices, AttentionMaxPool), saved by the
code of 2026-12-04 with model.py still a library (random weights), and the logits they gave on
seeded noise (`clips`)."""

import json
from pathlib import Path

import numpy as np
import pytest

from kws.checkpoint import load_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "saved_models"
EXPECTED = json.loads((FIXTURES / "expected_logits.json").read_text())


def clips():
    """The two clips the expected logits were computed on."""
    return np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype("float32")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_old_checkpoint_loads_and_gives_its_logits(name):
    model, labels = load_checkpoint(FIXTURES / name / "last.keras")
    assert labels == ["_silence_", "_unknown_", "yes", "no"]
    logits = model.predict(clips(), verbose=0)
    np.testing.assert_allclose(logits, EXPECTED[name], rtol=1e-4, atol=1e-4)
