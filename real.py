"""The real-speech recipe (`make real`): train on real speakers, score speakers training never saw.

    python real.py --shared ../shared/data

Speakers of the Speech Commands v0.02 test clips in ../shared/data are split by a salted speaker
hash into training, validation and held-out testing. The 1,770 extra Speech Commands speakers
(Opus, kws.corpora) join training, but for a fifth of them (by another salted hash) who join
validation: hundreds of validation speakers, in audio and pack images alike. Training adds, as
train-only data, the training speakers of the v0.01 sample (split by the dev hash), four of the
six spoken-digit speakers, other speech (wake-word phrases but the held-out phrase groups) and
the training speakers' running speech cut into seconds (all as unknown words), synthetic
espeak-ng speech and the real background noise, and the edge model also learns from the
published spectrograms of 2,298 more speakers (the pack, through its PackFeatures front end;
`--models edge_audio_only` trains the same model on the audio alone, for comparison), with
every command word equally frequent in an epoch. No model trains on a validation or held-out
speaker, in either form, so the validation speakers stay unseen voices for choosing
checkpoints and the detection threshold. Held-out silence is cut from noise audio that
training never uses (the tail of each recording, or a source training never sees), and int8
calibration uses training speakers only.
By default (`make real`) it trains the teacher (edge_tcs at width 3 on the pack front end,
749 KB as int8: the model that ships) and the entry's seed195 with a cosine-decayed rate in 14
epochs (seed195_cosine14), which also learns from 600 training-side pack images a word rendered
back to audio (`--pack_audio`; `--models` adds others, e.g. tutorial_conv, the TF tutorial's
conv model: 23 more minutes).
With `--models teacher,edge` the teacher trains first, mines hard negatives (the windows of
the training side's other and running speech it hears as a command, kws.corpora
.training_recordings) and the edge model learns from them as unknown words while it distils the
teacher's soft targets (distillation, as the entry did); `--models edge --teacher_checkpoint
C` reuses a trained teacher, e.g. for students of other seeds. The frozen model is the edge
model when it trains, else the teacher (`--frozen` names another). `--models
teacher_nols_lookalikes` trains the teacher without label smoothing on lookalike words too (a
command's sound inside another word, kws.synthetic.words.LOOKALIKES, said by synthetic voices)
as unknown, and streams its validation negatives with other lookalike words;
`teacher_nols_lookalikes_cycle2` trains it (or reuses its run of the same seed), then a second
cosine cycle from its checkpoint chosen on validation (`teacher_lookalikes_cycle2`: that cycle
with label smoothing 0.05; `teacher_lookalikes_cycle3` a third such cycle from it);
`teacher_nols_lookalikes_kd` a second cycle half as long that distils an ensemble's mean
probabilities (`--teacher_checkpoint`, repeated: e.g. the three seeds' second cycles);
`teacher_nols_lookalikes_warp` the first cycle with each clip's mel bands stretched by up to 10%
in training (kws.layers.FrequencyWarp, a vocal tract length perturbation);
`teacher_nols_lookalikes_wide` the first cycle at width 3.5 (935,248 bytes as int8) and
`teacher_lookalikes_wide_cycle2` its smoothed second cycle.
Each model trains for the epochs of its config (a wall-clock cap only guards against a stuck
run), is scored on the held-out speakers with test-time augmentation, and the frozen model is
exported to tf_files/<out_dir's name>/ (model.pb, model.tflite, model_int8.tflite, labels.txt)
and scored again as int8 through make_submission_on_rpi.py.
Then keyword spotting on long audio: streams of the validation and of the held-out speakers
(dev, extra and v0.01 clips) over noise training never hears, and two-hour negative streams of
their unknown words, a spoken-digit speaker training never heard and held-out other-speech
phrase groups (each clip placed about equally often); the detection threshold is chosen on the
validation streams (stored beside the model as model_streaming.json) and the held-out streams
are scored with it and with the TF example's recognizer; then command detections per hour on
the validation and held-out speakers' running speech. Results: <out_dir>/results.json (with
the minutes each part took) and a table on stdout. When the frozen model beats the shipped one
(models/edge_card.json) on the same validation speakers, it replaces it (unless --no-ship); the
held-out figure never chooses.
"""

import argparse
import sys

