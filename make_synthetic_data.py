"""Make a Speech Commands style data set offline: synthetic speakers say words through espeak-ng.

    python make_synthetic_data.py --out_dir data/synthetic

Writes the Kaggle layout of the TensorFlow Speech Recognition Challenge: `train/audio/<word>/
<speaker>_nohash_<n>.wav`, `train/audio/_background_noise_/` (coloured noise from
noise.py), `train/validation_list.txt` and `train/testing_list.txt` (split by speaker),
an unlabelled `test/audio/clip_<hex>.wav` folder with its answer key `test/answers.csv`
(fname,label as in a submission: a word, `silence` or `unknown`), and a README.md.

A synthetic speaker is one espeak-ng voice (every English voice found: en, en-us, en-029,
en-gb-scotland, ...) with one voice variant (+m3, +f2, +croak, +whisper, ...), a pitch, a pitch
range and a speaking rate; its id is the first 8 hex digits of a hash of that combination. espeak-ng
runs in process through ctypes (the library and voices of the espeakng-loader package). Each clip is
trimmed, resampled from 22050 to 16000 Hz, sped up if longer than 0.95 s, coloured by a short
synthetic room impulse and a random EQ, placed at a random offset in one second at a random level,
over a faint noise floor (and sometimes light noise). Test clips come from speakers whose pitch,
range and rate values never occur in training. The same flags and --seed give the same bytes.
Rerunning with the same flags keeps the files already written (all writes are atomic), so an
interrupted run resumes; other flags regenerate the folder from scratch. Optionally, Piper voices
(--piper_voice, needs the piper-tts package, not installed by default) add neural-TTS speakers.
The library is kws/synthetic/ (kws.synthetic.make.build_config and make_dataset do the work).
"""

import argparse
import os
import shlex
import sys

from kws.common import UserError, run_cli
from kws.synthetic.make import build_config, make_dataset
from kws.synthetic.words import UNSEEN_WORDS, V1_WORDS


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out_dir", required=True, help="output folder (new, empty, or made by us)")
    p.add_argument("--words", default=",".join(V1_WORDS),
                   help="comma-separated words (default: the 30 Speech Commands v0.01 words)")
    p.add_argument("--test_words", default="auto",
                   help="words the test set labels by name; the other --words are 'unknown' there "
                        "(auto: the 10 competition words among --words, else all --words)")
    p.add_argument("--unknown_words", default=",".join(UNSEEN_WORDS),
                   help="words never in training, said as 'unknown' in the test set ('none': no "
                        "such words); any that are also in --words are dropped")
    p.add_argument("--speakers_per_word", type=int, default=150,
                   help="synthetic speakers saying each word (split 80/10/10 by the percentages)")
    p.add_argument("--max_speakers", type=int, default=450,
                   help="size of the training speaker pool the per-word speakers come from")
    p.add_argument("--repeats", type=int, default=1,
                   help="utterances of each word per speaker (<speaker>_nohash_<n>)")
    p.add_argument("--validation_percentage", type=float, default=10.0,
                   help="speakers listed in validation_list.txt")
    p.add_argument("--testing_percentage", type=float, default=10.0,
                   help="speakers listed in testing_list.txt")
    p.add_argument("--test_clips", type=int, default=600, help="clips in test/audio (0: none)")
    p.add_argument("--test_speakers", type=int, default=60,
                   help="speakers of test/audio, with pitch/range/rate values unseen in training")
    p.add_argument("--voices", default="all",
                   help="comma-separated espeak-ng English voices (en, en-us, en-029, ...) or all")
    p.add_argument("--variants", default="all",
                   help="comma-separated espeak-ng variants (m1, f2, croak, whisper, ...), all, or "
                        "none (plain voices only)")
    p.add_argument("--noise_seconds", type=float, default=60.0,
                   help="length of each background noise file")
    p.add_argument("--noise_colors", default="all", help="colours for _background_noise_")
    p.add_argument("--reverb_probability", type=float, default=0.5,
                   help="share of clips coloured by a synthetic room impulse")
    p.add_argument("--noise_probability", type=float, default=0.3,
                   help="share of clips with light noise (10-30 dB SNR) over the faint floor")
    p.add_argument("--piper_voice", action="append", default=[],
                   help="optional Piper .onnx voice (with its .onnx.json) for more speakers; "
                        "needs the piper-tts package (repeatable)")
    p.add_argument("--piper_share", type=float, default=0.25,
                   help="share of the speakers taken from the Piper voices, if any")
    p.add_argument("--seed", type=int, default=0, help="same flags and seed, same bytes")
    p.add_argument("--workers", type=int, default=0,
                   help="parallel processes (0: the number of CPU cores, at most 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def validate(args):
    for name in ("speakers_per_word", "max_speakers", "repeats", "test_speakers"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.test_clips < 0:
        raise UserError(f"--test_clips must be >= 0, got {args.test_clips}")
    if args.speakers_per_word > args.max_speakers:
        raise UserError(f"--speakers_per_word ({args.speakers_per_word}) cannot exceed "
                        f"--max_speakers ({args.max_speakers})")
    for name in ("validation_percentage", "testing_percentage"):
        if not 0 <= getattr(args, name) < 100:
            raise UserError(f"--{name} must be in [0, 100), got {getattr(args, name)}")
    for name in ("reverb_probability", "noise_probability", "piper_share"):
        if not 0 <= getattr(args, name) <= 1:
            raise UserError(f"--{name} must be in [0, 1], got {getattr(args, name)}")
    if args.noise_seconds < 1:
        raise UserError(f"--noise_seconds must be >= 1, got {args.noise_seconds}")
    if args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise UserError(f"--out_dir {args.out_dir} exists and is not a folder")


def main(argv=None):
    args = build_parser().parse_args(argv)
    validate(args)
    config = build_config(args)
    command = "python make_synthetic_data.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    print(make_dataset(config, args.out_dir, args.workers, not args.quiet, command))


if __name__ == "__main__":
    run_cli(main)
