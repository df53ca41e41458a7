"""Long test audio with ground truth (what make_streams.py makes): clips of labelled folders
placed at random times over background noise, as the TF speech_commands example's
generate_streaming_test_wav, with OUT.csv of `label,time_ms,clip` for each word.

    summary = make_stream("data/streams/test.wav", ["data/real/held_out"],
                          "../shared/data/background_noise", minutes=20)
"""

import os
import sys

import numpy as np
import soundfile as sf

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.audio import ENERGY_FRAME, frame_energy, read_many, read_wav
from kws.common import UserError, atomic_path, require_dir
from kws.data import EVAL_NOISE_FRACTION
from kws.folders import clips_in, list_test_clips
from kws.labels import COMPETITION_WORDS, SILENCE_LABEL, UNKNOWN_LABEL, competition_label
from kws.streaming import write_ground_truth

NOISE_PARTS = ("all", "head", "tail")


def speech_onset(clip, floor_db=30.0):
    """Offset in samples of the first 10 ms frame within floor_db of the clip's loudest."""
    energy = 10 * np.log10(frame_energy(clip) / ENERGY_FRAME + 1e-12)
    return int(np.argmax(energy >= energy.max() - floor_db)) * ENERGY_FRAME


def clip_name(path):
    """`<folder>/<file>` of a clip: enough to find it again, no machine's absolute path."""
    return "/".join(os.path.normpath(path).split(os.sep)[-2:])


def load_noise(noise_dir, part, eval_fraction):
    """The noise recordings (or the part of each that training never mixes in) end to end."""
    require_dir(noise_dir, "noise folder")
    pieces = []
    for name in clips_in(noise_dir):
        r = read_wav(os.path.join(noise_dir, name), num_samples=None)
        cut = int(len(r) * (1 - eval_fraction))
        pieces.append({"all": r, "head": r[:cut], "tail": r[cut:]}[part])
    pieces = [p for p in pieces if len(p)]
    if not pieces:
        raise UserError(f"no readable noise recordings in {noise_dir}")
    noise = np.concatenate(pieces)
    return noise / max(np.sqrt(np.mean(noise.astype(np.float64) ** 2)), 1e-9)


class Rounds:
    """Draws from a pool of clip indices in shuffled rounds: every clip once before any repeats."""

    def __init__(self, pool, rng):
        self.pool, self.rng, self.left = list(pool), rng, []

    def __bool__(self):
        return bool(self.pool)

    def draw(self):
        if not self.left:
            self.left = [self.pool[i] for i in self.rng.permutation(len(self.pool))]
        return self.left.pop()


def plan(labels, rng, seconds, gap_ms, negative, unknown_share, other=(), other_share=0.0):
    """[(clip index, start sample)] for a stream of `seconds`: each gap drawn from
    U(gap_ms / 2, 3 gap_ms / 2) after the previous clip. `other`: indices of other speech,
    other_share of the non-command placements (negative: in proportion to the two pools'
    sizes, so every non-command clip is placed about equally often)."""
    other = set(other)
    words = [i for i, lb in enumerate(labels)
             if competition_label(lb) in COMPETITION_WORDS and i not in other]
    unknown = [i for i, lb in enumerate(labels)
               if competition_label(lb) == UNKNOWN_LABEL and i not in other]
    if negative:
        words = []
    if not words and not unknown and not other:
        raise UserError("no clips to place: the folders have no " +
                        ("unknown words" if negative else "words"))
    if other_share < 0:
        other_share = len(other) / max(len(other) + len(unknown), 1)
    words, unknown, other = Rounds(words, rng), Rounds(unknown, rng), Rounds(sorted(other), rng)
    total = int(seconds * SAMPLE_RATE)
    placed, t = [], 0
    while True:
        t += int(rng.uniform(0.5, 1.5) * gap_ms * SAMPLE_RATE / 1000)
        if t + CLIP_SAMPLES > total:
            return placed
        pool = words
        if not words or rng.uniform() < unknown_share:
            pool = other if other and (not unknown or rng.uniform() < other_share) else unknown
        if not pool:
            pool = words or unknown or other
        placed.append((pool.draw(), t))
        t += CLIP_SAMPLES


