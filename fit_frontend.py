"""Fit the PackFeatures front end to the published spectrograms on paired clips of training
speakers, and measure the match on speakers it was not fitted on.

    python fit_frontend.py --pack ../shared/data/speech_commands_v0.02_spectrograms.zip \
        --dev_dir ../shared/data/speech_commands_test_v0.02_dev --json logs/fit_frontend.json

Most dev clips exist both as audio and as a pack image (same speaker, word and take). The front
end is fixed up to two constants and the log offset: grey = clip(scale * log(mel power + offset)
+ bias, 0, 255) on 40 HTK-mel bands over 0-4000 Hz of 30 ms Hann frames every 10 ms. For each
log offset of --log_offsets, scale and bias are a least-squares line through the cells of the
training speakers' pairs that the line predicts unclipped (grey in 8..245); the offset with the
smallest training error wins. (JPEG smooths what it keeps, so the line comes out a few per cent
flatter than the one the images were made with: 8.85 for 9.0 on the test's tone pack.)
Speakers are split as make real splits them (kws.folders.real_split), so the held-out
speakers' clips never shape the front end. Reported per set: correlation, RMS of
the grey-level residual, its median and 90th percentile per clip, and the JPEG noise floor (the
same RMS between our features and our features saved as JPEG quality 75, as the pack was).
The constants the models use are kws/pack.py's GREY_SCALE, GREY_OFFSET and LOG_OFFSET: the run
prints how far the fitted ones are from them. The fit lives in kws/frontend_fit.py, the pairing
in kws.pack_data.paired_audio.
"""

import argparse

from kws.common import UserError, run_cli, write_metrics
from kws.pack_data import paired_audio


def comma_floats(text):
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1e-7,1e-6, got {text!r}") \
            from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("log offsets must be > 0")
    return values


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", default="../shared/data/speech_commands_v0.02_spectrograms.zip",
                        help="the spectrogram pack (zip, read in place)")
    parser.add_argument("--dev_dir", default="../shared/data/speech_commands_test_v0.02_dev",
                        help="the clips whose audio we have (<word>/*.wav)")
    parser.add_argument("--cache_dir", default="data/pack", help="where the decoded pack is kept")
    parser.add_argument("--log_offsets", type=comma_floats, default=[1e-7, 3e-7, 1e-6, 3e-6],
                        help="log offsets to try")
    parser.add_argument("--json", default="logs/fit_frontend.json", help="write the figures here")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    data = paired_audio(args.pack, args.dev_dir, args.cache_dir)
    if not (data.sets == "training").any():
        raise UserError("no paired clip of a training speaker")
    # TensorFlow: after the flags are checked
    from kws.frontend_fit import fit_front_end

    record = fit_front_end(data, args.log_offsets, args.pack)
    write_metrics(args.json, record)
    return 0


if __name__ == "__main__":
    run_cli(main)
