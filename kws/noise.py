"""Coloured noise: white Gaussian noise shaped so its power spectral density goes as f**beta.

White 0 dB/octave, pink -3, brown (red) -6, blue +3, violet +6; below low_hz the spectrum is held
flat so brown noise is not one slow drift. Files are named like the Speech Commands ones
(`pink_noise.wav`) and written atomically; the same seed gives the same bytes, and each colour
has its own random stream, so choosing other colours leaves the rest unchanged.
"""

import os

import numpy as np

from kws import SAMPLE_RATE
from kws.audio import write_wav
from kws.common import UserError

COLORS = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0, "violet": 2.0}
COLOR_STREAM = {name: i for i, name in enumerate(COLORS)}  # fixed per colour: stable seeds
DEFAULT_LOW_HZ = 20.0
PEAK_LIMIT = 0.99


def parse_colors(text):
    """'white,pink' -> ['white', 'pink']; 'all' -> every colour. Unknown names raise UserError."""
    names = list(COLORS) if text.strip() == "all" else [c.strip() for c in text.split(",")
                                                       if c.strip()]
    if not names:
        raise UserError("empty colour list")
    unknown = [c for c in names if c not in COLORS]
    if unknown:
        raise UserError(f"unknown noise colour(s) {', '.join(unknown)}; "
                        f"choose from {', '.join(COLORS)}")
    return list(dict.fromkeys(names))


def spectral_gain(num_samples, beta, sample_rate=SAMPLE_RATE, low_hz=DEFAULT_LOW_HZ):
    """Amplitude gain per rfft bin that gives a PSD ~ f**beta (flat below low_hz, no DC)."""
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    floor = max(low_hz, freqs[1] if len(freqs) > 1 else 1.0)
    gain = np.maximum(freqs, floor) ** (beta / 2.0)
    gain[0] = 0.0
    return gain


def colored_noise(num_samples, color, rng, sample_rate=SAMPLE_RATE, low_hz=DEFAULT_LOW_HZ):
    """float32 noise of the given colour with unit RMS, drawn from the numpy Generator rng."""
    if color not in COLORS:
        raise UserError(f"unknown noise colour {color!r}; choose from {', '.join(COLORS)}")
    if num_samples < 2:
        raise UserError(f"need at least 2 samples of noise, got {num_samples}")
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    spectrum *= spectral_gain(num_samples, COLORS[color], sample_rate, low_hz)
    noise = np.fft.irfft(spectrum, num_samples)
    rms = np.sqrt(np.mean(noise ** 2))
    return (noise / max(rms, 1e-12)).astype(np.float32)


def scale_to_rms(samples, rms_db, peak_limit=PEAK_LIMIT):
    """Scale to an RMS of rms_db dBFS, lowered if needed so no sample exceeds peak_limit."""
    rms = np.sqrt(np.mean(np.square(samples, dtype=np.float64)))
    gain = 10.0 ** (rms_db / 20.0) / max(rms, 1e-12)
    peak = np.max(np.abs(samples)) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return (samples * gain).astype(np.float32)


def make_noise(color, seconds, rms_db=-20.0, seed=0, sample_rate=SAMPLE_RATE,
               low_hz=DEFAULT_LOW_HZ):
    """One noise recording as float32 samples: deterministic in (color, seconds, seed)."""
    if seconds <= 0:
        raise UserError(f"--seconds must be > 0, got {seconds}")
    rng = np.random.default_rng([int(seed), COLOR_STREAM[color]])
    num_samples = max(2, int(round(seconds * sample_rate)))
    return scale_to_rms(colored_noise(num_samples, color, rng, sample_rate, low_hz), rms_db)


def noise_filename(color):
    return f"{color}_noise.wav"


def write_noise_files(out_dir, colors=tuple(COLORS), seconds=60.0, rms_db=-20.0, seed=0,
                      sample_rate=SAMPLE_RATE, low_hz=DEFAULT_LOW_HZ, skip_existing=False):
    """Write `<color>_noise.wav` for each colour into out_dir; return the paths.

    skip_existing keeps files already there (callers that know the flags did not change).
    """
    paths = []
    for color in colors:
        path = os.path.join(out_dir, noise_filename(color))
        if not (skip_existing and os.path.isfile(path)):
            write_wav(path, make_noise(color, seconds, rms_db, seed, sample_rate, low_hz),
                      sample_rate)
        paths.append(path)
    return paths


def psd_slope_db_per_octave(samples, sample_rate=SAMPLE_RATE, low_hz=100.0, high_hz=6000.0):
    """Fitted slope of the power spectrum in dB/octave between low_hz and high_hz (for checks)."""
    from scipy.signal import welch

    freqs, power = welch(samples, sample_rate, nperseg=4096)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    slope, _ = np.polyfit(np.log2(freqs[band]), 10 * np.log10(power[band]), 1)
    return float(slope)
