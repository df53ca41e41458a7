"""Freeze a train.py checkpoint into the files a Raspberry Pi runs: .pb, .tflite and int8 .tflite.

    python freeze_graph.py --checkpoint checkpoints/195/ep-055-vl-0.2231.keras \
        --frozen_path tf_files/frozen.pb --calibration_data data/speech_commands_v0.01

Writes, beside --frozen_path (tf_files/frozen.pb by default):
- frozen.pb: a frozen TensorFlow GraphDef with the interface of the TF speech_commands tutorial
  (label_wav.py works unchanged): feed the bytes of a WAV file to `wav_data:0`, or float samples
  [16000, 1] to `decoded_sample_data:0` (and the rate to `decoded_sample_data:1`), and read the
  probabilities [1, n] from `labels_softmax:0`. `wav_data` goes through TensorFlow's DecodeWav:
  16 kHz 16-bit PCM only (any channel count, mixed to mono; padded or cropped to one second);
  another rate fails with an error, another encoding does not decode. Every other path (Keras,
  .tflite, make_submission_on_rpi.py, which feeds `decoded_sample_data`) reads any format and
  resamples;
- frozen.tflite: the same model as float TFLite, float32 samples [1, 16000] -> probabilities [1, n];
- frozen_int8.tflite: int8 weights and activations calibrated on --num_calibration training clips
  (float input and output; ops LiteRT cannot quantize stay float and are listed);
- frozen_labels.txt: one label per line; frozen_info.json: checkpoint, params, MACs, sizes, checks.
Every file is checked against the Keras model on --num_check clips before anything is written, and a
float model over --max_bytes (the Pi prize's 5,000,000 bytes) is refused unless --allow_large.
The work is kws.freeze.freeze (checks and writing) over kws/export.py and kws/calibration.py.
"""

import argparse
import os

from kws.common import UserError, require_file, run_cli

MAX_BYTES = 5_000_000
FORMATS = ("pb", "tflite", "int8", "stream")


def build_parser():
    """freeze_graph.py's flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", "--checkpoint_path", required=True,
                   help="a .keras checkpoint saved by train.py")
    p.add_argument("--frozen_path", "--output_file", default="tf_files/frozen.pb",
                   help="where to write the frozen graph; the .tflite files go beside it")
    p.add_argument("--output_labels", default="",
                   help="labels file to write (default: <frozen_path stem>_labels.txt)")
    p.add_argument("--formats", default=",".join(FORMATS),
                   help="comma-separated subset of pb,tflite,int8,stream to write (stream: the "
                        "network after a log-mel/MFCC front end, for streaming; skipped for "
                        "raw-audio models)")
    p.add_argument("--calibration_data", default="",
                   help="comma-separated folders of training clips for int8 calibration and the "
                        "checks (a data dir train.py reads, or a folder of WAVs; a data dir's "
                        "split lists leave out its validation and test clips); default: the "
                        "training side of the data_dir of the checkpoint's config.json")
    p.add_argument("--num_calibration", type=int, default=200,
                   help="clips fed to the int8 calibration")
    p.add_argument("--num_check", type=int, default=50,
                   help="clips on which every exported model must agree with the Keras model")
    p.add_argument("--competition_labels", action="store_true",
                   help="fold every word outside the 12 competition labels into _unknown_ "
                        "(for models trained on all words)")
    p.add_argument("--max_bytes", type=int, default=MAX_BYTES,
                   help="refuse a model file larger than this (the Pi prize limit)")
    p.add_argument("--allow_large", action="store_true", help="write models over --max_bytes")
    p.add_argument("--float_tolerance", type=float, default=1e-4,
                   help="largest allowed |p_exported - p_keras| for the float models")
    p.add_argument("--int8_agreement", type=float, default=0.9,
                   help="smallest allowed share of clips where int8 and Keras agree on top-1")
    p.add_argument("--seed", type=int, default=0, help="seed for picking calibration clips")
    return p


def parse_args(argv=None):
    """The flags, checked: a bad value is a one-line UserError before TensorFlow loads."""
    args = build_parser().parse_args(argv)
    args.formats = [f for f in args.formats.split(",") if f]
    bad = [f for f in args.formats if f not in FORMATS]
    if bad or not args.formats:
        raise UserError(f"--formats takes a comma-separated subset of {','.join(FORMATS)}, "
                        f"got {','.join(args.formats) or 'nothing'}")
    if args.num_calibration < 1 or args.num_check < 1:
        raise UserError("--num_calibration and --num_check must be >= 1")
    if not args.frozen_path.endswith(".pb"):
        raise UserError(f"--frozen_path must end in .pb, got {args.frozen_path}")
    if not 0 <= args.int8_agreement <= 1:
        raise UserError(f"--int8_agreement must be in [0, 1], got {args.int8_agreement}")
    require_file(args.checkpoint, "checkpoint")
    for folder in (d for d in args.calibration_data.split(",") if d):
        if not os.path.isdir(folder):
            raise UserError(f"calibration folder not found: {folder}")
    return args


def main(argv=None):
    args = parse_args(argv)
    from kws.freeze import freeze  # TensorFlow: after the flags are checked

    return freeze(args)


if __name__ == "__main__":
    run_cli(main)
