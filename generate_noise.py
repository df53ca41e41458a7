"""Generate coloured background noise (white, pink, brown, blue, violet) as 16 kHz 16-bit WAVs.

    python generate_noise.py --out_dir data/synthetic/train/audio/_background_noise_ --seconds 60

Each colour is white Gaussian noise shaped in the frequency domain so that its power spectral
density goes as f**beta: white 0 dB/octave, pink -3, brown (red) -6, blue +3, violet +6. Below
--low_hz the spectrum is held flat so brown noise is not one slow drift. Files are named like the
Speech Commands ones (`pink_noise.wav`), written atomically, and the same --seed gives the same
bytes; each colour has its own random stream, so choosing other --colors leaves the rest unchanged.
"""

import argparse

from kws import SAMPLE_RATE
from kws.common import UserError, run_cli
from kws.noise import COLORS, DEFAULT_LOW_HZ, parse_colors, write_noise_files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_dir", required=True,
                        help="folder for the WAVs (e.g. <data>/train/audio/_background_noise_)")
    parser.add_argument("--colors", default="all",
                        help=f"comma-separated colours from {','.join(COLORS)}, or 'all'")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each file")
    parser.add_argument("--rms_db", type=float, default=-20.0,
                        help="RMS level in dBFS (lowered if the peaks would clip)")
    parser.add_argument("--low_hz", type=float, default=DEFAULT_LOW_HZ,
                        help="the spectrum is flat below this frequency")
    parser.add_argument("--sample_rate", type=int, default=SAMPLE_RATE)
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    args = parser.parse_args(argv)
    colors = parse_colors(args.colors)
    if not args.rms_db <= 0:  # also refuses nan
        raise UserError(f"--rms_db must be <= 0 dBFS, got {args.rms_db}")
    if not 0 < args.seconds <= 3600:
        raise UserError(f"--seconds must be in (0, 3600], got {args.seconds:g}")
    if args.sample_rate < 1000:
        raise UserError(f"--sample_rate must be >= 1000, got {args.sample_rate}")
    if not 0 < args.low_hz < args.sample_rate / 2:
        raise UserError(f"--low_hz must be in (0, {args.sample_rate / 2:g}), got {args.low_hz}")
    paths = write_noise_files(args.out_dir, colors, args.seconds, args.rms_db, args.seed,
                              args.sample_rate, args.low_hz)
    for path in paths:
        print(path)


if __name__ == "__main__":
    run_cli(main)