def read_clips(data_dirs, other_dirs):
    """(clips float32 [n, 16000], labels, paths, indices of the other speech) of the folders'
    word clips (silence folders left out); every clip of other_dirs is labelled _unknown_."""
    paths, labels, other = [], [], []
    for folder, is_other in [(d, False) for d in data_dirs] + [(d, True) for d in other_dirs]:
        found, folders = list_test_clips(folder)
        if folders is None and not is_other:
            raise UserError(f"{folder} is flat: the stream needs <label>/*.wav to know the "
                            "words")
        folders = folders or [UNKNOWN_LABEL] * len(found)
        for path, name in zip(found, folders):
            label = UNKNOWN_LABEL if is_other else competition_label(name)
            if label == SILENCE_LABEL:
                continue
            other += [len(paths)] if is_other else []
            paths.append(path)
            labels.append(label)
    clips, kept = read_many(paths)
    if not len(kept):
        raise UserError(f"no readable word clips in {', '.join(data_dirs + other_dirs)}")
    index = {k: n for n, k in enumerate(kept)}
    return (clips, [labels[k] for k in kept], [paths[k] for k in kept],
            [index[i] for i in other if i in index])


def write_stream(out, clips, placed, noise, noise_rms, seconds, rng, block_seconds=60):
    """Mix the placed clips over the noise loop, block by block, into a 16-bit WAV at out."""
    total = int(seconds * SAMPLE_RATE)
    block = block_seconds * SAMPLE_RATE
    offset = rng.randint(len(noise))
    with atomic_path(out) as tmp:
        with sf.SoundFile(tmp, "w", SAMPLE_RATE, 1, "PCM_16", format="WAV") as f:
            for start in range(0, total, block):
                n = min(block, total - start)
                idx = (offset + start + np.arange(n)) % len(noise)
                mix = noise[idx] * noise_rms
                for i, t in placed:
                    lo, hi = max(t, start), min(t + CLIP_SAMPLES, start + n)
                    if lo < hi:
                        mix[lo - start:hi - start] += clips[i][lo - t:hi - t]
                f.write(np.clip(mix, -1, 1).astype(np.float32))


def make_stream(out, data_dirs, noise_dir, other_dirs=None, minutes=10.0, gap_ms=2000.0,
                snr_db=20.0, unknown_share=0.2, other_share=0.5, negative=False,
                noise_part="all", seed=0):
    """Write the stream `out` and its ground truth OUT.csv (make_streams.py's flags, checked
    there); returns the summary make_streams.py writes as --metrics_json."""
    clips, labels, paths, other = read_clips(list(data_dirs), list(other_dirs or []))
    rng = np.random.RandomState(seed)
    seconds = minutes * 60
    placed = plan(labels, rng, seconds, gap_ms, negative, unknown_share, other, other_share)
    rms = np.sqrt(np.mean(clips.astype(np.float64) ** 2, axis=1))
    noise_rms = float(np.median(rms) / 10 ** (snr_db / 20))
    noise = load_noise(noise_dir, noise_part, EVAL_NOISE_FRACTION)
    truth = [(labels[i], (t + speech_onset(clips[i])) * 1000 / SAMPLE_RATE, clip_name(paths[i]))
             for i, t in placed]
    truth_path = os.path.splitext(out)[0] + ".csv"
    if os.path.exists(truth_path):
        os.remove(truth_path)  # never an old ground truth beside new audio, even if killed
    write_stream(out, clips, placed, noise, noise_rms, seconds, rng)
    write_ground_truth(truth_path, truth)
    commands = sum(label in COMPETITION_WORDS for label, _, _ in truth)
    other = set(other)
    summary = {"wav": out, "ground_truth": truth_path, "seconds": seconds,
               "words": len(truth), "command_words": commands, "unknown_words": len(truth) -
               commands, "other_speech": sum(i in other for i, _ in placed),
               "distinct_clips": len({i for i, _ in placed}), "negative": negative,
               "max_placements": int(np.bincount([i for i, _ in placed]).max()) if placed else 0,
               "snr_db": snr_db, "noise_part": noise_part, "seed": seed}
    print(f"wrote {out} ({seconds / 60:.1f} min) and {truth_path}: {commands} command words, "
          f"{len(truth) - commands} unknown words", file=sys.stderr)
    return summary
