"""Label every clip of a folder with a trained model: Kaggle submission and all class probabilities.

    python make_submission.py --checkpoint checkpoints/seed195/ep-040-vl-0.1234.keras \
        --test_data data/test/audio --submission_fn submissions/seed195.csv

Writes, with SUB the submission path without `.csv`:
  SUB.csv            fname,label: Kaggle labels (silence, unknown, the ten commands)
  SUB.probs.csv      fname,<model label>...: softmax probabilities, averaged over the TTA variants
  SUB.probs.u8       uint8 [n_clips, n_labels] = round(probability * 255), C order, no header
  SUB.probs.json     the sidecar of SUB.probs.u8: shape, labels, fnames, unreadable clips, flags
  SUB.confusion.png  when the true labels are known (`<label>/*.wav` folders, or --answers KEY.csv)
fname is the path relative to --test_data: `clip_000044442.wav` for Kaggle's flat `test/audio`,
`yes/0a7c2a8d_nohash_0.wav` for labelled folders (basenames repeat across those).

An all-words model (labels beyond the 12 competition classes) is mapped to the 12 classes for the
submission as convert_to_12_classes.py does (--unknown_mode); its probability files keep every word.
Unreadable clips are skipped by the decoder, labelled `silence` (probability 1) in every output,
listed under "unreadable" in SUB.probs.json and reported in one warning at the end.

Clips go through in chunks (--chunk_size): each chunk is decoded in parallel threads while the
model labels the previous one in large batches, and its probabilities are saved in SUB.csv.parts/.
A killed run started again with the same inputs continues from the chunks already saved; other
inputs (checkpoint, clips, TTA flags, chunk size) start afresh. The folder goes once all is written.
--benchmark N times decoding and the model on N clips and writes nothing.

--test_list FILE labels the paths or URIs it lists (one a line) instead of a folder.
--runner ray runs the map step (decode a chunk, label it) on Ray Data actors, on this machine
or a Ray cluster (--ray_address); the driver saves and writes the same files, byte for byte.
The engine is kws/submission/ (kws.submission.run.make_submission).
"""

import argparse

from kws.common import UserError, comma_list, require_file, run_cli
from kws.labels import UNKNOWN_MODES
from kws.submission.inputs import RUNNERS, import_ray, list_inputs
from kws.submission.tta import tta_variants


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="trained model (.keras) with "
                        "labels.txt in its folder")
    parser.add_argument("--test_data",
                        help="folder of clips: flat (Kaggle test/audio) or <label>/*.wav")
    parser.add_argument("--test_list",
                        help="instead of --test_data: a text file of clips, one path or URI a "
                             "line (file://, or s3:// gs:// hdfs:// through pyarrow); the fname "
                             "of each is the line as written")
    parser.add_argument("--runner", choices=RUNNERS, default="local",
                        help="local: this process (decoding threads + TensorFlow); ray: the "
                             "decode + model map step on Ray Data actors, on this machine or a "
                             "Ray cluster (--ray_address); same outputs, byte for byte")
    parser.add_argument("--ray_address", default="local",
                        help="--runner ray: 'local' starts Ray on this machine; 'auto' or "
                             "ray://HOST:10001 joins a running cluster")
    parser.add_argument("--workers", type=int, default=0,
                        help="--runner ray: labelling actors (0: one per --threads CPUs of the "
                             "cluster)")
    parser.add_argument("--submission_fn", help="submission CSV to write (required unless "
                        "--benchmark); other outputs go beside it")
    parser.add_argument("--batch_size", type=int, default=256, help="clips per model call")
    parser.add_argument("--chunk_size", type=int, default=4096,
                        help="clips decoded and saved together (the unit of resuming)")
    parser.add_argument("--tta_shift", type=comma_list(int), default=[],
                        help="test-time time shifts in samples (one variant each); a list that "
                             "starts negative needs '=': --tta_shift=-1500,1500")
    parser.add_argument("--tta_gain", type=comma_list(float), default=[],
                        help="test-time gains, e.g. 0.8,1.2 (one variant each)")
    parser.add_argument("--tta_stretch", type=comma_list(float), default=[],
                        help="test-time time-stretch rates, e.g. 0.9,1.1 (one variant each)")
    parser.add_argument("--unknown_mode", choices=UNKNOWN_MODES, default="sum",
                        help="all-words models: how other words combine into unknown")
    parser.add_argument("--answers", help="CSV fname,label with the true labels, to score the "
                        "submission (labelled folders are scored without it)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for TensorFlow and decoding (0: all); with --runner "
                             "ray, per actor (0: 1)")
    parser.add_argument("--metrics_json", default="",
                        help="also write the figures (clips, speed, accuracy, recall) as JSON")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore chunks saved by an interrupted run")
    parser.add_argument("--benchmark", type=int, default=0, metavar="N",
                        help="only time decoding and the model on N clips (no TTA), write nothing; "
                             "with --benchmark_json, the whole labelling path of --runner too")
    parser.add_argument("--benchmark_json", default="",
                        help="--benchmark: label N clips (the folder's, repeated) through "
                             "--runner and write its clips/s here as JSON")
    return parser


def check_args(args):
    if args.batch_size < 1 or args.chunk_size < 1:
        raise UserError("--batch_size and --chunk_size must be >= 1")
    if args.threads < 0 or args.benchmark < 0:
        raise UserError("--threads and --benchmark must be >= 0")
    if not args.benchmark and not args.submission_fn:
        raise UserError("--submission_fn is required (unless --benchmark)")
    if bool(args.test_data) == bool(args.test_list):
        raise UserError("give one of --test_data (a folder) and --test_list (a file of clips)")
    if args.workers < 0:
        raise UserError("--workers must be >= 0")
    if args.runner != "ray" and (args.workers or args.ray_address != "local"):
        raise UserError("--workers and --ray_address need --runner ray")
    if args.answers:
        require_file(args.answers, "answers file")


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    variants = tta_variants(args.tta_shift, args.tta_gain, args.tta_stretch)
    if args.runner == "ray":
        import_ray()  # before anything else: a missing engine fails at once
    clips = list_inputs(args.test_data, args.test_list)
    require_file(args.checkpoint, "checkpoint")  # before TensorFlow loads: a typo fails at once
    from kws.submission.run import make_submission  # TensorFlow: after the flags are checked

    return make_submission(args, variants, clips)


if __name__ == "__main__":
    run_cli(main)
