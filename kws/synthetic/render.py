"""Turning an utterance into a one-second clip: trimmed, resampled to 16 kHz, sped up if too
long, coloured by a synthetic room and a random EQ, placed and levelled at random, over noise."""

import functools
import math
from fractions import Fraction

import numpy as np
from scipy.signal import butter, fftconvolve, firwin, lfilter, resample_poly, sosfilt

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws import noise as colored

MAX_WORD_SECONDS = 0.95
PUNCTUATION = ((".", 0.5), ("!", 0.2), ("?", 0.15), (",", 0.15))  # varies the intonation


def audible(samples, rate, min_seconds=0.05):
    """True if samples hold at least min_seconds of sound above a faint threshold."""
    return len(trim_silence(samples, rate)) >= min_seconds * rate and np.max(np.abs(samples)) > 0.01


def trim_silence(samples, rate, threshold_db=-40.0, margin_ms=15.0, frame_ms=5.0):
    """Cut the leading and trailing frames quieter than threshold_db below the loudest frame."""
    frame = max(1, int(rate * frame_ms / 1000))
    count = len(samples) // frame
    if count == 0:
        return samples[:0]
    energy = np.sqrt(np.mean(samples[:count * frame].reshape(count, frame) ** 2, axis=1))
    if energy.max() <= 0:
        return samples[:0]
    active = np.flatnonzero(energy > energy.max() * 10 ** (threshold_db / 20))
    margin = int(rate * margin_ms / 1000)
    start = max(0, active[0] * frame - margin)
    end = min(len(samples), (active[-1] + 1) * frame + margin)
    return samples[start:end]


def fit_duration(samples, max_samples):
    """Speed a too-long word up (resampling raises its pitch a little) to at most max_samples."""
    if len(samples) <= max_samples:
        return samples
    ratio = Fraction(max_samples, len(samples)).limit_denominator(64)
    return resample_poly(samples, ratio.numerator, ratio.denominator)[:max_samples]


def room_impulse(rng, rate=SAMPLE_RATE):
    """A short synthetic room: the direct sound plus an exponentially decaying noise tail."""
    rt60 = rng.uniform(0.05, 0.45)
    length = int(rate * min(rt60, 0.25))
    t = np.arange(length) / rate
    tail = rng.standard_normal(length) * 10 ** (-3 * t / rt60)  # -60 dB after rt60 seconds
    tail[:int(rate * rng.uniform(0.002, 0.012))] = 0.0  # first reflections arrive a bit later
    tail *= 10 ** (rng.uniform(-24, -8) / 20) / max(np.sqrt(np.sum(tail ** 2)), 1e-9)
    tail[0] = 1.0
    return tail


HIGHPASS_HZ = (60, 80, 100, 125, 160, 200, 250, 300)
LOWPASS_HZ = (2500, 3000, 3500, 4000, 4500, 5000, 5500, 6000, 6500, 7000, 7500)


@functools.lru_cache(maxsize=64)
def _butter(cutoff, kind, rate):
    return butter(2, cutoff, kind, fs=rate, output="sos")


def random_eq(samples, rng, rate=SAMPLE_RATE):
    """A random microphone/room colouring: maybe a high-pass, maybe a low-pass, maybe a tilt."""
    if rng.random() < 0.5:
        samples = sosfilt(_butter(HIGHPASS_HZ[rng.integers(len(HIGHPASS_HZ))], "highpass", rate),
                          samples)
    if rng.random() < 0.5:
        samples = sosfilt(_butter(LOWPASS_HZ[rng.integers(len(LOWPASS_HZ))], "lowpass", rate),
                          samples)
    if rng.random() < 0.5:  # first-order tilt: a brighter or duller microphone
        a = rng.uniform(-0.5, 0.5)
        samples = lfilter([1.0, -a], [1.0], samples) / (1 + abs(a))
    return samples


def add_noise(clip, rng, level_db):
    """Mix in coloured noise at an RMS of level_db dBFS."""
    color = rng.choice(list(colored.COLORS))
    noise = colored.colored_noise(len(clip), str(color), rng)
    return clip + noise * 10 ** (level_db / 20)


@functools.lru_cache(maxsize=4)
def _resampling_filter(up, down):
    return firwin(20 * max(up, down) + 1, 1.0 / max(up, down), window=("kaiser", 5.0))


def resample_to_16k(samples, rate):
    """audio.resample with the polyphase filter designed once, not for every clip."""
    g = math.gcd(int(rate), SAMPLE_RATE)
    up, down = SAMPLE_RATE // g, int(rate) // g
    if up == down:
        return samples
    return resample_poly(samples, up, down, window=_resampling_filter(up, down))


def render_clip(speech, rate, rng, options):
    """An utterance (float samples at rate) -> float32 [16000]: trimmed, sped up if too long,
    coloured by a room and an EQ, placed at a random offset, at a random level, over noise."""
    word = resample_to_16k(trim_silence(speech.astype(np.float64), rate), rate)
    word = fit_duration(word, int(MAX_WORD_SECONDS * SAMPLE_RATE))
    word = word / max(np.max(np.abs(word)), 1e-9)
    if rng.random() < options["reverb_probability"]:
        wet = fftconvolve(word, room_impulse(rng))
    else:
        wet = word
    clip = np.zeros(CLIP_SAMPLES)
    offset = int(rng.integers(0, CLIP_SAMPLES - len(word) + 1))
    wet = wet[:CLIP_SAMPLES - offset]
    clip[offset:offset + len(wet)] = wet
    clip = random_eq(clip, rng)
    clip *= 10 ** (rng.uniform(-24, -2) / 20) / max(np.max(np.abs(clip)), 1e-9)
    speech_db = 20 * np.log10(max(np.sqrt(np.mean(clip[offset:offset + len(word)] ** 2)), 1e-9))
    clip = add_noise(clip, rng, rng.uniform(-75, -55))  # a faint floor: no digital silence
    if rng.random() < options["noise_probability"]:
        clip = add_noise(clip, rng, speech_db - rng.uniform(10, 30))
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def render_silence(rng):
    """A `silence` test clip: one or two noise colours at a low random level."""
    clip = add_noise(np.zeros(CLIP_SAMPLES), rng, rng.uniform(-60, -25))
    if rng.random() < 0.3:
        clip = add_noise(clip, rng, rng.uniform(-65, -35))
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def utterance_text(word, rng):
    marks, weights = zip(*PUNCTUATION)
    return word + marks[int(rng.choice(len(marks), p=weights))]
