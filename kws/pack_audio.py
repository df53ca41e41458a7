"""The spectrogram pack's images rendered back to audio, for the models that hear raw samples.

A raw-waveform model (the entry's seed195 and seed106) cannot learn from a log-mel image, and the
pack is where most of the `on` and `off` takes live (the extra set has 17 of each). An image is
the grey level of 40 mel bands over 0-4 kHz (kws.pack), so it can be turned back into sound:
grey -> mel power (the inverse of PackFeatures' grey mapping), mel power -> DFT power (each
band's power spread over its bins, then non-negative least squares by multiplicative updates),
then Griffin-Lim for the phase, over frames padded with silence so that the first and last
samples, which one Hann window barely covers, are not blown up. The result is band-limited to
4 kHz and a little buzzy, at the level of the take (RMS within 20% of the paired WAV's), and
PackFeatures of it gives back the image (mean grey error 1-3 levels where there is sound; the
JPEG's own noise is about 2); the pack teacher hears its word as often as in the image.

    clips = vocode(pack.images[:8])                    # float32 [8, 16000]
    counts = render_pack_audio(pack, "data/real/pack_audio", 600, keep_speaker)
"""

import collections
import os

import numpy as np

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.audio import write_wav
from kws.common import UserError
from kws.labels import SILENCE_LABEL
from kws.pack import GREY_OFFSET, GREY_SCALE, LOG_OFFSET

WINDOW, HOP = 480, 160  # PackFeatures' 30 ms Hann frames every 10 ms, DFT length = window
PAD_FRAMES = 3  # silent frames on each side for Griffin-Lim, cut off after
NNLS_STEPS = 10  # multiplicative updates: the grey error falls from 2-6 to 1-3 levels
PEAK = 0.99  # a rendered clip louder than this is scaled down to it (16-bit WAV)
RENDER_VERSION = 2  # raise when the rendering changes: folders of another version render afresh


def mel_filterbank():
    """[DFT bins, 40]: PackFeatures' mel filters."""
    from kws.layers import PackFeatures

    return PackFeatures().mel_matrix().astype(np.float64)


def dft_power(mel, filters, steps=NNLS_STEPS):
    """Mel power [frames, 40] -> non-negative DFT power [bins, frames] whose mel power is close
    to it: each band's power spread over its bins by weight, then Lee-Seung updates."""
    target = mel.T
    power = filters / np.maximum(filters.sum(0, keepdims=True), 1e-20) @ target
    wanted = filters @ target
    for _ in range(steps):
        power *= wanted / np.maximum(filters @ (filters.T @ power), 1e-20)
    return power


def vocode(images, iterations=32, seed=0, filters=None):
    """Pack images (uint8 [n, 98, 40]) -> float32 audio [n, 16000] at 16 kHz."""
    import librosa

    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (98, 40):
        raise UserError(f"expected pack images [n, 98, 40], got {images.shape}")
    filters = mel_filterbank() if filters is None else filters
    pad = PAD_FRAMES * HOP
    out = np.empty((len(images), CLIP_SAMPLES), np.float32)
    for i, grey in enumerate(images):
        mel = np.maximum(np.exp((grey.astype(np.float64) - GREY_OFFSET) / GREY_SCALE)
                         - LOG_OFFSET, 0.0)
        magnitude = np.pad(np.sqrt(dft_power(mel, filters)), ((0, 0), (PAD_FRAMES, PAD_FRAMES)))
        clip = librosa.griffinlim(magnitude, n_iter=iterations, hop_length=HOP,
                                  win_length=WINDOW, n_fft=WINDOW, window="hann", center=False,
                                  length=CLIP_SAMPLES + 2 * pad, random_state=seed)[pad:-pad]
        peak = np.max(np.abs(clip))
        out[i] = clip * (PEAK / peak) if peak > PEAK else clip
    return out


def pick_images(pack, per_label, keep_speaker, seed=0):
    """Indices into the pack: up to per_label images of each command word, and as many of the
    pack's other words together (unknown), whose speaker keep_speaker(speaker) allows, drawn at
    random; the noise crops (silence) are left out."""
    by_label = collections.defaultdict(list)
    for i, e in enumerate(pack.entries):
        if e.label != SILENCE_LABEL and e.speaker and keep_speaker(e.speaker):
            by_label[e.label].append(i)
    rng = np.random.default_rng(seed)
    picked = []
    for label in sorted(by_label):
        index = by_label[label]
        picked.extend(sorted(rng.choice(index, min(per_label, len(index)), replace=False)))
    return [int(i) for i in picked]


def render_pack_audio(pack, out_dir, per_label, keep_speaker, seed=0, batch=64):
    """Write the images pick_images picks, rendered, as out_dir/<word>/<speaker>_nohash_<n>.wav
    (a folder the trainers read like any other; the pack's other words land in their own
    folders and count as unknown). Files already there are kept, so an interrupted render
    resumes. Returns {word: clips}."""
    if per_label < 1:
        raise UserError(f"per_label must be at least 1, got {per_label}")
    picked = pick_images(pack, per_label, keep_speaker, seed)
    if not picked:
        raise UserError("no image of the spectrogram pack is left to render")
    path_of = {i: os.path.join(out_dir, pack.entries[i].word, pack.entries[i].clip_name)
               for i in picked}
    todo = [i for i in picked if not os.path.isfile(path_of[i])]
    filters = mel_filterbank()
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        for i, clip in zip(chunk, vocode(pack.images[chunk], seed=seed, filters=filters)):
            os.makedirs(os.path.dirname(path_of[i]), exist_ok=True)
            write_wav(path_of[i], clip, SAMPLE_RATE)
    return dict(collections.Counter(pack.entries[i].word for i in picked))
