"""The main job (`make demo`): synthetic speech -> edge model -> frozen models -> scored test.

    python demo.py

Offline, on data it makes itself: builds the synthetic Kaggle-style set, trains the edge model
briefly, freezes it (.pb, float and int8 .tflite), labels the unlabeled test folder with
make_submission.py (with test-time augmentation) and with make_submission_on_rpi.py (int8, one
clip at a time), then spots the words in long synthetic streams of validation and test speakers
(threshold chosen on the validation streams, beside the TF example's recognizer), and prints one
summary: accuracy against the answer key, sizes, latency, streaming figures, outputs.
Every step resumes or redoes cheaply, so running it again is safe.
"""

import argparse

from kws.common import require_file, run_cli
from kws.demo import DemoPaths, run_demo


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="data/synthetic", help="synthetic set folder")
    parser.add_argument("--config", default="experiments/demo.json", help="training recipe")
    parser.add_argument("--exp_name", default="demo")
    parser.add_argument("--out_dir", default="data/demo", help="submissions and summary")
    parser.add_argument("--frozen_dir", default="tf_files/demo")
    parser.add_argument("--synthetic_args", default="",
                        help="extra flags for make_synthetic_data.py, e.g. '--max_speakers 60'")
    parser.add_argument("--train_args", default="", help="extra flags for train.py")
    parser.add_argument("--stream_minutes", type=float, default=3.0,
                        help="length of the streams with command words")
    parser.add_argument("--negative_stream_minutes", type=float, default=30.0,
                        help="length of the streams without command words")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    require_file(args.config, "training recipe")  # before minutes of synthesis, not after
    run_demo(DemoPaths(args.data_dir, args.config, args.exp_name, args.out_dir, args.frozen_dir),
             args.synthetic_args.split(), args.train_args.split(), args.stream_minutes,
             args.negative_stream_minutes)
    return 0


if __name__ == "__main__":
    run_cli(main)
