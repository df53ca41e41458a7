"""Make long test audio with ground truth: words at random times over background noise.

    python make_streams.py --data_dir data/real/held_out \
        --noise_dir ../shared/data/background_noise --minutes 20 --out data/streams/held_out.wav

Like the TF speech_commands example's generate_streaming_test_wav: clips of labelled folders
(`<label>/*.wav`: command words, unknown words, silence is simply the gaps; --data_dir may be
given more than once) are placed one after another with random gaps over background noise at a
chosen SNR, and OUT.csv lists `label,time_ms,clip` for each word: the moment its speech starts
in the stream (the first 10 ms frame within 30 dB of the clip's loudest) and the file it came
from. `--negative` leaves the command words out (unknown words and noise only): the stream to
count false accepts per hour on. `--other_dir` adds other speech that holds no command word
(every clip counts as `_unknown_`; --other_share of the non-command placements). Clips are
drawn in shuffled rounds, each once before any repeats, so an hour of negatives spreads over
every clip there is rather than leaning on a few. The same flags and --seed give the same bytes;
the stream is written in blocks, atomically, so an hour of audio never sits in memory whole.
"""

import argparse
import os
import sys

import numpy as np

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.audio import read_many, read_wav
from kws.common import UserError, atomic_path, require_dir, run_cli, write_metrics
from kws.data import EVAL_NOISE_FRACTION
from kws.folders import clips_in, list_test_clips
from kws.labels import COMPETITION_WORDS, SILENCE_LABEL, UNKNOWN_LABEL, competition_label
from kws.streaming import write_ground_truth

NOISE_PARTS = ("all", "head", "tail")
FRAME = SAMPLE_RATE // 100


def speech_onset(clip, floor_db=30.0):
    """Offset in samples of the first 10 ms frame within floor_db of the clip's loudest."""
    frames = clip[:len(clip) // FRAME * FRAME].reshape(-1, FRAME)
    energy = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    return int(np.argmax(energy >= energy.max() - floor_db)) * FRAME


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
    import soundfile as sf

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True, action="append",
                        help="labelled clips, <label>/*.wav (a held-out set, a test folder); "
                             "may be given more than once")
    parser.add_argument("--other_dir", action="append", default=[],
                        help="other speech with no command word in it (any layout; every clip "
                             "counts as _unknown_); may be given more than once")
    parser.add_argument("--other_share", type=float, default=0.5,
                        help="share of the non-command placements drawn from --other_dir "
                             "(-1: in proportion to the number of clips, so that each clip is "
                             "placed about equally often)")
    parser.add_argument("--noise_dir", required=True, help="background noise recordings")
    parser.add_argument("--noise_part", choices=NOISE_PARTS, default="all",
                        help="tail: only the end of each recording that training never mixes "
                             "in (input_data keeps it for evaluation); head: the rest")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the stream")
    parser.add_argument("--gap_ms", type=float, default=2000.0,
                        help="mean silence between two clips")
    parser.add_argument("--snr_db", type=float, default=20.0,
                        help="the median clip's RMS over the noise's RMS, in dB (20: about what "
                             "the TF example's background_volume 0.1 gives on the Speech "
                             "Commands noise recordings, 22 dB)")
    parser.add_argument("--unknown_share", type=float, default=0.2,
                        help="share of placed clips that are unknown words")
    parser.add_argument("--negative", action="store_true",
                        help="no command words: unknown words and noise only")
    parser.add_argument("--out", required=True, help="the stream to write; OUT.csv beside it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--metrics_json", default="", help="also write a summary as JSON")
    args = parser.parse_args(argv)
    if not (0 < args.minutes < 1e4 and 0 < args.gap_ms < 1e7 and 0 <= args.unknown_share <= 1
            and (0 <= args.other_share <= 1 or args.other_share == -1)
            and -60 < args.snr_db < 120):
        raise UserError("need --minutes in (0, 10000), --gap_ms > 0, --unknown_share in "
                        "[0, 1], --other_share in [0, 1] or -1, and --snr_db in (-60, 120)")

    clips, labels, paths, other = read_clips(args.data_dir, args.other_dir)
    rng = np.random.RandomState(args.seed)
    seconds = args.minutes * 60
    placed = plan(labels, rng, seconds, args.gap_ms, args.negative, args.unknown_share, other,
                  args.other_share)
    rms = np.sqrt(np.mean(clips.astype(np.float64) ** 2, axis=1))
    noise_rms = float(np.median(rms) / 10 ** (args.snr_db / 20))
    noise = load_noise(args.noise_dir, args.noise_part, EVAL_NOISE_FRACTION)
    truth = [(labels[i], (t + speech_onset(clips[i])) * 1000 / SAMPLE_RATE, clip_name(paths[i]))
             for i, t in placed]
    truth_path = os.path.splitext(args.out)[0] + ".csv"
    if os.path.exists(truth_path):
        os.remove(truth_path)  # never an old ground truth beside new audio, even if killed
    write_stream(args.out, clips, placed, noise, noise_rms, seconds, rng)
    write_ground_truth(truth_path, truth)
    commands = sum(label in COMPETITION_WORDS for label, _, _ in truth)
    other = set(other)
    summary = {"wav": args.out, "ground_truth": truth_path, "seconds": seconds,
               "words": len(truth), "command_words": commands, "unknown_words": len(truth) -
               commands, "other_speech": sum(i in other for i, _ in placed),
               "distinct_clips": len({i for i, _ in placed}), "negative": args.negative,
               "max_placements": int(np.bincount([i for i, _ in placed]).max()) if placed else 0,
               "snr_db": args.snr_db,
               "noise_part": args.noise_part, "seed": args.seed}
    write_metrics(args.metrics_json, summary)
    print(f"wrote {args.out} ({seconds / 60:.1f} min) and {truth_path}: {commands} command words, "
          f"{len(truth) - commands} unknown words", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