from kws.common import UserError, require_file, run_cli
from kws.real import DISTILLED_RECIPES, RECIPES, run_recipe, stage_inputs


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default="../shared/data", help="folder of the real clips")
    parser.add_argument("--out_dir", default="data/real", help="staging and results")
    parser.add_argument("--models", default="teacher,seed195_cosine14",
                        help=f"comma-separated, from {','.join(RECIPES)}; with teacher and "
                             "edge, the teacher trains first, mines hard negatives and edge "
                             "distils from it")
    parser.add_argument("--teacher_checkpoint", action="append", default=[],
                        help="with --models edge (no teacher): distil from this trained teacher "
                             "(e.g. another seed's checkpoints/real_teacher_s1/ep-*.keras) and "
                             "mine hard negatives with it, instead of training one; repeated "
                             "for teacher_nols_lookalikes_kd: the ensemble it distils")
    parser.add_argument("--frozen", default="",
                        help="the trained model that is frozen, streamed and may ship (default: "
                             "edge if trained, else teacher, edge_tcs at width 3 and 749 KB as "
                             "int8)")
    parser.add_argument("--cap_minutes", type=float, default=90.0,
                        help="wall-clock safety cap for each model's training; the budget is "
                             "the epochs in its config, so results do not depend on the CPU")
    parser.add_argument("--stream_minutes", type=float, default=20.0,
                        help="length of the validation and held-out streams with command words")
    parser.add_argument("--negative_stream_minutes", type=float, default=120.0,
                        help="length of the streams without command words (false accepts)")
    parser.add_argument("--zoo_cpu_minutes", type=float, default=0,
                        help="instead of the recipe: train every model of the zoo with the edge "
                             "recipe for this much CPU time each and tabulate validation accuracy")
    parser.add_argument("--ship", action=argparse.BooleanOptionalAction, default=True,
                        help="copy the int8 edge model into models/ (the model serve.py and "
                             "label_stream.py use by default) when it beats the shipped one on "
                             "the same validation speakers (the held-out figure never chooses)")
    parser.add_argument("--seed", type=int, default=None,
                        help="training seed of every model (default: each config's); a run "
                             "of another seed keeps its checkpoints apart (real_<model>_s<seed>)"
                             " and should write to its own --out_dir")
    parser.add_argument("--pack_audio", type=int, default=600, metavar="PER_LABEL",
                        help="the raw-audio models (seed195, seed106) also learn from up to "
                             "this many training-side pack images of each command word (and "
                             "of the other words together) rendered back to audio "
                             "(kws.pack_audio; 0: not)")
    parser.add_argument("--synthetic_dir", default="data/synthetic",
                        help="synthetic speech (made with make_synthetic_data.py if missing)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(RECIPES))
    if unknown or not models:
        raise UserError(f"unknown models {unknown}; choose from {sorted(RECIPES)}")
    if args.pack_audio < 0:
        raise UserError("--pack_audio must be >= 0")
    for flag in ("cap_minutes", "stream_minutes", "negative_stream_minutes"):
        if not getattr(args, flag) > 0:  # also refuses nan
            raise UserError(f"--{flag} must be > 0, got {getattr(args, flag):g}")
    if not args.zoo_cpu_minutes >= 0:
        raise UserError(f"--zoo_cpu_minutes must be >= 0 (0: the recipe), got "
                        f"{args.zoo_cpu_minutes:g}")
    if args.frozen and args.frozen not in models:
        raise UserError(f"--frozen {args.frozen} is not among --models {args.models}")
    students = [m for m in models if m in DISTILLED_RECIPES]
    if args.teacher_checkpoint:
        if "teacher" in models or not students:
            raise UserError(f"--teacher_checkpoint needs one of {', '.join(DISTILLED_RECIPES)} "
                            "among --models and no teacher")
        if "edge" in models and len(args.teacher_checkpoint) > 1:
            raise UserError("edge distils from one --teacher_checkpoint")
        for checkpoint in args.teacher_checkpoint:
            require_file(checkpoint, "--teacher_checkpoint")
    elif set(students) - {"edge"}:
        raise UserError(f"{', '.join(sorted(set(students) - {'edge'}))} distils from "
                        "--teacher_checkpoint (repeat it for an ensemble)")
    if args.zoo_cpu_minutes > 0:
        # TensorFlow: after the flags are checked
        from kws.zoo_compare import compare_zoo

        data_args, _ = stage_inputs(sys.executable, args.shared, args.out_dir, models,
                                    args.synthetic_dir)
        return compare_zoo(sys.executable, data_args, args.zoo_cpu_minutes, args.out_dir)
    run_recipe(args.shared, args.out_dir, models, args.cap_minutes, args.stream_minutes,
               args.negative_stream_minutes, args.seed, args.synthetic_dir, args.ship,
               args.teacher_checkpoint or None, args.frozen or None,
               "python real.py " + " ".join(sys.argv[1:] if argv is None else argv),
               args.pack_audio)
    return 0


if __name__ == "__main__":
    run_cli(main)
