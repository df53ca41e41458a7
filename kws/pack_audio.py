"""The spectrogram pack's images rendered back to audio, for the models that hear raw samples.

A raw-waveform model (the entry's seed195 and seed106) cannot learn from a log-mel image, and the
pack is where most of the `on` and `off` takes live (the extra set has 17 of each). An image is
the grey level of 40 mel bands over 0-4 kHz (kws.pack), so it can be turned back into sound:
grey -> mel power (the inverse of PackFeatures' grey mapping), mel power -> DFT power (the
pseudo-inverse of its filterbank, negatives clipped), then Griffin-Lim for the phase. The result
is band-limited to 4 kHz and a little buzzy, but PackFeatures of it gives back the image (mean
grey error about 3 levels, the JPEG's own noise about 2) and the pack teacher hears its word as
often as in the image.

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
PEAK = 0.99  # a rendered clip louder than this is scaled down to it (16-bit WAV)


def mel_pseudo_inverse():
    """[DFT bins, 40]: mel power -> DFT power, the pseudo-inverse of PackFeatures' filterbank."""
    from kws.layers import PackFeatures

    return np.linalg.pinv(PackFeatures().mel_matrix().T)


def vocode(images, iterations=32, seed=0, inverse=None):
    """Pack images (uint8 [n, 98, 40]) -> float32 audio [n, 16000] at 16 kHz."""
    import librosa

    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (98, 40):
        raise UserError(f"expected pack images [n, 98, 40], got {images.shape}")
    inverse = mel_pseudo_inverse() if inverse is None else inverse
    out = np.empty((len(images), CLIP_SAMPLES), np.float32)
    for i, grey in enumerate(images):
        mel = np.maximum(np.exp((grey.astype(np.float64) - GREY_OFFSET) / GREY_SCALE)
                         - LOG_OFFSET, 0.0)
        power = np.maximum(inverse @ mel.T, 0.0)                        # [bins, frames]
        clip = librosa.griffinlim(np.sqrt(power), n_iter=iterations, hop_length=HOP,
                                  win_length=WINDOW, n_fft=WINDOW, window="hann", center=False,
                                  length=CLIP_SAMPLES, random_state=seed)
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
    inverse = mel_pseudo_inverse()
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        for i, clip in zip(chunk, vocode(pack.images[chunk], seed=seed, inverse=inverse)):
            os.makedirs(os.path.dirname(path_of[i]), exist_ok=True)
            write_wav(path_of[i], clip, SAMPLE_RATE)
    return dict(collections.Counter(pack.entries[i].word for i in picked))
