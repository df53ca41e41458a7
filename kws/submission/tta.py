"""Test-time augmentation: variants of a batch of clips whose probabilities are averaged."""

import librosa
import numpy as np

from kws import CLIP_SAMPLES
from kws.common import UserError


class Variant:
    """One test-time variant of a batch of clips [B, 16000]; `name` enters the resume manifest."""

    def __init__(self, kind, value=None):
        self.kind, self.value = kind, value
        self.name = kind if value is None else f"{kind}:{value:g}"

    def __call__(self, clips):
        if self.kind == "shift":
            return shift_clips(clips, int(self.value))
        if self.kind == "gain":
            return np.clip(clips * np.float32(self.value), -1.0, 1.0)
        if self.kind == "stretch":
            return stretch_clips(clips, self.value)
        return clips


def shift_clips(clips, shift):
    """Move the audio by `shift` samples (negative: earlier), filling with zeros."""
    out = np.zeros_like(clips)
    if shift >= 0:
        out[:, shift:] = clips[:, :clips.shape[1] - shift]
    else:
        out[:, :shift] = clips[:, -shift:]
    return out


def stretch_clips(clips, rate):
    """Time-stretch (rate > 1: faster, shorter) with librosa, then centre pad/crop to 16000."""
    stretched = librosa.effects.time_stretch(clips, rate=rate).astype(np.float32)
    length = stretched.shape[1]
    if length >= CLIP_SAMPLES:
        start = (length - CLIP_SAMPLES) // 2
        return stretched[:, start:start + CLIP_SAMPLES]
    out = np.zeros((len(clips), CLIP_SAMPLES), np.float32)
    start = (CLIP_SAMPLES - length) // 2
    out[:, start:start + length] = stretched
    return out


def tta_variants(shifts=(), gains=(), stretches=()):
    """Identity plus one variant per value; probabilities are averaged over all of them."""
    for s in shifts:
        if not -CLIP_SAMPLES < s < CLIP_SAMPLES:
            raise UserError(f"--tta_shift {s}: must be within +-{CLIP_SAMPLES - 1} samples")
    for g in gains:
        if not 0 < g <= 100:
            raise UserError(f"--tta_gain {g}: must be in (0, 100]")
    for r in stretches:
        if not 0.25 <= r <= 4:
            raise UserError(f"--tta_stretch {r}: must be in [0.25, 4]")
    return ([Variant("identity")] + [Variant("shift", s) for s in shifts]
            + [Variant("gain", g) for g in gains] + [Variant("stretch", r) for r in stretches])
