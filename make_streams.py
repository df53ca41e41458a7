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

from kws.common import UserError, run_cli, write_metrics
from kws.stream_making import NOISE_PARTS, make_stream


def build_parser():
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not (0 < args.minutes < 1e4 and 0 < args.gap_ms < 1e7 and 0 <= args.unknown_share <= 1
            and (0 <= args.other_share <= 1 or args.other_share == -1)
            and -60 < args.snr_db < 120):
        raise UserError("need --minutes in (0, 10000), --gap_ms > 0, --unknown_share in "
                        "[0, 1], --other_share in [0, 1] or -1, and --snr_db in (-60, 120)")

    summary = make_stream(args.out, args.data_dir, args.noise_dir, args.other_dir, args.minutes,
                          args.gap_ms, args.snr_db, args.unknown_share, args.other_share,
                          args.negative, args.noise_part, args.seed)
    write_metrics(args.metrics_json, summary)
    return 0


if __name__ == "__main__":
    run_cli(main)
